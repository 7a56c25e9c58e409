"""The assembled SPAIR model (SPAIR_SPEC §1): loss, gradients, detections, bad input."""

import re

import numpy as np
import pytest
import tensorflow as tf

from spair_tf.config import SpairConfig
from spair_tf.model import SPAIR


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    model = SPAIR(SpairConfig())
    model.build((None, 48, 48, 3))
    return model


def _gradients(model, images, step):
    with tf.GradientTape() as tape:
        loss, terms = model.compute_loss(images, tf.constant(step, tf.int64))
    grads = tape.gradient(loss, model.trainable_variables)
    return loss, terms, {v.path: g for v, g in zip(model.trainable_variables, grads)}


def test_batch32_loss_is_finite_and_every_variable_gets_a_gradient(model):
    images = tf.random.stateless_uniform((32, 48, 48, 3), seed=(1, 2))
    loss, terms, grads = _gradients(model, images, step=5000)
    assert np.isfinite(loss.numpy())
    parts = ("reconstruction", "kl_where", "kl_what", "kl_depth", "kl_pres")
    np.testing.assert_allclose(loss.numpy(), sum(terms[k].numpy() for k in parts), rtol=1e-5)
    for path, grad in grads.items():
        assert grad is not None, path
        assert np.all(np.isfinite(tf.convert_to_tensor(grad).numpy())), path
        assert np.abs(tf.convert_to_tensor(grad).numpy()).sum() > 0, path


FIG2_RUNS = dict(compositing="weighted", std_transform="exp", training_wheels_latents="pres",
                 glimpse_outside="zero")


def test_the_fig2_runs_variant_trains_and_draws_with_weights():
    """SPAIR_SPEC §6's variant: finite loss, a gradient for every variable, no depth KL, and
    a reconstruction in [0, 1] (a weighted mean of the background and sprite colours)."""
    tf.keras.utils.set_random_seed(1)
    variant = SPAIR(SpairConfig(**FIG2_RUNS))
    variant.build((None, 48, 48, 3))
    images = tf.random.stateless_uniform((8, 48, 48, 3), seed=(5, 6))
    loss, terms, grads = _gradients(variant, images, step=5000)
    assert np.isfinite(loss.numpy()) and terms["kl_depth"].numpy() == 0.0
    for path, grad in grads.items():
        assert grad is not None and np.abs(tf.convert_to_tensor(grad).numpy()).sum() > 0, path
    out = variant(images, mode="mean")
    assert out["reconstruction"].shape == images.shape
    assert np.all(out["reconstruction"].numpy() >= 0) and np.all(
        out["reconstruction"].numpy() <= 1)


def test_training_wheels_on_pres_only_let_the_box_network_learn_at_once():
    """§6: the Fig. 2–3 runs held only the pres logits for the first 1000 steps."""
    tf.keras.utils.set_random_seed(2)
    variant = SPAIR(SpairConfig(training_wheels_latents="pres"))
    variant.build((None, 48, 48, 3))
    images = tf.random.stateless_uniform((4, 48, 48, 3), seed=(3, 4))
    encoder = variant.encoder
    with tf.GradientTape() as tape:
        loss, _ = variant.compute_loss(images, tf.constant(10, tf.int64))
    grads = tape.gradient(loss, [encoder.box_net.trainable_variables,
                                 encoder.pres_net.trainable_variables])
    norms = [float(sum(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g))) for g in gs
                       if g is not None)) for gs in grads]
    assert norms[0] > 0.0 and norms[1] == 0.0, norms


@pytest.mark.parametrize("field,value", [("compositing", "alpha"), ("std_transform", "relu"),
                                         ("training_wheels_latents", "box"),
                                         ("glimpse_outside", "reflect")])
def test_bad_variant_fields_are_named(field, value):
    with pytest.raises(ValueError, match=f"{field}='{value}'"):
        SpairConfig(**{field: value})


def test_training_wheels_leave_only_the_object_networks_learning(model):
    """§1.3: before step 1000 box, depth and pres heads (and so the backbone) get no gradient."""
    images = tf.random.stateless_uniform((4, 48, 48, 3), seed=(3, 4))
    encoder = model.encoder
    parts = {"backbone": model.backbone, "box_net": encoder.box_net,
             "depth_net": encoder.depth_net, "pres_net": encoder.pres_net,
             "object_encoder": encoder.object_encoder, "object_decoder": model.object_decoder}
    for step, frozen in ((10, True), (1000, False)):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss(images, tf.constant(step, tf.int64))
        names = list(parts)
        grads = tape.gradient(loss, [parts[n].trainable_variables for n in names])
        norms = {n: float(sum(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))
                              for g in gs if g is not None)) for n, gs in zip(names, grads)}
        for name in ("backbone", "box_net", "depth_net", "pres_net"):
            assert (norms[name] == 0.0) == frozen, (step, name, norms)
        for name in ("object_encoder", "object_decoder"):
            assert norms[name] > 0.0, (step, name, norms)


