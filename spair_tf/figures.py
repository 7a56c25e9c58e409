r"""The paper's comparison figures, drawn from our recorded results (SPAIR_SPEC §5).

    python -m spair_tf.figures [--output_dir results/figures]

Like `spair_tf.report` it measures nothing: it reads the result records under `results/`
and draws, each next to the paper's values:

- `fig2.png`: Experiment 1 (Fig. 2): test AP against the number of digits, one panel per
  model. The paper's mean with its 95% CI over runs as a line with error bars; ours as one
  marker per recorded run (`report.RECORDS`), circles on the spec's MNIST digits, squares on
  the original code's framing, diamonds for a variant of the model (e.g. the code of the
  runs behind Fig. 2, SPAIR_SPEC §6), hollow where the run has only a validation AP.
- `fig3.png`: Experiment 2 (Fig. 3): AP, count |error| and count 0-1 error against the
  number of digits in full 84×84 test images; the paper's curves for SPAIR's three training
  conditions and ConnComp, ours from `EXPERIMENT2_RECORDS`.
- `fig4.png`: the addition task (Fig. 4): test accuracy of the sum against the training-set
  size, one colour per method; the paper's points joined by a dashed line, ours
  (`report.ADDITION_RECORDS`) as markers, with the 95% interval over seeds where a cell has
  several.
- `training_curves.png`: validation AP against training steps for every run in
  `report.RECORDS` with a validation curve, the paper's test AP for its n dashed.

Beside the PNGs it writes `figures.json`: every series drawn, with its source file, so a
figure can be checked (tests/test_figures.py checks the committed one against the records)
and re-plotted without this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from spair_tf import io_utils
from spair_tf import paper_numbers
from spair_tf import report

DEFAULT_OUTPUT_DIR = os.path.join("results", "figures")
EXPERIMENT2_METRICS = ("AP", "count_abs_error", "count_01_error")
EXPERIMENT2_CONDITIONS = ("1-5", "6-10", "11-15", "CC")
DIGITS_MARKER = {"spec": "o", "original": "s"}
COLOURS = {"SPAIR": "tab:blue", "AIR": "tab:orange", "DAIR": "tab:green",
           "ConnComp": "tab:gray", "1-5": "tab:blue", "6-10": "tab:purple",
           "11-15": "tab:red", "CC": "tab:gray"}


@dataclasses.dataclass(frozen=True)
class Experiment2Record:
    """A recorded Experiment 2 evaluation: one row per digit count under `per_n`.

    Attributes:
      condition: "CC" or a SPAIR training condition ("1-5", "6-10", "11-15").
      label: the legend's name of the run.
      path: the JSON file under the repository.
      ap: keys leading from a `per_n` row to its AP (percent if `percent`, else a fraction).
      counts: metric -> keys leading from a row to that count error; a row without them (or
        with only some) simply has no point there.
      steps: keys leading from the record's top level to the training steps behind it; the
        legend then ends with ", <k>k steps" (None: ConnComp, nothing trained).
    """
    condition: str
    label: str
    path: str
    ap: tuple
    percent: bool
    counts: tuple = ()
    steps: tuple | None = None


def _conncomp_counts():
    return tuple((metric, ("count_tau_search", metric, "value"))
                 for metric in ("count_abs_error", "count_01_error"))


EXPERIMENT2_RECORDS = (
    Experiment2Record("CC", "ConnComp, MNIST digits",
                      "results/comparison/conncomp_experiment2.json",
                      ("AP_paper_protocol",), True, _conncomp_counts()),
    Experiment2Record("CC", "ConnComp, orig. digits",
                      "results/comparison/conncomp_experiment2_original_preprocessing.json",
                      ("AP_paper_protocol",), True, _conncomp_counts()),
    Experiment2Record("1-5", "SPAIR trained on 1-5, orig. digits",
                      "results/spair/exp2_1-5_original_digits.json", ("AP",), False,
                      (("count_abs_error", ("count_abs_error",)),
                       ("count_01_error", ("count_01_error",))), steps=("steps",)),
)


def _paper_series(values):
    """{n: mean or (mean, low, high)} -> sorted lists n, mean, low, high (None if no CI)."""
    ns = sorted(values)
    means = [v[0] if isinstance(v, tuple) else v for v in (values[n] for n in ns)]
    lows = [v[1] if isinstance(v, tuple) else None for v in (values[n] for n in ns)]
    highs = [v[2] if isinstance(v, tuple) else None for v in (values[n] for n in ns)]
    return {"n": ns, "mean": means, "low": lows, "high": highs}


def fig2_data(records=report.RECORDS, root=report.REPOSITORY):
    """Fig. 2's series: per model the paper's mean/CI and our cells (`report.measured`)."""
    cells = report.measured(records, root)
    return {model: {"paper": _paper_series(paper_numbers.EXPERIMENT1_AP[model]),
                    "ours": [c for c in cells if c["model"] == model]}
            for model in report.MODELS}


def fig3_data(records=EXPERIMENT2_RECORDS, root=report.REPOSITORY):
    """Fig. 3's series: per metric the paper's curve per condition and ours per record."""
    data = {metric: {"paper": {c: _paper_series(paper_numbers.EXPERIMENT2[metric][c])
                               for c in EXPERIMENT2_CONDITIONS},
                     "ours": []}
            for metric in EXPERIMENT2_METRICS}
    for record in records:
        loaded = report.load_record(root, record.path, "spair_tf.figures.EXPERIMENT2_RECORDS")
        rows = loaded.get("per_n")
        if not rows:
            raise ValueError(f"{record.path} has no per_n rows; it is not an Experiment 2 "
                             "sweep (python -m spair_tf.evaluate --n_digits_sweep=1-20)")
        ns = sorted(rows, key=int)
        label = record.label
        if record.steps is not None:
            try:
                label += ", " + report.steps_text(report.lookup(loaded, record.steps))
            except (KeyError, TypeError):
                raise ValueError(f"{record.path} has no {record.steps}; fix the record or its "
                                 "entry in EXPERIMENT2_RECORDS") from None
        keys = {"AP": record.ap, **dict(record.counts)}
        for metric, key in keys.items():
            points = []
            for n in ns:
                try:
                    value = float(report.lookup(rows[n], key))
                except (KeyError, TypeError):
                    if metric == "AP":
                        raise ValueError(f"{record.path}: per_n[{n}] has no {key}; fix the "
                                         "record or its entry in EXPERIMENT2_RECORDS") from None
                    continue
                scale = 100.0 if metric == "AP" and not record.percent else 1.0
                points.append((int(n), scale * value))
            data[metric]["ours"].append({
                "condition": record.condition, "label": label, "source": record.path,
                "n": [n for n, _ in points], "value": [v for _, v in points]})
    return data


def fig4_data(records=report.ADDITION_RECORDS, root=report.REPOSITORY):
    """Fig. 4's series: per method the paper's accuracies by size and our cells
    (`report.addition_measured`); a size the paper has no value for is left out."""
    cells = report.addition_measured(records, root)
    data = {}
    for method in report.ADDITION_METHODS:
        paper = {k: v for k, v in paper_numbers.ADDITION[method].items() if v is not None}
        data[method] = {"paper": {"thousands": sorted(paper),
                                  "accuracy": [paper[k] for k in sorted(paper)]},
                        "ours": [c for c in cells if c["method"] == method]}
    return data


def training_curve_data(records=report.RECORDS, root=report.REPOSITORY):
    """Validation AP (%) against steps for every recorded run with a `val_curve`."""
    curves = []
    for record in records:
        if record.steps is None:
            continue
        curve = report.load_record(root, record.path, "spair_tf.report.RECORDS").get("val_curve")
        if not curve:
            continue
        key = "AP" if "AP" in curve[0] else "val_AP"
        paper = paper_numbers.EXPERIMENT1_AP[record.model][record.n]
        curves.append({
            "model": record.model, "n": record.n, "digits": record.digits,
            "variant": record.variant, "source": record.path, "step": [int(p["step"]) for p in curve],
            "AP": [100.0 * float(p[key]) for p in curve],
            "paper_test_AP": paper[0] if isinstance(paper, tuple) else paper})
    # One curve per file: several cells may come from one record (e.g. two checkpoints).
    unique = {c["source"]: c for c in curves}
    return list(unique.values())


def figure_data(root=report.REPOSITORY):
    return {"fig2": fig2_data(root=root), "fig3": fig3_data(root=root),
            "fig4": fig4_data(root=root), "training_curves": training_curve_data(root=root)}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; no display on a server or in CI
    import matplotlib.pyplot as plt
    return plt


def _error_bars(series):
    if series["low"][0] is None:
        return None
    return [[m - lo for m, lo in zip(series["mean"], series["low"])],
            [hi - m for m, hi in zip(series["mean"], series["high"])]]


def _legend(ax, **kwargs):
    """A legend with each label once (ConnComp's five cells per framing share one)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), **kwargs)


def draw_fig2(data):
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(report.MODELS), figsize=(14, 3.6), sharey=True)
    for ax, model in zip(axes, report.MODELS):
        paper, colour = data[model]["paper"], COLOURS[model]
        bars = ax.errorbar(paper["n"], paper["mean"], yerr=_error_bars(paper), color=colour,
                           capsize=3, label="paper")
        bars.lines[0].set_gid("paper")  # the line through the means, not the caps
        for cell in data[model]["ours"]:
            hollow = cell["split"] != "test"
            steps = ("" if cell["steps"] is None
                     else f", n = {cell['n']}: {report.steps_text(cell['steps'])}")
            marker = "D" if cell["variant"] else DIGITS_MARKER[cell["digits"]]
            ax.plot([cell["n"]], [cell["AP"]], marker, color=colour,
                    markerfacecolor="white" if hollow else colour, markersize=7,
                    markeredgecolor="black", gid="ours",
                    label=f"ours, {report.DIGITS_LABEL[cell['digits']]} digits"
                          + (f", {cell['variant']}" if cell["variant"] else "") + steps
                          + (" (val)" if hollow else ""))
        ax.set_title(model)
        ax.set_xlabel("digits per image (n)")
        ax.set_xticks(list(report.N_DIGITS))
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=6)
    axes[0].set_ylabel("test AP % (paper protocol)")
    figure.suptitle("Experiment 1 (paper Fig. 2): ours beside the paper's mean and 95% CI")
    figure.tight_layout()
    return figure


