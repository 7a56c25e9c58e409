"""The shared training loop (SPAIR_SPEC §1.11): divergence, distribution, TensorBoard, a smoke run.

Distribution tests run in subprocesses: logical CPU devices must be configured before
TensorFlow initialises its devices, and a multi-worker cluster needs one process per worker.
This file is also the script those subprocesses run (`python tests/test_training.py ...`).
"""

import glob
import json
import math
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spair_tf import datasets
from spair_tf.config import SpairConfig, TrainConfig
from spair_tf.model import SPAIR
from spair_tf.training import Trainer, TrainingDiverged, draw_boxes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small networks, so that a step costs milliseconds of arithmetic.
TINY = dict(n_what=4, backbone_filters=8, n_features=8, hidden_units=(8,), encoder_units=(16,),
            decoder_units=(16,))
TINY_FLAGS = ["--n_what=4", "--backbone_filters=8", "--n_features=8", "--hidden_units=8",
              "--encoder_units=16", "--decoder_units=16"]


def _env():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _one_digit_images(split, n, size=24):
    """n images of size×size with exactly one 14×14 digit (SPAIR_SPEC §2.2 generator)."""
    seed = {"train": 0, "val": 1, "test": 2}[split]
    return datasets.generate(datasets.ScatterConfig(
        image_height=size, image_width=size, min_digits=1, max_digits=1, n_images=n,
        split=split, seed=seed))


def _events(directory):
    """(tag, step, tensor proto) of every summary in the event files under `directory`."""
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                out.append((value.tag, event.step, value.tensor))
    return out


# ------------------------------------------------------------------------------------------
# Drawing boxes for TensorBoard

