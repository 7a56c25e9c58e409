"""The addition task's stage 2 (spair_tf.addition; SPAIR_SPEC §5.4), each piece against a
reference written here: numpy's stable sort, the LSTM run on each image's present objects
alone, the encoder's own "mean" mode, and which weights a training step moves (SPAIR and
AIR as stage 1)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from spair_tf import addition
from spair_tf.config import SpairConfig, TrainConfig
from spair_tf.model import SPAIR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(n_what=4, backbone_filters=8, n_features=8, hidden_units=(8,), encoder_units=(16,),
            decoder_units=(16,))


def _tiny_spair(seed=0):
    keras.utils.set_random_seed(seed)
    model = SPAIR(SpairConfig(**TINY))
    model.build((None, 48, 48, 3))
    return model


def test_present_first_matches_a_stable_sort():
    rng = np.random.default_rng(0)
    present = (rng.random([6, 9]) < 0.4).astype(np.float32)
    present[0] = 0.0
    present[1] = 1.0
    values = rng.normal(size=[6, 9, 3]).astype(np.float32)
    moved = addition.present_first(tf.constant(values), tf.constant(present)).numpy()
    for b in range(6):
        order = np.argsort(1.0 - present[b], kind="stable")
        np.testing.assert_array_equal(moved[b], values[b, order])


def test_classifier_reads_the_lstm_after_the_last_present_object():
    keras.utils.set_random_seed(1)
    classifier = addition.SumClassifier(n_what=5, lstm_units=7, hidden_units=(6,))
    classifier.build()
    rng = np.random.default_rng(1)
    z_what = rng.normal(size=[5, 8, 5]).astype(np.float32)
    z_pres = (rng.random([5, 8]) < 0.5).astype(np.float32)
    z_pres[0] = 0.0   # no object: the LSTM's zero initial output
    z_pres[1] = 1.0
    logits = classifier(tf.constant(z_what), tf.constant(z_pres)).numpy()
    assert logits.shape == (5, addition.N_CLASSES)
    for b in range(5):
        present = z_what[b, z_pres[b] > 0]                     # in cell order
        if len(present):
            inputs = classifier.input_network(present)[None]   # [1, n, A]
            last = classifier.lstm(inputs)[:, -1]
        else:
            last = tf.zeros([1, 7])
        np.testing.assert_allclose(logits[b], classifier.output_network(last)[0],
                                   rtol=1e-5, atol=1e-5)


def test_representation_with_centred_pres_noise_is_the_mean_mode():
    model = _tiny_spair()
    images = tf.random.stateless_uniform([3, 48, 48, 3], seed=[2, 3])
    z_what, z_pres = addition.object_representation(
        model, images, pres_noise=tf.fill([3, 4, 4, 1], 0.5))
    z = model.encode(images, step=addition.LATE_STEP, mode="mean")
    np.testing.assert_allclose(z_what, tf.reshape(z["what_mean"], [3, 16, 4]), atol=1e-6)
    np.testing.assert_array_equal(z_pres, tf.reshape(z["z_pres"], [3, 16]))
    sampled = addition.object_representation(model, images)[1].numpy()
    assert set(np.unique(sampled)) <= {0.0, 1.0}


def test_sums_of_labels():
    labels = tf.constant([[1, 2, 3, 4, 5], [9, 9, 9, 9, 9], [0, 0, 7, -1, -1]])
    assert addition.sums_of(labels).numpy().tolist() == [15, 45, 7]


def _tiny_air(seed=0):
    from baselines.air import AIR, AirConfig

    keras.utils.set_random_seed(seed)
    return AIR(AirConfig(fixed_steps=5, z_what_size=4, lstm_units=8, output_hidden_units=(8,),
                         encoder_hidden_units=(16,), decoder_hidden_units=(16,)),
               image_shape=(48, 48, 3), seed=seed)


def test_air_objects_are_its_steps():
    model = _tiny_air()
    images = tf.random.stateless_uniform([3, 48, 48, 3], seed=[6, 7])
    z_what, z_pres = addition.Objects(model)({"images": images})
    assert z_what.shape == (3, 5, 4)
    np.testing.assert_array_equal(z_pres, np.ones([3, 5]))  # fixed steps: z_pres ≡ 1


def _layers(model):
    """(layers a stage-2 step must never move, the object encoder) of a stage-1 model."""
    if isinstance(model, SPAIR):
        return ({"backbone": model.backbone, "box_net": model.encoder.box_net,
                 "pres_net": model.encoder.pres_net, "object_decoder": model.object_decoder},
                model.encoder.object_encoder)
    return ({"core": model.core, "where_network": model.where_network,
             "object_decoder": model.object_decoder}, model.object_encoder)


@pytest.mark.parametrize("stage1", ["spair", "air"])
@pytest.mark.parametrize("representation", addition.REPRESENTATIONS)
def test_a_step_moves_only_the_weights_of_its_representation(stage1, representation,
                                                             tmp_path):
    model = _tiny_spair() if stage1 == "spair" else _tiny_air()
    stage2 = addition.Stage2(addition.Objects(model), representation, str(tmp_path),
                             TrainConfig(learning_rate=1e-2, xla=False))
    frozen, object_encoder = _layers(model)
    moved = {"classifier": stage2.classifier}
    (moved if representation == "unfixed" else frozen)["object_encoder"] = object_encoder
    before = {name: [v.numpy().copy() for v in layer.weights]
              for name, layer in {**frozen, **moved}.items()}
    images = tf.random.stateless_uniform([4, 48, 48, 3], seed=[4, 5])
    labels = tf.constant([[1, 2, 3, 4, 5]] * 4)
    loss, _ = stage2._train_step({"images": images, "labels": labels})
    assert np.isfinite(loss.numpy())
    for name, layer in frozen.items():
        for old, new in zip(before[name], layer.weights):
            np.testing.assert_array_equal(old, new.numpy(), err_msg=name)
    for name, layer in moved.items():
        assert any(not np.array_equal(old, new.numpy())
                   for old, new in zip(before[name], layer.weights)), name


def _stage1_state(directory):
    """A stage-1 SPAIR as spair_tf.train leaves one: best/ checkpoint and flags.json."""
    from spair_tf.training import make_optimizer

    model = _tiny_spair(seed=3)
    optimizer = make_optimizer(TrainConfig())
    optimizer.build(model.trainable_variables)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model, optimizer=optimizer),
                               os.path.join(directory, "best"), max_to_keep=1).save(0)
    flags = {name: ",".join(map(str, value)) if isinstance(value, tuple) else value
             for name, value in TINY.items()}
    with open(os.path.join(directory, "flags.json"), "w") as f:
        json.dump(flags, f)


def test_command_line_trains_resumes_and_reports(tmp_path):
    stage1, model_dir = tmp_path / "stage1", tmp_path / "stage2"
    _stage1_state(str(stage1))
    command = [sys.executable, "-m", "spair_tf.addition", f"--stage1_dir={stage1}",
               f"--model_dir={model_dir}", f"--data_cache_dir={tmp_path / 'cache'}",
               "--dataset=addition", "--train_images=64", "--val_images=16",
               "--test_images=16", "--batch_size=8", "--eval_every=2", "--log_every=1",
               "--representation=unfixed", "--xla=false"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    first = subprocess.run(command + ["--max_steps=2"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(command + ["--max_steps=4"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from step 2" in second.stdout
    results = json.loads((model_dir / "results.json").read_text())
    assert results["steps"] == 4 and results["n_train"] == 64
    assert results["representation"] == "unfixed"
    assert 0.0 <= results["test_accuracy"] <= 1.0
    history = json.loads((model_dir / "val_history.json").read_text())
    assert [h["step"] for h in history] == [2, 4] and results["val_history"] == history
    assert results["best_val_accuracy"] == max(h["accuracy"] for h in history)


def test_flags_other_than_the_addition_task_are_refused():
    addition.check_flags("addition", "spair", stage1_dir="runs/stage1")
    addition.check_flags("addition", "air", stage1_dir="runs/stage1")
    addition.check_flags("addition", "spair", baseline="truebb")
    with pytest.raises(ValueError, match="--dataset=experiment1: .* pass --dataset=addition"):
        addition.check_flags("experiment1", "spair", stage1_dir="runs/stage1")
    with pytest.raises(ValueError, match="--model=dair"):
        addition.check_flags("addition", "dair", stage1_dir="runs/stage1")
    with pytest.raises(ValueError, match="--stage1_dir is required"):
        addition.check_flags("addition", "spair")
    with pytest.raises(ValueError, match="--baseline=convnet is trained from scratch"):
        addition.check_flags("addition", "spair", baseline="convnet",
                             stage1_dir="runs/stage1")