def draw_fig3(data):
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(EXPERIMENT2_METRICS), figsize=(14, 4))
    names = {"AP": "AP % (paper protocol)", "count_abs_error": "count |error|",
             "count_01_error": "count 0-1 error"}
    for ax, metric in zip(axes, EXPERIMENT2_METRICS):
        for condition, paper in data[metric]["paper"].items():
            name = "ConnComp" if condition == "CC" else f"SPAIR trained on {condition}"
            ax.plot(paper["n"], paper["mean"], "-", color=COLOURS[condition], alpha=0.6,
                    label=f"paper: {name}", gid="paper")
        for ours, style in zip(data[metric]["ours"], ("o--", "s:", "^--", "v:", "D--")):
            ax.plot(ours["n"], ours["value"], style, color=COLOURS[ours["condition"]],
                    markersize=4, label=f"ours: {ours['label']}", gid="ours")
        ax.set_xlabel("digits per 84×84 test image (n)")
        ax.set_xticks([1, 5, 10, 15, 20])
        ax.set_ylabel(names[metric])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    figure.suptitle("Experiment 2 (paper Fig. 3)")
    figure.tight_layout()
    return figure


def draw_fig4(data):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5))
    for index, method in enumerate(report.ADDITION_METHODS):
        colour = f"C{index}"
        paper = data[method]["paper"]
        ax.plot(paper["thousands"], paper["accuracy"], "--", color=colour, alpha=0.7,
                label=f"paper: {method}", gid="paper")
        for cell in data[method]["ours"]:
            low, high = cell["ci95"] or (cell["accuracy"], cell["accuracy"])
            error = [[cell["accuracy"] - low], [high - cell["accuracy"]]]
            bars = ax.errorbar([cell["thousands"]], [cell["accuracy"]], yerr=error, fmt="o",
                               color=colour, markeredgecolor="black", capsize=3,
                               label=f"ours: {method}")
            bars.lines[0].set_gid("ours")
    ax.set_xscale("log")
    ax.set_xticks(list(report.ADDITION_SIZES))
    ax.set_xticklabels([f"{k}k" for k in report.ADDITION_SIZES])
    ax.set_xlabel("training images")
    ax.set_ylabel("test accuracy of the sum")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7, ncol=2, loc="upper left")
    ax.set_title("Addition task (paper Fig. 4): ours (markers; 95% CI over seeds) beside "
                 "the paper's (dashed)", fontsize=9)
    figure.tight_layout()
    return figure


