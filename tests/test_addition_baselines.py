"""The addition task's Fig. 4 baselines (baselines/addition.py): TrueBB's and ConnComp's
glimpses against a per-point bilinear sampler written here from the original's transform
(Sonnet's AffineGridWarper + tf.contrib.resampler), ConnComp's boxes against
scipy.ndimage, ConvNet's objects against its backbone's cells, and the stage-2 step and
command line with each."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from baselines import addition as baselines
from spair_tf import addition, datasets
from spair_tf.config import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resample(image, y, x):
    """tf.contrib.resampler at one point (pixel coordinates): bilinear over the four
    neighbours, a neighbour outside the image contributing 0."""
    height, width = image.shape[:2]
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    value = np.zeros(image.shape[2])
    for yy, wy in ((y0, 1.0 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1.0 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * image[yy, xx]
    return value


def _reference_glimpse(image, box, side):
    """The original's glimpse of a pixel box (ymin, xmin, ymax, xmax): top-left = min / size,
    size = (max − min) / size, an affine grid over linspace(−1, 1) in normalised [−1, 1]
    image coordinates, mapped to pixels by (v + 1)/2·(n − 1), resampled."""
    height, width = image.shape[:2]
    top, left = box[0] / height, box[1] / width
    box_h, box_w = (box[2] - box[0]) / height, (box[3] - box[1]) / width
    u = np.linspace(-1.0, 1.0, side)
    ys = (box_h * u + 2.0 * (top + box_h / 2.0) - 1.0 + 1.0) / 2.0 * (height - 1)
    xs = (box_w * u + 2.0 * (left + box_w / 2.0) - 1.0 + 1.0) / 2.0 * (width - 1)
    return np.array([[_resample(image, y, x) for x in xs] for y in ys])


@pytest.mark.parametrize("name", ["truebb", "conncomp"])
def test_box_glimpses_match_the_original_sampler(name):
    rng = np.random.default_rng(0)
    images = rng.random([2, 48, 48, 3]).astype(np.float32)
    boxes = np.array([[[3, 5, 16, 17], [30, 0, 47, 13], [0, 40, 0, 47]],      # 1-px tall
                      [[20, 20, 33, 30], [0, 0, 47, 47], [10, 12, 10, 12]]],  # one pixel
                     np.float32)
    layer = baselines.BoxObjects(baselines.GLIMPSE_SIDE[name])
    layer.build()
    batch = {"images": tf.constant(images), "object_boxes": tf.constant(boxes),
             "object_counts": tf.constant([3, 2])}
    glimpses = layer.glimpses(batch).numpy()
    side = baselines.GLIMPSE_SIDE[name]
    assert glimpses.shape == (2, 3, side, side, 3)
    for b in range(2):
        for k in range(3):
            np.testing.assert_allclose(glimpses[b, k],
                                       _reference_glimpse(images[b], boxes[b, k], side),
                                       atol=2e-5)
    z_what, z_pres = layer(batch)
    np.testing.assert_array_equal(z_pres.numpy(), [[1, 1, 1], [1, 1, 0]])
    encoded = layer.object_encoder(glimpses.reshape(6, -1)).numpy().reshape(2, 3, -1)
    np.testing.assert_allclose(z_what.numpy(), encoded[..., :baselines.N_WHAT], atol=1e-5)


def test_conncomp_boxes_match_scipy_in_label_order():
    data = datasets.generate(datasets.addition("val", n_images=40))
    boxes, counts = baselines.conncomp_boxes(data.images)
    assert boxes.shape == (40, counts.max(), 4)
    for image, found, count in zip(data.images, boxes, counts):
        mask = np.abs(image.astype(np.float32) / 255.0).sum(-1) >= baselines.CONNCOMP_TAU
        labels, n = scipy.ndimage.label(mask)  # 4-connectivity, raster order of first pixel
        expected = [(s[0].start, s[1].start, s[0].stop - 1, s[1].stop - 1)
                    for s in scipy.ndimage.find_objects(labels)]
        assert count == n
        np.testing.assert_array_equal(found[:n], np.array(expected, np.float32).reshape(n, 4))
        np.testing.assert_array_equal(found[n:], 0.0)


def test_convnet_objects_are_its_cells_in_raster_order():
    keras.utils.set_random_seed(0)
    objects = baselines.BaselineObjects("convnet")
    images = tf.random.stateless_uniform([3, 48, 48, 3], seed=[1, 2])
    z_what, z_pres = objects({"images": images})
    features = objects.object_encoder.backbone(images).numpy()               # [3, 4, 4, 100]
    expected = np.stack([[features[b, i, j, :baselines.N_WHAT] for i in range(4)
                          for j in range(4)] for b in range(3)])
    np.testing.assert_allclose(z_what.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(z_pres.numpy(), np.ones([3, 16]))
    assert objects.extra(None) == {}


@pytest.mark.parametrize("name", baselines.BASELINES)
def test_a_step_trains_the_whole_baseline_and_the_classifier(name, tmp_path):
    keras.utils.set_random_seed(0)
    objects = baselines.BaselineObjects(name)
    with pytest.raises(ValueError, match="takes \\('raw',\\)"):
        addition.Stage2(objects, "fixed", str(tmp_path), TrainConfig(xla=False))
    stage2 = addition.Stage2(objects, "raw", str(tmp_path),
                             TrainConfig(learning_rate=1e-3, xla=False))
    data = datasets.generate(datasets.addition("val", n_images=8))
    batch = next(iter(datasets.to_tf_dataset(data, 8, shuffle=False,
                                             extra=objects.extra(data))))
    layers = {"classifier": stage2.classifier, "objects": objects.object_encoder}
    before = {n: [v.numpy().copy() for v in layer.trainable_weights]
              for n, layer in layers.items()}
    loss, _ = stage2._train_step(batch)
    assert np.isfinite(loss.numpy())
    for n, layer in layers.items():
        assert all(not np.array_equal(old, new.numpy())
                   for old, new in zip(before[n], layer.trainable_weights)), n


def test_command_line_trains_a_baseline_and_refuses_a_stage1_flag(tmp_path):
    model_dir = tmp_path / "conncomp"
    command = [sys.executable, "-m", "spair_tf.addition", "--baseline=conncomp",
               f"--model_dir={model_dir}", f"--data_cache_dir={tmp_path / 'cache'}",
               "--dataset=addition", "--train_images=32", "--val_images=16",
               "--test_images=16", "--batch_size=8", "--eval_every=2", "--log_every=1",
               "--max_steps=2", "--xla=false"]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert results["baseline"] == "conncomp" and results["representation"] == "raw"
    assert results["stage1_model"] is None and results["steps"] == 2
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert [results["data"][s]["n_images"] for s in ("train", "val", "test")] == [32, 16, 16]
    refused = subprocess.run(command + ["--representation=fixed"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2
    assert "--baseline=conncomp is trained end to end" in refused.stderr