def test_draw_boxes_outlines_exactly_the_valid_boxes():
    """Outline pixels against a numpy rectangle (box corners on pixel centres of a 9×9 image)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 0.5, size=(2, 9, 9, 3)).astype(np.float32)
    # Normalised corners k/8 land on pixel k of a 9-pixel axis (TF scales by size − 1).
    boxes = np.array([[[1, 2, 5, 7], [0, 0, 8, 8], [3, 3, 4, 6]],
                      [[2, 2, 6, 6], [1, 1, 2, 2], [0, 4, 8, 5]]], np.float32) / 8.0
    valid = np.array([[True, False, True], [False, False, False]])
    colour = (0.0, 1.0, 0.0)
    drawn = draw_boxes(images, boxes, valid, colour).numpy()

    expected = images.copy()
    for b in range(2):
        for k in range(3):
            if not valid[b, k]:
                continue
            y0, x0, y1, x1 = (int(round(v * 8)) for v in boxes[b, k])
            outline = np.zeros((9, 9), bool)
            outline[[y0, y1], x0:x1 + 1] = True
            outline[y0:y1 + 1, [x0, x1]] = True
            expected[b][outline] = colour
    np.testing.assert_array_equal(drawn, expected)


# ------------------------------------------------------------------------------------------
# Divergence

def test_nan_loss_stops_naming_step_and_terms_without_applying_the_update(tmp_path):
    """A NaN loss at step 3: TrainingDiverged naming step 3 and the terms; ckpt-2 stays."""
    tf.keras.utils.set_random_seed(0)
    config = TrainConfig(batch_size=4, max_steps=20, eval_every=2, patience=0)
    trainer = Trainer(lambda: SPAIR(SpairConfig(**TINY)), config, str(tmp_path),
                      image_shape=(24, 24, 3), log_every=1)
    compute_loss = trainer.model.compute_loss

    def poisoned(images, step, training=True, **kwargs):  # NaN from step 3 on
        loss, terms = compute_loss(images, step, training, **kwargs)
        return tf.where(step >= 3, tf.constant(math.nan, loss.dtype), loss), terms

    trainer.model.compute_loss = poisoned
    data = datasets.to_tf_dataset(_one_digit_images("train", 16), batch_size=4)
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit(data)
    message = str(caught.value)
    assert "at step 3" in message
    for term in ("loss=nan", "reconstruction=", "kl_where=", "kl_what=", "kl_depth=",
                 "kl_pres=", "grad_norm="):
        assert term in message, (term, message)
    assert "ckpt-2" in message and "--learning_rate" in message

    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")).endswith("ckpt-2")
    assert sorted(os.listdir(tmp_path / "ckpt")) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert not os.path.exists(tmp_path / "results.json")
    # The poisoned update was not applied: 3 updates done, every weight finite.
    assert int(trainer.step.numpy()) == 3
    assert int(trainer.optimizer.iterations.numpy()) == 3
    for variable in trainer.model.trainable_variables:
        assert np.all(np.isfinite(variable.numpy())), variable.path


# ------------------------------------------------------------------------------------------
# A smoke run: 300 steps of a tiny SPAIR on 1-digit images

SMOKE_STEPS = 300


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("smoke"))
    tf.keras.utils.set_random_seed(0)
    spair = SpairConfig(n_what=8, backbone_filters=16, n_features=16, hidden_units=(16,),
                        encoder_units=(32,), decoder_units=(32,), training_wheels_steps=30,
                        count_prior_decay_steps=100)
    config = TrainConfig(batch_size=8, learning_rate=3e-3, max_steps=SMOKE_STEPS,
                         eval_every=100, patience=0)
    trainer = Trainer(lambda: SPAIR(spair), config, model_dir, image_shape=(24, 24, 3),
                      log_every=25)
    train = datasets.to_tf_dataset(_one_digit_images("train", 512), batch_size=8)
    val, test = _one_digit_images("val", 32), _one_digit_images("test", 32)
    results = trainer.fit(train, val_data=val, test_data=test)
    return {"dir": model_dir, "results": results, "val": val, "spair": spair,
            "config": config}


def test_smoke_tiny_spair_loss_falls_and_detects_digits(smoke_run):
    """300 steps on 24×24 one-digit images: the loss falls; AP > 0 with objects switched on."""
    losses = {step: float(tf.make_ndarray(t)) for tag, step, t in
              _events(os.path.join(smoke_run["dir"], "train")) if tag == "loss"}
    steps = sorted(losses)
    assert steps == list(range(25, SMOKE_STEPS + 1, 25))
    assert losses[steps[-1]] < 0.8 * losses[steps[0]], losses
    results = smoke_run["results"]
    assert results["steps"] == SMOKE_STEPS
    final = results["val_history"][-1]
    assert final["step"] == SMOKE_STEPS
    assert final["AP"] > 0.0 and final["count_abs_error"] < 1.0, final
    # The count confusion is recorded at every evaluation: one row per true count (all 1).
    assert list(final["count_confusion"]) == ["1"], final["count_confusion"]
    # How the boxes sit on the GT boxes is recorded too: one GT box per validation image.
    assert final["box_agreement"]["n_gt"] == 32 and final["box_agreement"]["n_matched"] > 0
    assert results["test"]["AP"] > 0.0
    assert sum(results["test"]["count_confusion"]["1"].values()) == results["test"]["n_images"]
    with open(os.path.join(smoke_run["dir"], "results.json")) as f:
        assert json.load(f)["steps"] == SMOKE_STEPS


def test_tensorboard_gets_inputs_reconstructions_and_boxes_at_each_evaluation(smoke_run):
    images = {}
    for tag, step, tensor in _events(os.path.join(smoke_run["dir"], "val")):
        if tag in ("inputs", "reconstructions", "boxes_ground_truth_vs_predicted"):
            images[tag, step] = tf.make_ndarray(tensor)   # [width, height, png...]
    val = smoke_run["val"]
    for step in (100, SMOKE_STEPS):
        for tag, width in (("inputs", 24), ("reconstructions", 24),
                           ("boxes_ground_truth_vs_predicted", 48)):
            summary = images[tag, step]
            assert summary[:2].tolist() == [str(width).encode(), b"24"], tag
            assert len(summary) == 2 + 4, tag      # four images
        pngs = [tf.io.decode_png(p).numpy() for p in images["inputs", step][2:]]
        np.testing.assert_array_equal(np.stack(pngs), val.images[:4])
        # Left half: the input with green ground-truth outlines and nothing else changed.
        for k, png in enumerate(images["boxes_ground_truth_vs_predicted", step][2:]):
            left = tf.io.decode_png(png).numpy()[:, :24]
            green = np.all(left == [0, 255, 0], axis=-1)
            assert green.any()
            np.testing.assert_array_equal(left[~green], val.images[k][~green])


def test_restart_after_crash_between_commit_and_best_copy(smoke_run, tmp_path):
    """A finished run restarted: no more training, the lost best checkpoint written again,
    and uncommitted validation entries dropped."""
    model_dir = str(tmp_path / "copy")
    shutil.copytree(smoke_run["dir"], model_dir)
    results = smoke_run["results"]
    assert results["best_step"] == SMOKE_STEPS   # the last evaluation was the best
    # The crash: the best copy of the last commit is lost, and an evaluation after the
    # last commit reached val_history.json.
    shutil.rmtree(os.path.join(model_dir, "best"))
    with open(os.path.join(model_dir, "val_history.json")) as f:
        history = json.load(f)
    with open(os.path.join(model_dir, "val_history.json"), "w") as f:
        json.dump(history + [dict(history[-1], step=SMOKE_STEPS + 100)], f)

    spair = smoke_run["spair"]
    trainer = Trainer(lambda: SPAIR(spair), smoke_run["config"], model_dir,
                      image_shape=(24, 24, 3))
    again = trainer.fit(datasets.to_tf_dataset(_one_digit_images("train", 8), batch_size=8))
    assert again["steps"] == SMOKE_STEPS
    assert [h["step"] for h in again["val_history"]] == list(range(100, SMOKE_STEPS + 1, 100))
    best = tf.train.latest_checkpoint(os.path.join(model_dir, "best"))
    assert best is not None and best.endswith(f"ckpt-{SMOKE_STEPS}")
    reader = tf.train.load_checkpoint(best)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == SMOKE_STEPS


# ------------------------------------------------------------------------------------------
# Distribution strategies

def test_xla_step_with_the_backbone_outside_the_cluster_gives_the_tape_gradients(tmp_path):
    """With xla, the backbone runs as TF ops and the rest of the loss as one XLA cluster; the
    gradients are those of a plain tape over the whole loss (§1.11)."""
    config = TrainConfig(batch_size=8, clip_norm=0.0, gradient_noise=False, xla=True)
    trainer = Trainer(lambda: SPAIR(SpairConfig(**TINY), fixed_noise=True), config,
                      str(tmp_path), image_shape=(24, 24, 3))
    assert trainer._stem is trainer.model.backbone
    trainer.step.assign(10_000)
    images = tf.constant(_one_digit_images("train", 8).images, tf.float32) / 255.0
    with tf.GradientTape() as tape:
        loss, _ = trainer.model.compute_loss(images, tf.constant(10_000, tf.int64))
    variables = trainer.model.trainable_variables
    reference = [g.numpy() for g in tape.gradient(loss, variables)]
    (grads,), terms = trainer.gradients(images)
    np.testing.assert_allclose(terms["loss"], loss.numpy(), rtol=1e-5)
    assert len(grads) == len(reference) == len(variables)
    stem = {id(v) for v in trainer.model.backbone.trainable_variables}
    assert 0 < len(stem) < len(variables)
    for variable, got, want in zip(variables, grads, reference):
        assert got.shape == want.shape, variable.path
        scale = float(np.abs(want).max())
        assert scale > 0, variable.path
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=variable.path)


def test_fused_xla_update_without_a_strategy_equals_the_strategy_update(tmp_path):
    """Without a strategy, clipping, noise and Adam run as one XLA computation; the weights,
    Adam's moments and the step after two steps are those of the strategy path (§1.11)."""
    config = TrainConfig(batch_size=8, learning_rate=1e-3, clip_norm=0.1, xla=True)
    images = tf.constant(_one_digit_images("train", 8).images, tf.float32) / 255.0
    model_fn = lambda: SPAIR(SpairConfig(**TINY), fixed_noise=True)  # noqa: E731
    fused = Trainer(model_fn, config, str(tmp_path / "fused"), image_shape=(24, 24, 3))
    plain = Trainer(model_fn, config, str(tmp_path / "plain"), image_shape=(24, 24, 3),
                    strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert fused._fused_apply and not plain._fused_apply
    plain.model.set_weights(fused.model.get_weights())
    before = [v.numpy() for v in fused.model.trainable_variables]
    for trainer in (fused, plain):
        trainer.step.assign(1500)  # wheels off; gradient noise σ = 0.001·0.1^1.5 ≈ 3e-5
        batch = trainer.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors({"images": images}))
        for _ in range(2):
            terms = trainer._train_step(next(iter(batch)))
        assert terms["grad_norm"] > config.clip_norm  # the clipping is exercised
    assert int(fused.step.numpy()) == int(plain.step.numpy()) == 1502
    moved = 0
    for a, b, w0 in zip(fused.model.trainable_variables, plain.model.trainable_variables,
                        before):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=a.path)
        moved += int(np.any(a.numpy() != w0))
    assert moved == len(before)
    for a, b in zip(_momentums(fused), _momentums(plain)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-7)


