"""The ConnComp columns of the paper's Experiments 1 and 2 (SPAIR_SPEC §5.1, §5.2), measured.

For each n, τ is searched on the first `DEFAULT_TAU_SEARCH_IMAGES` training images
(SPAIR_SPEC §4.1: best paper-protocol AP on the training set) and ConnComp is evaluated
on the 1,000 test images; the paper-protocol AP must lie within ±3 points of the value
read off the paper's Fig. 2. Opt-in: `pytest -m paper tests/test_paper_conncomp.py`.
The same table is written to results/comparison/conncomp.json by
`python -m baselines.conncomp --paper_table --output_json results/comparison/conncomp.json`.

Experiment 2 (Fig. 3): full 84×84 test images with exactly n digits, at the τ the original
chose for each n; `python -m baselines.conncomp --experiment2_table --output_json
results/comparison/conncomp_experiment2.json` writes the table for n = 1..20.
"""

import pytest

from baselines import conncomp
from spair_tf import paper_numbers

TOLERANCE_POINTS = 3.0


@pytest.mark.paper
@pytest.mark.parametrize("digits", ["mnist", "emnist_framed"])
@pytest.mark.parametrize("n_digits", [1, 3, 5, 7, 9])
def test_conncomp_ap_matches_paper(n_digits, digits):
    """Two digit preprocessings: the spec's MNIST default, and MNIST re-framed like the
    original code's EMNIST digits (BUILD_NOTES.md, "The Fig. 2 gap"). Measured: the MNIST
    variant is 7–16 points above the paper at n ≥ 3; the EMNIST-framed one within 2.5."""
    options = ({} if digits == "mnist" else
               {"digit_frame": "emnist", "digit_rounding": "floor"})
    result = conncomp.evaluate_conncomp(n_digits, tau_search=True, n_images=1000,
                                        split="test", **options)
    measured = 100.0 * result["AP"]
    paper = paper_numbers.EXPERIMENT1_AP["ConnComp"][n_digits]
    assert abs(measured - paper) <= TOLERANCE_POINTS, (
        f"n={n_digits}: measured AP {measured:.1f} (tau {result['tau']:.4f}, corrected "
        f"{100 * result['AP_corrected']:.1f}, coco {100 * result['AP_coco']:.1f}) vs the "
        f"paper's {paper}")


@pytest.mark.paper
@pytest.mark.parametrize("digits", ["mnist", "emnist_framed"])
@pytest.mark.parametrize("n_digits", sorted(paper_numbers.EXPERIMENT2["AP"]["CC"]))
def test_conncomp_experiment2_ap_matches_paper(n_digits, digits):
    """Measured (session 11): the MNIST variant is 3.4–15.9 points above Fig. 3 at n ≥ 3;
    the EMNIST-framed one within 1.4 points at every n."""
    options = ({} if digits == "mnist" else
               {"digit_frame": "emnist", "digit_rounding": "floor"})
    row = conncomp.experiment2_table(digit_counts=(n_digits,), count_search=False,
                                     **options)[str(n_digits)]
    measured, paper = row["AP_paper_protocol"], row["AP_paper_figure"]
    assert paper == paper_numbers.EXPERIMENT2["AP"]["CC"][n_digits]
    assert abs(measured - paper) <= TOLERANCE_POINTS, (
        f"n={n_digits}: measured AP {measured:.1f} (tau {row['tau']}, corrected "
        f"{row['AP_corrected']:.1f}) vs the paper's {paper}")
