"""Every training state committed under results/ can be loaded and resumed as it claims.

A state (`results/<model>/<run>_state/`) is a copy of a run's model_dir: `ckpt/` (the latest
checkpoint, from which `spair_tf.train` resumes), `best/` (the best-by-validation checkpoint,
which `spair_tf.evaluate` and the paper tests load), `val_history.json` and, in the newer ones, `flags.json`.
A copy made by hand can go stale in ways git does not notice: session 16 committed
ckpt-28000's files with the `checkpoint` pointers still naming ckpt-22000, so neither the
evaluation nor the resume could find a checkpoint. These checks read only the small files and
the checkpoints' scalar variables, not the weights.
"""

import glob
import json
import os
import re

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATES = sorted(glob.glob(os.path.join(ROOT, "results", "*", "*_state")))


def _scalar(reader, name):
    return reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE").item()


def _checkpoint(state, kind):
    """(path, step in the file name, reader) of the checkpoint `kind`/checkpoint points at."""
    path = tf.train.latest_checkpoint(os.path.join(state, kind))
    assert path is not None, f"{state}/{kind}/checkpoint names no existing checkpoint"
    for suffix in (".index", ".data-00000-of-00001"):
        assert os.path.exists(path + suffix), f"{path + suffix} is missing"
    number = int(re.fullmatch(r"ckpt-(\d+)", os.path.basename(path)).group(1))
    return path, number, tf.train.load_checkpoint(path)


def test_states_are_found():
    assert len(STATES) >= 6, STATES


@pytest.mark.parametrize("state", STATES, ids=[os.path.basename(s) for s in STATES])
def test_state_checkpoints_exist_and_agree(state):
    assert os.path.isdir(os.path.join(state, "best")), f"{state} has no best/ checkpoint"
    flags = os.path.join(state, "flags.json")  # optional: the paper tests pass --flagfile
    if os.path.exists(flags):
        with open(flags) as f:
            assert json.load(f), f"{flags} is empty"
    path, number, best = _checkpoint(state, "best")
    assert _scalar(best, "step") == number == _scalar(best, "best_step"), path
    if os.path.isdir(os.path.join(state, "ckpt")):  # resumable: the latest checkpoint too
        path, number, latest = _checkpoint(state, "ckpt")
        assert _scalar(latest, "step") == number, path
        assert _scalar(latest, "best_step") == _scalar(best, "step"), (
            f"{path} remembers its best at step {_scalar(latest, 'best_step')}, but best/ "
            f"holds step {_scalar(best, 'step')}")
        assert _scalar(latest, "best_ap") == _scalar(best, "best_ap"), path


@pytest.mark.parametrize("state", STATES, ids=[os.path.basename(s) for s in STATES])
def test_val_history_reaches_the_checkpoints(state):
    """val_history.json has the validation of the best checkpoint, with the AP it recorded."""
    with open(os.path.join(state, "val_history.json")) as f:
        history = {entry["step"]: entry for entry in json.load(f)}
    _, step, best = _checkpoint(state, "best")
    assert step in history, f"{state}/val_history.json stops at step {max(history)} < {step}"
    assert history[step]["AP"] == pytest.approx(_scalar(best, "best_ap"), abs=1e-12)
