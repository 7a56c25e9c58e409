"""Writes the record of a finished stage-2 run (results/addition/<name>.json) from its
results.json, in the form `spair_tf.report.ADDITION_RECORDS` reads (Fig. 4).

    PYTHONPATH=. python scripts/addition_record.py --run_dir=RUN --method=TrueBB \
        --train_command="python -m spair_tf.addition --flagfile=... (where and how it ran)" \
        [--state=results/addition/truebb_32k_state] [--note="..."] \
        --output_json=results/addition/truebb_32k.json

The record keeps the test accuracy of the best-validation checkpoint, the validation
curve, whether the patience stopped the run, the paper's value for the same cell
(spair_tf.paper_numbers.ADDITION) and the commands that made it.
"""

import argparse
import json
import os
import sys

from spair_tf import io_utils, paper_numbers


def train_digits_per_class(results):
    """The run's --train_digits_per_class (None: the whole pool): from its recorded data
    configs, or, in runs that predate them, from its command line."""
    if "data" in results:
        return results["data"]["train"].get("digits_per_class")
    for part in results["command"].split():
        if part.startswith("--train_digits_per_class="):
            return int(part.split("=", 1)[1])
    return None


def addition_record(results, method, train_command, flagfiles, state=None, note=""):
    """The record (a dict) of a stage-2 run from its results.json contents."""
    if method not in paper_numbers.ADDITION:
        raise ValueError(f"--method={method!r}: use one of {tuple(paper_numbers.ADDITION)}.")
    thousands = results["n_train"] // 1000
    source = ("the baseline trained from scratch, end to end, with the "
              "stage-2 classifier (the original plots its raw runs; baselines/addition.py)"
              if results.get("baseline") else
              f"the stage-2 classifier on a {results['stage1_model']} stage 1, "
              f"representation {results['representation']}")
    patience = results["train_config"]["patience"]
    test_command = (f"python -m spair_tf.addition {flagfiles} --train_images="
                    f"{results['n_train']} --model_dir=<a copy of the state> --max_steps=<its "
                    "last step>  (no training: tests the best checkpoint)")
    return {
        "description": (f"Addition task (paper Fig. 4), {method}, {thousands}k training images: "
                        f"{source}. Test accuracy (1,000 images) of the best-validation "
                        "checkpoint."),
        "paper": {"method": method, "train_images_thousands": thousands,
                  "test_accuracy": paper_numbers.ADDITION[method].get(thousands)},
        "commands": {"train": train_command, "test_best": test_command},
        "test_accuracy": results["test_accuracy"], "best_step": results["best_step"],
        "best_val_accuracy": results["best_val_accuracy"], "steps": results["steps"],
        "stopped_by_patience": bool(patience)
        and results["steps"] - results["best_step"] >= patience,
        "n_train": results["n_train"],
        "train_digits_per_class": train_digits_per_class(results),
        "representation": results["representation"],
        "baseline": results.get("baseline"), "seed": results["train_config"]["seed"],
        "val_curve": [{"step": h["step"], "accuracy": h["accuracy"]}
                      for h in results["val_history"]],
        "state": state, "note": note,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--method", required=True, help="Fig. 4's name, e.g. TrueBB")
    parser.add_argument("--train_command", required=True)
    parser.add_argument("--state", default=None, help="Where the run's state is committed.")
    parser.add_argument("--note", default="")
    parser.add_argument("--output_json", required=True)
    args = parser.parse_args(argv)
    path = os.path.join(args.run_dir, "results.json")
    try:
        with open(path) as f:
            results = json.load(f)
        flagfiles = " ".join(part for part in results["command"].split()
                             if part.startswith(("--flagfile=", "--stage1_dir=")))
        record = addition_record(results, args.method, args.train_command, flagfiles,
                                 args.state, args.note)
    except (OSError, KeyError, ValueError) as error:
        print(f"error: {path}: {error!r}", file=sys.stderr)
        return 2
    io_utils.atomic_write_json(args.output_json, record, indent=1)
    print(json.dumps({k: record[k] for k in ("test_accuracy", "best_step", "steps",
                                              "stopped_by_patience")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