@pytest.mark.parametrize("size", [(48, 48), (84, 84), (210, 160), (12, 25)])
def test_detect_on_any_image_size(model, size):
    images = tf.random.stateless_uniform((2,) + size + (3,), seed=(5, 6))
    out = model.detect(images, mode="mean")
    cells = -(-size[0] // 12) * -(-size[1] // 12)
    assert out["boxes"].shape == (2, cells, 4)
    assert out["reconstruction"].shape == (2,) + size + (3,)
    boxes = out["boxes"].numpy()
    assert np.all(boxes[..., 2] > boxes[..., 0]) and np.all(boxes[..., 3] > boxes[..., 1])
    np.testing.assert_array_equal(out["counts"], out["valid"].numpy().sum(1))
    # "mean" mode is deterministic and its scores are β, on iff β > 0.5.
    again = model.detect(images, mode="mean")
    np.testing.assert_array_equal(out["boxes"], again["boxes"])
    np.testing.assert_array_equal(out["valid"], out["scores"].numpy() > 0.5)
    paper = model.detect(images, mode="paper")
    np.testing.assert_array_equal(paper["scores"], np.ones_like(paper["scores"]))


def test_boxes_follow_equations_2_to_6(model):
    """centre = 12·(cell + b̃), size = 48·(h, w): checked against the encoder's latents."""
    images = tf.random.stateless_uniform((1, 36, 24, 3), seed=(7, 8))
    latents = model(images, mode="mean")
    box = latents["box"].numpy()[0]                                   # [3, 2, 4]
    detections = model.detect(images, mode="mean")["boxes"].numpy()[0].reshape(3, 2, 4)
    for i in range(3):
        for j in range(2):
            b_y, b_x, h, w = box[i, j]
            cy, cx, hh, ww = 12 * (i + b_y), 12 * (j + b_x), 48 * h, 48 * w
            np.testing.assert_allclose(detections[i, j],
                                       [cy - hh / 2, cx - ww / 2, cy + hh / 2, cx + ww / 2],
                                       rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,words", [((2, 48, 48, 1), "3 (RGB) channels"),
                                         ((48, 48, 3), "expected [batch"),
                                         ((1, 8, 48, 3), "under one 12-px cell")])
def test_bad_image_shapes_are_named(model, shape, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        model.detect(tf.zeros(shape))


def test_nan_input_is_an_error_not_a_nan_loss(model):
    images = np.zeros((2, 48, 48, 3), np.float32)
    images[0, 3, 3, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        model.compute_loss(tf.constant(images), 0)


def test_xla_compiled_detections_equal_the_graph_ones(model):
    """evaluation.detect_batches(xla=True) is the same computation, fused (§1.12).

    96×108: a non-square grid on the windowed renderer (images over 84 px).
    """
    from spair_tf import evaluation

    images = np.random.default_rng(7).integers(0, 256, (3, 96, 108, 3), dtype=np.uint8)
    graph = evaluation.detect_batches(model, images, batch_size=3, mode="mean", xla=False)
    fused = evaluation.detect_batches(model, images, batch_size=3, mode="mean", xla=True)
    np.testing.assert_array_equal(graph[2], fused[2])                      # counts
    for per_image_graph, per_image_fused in zip(graph[:2], fused[:2]):
        for a, b in zip(per_image_graph, per_image_fused):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_a_model_checkpoint_restores_every_weight(tmp_path):
    """Every SPAIR variable is reachable from the model in the checkpoint's object graph
    (evaluate and export restore the model without the optimizer)."""
    import keras

    tf.keras.utils.set_random_seed(1)
    trained = SPAIR(SpairConfig())
    trained.build((None, 48, 48, 3))
    optimizer = keras.optimizers.Adam()
    optimizer.build(trained.trainable_variables)
    for v in trained.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=(len(v.path), 3)))
    path = tf.train.Checkpoint(model=trained, optimizer=optimizer).save(str(tmp_path / "ck"))
    tf.keras.utils.set_random_seed(2)
    fresh = SPAIR(SpairConfig())
    fresh.build((None, 48, 48, 3))
    tf.train.Checkpoint(model=fresh).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    assert len(fresh.trainable_variables) == len(trained.trainable_variables)
    for a, b in zip(trained.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def _parse_flagfiles(paths):
    """(SpairConfig, data configs) each flagfile in `paths` gives, as spair_tf.train parses it."""
    import os

    from absl import flags

    from spair_tf import cli, flags_util

    def parsed(path):
        values = flags.FlagValues()
        flags_util.define_flags(SpairConfig, flag_values=values)
        cli.define_data_flags(values)
        values(["prog", f"--flagfile={path}"], known_only=True)
        return flags_util.config_from_flags(SpairConfig, flag_values=values), \
            cli.data_configs(values)

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    os.chdir(repo)  # flagfiles name their parents relative to the repository
    try:
        return [parsed(p) for p in paths]
    finally:
        os.chdir(cwd)


def test_the_july2018_flagfiles_are_their_parents_plus_the_fig2_runs_variant():
    """configs/*_july2018.flags = the parent flagfile + the four fields of SPAIR_SPEC §6."""
    import dataclasses
    import glob
    import os

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = sorted(os.path.relpath(p, repo)
                   for p in glob.glob(os.path.join(repo, "configs", "*_july2018.flags")))
    assert paths
    parsed = _parse_flagfiles(paths)
    parents = _parse_flagfiles([p.replace("_july2018", "") for p in paths])
    for path, (model, data), (parent_model, parent_data) in zip(paths, parsed, parents):
        assert model == dataclasses.replace(parent_model, **FIG2_RUNS), path
        assert data == parent_data, path


def test_backgrounds_of_the_fig3_and_fig7_flagfiles():
    """Fig. 3's runs rendered on black, Fig. 7's learned a solid colour (BUILD_NOTES.md,
    "Experiment 2's background"); the ablation is Experiment 2's 11–15 flagfile otherwise."""
    import dataclasses

    ranges = ("1-5", "6-10", "11-15")
    paths = [f"configs/experiment2_{r}{suffix}.flags"
             for r in ranges for suffix in ("", "_original_digits")]
    for path, (model, _) in zip(paths, _parse_flagfiles(paths)):
        assert model.background == "fixed", path
    (ablation, ablation_data), (parent, parent_data) = _parse_flagfiles(
        ["configs/ablation_no_lateral.flags", "configs/experiment2_11-15.flags"])
    assert ablation == dataclasses.replace(parent, lateral=False, background="learn_solid")
    assert ablation_data == parent_data
