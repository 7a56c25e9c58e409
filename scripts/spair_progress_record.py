"""Writes the progress record of a long SPAIR run from its model_dir: an Experiment 1 run
(results/spair/<name>.json, in the form `spair_tf.report.RECORDS` reads for Fig. 2) or the
addition task's stage 1 (results/addition/spair_stage1_<size>.json, which stage 2 reads
with --stage1_dir).

A run of up to 300k steps outlives several sessions: each session resumes it from its
committed state, and at the end this script records where it stands.

    PYTHONPATH=. python scripts/spair_progress_record.py --run_dir=RUN \
        --train_command="python -m spair_tf.train --flagfile=... (where and how it ran)" \
        --state=results/spair/exp1_n7_original_digits_state \
        [--test_json=<python -m spair_tf.evaluate --model_dir=RUN --output_json=...>] \
        [--note="..."] --output_json=results/spair/exp1_n7_original_digits_progress.json

RUN's flags.json gives the dataset, n and the digits. The record keeps the validation curve (val_history.json: paper-protocol AP and count
error every 1,000 steps), the best validation step, the paper's test AP for the cell
(spair_tf.paper_numbers.EXPERIMENT1_AP; none for a stage 1), the test evaluation of the best checkpoint if
given, and every session's training command: an existing --output_json is read first
and its commands are kept, the new one appended.
"""

import argparse
import json
import os
import sys

from spair_tf import io_utils, paper_numbers

# What a test evaluation (python -m spair_tf.evaluate) keeps in the record.
TEST_KEYS = ("AP", "AP_corrected", "AP_coco", "AP_at", "AP_batch_se", "count_abs_error",
             "count_01_error", "box_agreement", "mode", "n_images", "checkpoint")


def progress_record(history, flags, state, train_commands, test=None, note=""):
    """The record (a dict) from val_history.json's entries (step, AP, count_abs_error) and
    the run's flags.json (n_digits, digit_frame, digit_rounding)."""
    if not history:
        raise ValueError("val_history.json has no validation yet")
    dataset = flags.get("dataset")
    if flags.get("model") != "spair" or dataset not in ("experiment1", "addition"):
        raise ValueError(f"the run is --model={flags.get('model')} on --dataset={dataset}; "
                         "this record is for SPAIR on experiment1 or addition (stage 1)")
    best = max(history, key=lambda h: h["AP"])
    last = history[-1]["step"]
    if dataset == "experiment1":
        n_digits = flags["n_digits"]
        digits = ("the original code's digits (--digit_frame=emnist)"
                  if flags.get("digit_frame") == "emnist" else "the spec's MNIST digits")
        subject = f"Experiment 1 (Fig. 2), SPAIR, n = {n_digits}, on {digits}"
        paper = paper_numbers.EXPERIMENT1_AP["SPAIR"][n_digits][0] / 100
    else:
        images = flags.get("train_images")
        subject = ("Addition task (Fig. 4), SPAIR's stage 1 (configs/addition/"
                   f"spair_stage1.flags) on {images:,} training images")
        paper = None  # the paper reports stage 2's accuracy, not stage 1's AP
    record = {
        "description": (f"{subject}: a run "
                        f"in progress, {last:,} steps so far. Validation AP (paper protocol) every 1,000 "
                        "steps" + ("; test AP of the best-validation checkpoint (test)."
                                   if test else "; no test AP yet.")
                        + " The committed state resumes it."),
        "best_val": {"step": best["step"], "AP": best["AP"],
                     "count_abs_error": best.get("count_abs_error")},
        "last_val_step": last,
        "val_curve": [{"step": h["step"], "AP": h["AP"],
                       "count_abs_error": h.get("count_abs_error")} for h in history],
        "paper_test_AP": paper,
        "data": {k: flags.get(k) for k in ("dataset", "n_digits", "train_images",
                                           "digit_frame", "digit_rounding")},
        "state": state,
        "commands": {
            "train": list(train_commands),
            "resume": f"cp -r {state} RUN, then the latest train command with --model_dir=RUN",
            "state": f"python -m spair_tf.states --model_dir=RUN --dest={state}"},
        "note": note,
    }
    if test is not None:
        step = int(os.path.basename(test["checkpoint"]).rsplit("-", 1)[1])
        if step != best["step"]:
            raise ValueError(f"the test evaluation is of step {step}, the best validation "
                             f"of step {best['step']}: evaluate the run's best checkpoint")
        record["test"] = {k: test[k] for k in TEST_KEYS if k in test}
        record["test"]["step"] = step
        record["commands"]["test"] = ("python -m spair_tf.evaluate --model_dir=RUN "
                                      "--output_json=PATH  (the run's flags from its "
                                      "flags.json; its best checkpoint)")
    return record


def _train_commands(output_json, command):
    """The train commands of the existing record at output_json (a str or a list), then
    `command`."""
    if not os.path.exists(output_json):
        return [command]
    with open(output_json) as f:
        previous = json.load(f).get("commands", {}).get("train", [])
    previous = [previous] if isinstance(previous, str) else list(previous)
    return previous + [command] if command not in previous else previous


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--train_command", required=True)
    parser.add_argument("--state", required=True, help="Where the run's state is committed.")
    parser.add_argument("--test_json", default=None)
    parser.add_argument("--note", default="")
    parser.add_argument("--output_json", required=True)
    args = parser.parse_args(argv)
    try:
        with open(os.path.join(args.run_dir, "val_history.json")) as f:
            history = json.load(f)
        with open(os.path.join(args.run_dir, "flags.json")) as f:
            flags = json.load(f)
        test = None
        if args.test_json:
            with open(args.test_json) as f:
                test = json.load(f)
        record = progress_record(history, flags, args.state,
                                 _train_commands(args.output_json, args.train_command),
                                 test, args.note)
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    io_utils.atomic_write_json(args.output_json, record, indent=1)
    print(json.dumps({"best_val": record["best_val"], "last_val_step": record["last_val_step"],
                      "test_AP": record.get("test", {}).get("AP")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
