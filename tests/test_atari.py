"""Space Invaders data (SPAIR_SPEC §2.3, spair_tf/atari.py) and training without boxes
(TrainConfig.selection = "reconstruction")."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spair_tf import atari, datasets, evaluation
from spair_tf.config import SpairConfig, TrainConfig
from spair_tf.model import SPAIR
from spair_tf.training import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(n_what=4, backbone_filters=8, n_features=8, hidden_units=(8,), encoder_units=(16,),
            decoder_units=(16,))


def _small(**fields):
    return atari.AtariConfig(**{"n_frames": 60, **fields})


@pytest.fixture(scope="module")
def played():
    config = _small()
    return config, *atari.play(config)


def test_frames_are_deterministic_rgb_and_each_split_plays_its_own_episodes(played):
    config, frames, episodes = played
    assert frames.shape == (60, 210, 160, 3) and frames.dtype == np.uint8
    again, _ = atari.play(config)
    np.testing.assert_array_equal(frames, again)
    other, _ = atari.play(_small(seed=1))
    assert not np.array_equal(frames, other)
    # Colour frames (not grey); the game moves (it stands still for its first few frames).
    assert np.any(frames[..., 0] != frames[..., 1])
    moved = [not np.array_equal(a, b) for a, b in zip(frames[:-1], frames[1:])]
    assert np.mean(moved) > 0.8, moved
    # Episodes are numbered in order, at most max_samples_per_episode frames each.
    assert np.all(np.diff(episodes) >= 0) and episodes[0] == 0
    capped, capped_episodes = atari.play(_small(max_samples_per_episode=7, n_frames=20))
    assert np.bincount(capped_episodes).tolist() == [7, 7, 6]
    np.testing.assert_array_equal(capped[:7], frames[:7])


def test_a_frame_is_the_maximum_of_the_last_two_emulator_frames_of_its_step(played):
    """Replays the first 20 recorded frames with the emulator directly (ale-py's own API)."""
    import ale_py
    import ale_py.roms

    config, frames, _ = played
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", config.seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(config.game))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng([config.seed, 0])
    flicker = 0
    for i in range(20):
        for _ in range(config.sample_every):  # a frame is recorded every 8th agent step
            action = actions[rng.integers(len(actions))]
            screens = []
            for _ in range(config.frame_skip):
                ale.act(action)
                screens.append(ale.getScreenRGB())
        np.testing.assert_array_equal(frames[i], np.maximum(screens[-2], screens[-1]))
        flicker += not np.array_equal(screens[-2], screens[-1])
    assert flicker > 0  # the maximum does something on these frames


def test_crops_are_windows_of_their_own_frame(played):
    config, frames, _ = played
    crops = atari.crops(frames, config)
    size, per_frame = config.crop_size, config.crops_per_frame
    assert crops.shape == (len(frames) * per_frame, size, size, 3)
    windows = np.lib.stride_tricks.sliding_window_view(frames, (size, size), axis=(1, 2))
    for i in (0, 17, len(frames) - 1):  # brute force over every position of frame i
        for j in range(per_frame):
            crop = crops[i * per_frame + j]
            hits = np.all(windows[i] == crop.transpose(2, 0, 1)[None, None], axis=(2, 3, 4))
            assert hits.any(), (i, j)
    np.testing.assert_array_equal(crops, atari.crops(frames, config))  # same positions


def test_generate_gives_a_dataset_without_boxes_that_feeds_tf_data():
    data = atari.generate(_small(n_frames=5))
    assert data.images.shape == (20, 48, 48, 3) and data.boxes.shape == (20, 0, 4)
    assert not evaluation.has_boxes(data) and data.counts.tolist() == [0] * 20
    batch = next(iter(datasets.to_tf_dataset(data, batch_size=8)))
    assert batch["images"].shape == (8, 48, 48, 3) and batch["boxes"].shape == (8, 0, 4)
    full = atari.generate(_small(n_frames=3, crop_size=None))
    assert full.images.shape == (3, 210, 160, 3)


def test_cache_round_trip_and_a_corrupt_entry_is_regenerated_with_a_warning(tmp_path,
                                                                            monkeypatch):
    config = _small(n_frames=4)
    first = atari.load(config, str(tmp_path))
    data_path, manifest_path = atari.cache_paths(config, str(tmp_path))
    with open(manifest_path) as f:
        manifest = json.load(f)
    assert manifest["config"]["game"] == "space_invaders" and manifest["kind"] == "atari"

    def fail(_):
        raise AssertionError("generated again although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(atari, "generate", fail)
        np.testing.assert_array_equal(atari.load(config, str(tmp_path)).images, first.images)
    with open(data_path, "r+b") as f:  # flip bytes inside the data file
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.warns(RuntimeWarning, match="sha256"):
        again = atari.load(config, str(tmp_path))
    np.testing.assert_array_equal(again.images, first.images)
    assert atari.cache_paths(config, "d") != atari.cache_paths(_small(n_frames=5), "d")


@pytest.mark.parametrize("fields, message", [
    ({"game": "pong"}, "game='pong'"),
    ({"crop_size": 200}, "crop_size=200"),
    ({"frame_skip": 1}, "frame_skip=1"),
    ({"n_frames": 0}, "n_frames=0"),
    ({"split": "dev"}, "split must be one of"),
])
def test_bad_configs_name_the_field_and_the_accepted_values(fields, message):
    with pytest.raises(ValueError, match=message):
        _small(**fields).validate()


def test_presets_crop_train_and_val_and_keep_full_test_frames():
    train, val, test = (atari.preset(s) for s in ("train", "val", "test"))
    assert (train.n_images, val.n_images, test.n_images) == (64000, 1000, 1000)
    assert (train.seed, val.seed, test.seed) == (0, 1, 2)
    assert test.image_shape == (210, 160, 3) and train.image_shape == (48, 48, 3)


# ------------------------------------------------------------------------------------------
# Training without boxes

def test_training_without_boxes_keeps_the_checkpoint_of_lowest_reconstruction(tmp_path):
    tf.keras.utils.set_random_seed(0)
    train = atari.generate(_small(n_frames=16, crop_size=24))
    val = atari.generate(_small(n_frames=2, seed=1, crop_size=24))
    test = atari.generate(_small(n_frames=2, seed=2, crop_size=None))
    feed = datasets.to_tf_dataset(train, batch_size=4)
    by_ap = Trainer(lambda: SPAIR(SpairConfig(**TINY)),
                    TrainConfig(batch_size=4, max_steps=2, eval_every=1, patience=0),
                    str(tmp_path / "ap"), image_shape=(24, 24, 3))
    with pytest.raises(ValueError, match="--selection=reconstruction"):
        by_ap.fit(feed, val_data=val)

    config = TrainConfig(batch_size=4, max_steps=4, eval_every=1, patience=0,
                         learning_rate=3e-3, selection="reconstruction")
    trainer = Trainer(lambda: SPAIR(SpairConfig(**TINY, background="learn_solid")), config,
                      str(tmp_path / "run"), image_shape=(24, 24, 3))
    results = trainer.fit(feed, val_data=val, test_data=test)
    history = results["val_history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    best = min(history, key=lambda h: h["reconstruction"])
    assert results["best_step"] == best["step"]
    assert results["best_val_reconstruction"] == pytest.approx(best["reconstruction"])
    assert "best_val_AP" not in results
    best_ckpt = tf.train.latest_checkpoint(str(tmp_path / "run" / "best"))
    assert best_ckpt.endswith(f"ckpt-{best['step']}")
    # The test: the loss terms of the best checkpoint on full 210×160 frames.
    assert results["test"]["n_images"] == 2 and results["test"]["reconstruction"] > 0
    assert set(results["test"]) >= {"loss", "reconstruction", "kl_where", "kl_pres", "count"}


class _PixelSum:
    """A stand-in model whose loss is known per image: the batch mean of each image's pixel
    sum (and, as a term, the batch mean of step + its first pixel)."""

    def compute_loss(self, images, step, training=True):
        assert training is False
        per_image = tf.reduce_sum(images, axis=[1, 2, 3])
        first = images[:, 0, 0, 0] + tf.cast(step, tf.float32)
        return tf.reduce_mean(per_image), {"reconstruction": tf.reduce_mean(first)}


@pytest.mark.parametrize("batch_size", [8, 3, 5])
def test_validation_loss_is_the_mean_over_images_whatever_the_batches(batch_size):
    data = atari.generate(_small(n_frames=2, crop_size=24))            # 8 images
    images = data.images.astype(np.float64) / 255.0
    result = evaluation.validation_loss(_PixelSum(), data, step=10, batch_size=batch_size)
    assert result["n_images"] == 8
    assert result["loss"] == pytest.approx(images.sum(axis=(1, 2, 3)).mean(), rel=1e-6)
    assert result["reconstruction"] == pytest.approx(10 + images[:, 0, 0, 0].mean(), rel=1e-6)
    some = evaluation.validation_loss(_PixelSum(), data, step=0, batch_size=batch_size,
                                      max_images=5)
    assert some["n_images"] == 5
    assert some["loss"] == pytest.approx(images[:5].sum(axis=(1, 2, 3)).mean(), rel=1e-6)


def test_command_line_prints_a_summary_and_refuses_a_bad_request(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "spair_tf.atari", "--split=val",
                           "--n_frames=3", f"--cache_dir={tmp_path}"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "12 images 48×48 from 3 frames" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "spair_tf.atari", "--n_frames=0",
                          f"--cache_dir={tmp_path}"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: n_frames=0")
