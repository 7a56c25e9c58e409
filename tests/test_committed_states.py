"""Training states committed under results/ load and resume as they claim (spair_tf.states).

The committed states are checked by reading their small files and the checkpoints' scalar
variables, not the weights; `copy_state` is checked on a synthetic model_dir laid out as
spair_tf.training writes one.
"""

import glob
import json
import os

import pytest
import tensorflow as tf

from spair_tf import states

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = sorted(glob.glob(os.path.join(ROOT, "results", "*", "*_state")))


def test_committed_states_are_found():
    assert len(COMMITTED) >= 6, COMMITTED


@pytest.mark.parametrize("state", COMMITTED, ids=[os.path.basename(s) for s in COMMITTED])
def test_committed_state_is_usable(state):
    assert states.check_state(state) == []


def _training_run(model_dir, history_steps, best_step, last_step, keep=2,
                  metric=("best_ap", "AP")):
    """A model_dir as spair_tf.training leaves it: validations at history_steps (AP rising to
    best_step, falling after), the best checkpoint at best_step, the latest at last_step.
    metric=("best_accuracy", "accuracy"): as spair_tf.addition leaves one."""
    ap = {s: 0.5 - abs(s - best_step) * 1e-5 for s in history_steps}
    step = tf.Variable(0, dtype=tf.int64)
    best_ap = tf.Variable(-1.0, dtype=tf.float64)
    best = tf.Variable(-1, dtype=tf.int64)
    weights = tf.Variable(tf.zeros([3]))
    checkpoint = tf.train.Checkpoint(step=step, best_step=best,
                                     model=tf.train.Checkpoint(w=weights),
                                     **{metric[0]: best_ap})
    latest = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "ckpt"),
                                        max_to_keep=keep)
    best_manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, "best"),
                                              max_to_keep=1)
    for s in history_steps:
        if s > last_step:
            break
        step.assign(s)
        weights.assign(tf.fill([3], float(s)))
        if ap[s] > best_ap.numpy():
            best_ap.assign(ap[s])
            best.assign(s)
        latest.save(checkpoint_number=s)
        if s == best_step:
            best_manager.save(checkpoint_number=s)
    with open(os.path.join(model_dir, "val_history.json"), "w") as f:
        json.dump([{"step": s, metric[1]: ap[s]} for s in history_steps if s <= last_step],
                  f)
    with open(os.path.join(model_dir, "flags.json"), "w") as f:
        json.dump({"flags": {"n_digits": 3}}, f)


def test_copy_state_keeps_the_latest_and_the_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    _training_run(str(run), [1000, 2000, 3000, 4000], best_step=2000, last_step=4000)
    dest = tmp_path / "results" / "run_state"
    written = states.copy_state(str(run), str(dest))
    assert "best/ckpt-2000.index" in written and "ckpt/ckpt-4000.index" in written
    assert not any("3000" in name for name in written)  # older latest checkpoints stay behind
    assert states.check_state(str(dest)) == []
    restored = tf.Variable(tf.zeros([3]))
    tf.train.Checkpoint(model=tf.train.Checkpoint(w=restored)).restore(
        tf.train.latest_checkpoint(str(dest / "best"))).expect_partial()
    assert restored.numpy().tolist() == [2000.0] * 3
    # Copying a later point of the same run replaces the state whole.
    _training_run(str(run), [1000, 2000, 3000, 4000, 5000, 6000], best_step=6000,
                  last_step=6000)
    written = states.copy_state(str(run), str(dest))
    assert written == sorted(["best/checkpoint", "best/ckpt-6000.index",
                              "best/ckpt-6000.data-00000-of-00001", "ckpt/checkpoint",
                              "ckpt/ckpt-6000.index", "ckpt/ckpt-6000.data-00000-of-00001",
                              "flags.json", "val_history.json"])
    assert states.check_state(str(dest)) == []


def test_check_state_finds_a_stale_pointer_and_a_short_history(tmp_path):
    run = tmp_path / "run"
    _training_run(str(run), [1000, 2000, 3000], best_step=3000, last_step=3000)
    dest = tmp_path / "state"
    states.copy_state(str(run), str(dest))
    for kind in ("ckpt", "best"):  # session 16's hand copy: new files, old pointers
        pointer = dest / kind / "checkpoint"
        pointer.write_text(pointer.read_text().replace("ckpt-3000", "ckpt-2000"))
    assert any("names no checkpoint" in p for p in states.check_state(str(dest)))
    states.copy_state(str(run), str(dest))
    history = json.loads((dest / "val_history.json").read_text())
    (dest / "val_history.json").write_text(json.dumps(history[:2]))
    assert any("no entry at the best step 3000" in p for p in states.check_state(str(dest)))


def test_copy_state_refuses_a_run_without_a_best_checkpoint(tmp_path):
    run = tmp_path / "run"
    _training_run(str(run), [1000], best_step=5000, last_step=1000)  # no best/ yet
    dest = tmp_path / "state"
    with pytest.raises(ValueError, match="best"):
        states.copy_state(str(run), str(dest))
    assert not dest.exists() and not (tmp_path / "state.staging").exists()


def test_an_addition_run_is_checked_by_its_accuracy(tmp_path):
    run = tmp_path / "run"
    _training_run(str(run), [1000, 2000, 3000], best_step=2000, last_step=3000,
                  metric=("best_accuracy", "accuracy"))
    dest = tmp_path / "state"
    states.copy_state(str(run), str(dest))
    assert states.check_state(str(dest)) == []
    history = json.loads((dest / "val_history.json").read_text())
    history[1]["accuracy"] += 0.01
    (dest / "val_history.json").write_text(json.dumps(history))
    assert any("accuracy 0.51" in p for p in states.check_state(str(dest)))