def draw_training_curves(curves):
    plt = _pyplot()
    models = [m for m in report.MODELS if any(c["model"] == m for c in curves)]
    figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [c for c in curves if c["model"] == model]
        for index, curve in enumerate(mine):
            digits = report.DIGITS_LABEL[curve["digits"]]
            variant = f", {curve['variant']}" if curve["variant"] else ""
            ax.plot([s / 1000 for s in curve["step"]], curve["AP"], "-", color=f"C{index}",
                    label=f"n = {curve['n']}, {digits} digits{variant}", gid="ours")
        for index, n in enumerate(sorted({c["n"] for c in mine})):
            paper = next(c["paper_test_AP"] for c in mine if c["n"] == n)
            ax.axhline(paper, color="black", linestyle=(0, (2 + index, 2)), linewidth=0.8,
                       label=f"paper's test AP, n = {n}", gid="paper")
        ax.set_title(f"{model}: validation AP while training")
        ax.set_xlabel("training steps (thousands)")
        ax.set_ylabel("validation AP % (paper protocol)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    figure.tight_layout()
    return figure


def draw_all(data):
    """{file name: matplotlib figure} for the four figures."""
    return {"fig2.png": draw_fig2(data["fig2"]), "fig3.png": draw_fig3(data["fig3"]),
            "fig4.png": draw_fig4(data["fig4"]),
            "training_curves.png": draw_training_curves(data["training_curves"])}


def write(output_dir, data, command):
    """Writes the PNGs and figures.json into `output_dir` (each file atomically)."""
    import io
    plt = _pyplot()
    for name, figure in draw_all(data).items():
        buffer = io.BytesIO()
        # No creation date or version in the file: equal data, equal bytes on one setup.
        figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
        plt.close(figure)
        io_utils.atomic_write_bytes(os.path.join(output_dir, name), buffer.getvalue())
    io_utils.atomic_write_json(os.path.join(output_dir, "figures.json"), {
        "command": command,
        "description": "Every series drawn in fig2.png, fig3.png, fig4.png and "
                       "training_curves.png: the paper's values (SPAIR_SPEC §5) and ours, "
                       "each with its source record. AP in percent; Fig. 4's accuracies "
                       "as fractions.",
        **data})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                        help="Where the PNGs and figures.json go (default %(default)s).")
    args = parser.parse_args(argv)
    try:
        data = figure_data()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    command = "python -m spair_tf.figures --output_dir " + args.output_dir
    write(args.output_dir, data, command)
    print(f"wrote fig2.png, fig3.png, fig4.png, training_curves.png and figures.json to "
          f"{args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