def _mirrored_equivalence(out_path):
    """Subprocess: one device vs MirroredStrategy over 2 logical CPUs, on one batch."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    config = TrainConfig(batch_size=8, learning_rate=1e-3)
    images = tf.constant(_one_digit_images("train", 8).images, tf.float32) / 255.0
    model_fn = lambda: SPAIR(SpairConfig(**TINY), fixed_noise=True)  # noqa: E731
    one = Trainer(model_fn, config, os.path.join(os.path.dirname(out_path), "one"),
                  strategy=tf.distribute.OneDeviceStrategy("/cpu:0"), image_shape=(24, 24, 3))
    two = Trainer(model_fn, config, os.path.join(os.path.dirname(out_path), "two"),
                  strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
                  image_shape=(24, 24, 3))
    two.model.set_weights(one.model.get_weights())
    # Past the training wheels, and gradient noise 0.001·0.1^10: every variable learns.
    for trainer in (one, two):
        trainer.step.assign(10_000)

    # The reference: a plain tape on the whole batch, without any strategy.
    with tf.GradientTape() as tape:
        loss, _ = one.model.compute_loss(images, tf.constant(10_000, tf.int64))
    reference = [g.numpy() for g in tape.gradient(loss, one.model.trainable_variables)]

    grads_one, terms_one = one.gradients(images)
    grads_two, terms_two = two.gradients(images)
    before = [w.copy() for w in one.model.get_weights()]
    for trainer in (one, two):
        batch = trainer.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors({"images": images}))
        trainer._train_step(next(iter(batch)))
    after_two = [two.strategy.experimental_local_results(v.value)
                 for v in two.model.trainable_variables]
    # Adam's first moment after one step is (1 − β1)·(the applied gradient): unlike the
    # step itself (Adam is invariant to the gradient's scale), it shows the gradient applied.
    momentum_one = _momentums(one)
    momentum_two = [two.strategy.experimental_local_results(m.value) for m in _momentums(two)]
    arrays = {"loss_reference": loss.numpy(), "loss_one": terms_one["loss"],
              "loss_two": terms_two["loss"], "n_replicas": len(grads_two),
              "steps": [int(one.step.numpy()), int(two.step.numpy())]}
    for i, g in enumerate(reference):
        arrays[f"reference_{i}"] = g
        arrays[f"one_{i}"] = grads_one[0][i]
        arrays[f"two0_{i}"] = grads_two[0][i]
        arrays[f"two1_{i}"] = grads_two[1][i]
        arrays[f"before_{i}"] = before[i]
        arrays[f"after_one_{i}"] = one.model.trainable_variables[i].numpy()
        arrays[f"after_two0_{i}"] = after_two[i][0].numpy()
        arrays[f"after_two1_{i}"] = after_two[i][1].numpy()
        arrays[f"momentum_one_{i}"] = momentum_one[i].numpy()
        arrays[f"momentum_two0_{i}"] = momentum_two[i][0].numpy()
        arrays[f"momentum_two1_{i}"] = momentum_two[i][1].numpy()
    arrays["n_variables"] = len(reference)
    np.savez(out_path, **arrays)


def _momentums(trainer):
    """Adam's first-moment slots, in the order of model.trainable_variables."""
    slots = {v.path: v for v in trainer.optimizer.variables}
    out = []
    for variable in trainer.model.trainable_variables:
        name = variable.path.replace("/", "_") + "_momentum"
        matches = [v for path, v in slots.items() if path.split("/")[-1] == name]
        assert len(matches) == 1, (variable.path, [p for p in slots if "momentum" in p][:5])
        out.append(matches[0])
    return out


