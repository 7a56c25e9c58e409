r"""Fig. 2 and Fig. 4 as measured so far, beside the paper's (SPAIR_SPEC §5.1, §5.4).

    python -m spair_tf.report [--output_json results/comparison/fig2.json]
    python -m spair_tf.report --figure=4 [--output_json results/comparison/fig4.json]

Reads the result records under `results/` (it measures nothing) and prints a Markdown
table, the one in the README between the `fig2` markers (tests/test_report.py checks the
README against it). Each cell is our test AP in the paper's protocol, with the corrected
protocol's beside it where the record has it (SPAIR_SPEC §3.2), at the checkpoint
with the best validation AP, with the training steps behind it and the digits it used
(MNIST framed as the spec says, or the original code's EMNIST-like framing: BUILD_NOTES,
"Digit framing option"); the paper's mean and 95% CI beside it. Learned models are
evaluated in the paper's mode (sampled latents, random hard z_pres: SPAIR_SPEC §1.12); a
cell evaluated in the deterministic "mean" mode says so. A run that has no test
evaluation shows its best validation AP, marked "val". Cells with no run are blank.

Fig. 4 (the addition task, `--figure=4`, the README's `fig4` block): each cell is a stage-2
run's test accuracy (its best-validation checkpoint; spair_tf/addition.py) with the steps
it trained, per method and training-set size, beside the paper's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from spair_tf import io_utils
from spair_tf import paper_numbers

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("SPAIR", "AIR", "DAIR", "ConnComp")
N_DIGITS = (1, 3, 5, 7, 9)
DIGITS_LABEL = {"spec": "MNIST", "original": "orig."}


@dataclasses.dataclass(frozen=True)
class Record:
    """Where one measured cell of Fig. 2 is recorded.

    Attributes:
      model, n: the cell.
      path: the JSON file under the repository.
      ap: keys (or list indices) leading to the AP inside it (a fraction, or percent if
        `percent`).
      steps: keys leading to the training steps behind it, or None (ConnComp).
      digits: "spec" or "original".
      split: "test", or "val" where the run has no test evaluation.
      variant: a short name when the run is not the paper's model as the spec describes it
        (e.g. "July-2018 model": the code of the runs behind Fig. 2, SPAIR_SPEC §6).
    """
    model: str
    n: int
    path: str
    ap: tuple
    steps: tuple | None
    digits: str
    split: str = "test"
    percent: bool = False
    variant: str = ""


def _conncomp(path, digits):
    return [Record("ConnComp", n, path, ("per_n", str(n), "AP_paper_protocol"), None, digits,
                   percent=True) for n in N_DIGITS]


LAST_VALIDATED_STEP = ("val_curve", -1, "step")  # progress records: the steps trained


def _air_progress(model, n):
    """An AIR/DAIR comparison run's cell: its best checkpoint's test AP in paper mode."""
    return Record(model, n, f"results/air/{model.lower()}_n{n}_comparison_progress.json",
                  ("test_at_best_paper_mode", "AP"), LAST_VALIDATED_STEP, "spec")

# Every recorded run that is a Fig. 2 cell. Short checks (results/air/*_2000steps.json) and
# diagnostics with changed priors are not cells.
RECORDS = (
    *_conncomp("results/comparison/conncomp.json", "spec"),
    *_conncomp("results/comparison/conncomp_original_preprocessing.json", "original"),
    Record("SPAIR", 5, "results/spair/exp1_n5.json", ("test", "AP"), ("steps",), "spec"),
    Record("SPAIR", 5, "results/spair/exp1_n5_original_digits.json",
           ("at_91000_steps_not_committed", "test", "AP"),
           ("at_91000_steps_not_committed", "steps"), "original"),
    Record("SPAIR", 3, "results/spair/exp1_n3_original_digits.json", ("test", "AP"),
           ("steps",), "original"),
    Record("SPAIR", 1, "results/spair/exp1_n1_original_digits.json", ("test", "AP"),
           ("steps",), "original"),
    Record("SPAIR", 7, "results/spair/exp1_n7_original_digits_progress.json", ("test", "AP"),
           LAST_VALIDATED_STEP, "original"),
    Record("SPAIR", 9, "results/spair/exp1_n9_original_digits_progress.json", ("test", "AP"),
           LAST_VALIDATED_STEP, "original"),
    Record("SPAIR", 1, "results/spair/exp1_n1_july2018.json", ("test", "AP"), ("steps",),
           "original", variant="July-2018 model"),
    Record("AIR", 1, "results/air/air_n1_comparison_progress.json", ("best_val", "AP"),
           LAST_VALIDATED_STEP, "spec", split="val"),
    _air_progress("AIR", 3),
    _air_progress("AIR", 5),
    _air_progress("AIR", 9),
    _air_progress("DAIR", 3),
    _air_progress("DAIR", 5),
)


def lookup(record, keys):
    """The value at `keys` (dict keys and list indices, in order) inside a loaded record."""
    value = record
    for key in keys:
        value = value[key]
    return value


def _beside(data, ap_keys, name):
    """The value named `name` beside the AP (under the same keys), or None.

    Every evaluation records "AP_corrected" (SPAIR_SPEC §3.2) and "mode" (§1.12) next to the
    AP; a record that kept only the paper protocol's value, or a deterministic baseline
    (ConnComp), has None.
    """
    keys = tuple(ap_keys[:-1]) + (name,)
    try:
        return lookup(data, keys)
    except (KeyError, IndexError, TypeError):
        return None


def load_record(root, path, listed_in):
    """The JSON at `root/path`; a missing file is a ValueError naming it and `listed_in`."""
    full = os.path.join(root, path)
    if not os.path.exists(full):
        raise ValueError(f"{path} does not exist; record the run there or remove its entry "
                         f"from {listed_in}")
    with open(full) as f:
        return json.load(f)


def measured(records=RECORDS, root=REPOSITORY):
    """The recorded cells: a list of dicts (model, n, AP and AP_corrected in % (None where
    not recorded), mode (the evaluation mode, §1.12; None for ConnComp), steps, digits,
    split, source).

    A record file that is missing, or lacks the named keys, is a ValueError naming it.
    """
    cells = []
    for record in records:
        data = load_record(root, record.path, "spair_tf.report.RECORDS")
        try:
            ap = float(lookup(data, record.ap))
            steps = None if record.steps is None else int(lookup(data, record.steps))
        except (KeyError, IndexError, TypeError, ValueError) as error:
            keys = [record.ap] + ([record.steps] if record.steps else [])
            raise ValueError(f"{record.path} has no {' or '.join(map(str, keys))} "
                             f"({error!r}); fix the record "
                             "or its entry in spair_tf.report.RECORDS") from error
        scale = 1.0 if record.percent else 100.0
        corrected = _beside(data, record.ap, "AP_corrected")
        cells.append({"model": record.model, "n": record.n, "AP": scale * ap,
                      "AP_corrected": None if corrected is None else scale * float(corrected),
                      "mode": _beside(data, record.ap, "mode"),
                      "steps": steps, "digits": record.digits, "split": record.split,
                      "variant": record.variant, "source": record.path})
    return cells


def _paper(model, n):
    value = paper_numbers.EXPERIMENT1_AP[model][n]
    if isinstance(value, tuple):
        return f"{value[0]:.1f} [{value[1]:.1f}, {value[2]:.1f}]"
    return f"{value:.1f}"


def steps_text(steps):
    """Training steps as the tables and legends show them: "<k>k steps", nearest thousand."""
    return f"{round(steps / 1000)}k steps"


def _ours(cells):
    parts = []
    for cell in cells:
        text = f"{cell['AP']:.1f}"
        if cell["AP_corrected"] is not None:
            text += f" / {cell['AP_corrected']:.1f}"
        details = [DIGITS_LABEL[cell["digits"]]] + ([cell["variant"]] if cell["variant"] else [])
        if cell["steps"] is not None:
            details.append(steps_text(cell["steps"]))
        if cell["mode"] == "mean":
            details.append("mean mode")
        if cell["split"] != "test":
            details.append(cell["split"])
        parts.append(f"{text} ({', '.join(details)})")
    return "<br>".join(parts)


def markdown(cells):
    """Fig. 2 as a Markdown table: per n, ours then the paper's for each model.

    Our cells read "paper protocol / corrected protocol" (§3.1 / §3.2); the paper reports
    only its own protocol.
    """
    header = "| n | " + " | ".join(f"{m} ours | {m} paper" for m in MODELS) + " |"
    lines = [header, "|---" * (1 + 2 * len(MODELS)) + "|"]
    for n in N_DIGITS:
        row = [str(n)]
        for model in MODELS:
            row += [_ours([c for c in cells if c["model"] == model and c["n"] == n]),
                    _paper(model, n)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Fig. 4: the addition task

ADDITION_METHODS = tuple(paper_numbers.ADDITION)   # the paper's columns, in its order
ADDITION_SIZES = (1, 8, 32, 128)                   # training images, thousands


@dataclasses.dataclass(frozen=True)
class AdditionRecord:
    """Where one measured cell of Fig. 4 is recorded: a stage-2 run's JSON (keys
    "test_accuracy", "steps") under the repository, or a tuple of them, one per seed (the
    cell is then their mean with a 95% t-interval, as the paper's means over seeds);
    `note` qualifies the run (e.g. a stage 1 stopped early)."""
    method: str
    thousands: int
    path: str | tuple
    note: str = ""


# SPAIR's stage 1 on the 32k addition images (results/addition/spair_stage1_32k.json) was
# stopped by us at 45k steps, short of its 50k-step patience.
OWN_STAGE1_32K = "stage 1 stopped at 45k"


def _three_seeds(stem):
    """The records of seeds 0, 1, 2 of results/addition/<stem> (seed 0 has no suffix)."""
    return tuple(f"results/addition/{stem}{seed}.json" for seed in ("", "_seed1", "_seed2"))


ADDITION_RECORDS = (
    AdditionRecord("SPAIR-Fixed", 32, "results/addition/spair_fixed_32k.json", OWN_STAGE1_32K),
    AdditionRecord("SPAIR-Unfixed", 32, "results/addition/spair_unfixed_32k.json",
                   OWN_STAGE1_32K),
    AdditionRecord("TrueBB", 32, _three_seeds("truebb_32k")),
    AdditionRecord("ConnComp", 32, _three_seeds("conncomp_32k")),
    AdditionRecord("ConvNet", 32, "results/addition/convnet_32k.json"),
    AdditionRecord("ConvNet", 1, "results/addition/convnet_1k.json"),
    AdditionRecord("TrueBB", 1, _three_seeds("truebb_1k")),
    AdditionRecord("TrueBB", 8, "results/addition/truebb_8k.json", "stopped by us"),
    AdditionRecord("TrueBB", 128, "results/addition/truebb_128k.json"),
    AdditionRecord("ConnComp", 1, _three_seeds("conncomp_1k")),
    AdditionRecord("ConnComp", 8, "results/addition/conncomp_8k.json"),
    AdditionRecord("ConnComp", 128, "results/addition/conncomp_128k.json"),
)


def addition_measured(records=ADDITION_RECORDS, root=REPOSITORY):
    """The recorded Fig. 4 cells: dicts (method, thousands, accuracy (a fraction), steps,
    note, source). A missing file or key is a ValueError naming it."""
    cells = []
    for record in records:
        paths = (record.path,) if isinstance(record.path, str) else tuple(record.path)
        accuracies, steps = [], []
        for path in paths:
            data = load_record(root, path, "spair_tf.report.ADDITION_RECORDS")
            try:
                accuracies.append(float(data["test_accuracy"]))
                steps.append(int(data["steps"]))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path} has no test_accuracy or steps ({error!r}); fix the "
                                 "record or its entry in spair_tf.report.ADDITION_RECORDS"
                                 ) from error
        cells.append({"method": record.method, "thousands": record.thousands,
                      "accuracy": float(np.mean(accuracies)),
                      "ci95": mean_interval(accuracies)[1:] if len(paths) > 1 else None,
                      "seeds": len(paths), "steps": max(steps), "note": record.note,
                      "source": record.path if len(paths) == 1 else list(paths)})
    return cells


def mean_interval(values, level=0.95):
    """(mean, low, high): the mean of `values` and its Student-t interval (n ≥ 2)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    mean, n = float(values.mean()), len(values)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def addition_markdown(cells):
    """Fig. 4 as a Markdown table: a row per method, ours then the paper's per size."""
    header = "| method | " + " | ".join(f"{k}k ours | {k}k paper"
                                        for k in ADDITION_SIZES) + " |"
    lines = [header, "|---" * (1 + 2 * len(ADDITION_SIZES)) + "|"]
    for method in ADDITION_METHODS:
        row = [method]
        for k in ADDITION_SIZES:
            ours = []
            for cell in cells:
                if cell["method"] == method and cell["thousands"] == k:
                    text = f"{cell['accuracy']:.3f}"
                    details = [steps_text(cell["steps"])]
                    if cell["seeds"] > 1:
                        low, high = cell["ci95"]
                        text += f" [{low:.3f}, {high:.3f}]"
                        details = [f"{cell['seeds']} seeds", "≤ " + details[0]]
                    details += [cell["note"]] if cell["note"] else []
                    ours.append(f"{text} ({', '.join(details)})")
            paper = paper_numbers.ADDITION[method].get(k)
            row += ["<br>".join(ours), "—" if paper is None else f"{paper:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figure", type=int, choices=(2, 4), default=2,
                        help="Fig. 2 (Experiment 1's AP) or Fig. 4 (the addition task).")
    parser.add_argument("--output_json", help="Also write the cells and the table here.")
    args = parser.parse_args(argv)
    try:
        cells = measured() if args.figure == 2 else addition_measured()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = markdown(cells) if args.figure == 2 else addition_markdown(cells)
    print(table)
    if args.output_json:
        command = "python -m spair_tf.report " + (
            "" if args.figure == 2 else "--figure=4 ") + "--output_json " + args.output_json
        if args.figure == 2:
            described = {
                "description": "Fig. 2 (SPAIR_SPEC §5.1): our recorded test AP (paper "
                               "protocol, %) per model and n, from the files named in each "
                               "cell, beside the paper's.",
                "paper": {m: paper_numbers.EXPERIMENT1_AP[m] for m in MODELS}}
        else:
            described = {
                "description": "Fig. 4 (SPAIR_SPEC §5.4): our recorded test accuracy of the "
                               "digits' sum per method and training-set size (thousands), "
                               "from the files named in each cell, beside the paper's.",
                "paper": {m: {str(k): v for k, v in paper_numbers.ADDITION[m].items()}
                          for m in ADDITION_METHODS}}
        io_utils.atomic_write_json(args.output_json, {
            "command": command, **described, "cells": cells, "markdown": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
