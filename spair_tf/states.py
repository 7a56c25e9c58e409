"""Training states committed to the repository: a run's model_dir, cut to what resuming and
evaluating need.

A training run's model_dir (spair_tf.training; spair_tf.addition's stage 2 alike) holds
ckpt/ (the latest checkpoints, from which `spair_tf.train` resumes), best/ (the
best-by-validation checkpoint, which `spair_tf.evaluate`, `spair_tf.export` and the paper
tests load), val_history.json, flags.json and TensorBoard logs.
Runs outlive a session only through git, so a run worth continuing is copied to
`results/<model>/<run>_state/` and committed. `copy_state` makes that copy: the latest and the
best checkpoint only (when they are the same step their data files are the same git blob),
their `checkpoint` pointer files written to name them, val_history.json and flags.json; no
logs. `check_state` says what is wrong with a state; tests/test_committed_states.py runs it on
every committed one. A copy made by hand once kept ckpt-28000's files behind pointers naming
ckpt-22000, so neither the evaluation nor the resume found a checkpoint (BUILD_NOTES).

    python -m spair_tf.states --model_dir=/work/runs/exp2_1-5 \
        --dest=results/spair/exp2_1-5_original_digits_state
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import tensorflow as tf

from spair_tf import io_utils

KINDS = ("ckpt", "best")  # latest (to resume from), best by validation AP (to evaluate)
# The validation metric a run selects its best checkpoint by: (checkpoint variable,
# val_history.json key). Detection runs (spair_tf.training) use AP, the addition task's
# stage 2 (spair_tf.addition) its accuracy.
SELECTION_METRICS = (("best_ap", "AP"), ("best_accuracy", "accuracy"))


def _scalar(reader, name):
    return reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE").item()


def _selection_metric(reader):
    """(checkpoint variable, history key) of the metric this checkpoint selected by."""
    names = reader.get_variable_to_shape_map()
    for variable, key in SELECTION_METRICS:
        if f"{variable}/.ATTRIBUTES/VARIABLE_VALUE" in names:
            return variable, key
    raise ValueError("the checkpoint records none of "
                     + ", ".join(v for v, _ in SELECTION_METRICS))


def _checkpoint_files(path):
    """The files of checkpoint `path` (…/ckpt-N): its index and its data shards."""
    return [path + ".index"] + sorted(glob.glob(path + ".data-*"))


def read_checkpoint(directory):
    """(path, N, reader) of the checkpoint `directory/checkpoint` names, or a problem (str)."""
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        return f"{directory}/checkpoint names no checkpoint whose files exist"
    match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(path))
    if match is None:
        return f"{path}: expected a checkpoint named ckpt-<step>"
    if len(_checkpoint_files(path)) < 2:
        return f"{path} has an index but no data file"
    return path, int(match.group(1)), tf.train.load_checkpoint(path)


def check_state(state) -> list[str]:
    """What is wrong with the state directory `state` ([] if nothing).

    best/ must name an existing checkpoint whose step, best step and file name agree;
    ckpt/, if present, one whose step matches its name and which remembers best/'s step and
    metric (AP, or accuracy for the addition task) as its best; val_history.json must have an
    entry at the best step with the value the checkpoint recorded; flags.json, if present,
    must parse.
    """
    problems = []
    if not os.path.isdir(os.path.join(state, "best")):
        return [f"{state} has no best/ directory"]
    best = read_checkpoint(os.path.join(state, "best"))
    if isinstance(best, str):
        return [best]
    path, number, reader = best
    try:
        variable, key = _selection_metric(reader)
    except ValueError as error:
        return [f"{path}: {error}"]
    best_step, best_value = _scalar(reader, "best_step"), _scalar(reader, variable)
    if not _scalar(reader, "step") == number == best_step:
        problems.append(f"{path}: step {_scalar(reader, 'step')}, best_step {best_step}, "
                        f"file name {number}: expected all three equal")
    if os.path.isdir(os.path.join(state, "ckpt")):
        latest = read_checkpoint(os.path.join(state, "ckpt"))
        if isinstance(latest, str):
            problems.append(latest)
        else:
            path, number, reader = latest
            if _scalar(reader, "step") != number:
                problems.append(f"{path} holds step {_scalar(reader, 'step')}")
            if (_scalar(reader, "best_step"), _scalar(reader, variable)) != (best_step,
                                                                              best_value):
                problems.append(f"{path} remembers its best at step "
                                f"{_scalar(reader, 'best_step')}, but best/ holds {best_step}")
    try:
        with open(os.path.join(state, "val_history.json")) as f:
            history = {entry["step"]: entry for entry in json.load(f)}
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"{state}/val_history.json: {type(error).__name__}: {error}")
    else:
        if best_step not in history:
            problems.append(f"{state}/val_history.json has no entry at the best step "
                            f"{best_step} (last: {max(history, default=None)})")
        elif abs(history[best_step][key] - best_value) > 1e-12:
            problems.append(f"{state}/val_history.json: {key} {history[best_step][key]} at "
                            f"step {best_step}, the checkpoint recorded {best_value}")
    flags = os.path.join(state, "flags.json")  # optional: older states need --flagfile
    if os.path.exists(flags):
        try:
            with open(flags) as f:
                json.load(f)
        except ValueError as error:
            problems.append(f"{flags}: {error}")
    return problems


def copy_state(model_dir, dest) -> list[str]:
    """Copies model_dir's latest and best checkpoints, history and flags to `dest`.

    The copy is built next to `dest` and checked (`check_state`) before it replaces whatever
    `dest` held, so a failed copy leaves the old state in place. Returns the files written.
    Raises ValueError naming the problems if model_dir's own state is inconsistent.
    """
    source_problems = [p for p in (read_checkpoint(os.path.join(model_dir, kind))
                                   for kind in KINDS) if isinstance(p, str)]
    if source_problems:
        raise ValueError(f"model_dir {model_dir!r}: " + "; ".join(source_problems) +
                         " (a state needs the run's ckpt/ and best/ checkpoints)")
    dest = os.path.normpath(dest)
    staging = dest + ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    for kind in KINDS:
        path, _, _ = read_checkpoint(os.path.join(model_dir, kind))
        os.makedirs(os.path.join(staging, kind))
        for name in _checkpoint_files(path):
            shutil.copy2(name, os.path.join(staging, kind))
        name = os.path.basename(path)
        io_utils.atomic_write_text(
            os.path.join(staging, kind, "checkpoint"),
            f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    for name in ("val_history.json", "flags.json"):
        if os.path.exists(os.path.join(model_dir, name)):
            shutil.copy2(os.path.join(model_dir, name), staging)
    problems = check_state(staging)
    if problems:
        shutil.rmtree(staging)
        raise ValueError(f"the copy of {model_dir!r} would not be a usable state: "
                         + "; ".join(problems))
    if os.path.exists(dest):
        old = dest + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(staging, dest)
        shutil.rmtree(old)
    else:
        os.rename(staging, dest)
    return sorted(os.path.relpath(os.path.join(root, f), dest)
                  for root, _, files in os.walk(dest) for f in files)


def main(argv):
    del argv
    for name in copy_state(FLAGS.model_dir, FLAGS.dest):
        print(os.path.join(FLAGS.dest, name))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("model_dir", None, "The training run's model_dir.", required=True)
    flags.DEFINE_string("dest", None, "The state directory to (re)write, e.g. "
                        "results/spair/<run>_state.", required=True)
    FLAGS = flags.FLAGS
    app.run(main)