def test_mirrored_two_devices_apply_the_one_device_update(tmp_path):
    """MirroredStrategy over 2 logical CPUs = one device = clip(∇ mean loss) (§1.11)."""
    out = str(tmp_path / "mirrored.npz")
    run = subprocess.run([sys.executable, os.path.abspath(__file__), "mirrored", out],
                         cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    r = np.load(out)
    assert int(r["n_replicas"]) == 2
    assert r["steps"].tolist() == [10_001, 10_001]
    np.testing.assert_allclose(r["loss_one"], r["loss_reference"], rtol=1e-5)
    np.testing.assert_allclose(r["loss_two"], r["loss_reference"], rtol=1e-5)
    n = int(r["n_variables"])
    reference = [r[f"reference_{i}"] for i in range(n)]
    norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in reference))
    assert norm > 1.0   # so the clipping is exercised
    # float32 sums in another order (half batches, then the all-reduce): 1e-6 of the
    # clipped update's unit norm.
    tolerance = dict(rtol=1e-4, atol=1e-6)
    for i in range(n):
        clipped = reference[i] / norm                       # clip_by_global_norm to 1.0
        np.testing.assert_allclose(r[f"one_{i}"], clipped, **tolerance)
        np.testing.assert_allclose(r[f"two0_{i}"], clipped, **tolerance)
        np.testing.assert_array_equal(r[f"two1_{i}"], r[f"two0_{i}"])
        # The applied gradient: Adam's first moment is (1 − β1)·update, on both replicas.
        np.testing.assert_allclose(r[f"momentum_one_{i}"], 0.1 * clipped, **tolerance)
        np.testing.assert_allclose(r[f"momentum_two0_{i}"], 0.1 * clipped, **tolerance)
        np.testing.assert_array_equal(r[f"momentum_two1_{i}"], r[f"momentum_two0_{i}"])
        # The step lr·m̂/(√v̂ + ε): equal up to the ε-sensitivity of near-zero gradients.
        np.testing.assert_allclose(r[f"after_two0_{i}"], r[f"after_one_{i}"], atol=2e-5)
        np.testing.assert_array_equal(r[f"after_two1_{i}"], r[f"after_two0_{i}"])
    moved = sum(float(np.abs(r[f"after_one_{i}"] - r[f"before_{i}"]).max()) > 1e-4
                for i in range(n))
    assert moved >= n - 1   # Adam's first step moves (nearly) every variable by ~lr


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_two_processes_train_and_only_the_chief_writes(tmp_path):
    """Two `python -m spair_tf.train --strategy=multi_worker` workers on localhost."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    model_dir = tmp_path / "model"
    args = [sys.executable, "-m", "spair_tf.train", "--strategy=multi_worker",
            f"--model_dir={model_dir}", "--dataset=experiment1", "--n_digits=1",
            "--train_images=64", "--val_images=8", "--test_images=8",
            f"--data_cache_dir={tmp_path / 'cache'}", "--batch_size=4", "--max_steps=6",
            "--eval_every=3", "--log_every=1", "--patience=0", *TINY_FLAGS]
    workers = []
    for index in range(2):
        temp = tmp_path / f"tmp{index}"
        temp.mkdir()
        env = dict(_env(), TMPDIR=str(temp), TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    outputs = [w.communicate(timeout=1500) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    assert "done: 6 steps" in outputs[0][0]
    assert outputs[1][0] == ""   # only the chief reports
    assert sorted(os.listdir(model_dir)) == ["best", "ckpt", "results.json", "train", "val",
                                             "val_history.json"]
    latest = tf.train.latest_checkpoint(str(model_dir / "ckpt"))
    assert latest.endswith("ckpt-6")
    assert tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6
    with open(model_dir / "results.json") as f:
        assert json.load(f)["steps"] == 6
    # The non-chief worker saved into its own temporary directory and removed it.
    assert os.listdir(tmp_path / "tmp1") == []


if __name__ == "__main__":
    if sys.argv[1:2] == ["mirrored"]:
        _mirrored_equivalence(sys.argv[2])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} mirrored OUT.npz")
