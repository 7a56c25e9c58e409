"""The paper's reported numbers as data: the targets of the comparison tests.

Source: SPAIR_SPEC §5, which took them from Crawford & Pineau (AAAI 2019). Every value
tagged [F] in the spec was read off the paper's vector figures (Figs. 2, 3, 4, 7), so it
carries the reading's precision (about ±0.1 AP point), not the paper's own digits; the SET
accuracies (Table 1) are printed in the paper. AP values are in percent (the metrics module
returns fractions: multiply by 100 to compare); counts errors are per image; the addition
task's accuracies are fractions and SET's are percent, as the paper shows them.

A value with a confidence interval is `(mean, low, high)`, the 95% CI over training runs;
ConnComp is deterministic and has a bare number. `None` marks a cell the paper does not
report.
"""

# Experiment 1 (Fig. 2, SPAIR_SPEC §5.1): 48×48 images with exactly n digits, test AP (%).
EXPERIMENT1_AP = {
    "SPAIR": {1: (78.9, 76.9, 80.8), 3: (69.6, 68.9, 70.3), 5: (67.3, 66.5, 68.1),
              7: (65.9, 65.3, 66.5), 9: (62.4, 61.6, 63.2)},
    "AIR": {1: (79.0, 78.1, 79.9), 3: (45.5, 37.3, 53.7), 5: (13.0, 3.6, 22.3),
            7: (8.1, 4.8, 11.5), 9: (6.5, 6.2, 6.8)},
    "DAIR": {1: (78.8, 78.0, 79.6), 3: (20.2, 3.0, 37.4), 5: (6.0, 3.0, 8.9),
             7: (4.6, 3.1, 6.1), 9: (5.1, 4.7, 5.4)},
    "ConnComp": {1: 98.9, 3: 69.6, 5: 50.7, 7: 42.6, 9: 36.7},
}

# τ the original chose for ConnComp in Experiment 1 (SPAIR_SPEC §4.1).
CONNCOMP_TAU_EXPERIMENT1 = {1: 0.01, 3: 0.01, 5: 0.02, 7: 0.60, 9: 0.52}

# Experiment 2 (Fig. 3, SPAIR_SPEC §5.2): SPAIR trained on 48×48 crops of images with
# 1–5, 6–10 or 11–15 digits, tested on full 84×84 images with exactly n digits; ConnComp
# ("CC") with τ re-tuned per n and per metric. Keys: metric -> condition -> {n: value}.
EXPERIMENT2 = {
    "AP": {
        "1-5": {1: 76.7, 2: 73.7, 3: 72.2, 4: 69.5, 5: 68.3, 6: 67.7, 7: 66.6, 10: 64.1,
                15: 60.5, 20: 56.9},
        "6-10": {1: 75.6, 2: 73.4, 3: 72.3, 4: 70.1, 5: 68.9, 6: 68.3, 7: 67.5, 10: 65.7,
                 15: 63.7, 20: 61.5},
        "11-15": {1: 74.2, 2: 72.7, 3: 71.2, 4: 69.5, 5: 67.9, 6: 67.7, 7: 66.9, 10: 65.1,
                  15: 63.4, 20: 61.5},
        "CC": {1: 99.3, 2: 89.9, 3: 86.0, 4: 81.8, 5: 78.5, 6: 76.0, 7: 71.7, 10: 63.8,
               15: 51.9, 20: 45.3},
    },
    "count_abs_error": {
        "1-5": {1: 0.007, 5: 0.134, 10: 0.442, 15: 0.894, 20: 1.545},
        "6-10": {1: 0.010, 5: 0.096, 10: 0.282, 15: 0.515, 20: 0.775},
        "11-15": {1: 0.017, 5: 0.122, 10: 0.298, 15: 0.509, 20: 0.695},
        "CC": {1: 0.069, 5: 0.165, 10: 1.173, 15: 2.029, 20: 2.799},
    },
    "count_01_error": {
        "1-5": {1: 0.007, 5: 0.129, 10: 0.384, 15: 0.641, 20: 0.827},
        "6-10": {1: 0.010, 5: 0.094, 10: 0.264, 15: 0.441, 20: 0.585},
        "11-15": {1: 0.017, 5: 0.120, 10: 0.281, 15: 0.436, 20: 0.550},
        "CC": {1: 0.011, 5: 0.155, 10: 0.738, 15: 0.846, 20: 0.889},
    },
}

# ConnComp's τ in Experiment 2 for the AP metric, per n (SPAIR_SPEC §5.2).
CONNCOMP_TAU_EXPERIMENT2_AP = {
    **{n: 0.01 for n in range(1, 15)}, 15: 0.02, 16: 0.17, 17: 0.17, 18: 0.18,
    19: 0.47, 20: 0.47,
}

# Lateral-connection ablation (Fig. 7, SPAIR_SPEC §5.3), 11–15 training condition.
# Keys: metric -> "no_lateral" | "lateral" -> {n: value}.
LATERAL_ABLATION = {
    "AP": {"no_lateral": {1: 62.4, 5: 50.2, 10: 48.9, 15: 48.6, 20: 48.1},
           "lateral": {1: 65.7, 5: 61.3, 10: 60.0, 15: 58.6, 20: 57.2}},
    "count_abs_error": {"no_lateral": {1: 0.283, 5: 1.331, 10: 2.302, 15: 2.922, 20: 3.278},
                        "lateral": {1: 0.016, 5: 0.116, 10: 0.288, 15: 0.488, 20: 0.738}},
    "count_01_error": {"no_lateral": {1: 0.256, 5: 0.754, 10: 0.908, 15: 0.939, 20: 0.949},
                       "lateral": {1: 0.016, 5: 0.114, 10: 0.269, 15: 0.412, 20: 0.570}},
}

# Addition task (Fig. 4, SPAIR_SPEC §5.4): test accuracy vs training-set size (thousands
# of images). Keys: method -> {size: accuracy}; None where the paper has no point.
ADDITION = {
    "ConnComp": {1: 0.063, 8: None, 32: 0.127, 128: 0.178},
    "TrueBB": {1: 0.105, 8: 0.700, 32: 0.826, 128: 0.864},
    "ConvNet": {1: 0.057, 8: 0.059, 32: 0.109, 128: 0.111},
    "SPAIR-Fixed": {1: 0.083, 8: 0.152, 32: 0.433, 128: 0.587},
    "SPAIR-Unfixed": {1: 0.078, 8: 0.161, 32: 0.541, 128: 0.689},
    "AIR-Fixed": {1: 0.046, 8: 0.056, 32: 0.064, 128: 0.066},
    "AIR-Unfixed": {1: 0.053, 8: 0.055, 32: 0.066, 128: 0.071},
}

# SET (Table 1, SPAIR_SPEC §5.5): test accuracy (%), printed in the paper.
SET_ACCURACY = {"SPAIR": 57.9, "ConvNet": 50.1, "TrueBB": 57.7}
