"""Tests of the AIR / DAIR baselines (SPAIR_SPEC §4.2, §4.3).

Each property is checked against an independent reference: numpy closed forms for the KLs
and the loss, a numpy loop for the stopping rule, array slicing for the spatial transformer
and its inverse, a Keras LSTMCell for the recurrent core.
"""

import dataclasses
import math

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from baselines.air import AIR, DAIR, AirConfig, concrete_log_density, update_stopping
from spair_tf import latents

# Small networks keep the tests fast; the maths does not depend on the layer sizes.
SMALL = dict(lstm_units=32, output_hidden_units=(16,), encoder_hidden_units=(32, 16),
             decoder_hidden_units=(16, 32), dair_hidden_units=(32, 32, 32, 32),
             z_what_size=4, glimpse_size=6)


def small_config(**overrides):
    return AirConfig(**{**SMALL, **overrides})


def random_images(shape, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(size=shape), tf.float32)


def set_where_outputs(model, bias, zero_columns):
    """Makes the where network output `bias` in the given columns, whatever the core state."""
    last = model.where_network.layers[-1]
    kernel, old_bias = (w.numpy() for w in last.weights)
    kernel[:, zero_columns] = 0.0
    new_bias = old_bias.copy()
    new_bias[zero_columns] = np.asarray(bias, np.float32)[zero_columns]
    last.set_weights([kernel, new_bias])


def logit(p):
    return math.log(p / (1.0 - p))


# ---------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize("field, value", [
    ("model", "yolo"),
    ("fixed_steps", 0),
    ("max_steps", 0),
    ("scale_prior_std", 0.0),
    ("shift_prior_std", -1.0),
    ("what_prior_std", 0.0),
    ("temperature", 0.0),
    ("glimpse_size", 1),
    ("stopping_threshold", 1.5),
    ("pres_kl", "reinforce"),
    ("where_heads", "tree"),
    ("head_hidden_units", 0),
    ("decoder_noise_std", -0.1),
    ("decoder_noise_std", float("nan")),
])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        AirConfig(**{field: value})


def test_bad_image_size_is_refused():
    with pytest.raises(ValueError, match="image size"):
        AIR(small_config(), image_shape=(1, 48, 3))
    with pytest.raises(ValueError, match="image_shape"):
        AIR(small_config(), image_shape=(48, 48))
    with pytest.raises(TypeError, match="AirConfig"):
        AIR({"model": "air"}, image_shape=(48, 48, 3))
    model = AIR(small_config(), image_shape=(20, 20, 3))
    with pytest.raises(ValueError, match="image_shape"):
        model.detect(tf.zeros((2, 24, 20, 3)))
    with pytest.raises(ValueError, match="mode"):
        model.detect(tf.zeros((2, 20, 20, 3)), mode="sample")


# ---------------------------------------------------------------------------------------------
# Shapes of the shared protocol


@pytest.mark.parametrize("model_name", ["air", "dair"])
@pytest.mark.parametrize("fixed_steps", [3, None])
def test_protocol_shapes(model_name, fixed_steps):
    config = small_config(model=model_name, fixed_steps=fixed_steps, max_steps=4)
    steps = fixed_steps or 4
    model = AIR(config, image_shape=(20, 24, 3), seed=1)
    images = random_images((5, 20, 24, 3))
    loss, terms = model.compute_loss(images, tf.constant(10, tf.int64))
    assert loss.shape == () and np.isfinite(loss.numpy())
    for name in ("reconstruction", "kl_where", "kl_what", "kl_pres"):
        assert terms[name].shape == () and np.isfinite(terms[name].numpy()), name
    for mode in ("mean", "paper"):
        found = model.detect(images, mode=mode)
        assert found["boxes"].shape == (5, steps, 4) and found["boxes"].dtype == tf.float32
        assert found["scores"].shape == (5, steps)
        assert found["valid"].shape == (5, steps) and found["valid"].dtype == tf.bool
        assert found["counts"].shape == (5,) and found["counts"].dtype == tf.int32
        assert found["reconstruction"].shape == (5, 20, 24, 3)
        recon = found["reconstruction"].numpy()
        assert recon.min() >= 0.0 and recon.max() <= 1.0
        np.testing.assert_array_equal(found["counts"].numpy(),
                                      found["valid"].numpy().sum(axis=1))
        if fixed_steps is not None:
            assert found["valid"].numpy().all()
            np.testing.assert_array_equal(found["counts"].numpy(), [fixed_steps] * 5)
    if fixed_steps is not None:
        assert terms["kl_pres"].numpy() == 0.0


def test_dair_factory_and_parameter_count():
    dair = DAIR(small_config(), image_shape=(20, 20, 3))
    assert dair.config.model == "dair"
    # The DAIR core is four ReLU layers of 32 and a linear output of 32 (lstm_units).
    kernels = [w.shape for w in dair.core.weights if len(w.shape) == 2]
    assert kernels == [(1200, 32), (32, 32), (32, 32), (32, 32), (32, 32)]


# ---------------------------------------------------------------------------------------------
# The spatial transformer and its inverse (through the shared sampler)


def test_glimpse_and_inverse_transform_put_the_object_back_where_it_came_from():
    # H = 33, W = 41, glimpse 9×9. With h = 8/32 and w = 8/40 the align-corners transform
    # samples exactly the pixel rows 10..18 and columns 25..33 (no interpolation).
    height, width, g = 33, 41, 9
    h, w = 8 / 32, 8 / 40
    top, left = 10, 25
    centre_y = (top + 4) / (height - 1)
    centre_x = (left + 4) / (width - 1)
    y, x = 2 * centre_y - 1, 2 * centre_x - 1
    config = small_config(fixed_steps=1, glimpse_size=g)
    model = AIR(config, image_shape=(height, width, 3), seed=0)
    # Outputs: scale mean (w, h), scale log-std, shift mean (x, y), shift log-std, pres.
    bias = [logit(w), logit(h), 0, 0, math.atanh(x), math.atanh(y), 0, 0, 0]
    set_where_outputs(model, bias, zero_columns=[0, 1, 4, 5])
    images = random_images((2, height, width, 3), seed=3)

    inferred = model.infer(images, mode="mean", keep_objects=True)
    expected_glimpse = images.numpy()[:, top:top + g, left:left + g]
    np.testing.assert_allclose(inferred["glimpses"][:, 0].numpy(), expected_glimpse, atol=1e-4)

    expected_placed = np.zeros((2, height, width, 3), np.float32)
    expected_placed[:, top:top + g, left:left + g] = inferred["objects"][:, 0].numpy()
    np.testing.assert_allclose(inferred["placed"][:, 0].numpy(), expected_placed, atol=1e-4)

    # Detection box, spec §4.2: width = w·W, height = h·H, centre = size·(shift + 1)/2.
    found = model.detect(images)
    cy, cx = height * (y + 1) / 2, width * (x + 1) / 2
    expected_box = [cy - h * height / 2, cx - w * width / 2,
                    cy + h * height / 2, cx + w * width / 2]
    np.testing.assert_allclose(found["boxes"][:, 0].numpy(), [expected_box] * 2, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The core: AIR's recurrence on the image, DAIR's MLP on the residual


def test_air_core_is_an_lstm_on_the_image():
    config = small_config(fixed_steps=3)
    model = AIR(config, image_shape=(12, 10, 3), seed=0)
    images = random_images((4, 12, 10, 3), seed=5)
    inferred = model.infer(images, mode="mean")
    reference = keras.layers.LSTMCell(config.lstm_units)
    reference.build((None, 12 * 10 * 3))
    reference.set_weights([model.core.kernel.numpy(), model.core.recurrent_kernel.numpy(),
                           model.core.bias.numpy()])
    flat = tf.reshape(images, (4, -1))
    state = [tf.zeros((4, config.lstm_units)), tf.zeros((4, config.lstm_units))]
    for t in range(3):
        hidden, state = reference(flat, state)
        outputs = model.where_network(hidden).numpy()
        np.testing.assert_allclose(inferred["scale_mean"][:, t].numpy(), outputs[:, 0:2],
                                   atol=1e-5)
        np.testing.assert_allclose(inferred["shift_mean"][:, t].numpy(), outputs[:, 4:6],
                                   atol=1e-5)


@pytest.mark.parametrize("fixed_steps", [3, None])
def test_dair_core_sees_image_minus_unclipped_canvas(fixed_steps):
    config = small_config(model="dair", fixed_steps=fixed_steps, max_steps=3)
    model = AIR(config, image_shape=(12, 10, 3), seed=0)
    images = random_images((4, 12, 10, 3), seed=6)
    noise = model.draw_noise(4)
    inferred = model.infer(images, mode="train", noise=noise, keep_objects=True)
    weights = (inferred["alive"] * inferred["z_pres"]).numpy()       # [B, T]
    placed = inferred["placed"].numpy()                              # [B, T, H, W, C]
    canvas = np.zeros_like(images.numpy())
    for t in range(3):
        residual = (images.numpy() - canvas).reshape(4, -1)
        outputs = model.where_network(model.core(residual)).numpy()
        np.testing.assert_allclose(inferred["scale_mean"][:, t].numpy(), outputs[:, 0:2],
                                   atol=1e-5)
        np.testing.assert_allclose(inferred["pres_logits"][:, t].numpy(), outputs[:, 8],
                                   atol=1e-5)
        canvas = canvas + weights[:, t, None, None, None] * placed[:, t]
    np.testing.assert_allclose(inferred["canvas"].numpy(), canvas, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Stopping (adaptive mode)


def numpy_alive(z_pres, threshold=0.99):
    """Reference: a step is alive iff the running Σ(1 − z_pres) up to it is < threshold."""
    alive = np.zeros_like(z_pres)
    for b in range(z_pres.shape[0]):
        total = 0.0
        for t in range(z_pres.shape[1]):
            total += 1.0 - z_pres[b, t]
            alive[b, t] = float(total < threshold)
    return alive


def test_update_stopping_matches_the_running_sum_rule():
    rng = np.random.default_rng(0)
    z_pres = rng.uniform(size=(200, 5)).astype(np.float32) ** 0.2
    stopping_sum = tf.zeros(200)
    alive = []
    for t in range(5):
        stopping_sum, alive_t = update_stopping(stopping_sum, tf.constant(z_pres[:, t]), 0.99)
        alive.append(alive_t.numpy())
    alive = np.stack(alive, axis=1)
    np.testing.assert_array_equal(alive, numpy_alive(z_pres))
    # Once dead, always dead; and both outcomes occur in this sample.
    assert (np.diff(alive, axis=1) <= 0).all()
    assert 0 < alive.sum() < alive.size


# z_pres rows for a pres logit of 0 and τ = 1, where z_pres = u exactly.
CONSTRUCTED_U = np.array([
    [0.9, 0.9, 0.9, 0.9],      # Σ(1 − z) = 0.4 at the end: all four alive
    [0.5, 0.4, 0.99, 0.99],    # 0.5, then 1.1 ≥ 0.99: stops at step 2; steps 3, 4 masked
    [0.005, 0.99, 0.99, 0.99],  # 0.995 at once: nothing alive
    [0.7, 0.7, 0.7, 0.7],      # 0.3, 0.6, 0.9, 1.2: three alive
], np.float32)


@pytest.mark.parametrize("model_name", ["air", "dair"])
def test_stopping_masks_later_steps_on_constructed_logits(model_name):
    config = small_config(model=model_name, max_steps=4, pres_kl="bernoulli")
    model = AIR(config, image_shape=(12, 10, 3), seed=0)
    set_where_outputs(model, [0.0] * 9, zero_columns=[8])            # pres logit ≡ 0
    images = random_images((4, 12, 10, 3), seed=7)
    noise = dict(model.draw_noise(4), u_pres=tf.constant(CONSTRUCTED_U))
    step = 4500
    inferred = model.infer(images, mode="train", noise=noise, keep_objects=True)
    z_pres = inferred["z_pres"].numpy()
    np.testing.assert_allclose(z_pres, CONSTRUCTED_U, atol=1e-5)
    alive = numpy_alive(z_pres)
    np.testing.assert_array_equal(alive, [[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0],
                                          [1, 1, 1, 0]])
    np.testing.assert_array_equal(inferred["alive"].numpy(), alive)

    # The canvas holds only the alive steps.
    canvas = np.einsum("bt,bthwc->bhwc", alive * z_pres, inferred["placed"].numpy())
    np.testing.assert_allclose(inferred["canvas"].numpy(), canvas, atol=1e-5)

    # The KLs: Normal KLs of the alive steps; the pres KL of every step alive at its start.
    kls = model.kl_terms(inferred, step)
    alive_before = np.concatenate([np.ones((4, 1)), alive[:, :-1]], axis=1)
    prior = 1 / (1 + 1 / ((1e4 - 1e-9) * 0.1 ** (step / 3000) + 1e-9 + 1e-6))
    beta = 0.5
    pres_kl = beta * math.log(beta / prior) + (1 - beta) * math.log((1 - beta) / (1 - prior))
    np.testing.assert_allclose(kls["kl_pres"].numpy(), alive_before.sum(1) * pres_kl, rtol=1e-5)
    what_kl = numpy_normal_kl(inferred["what_mean"].numpy(), inferred["what_std"].numpy(),
                              0.0, 1.0).sum(-1)
    np.testing.assert_allclose(kls["kl_what"].numpy(), (alive * what_kl).sum(1), rtol=1e-5)

    # Hard samples (paper mode): z_pres = round(u), so the counts are the leading ones.
    paper = model.infer(images, mode="paper", noise=noise)
    np.testing.assert_array_equal(paper["z_pres"].numpy(), np.round(CONSTRUCTED_U))
    np.testing.assert_array_equal(paper["alive"].numpy().sum(1), [4, 0, 0, 4])


def test_mean_mode_switches_objects_on_by_probability():
    config = small_config(max_steps=3)
    model = AIR(config, image_shape=(12, 10, 3), seed=0)
    images = random_images((3, 12, 10, 3), seed=8)
    set_where_outputs(model, [0.0] * 8 + [0.3], zero_columns=[8])    # β = σ(0.3) > 0.5
    np.testing.assert_array_equal(model.detect(images)["counts"].numpy(), [3, 3, 3])
    set_where_outputs(model, [0.0] * 8 + [-0.3], zero_columns=[8])   # β < 0.5: stop at once
    found = model.detect(images)
    np.testing.assert_array_equal(found["counts"].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(found["reconstruction"].numpy(), 0.0)


# ---------------------------------------------------------------------------------------------
# The loss


def test_concrete_log_density_is_the_logistic_density():
    rng = np.random.default_rng(11)
    y = rng.normal(scale=8.0, size=1000)
    logits = rng.normal(scale=6.0, size=1000)
    for temperature in (0.5, 1.0, 2.0):
        got = concrete_log_density(tf.constant(y), tf.constant(logits), temperature).numpy()
        expected = scipy.stats.logistic.logpdf(y, logits / temperature, 1 / temperature)
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def numpy_normal_kl(q_mean, q_std, p_mean, p_std):
    return (np.log(p_std / q_std) + (q_std ** 2 + (q_mean - p_mean) ** 2) / (2 * p_std ** 2)
            - 0.5)


@pytest.mark.parametrize("model_name, fixed_steps, pres_kl, temperature, shared_scale", [
    ("air", None, "concrete", 1.0, False), ("air", None, "bernoulli", 1.0, False),
    ("dair", None, "concrete", 0.7, False), ("dair", None, "bernoulli", 1.0, True),
    ("air", 2, "concrete", 1.0, False), ("air", None, "concrete", 1.0, True)])
def test_loss_is_bce_plus_closed_form_kls(model_name, fixed_steps, pres_kl, temperature,
                                          shared_scale):
    config = small_config(model=model_name, fixed_steps=fixed_steps, max_steps=3,
                          scale_prior_mean=-2.197, scale_prior_std=0.2, shift_prior_std=2.0,
                          pres_kl=pres_kl, temperature=temperature, shared_scale=shared_scale)
    model = AIR(config, image_shape=(12, 10, 3), seed=2)
    images = random_images((6, 12, 10, 3), seed=9)
    noise = model.draw_noise(6)
    step = 7000
    loss, terms = model.compute_loss(images, tf.constant(step, tf.int64), noise=noise)
    inferred = {k: v.numpy() for k, v in model.infer(images, "train", noise).items()}

    x = images.numpy()
    r = np.clip(inferred["canvas"], 0, 1)
    bce = -(x * np.log(r + 1e-9) + (1 - x) * np.log(1 - r + 1e-9)).sum(axis=(1, 2, 3))
    alive = numpy_alive(inferred["z_pres"])
    if fixed_steps is not None:
        np.testing.assert_array_equal(inferred["z_pres"], 1.0)
        np.testing.assert_array_equal(alive, 1.0)
    if shared_scale:   # one scale s = w = h, one KL (the original aakhundov AIR)
        assert inferred["scale_mean"].shape == (6, 3, 1)
        np.testing.assert_array_equal(inferred["scale"][..., 0], inferred["scale"][..., 1])
    kl_scale = numpy_normal_kl(inferred["scale_mean"], inferred["scale_std"], -2.197, 0.2)
    kl_shift = numpy_normal_kl(inferred["shift_mean"], inferred["shift_std"], 0.0, 2.0)
    kl_what = numpy_normal_kl(inferred["what_mean"], inferred["what_std"], 0.0, 1.0)
    kl_normal = alive * (kl_scale.sum(-1) + kl_shift.sum(-1) + kl_what.sum(-1))  # [B, T]
    if fixed_steps is None:
        prior_log_odds = math.log((1e4 - 1e-9) * 0.1 ** (step / 3000) + 1e-9 + 1e-6)
        logits = np.clip(inferred["pres_logits"], -10, 10)
        if pres_kl == "bernoulli":
            pi = 1 / (1 + math.exp(-prior_log_odds))
            beta = 1 / (1 + np.exp(-logits))
            kl_pres = beta * np.log(beta / pi) + (1 - beta) * np.log((1 - beta) / (1 - pi))
        else:
            # The pre-sigmoid Concrete sample is Logistic(ℓ/τ, 1/τ) (Maddison et al., 2017).
            y = (logits + np.log(noise["u_pres"].numpy()) - np.log1p(-noise["u_pres"].numpy())
                 ) / temperature
            np.testing.assert_allclose(inferred["pres_pre"], y, rtol=1e-4, atol=1e-4)
            kl_pres = (scipy.stats.logistic.logpdf(y, logits / temperature, 1 / temperature)
                       - scipy.stats.logistic.logpdf(y, prior_log_odds / temperature,
                                                     1 / temperature))
        alive_before = np.concatenate([np.ones((6, 1)), alive[:, :-1]], axis=1)
        kl_pres = (alive_before * kl_pres).sum(1)
    else:
        kl_pres = np.zeros(6)
    expected = np.mean(bce + kl_normal.sum(1) + kl_pres)
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)
    if fixed_steps is None:
        # The relaxed z_pres is the project's binary Concrete sample (spair_tf.latents).
        np.testing.assert_allclose(
                inferred["z_pres"],
                latents.relaxed_pres(inferred["pres_logits"], noise["u_pres"], temperature),
                atol=1e-6)
    np.testing.assert_allclose(terms["reconstruction"].numpy(), bce.mean(), rtol=1e-5)
    np.testing.assert_allclose(terms["kl_pres"].numpy(), kl_pres.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
            terms["kl_where"].numpy(),
            (alive * (kl_scale.sum(-1) + kl_shift.sum(-1))).sum(1).mean(), rtol=1e-5)
    # The diagnostic box sizes: the sampled w·W_img and h·H_img, averaged over running steps.
    width_px = (alive * inferred["scale"][..., 0] * 10).sum() / alive.sum()
    height_px = (alive * inferred["scale"][..., 1] * 12).sum() / alive.sum()
    np.testing.assert_allclose(terms["box_width_px"].numpy(), width_px, rtol=1e-5)
    np.testing.assert_allclose(terms["box_height_px"].numpy(), height_px, rtol=1e-5)


@pytest.mark.parametrize("where_heads, decoder_noise_std", [("shared", 0.0), ("separate", 0.3)])
def test_compute_loss_in_tf_function_with_gradients_to_every_weight(where_heads,
                                                                    decoder_noise_std):
    config = small_config(max_steps=2, where_heads=where_heads,
                          decoder_noise_std=decoder_noise_std)
    model = AIR(config, image_shape=(8, 8, 3), seed=0)
    images = random_images((4, 8, 8, 3), seed=10)
    noise = model.draw_noise(4)

    @tf.function
    def loss_and_grads(images, step):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss(images, step, noise=noise)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = loss_and_grads(images, tf.constant(0, tf.int64))
    eager, _ = model.compute_loss(images, tf.constant(0, tf.int64), noise=noise)
    np.testing.assert_allclose(loss.numpy(), eager.numpy(), rtol=1e-5)
    assert len(grads) == len(model.trainable_variables) > 0
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None, variable.path
        assert np.isfinite(grad.numpy()).all(), variable.path


def test_grayscale_model_is_the_one_channel_model_on_the_first_channel():
    gray = AIR(small_config(grayscale=True, max_steps=2), image_shape=(12, 10, 3), seed=0)
    one_channel = AIR(small_config(max_steps=2), image_shape=(12, 10, 1), seed=0)
    one_channel.set_weights(gray.get_weights())
    single = random_images((4, 12, 10, 1), seed=12)
    images = tf.tile(single, [1, 1, 1, 3])                          # equal channels
    noise = gray.draw_noise(4)
    loss_gray, _ = gray.compute_loss(images, tf.constant(5000, tf.int64), noise=noise)
    loss_one, _ = one_channel.compute_loss(single, tf.constant(5000, tf.int64), noise=noise)
    np.testing.assert_allclose(loss_gray.numpy(), loss_one.numpy(), rtol=1e-6)
    found_gray, found_one = gray.detect(images), one_channel.detect(single)
    np.testing.assert_allclose(found_gray["boxes"].numpy(), found_one["boxes"].numpy(),
                               rtol=1e-6)
    assert found_gray["reconstruction"].shape == (4, 12, 10, 3)
    np.testing.assert_allclose(found_gray["reconstruction"].numpy(),
                               np.repeat(found_one["reconstruction"].numpy(), 3, axis=-1))


# ---------------------------------------------------------------------------------------------
# A short training on 1-digit 48×48 images lowers the loss


def test_short_training_on_one_digit_images_lowers_the_loss(tmp_path):
    from spair_tf import datasets

    data = datasets.load(datasets.experiment1(1, "train", n_images=256), cache_dir=str(tmp_path))
    images = tf.constant(data.images, tf.float32) / 255.0            # [256, 48, 48, 3]
    model = AIR(AirConfig(fixed_steps=1, glimpse_size=14, scale_prior_mean=-2.944,
                          scale_prior_std=0.2, shift_prior_std=1.0), (48, 48, 3), seed=0)
    optimizer = keras.optimizers.Adam(1e-4)
    held_out = images[:32]
    held_out_noise = model.draw_noise(32)

    @tf.function
    def train_step(batch, step):
        with tf.GradientTape() as tape:
            loss, _ = model.compute_loss(batch, step)
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 1.0)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    before, _ = model.compute_loss(held_out, tf.constant(0, tf.int64), noise=held_out_noise)
    for step in range(150):
        start = (step * 32) % 224 + 32
        train_step(images[start:start + 32], tf.constant(step, tf.int64))
    after, _ = model.compute_loss(held_out, tf.constant(150, tf.int64), noise=held_out_noise)
    assert after.numpy() < 0.8 * before.numpy(), (before.numpy(), after.numpy())


# ---------------------------------------------------------------------------------------------
# configs/air_multi_mnist.flags is the original aakhundov AIR setting (issue #5)


def _read_flagfile(path):
    """{name: value} of an absl flagfile; `--flag` → "true", `--noflag` → "false"."""
    values = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line.startswith("--"):
            continue
        name, _, value = line[2:].partition("=")
        if not _:
            name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
        values[name] = value
    return values


def test_air_multi_mnist_flags_are_the_original_setting():
    """AIR's own task as in aakhundov/tf-attend-infer-repeat (training.py, air_model.py).

    The grayscale likelihood matters: on RGB images with equal channels the BCE summed over
    the three channels is 3× the original's, which outweighs the per-step KLs so that every
    non-empty image kept all 3 steps (results/air/multi_mnist_concrete_progress.json).
    """
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "air_multi_mnist.flags"
    flags = _read_flagfile(path)
    assert flags["model"] == "air" and flags["dataset"] == "air_multi_mnist"
    assert flags.get("air_grayscale") == "true"          # one channel in the likelihood
    assert flags.get("air_shared_scale") == "true"       # one scale s for w and h
    assert int(flags["air_max_steps"]) == 3 and int(flags["air_glimpse_size"]) == 28
    assert flags.get("air_fixed_steps") in (None, "None")     # adaptive
    assert float(flags["air_scale_prior_mean"]) == -1.0
    assert float(flags["air_scale_prior_std"]) ** 2 == pytest.approx(0.05)
    assert float(flags["air_shift_prior_mean"]) == 0.0
    assert float(flags["air_shift_prior_std"]) == 1.0
    assert float(flags["air_stopping_threshold"]) == 0.99
    assert float(flags["air_temperature"]) == 1.0
    assert flags["air_pres_kl"] == "concrete"
    assert "air_pres_prior_log_odds" not in flags         # the annealed prior
    assert int(flags["batch_size"]) == 64 and float(flags["learning_rate"]) == 1e-4
    assert float(flags["clip_norm"]) == 1.0
    assert flags["air_where_heads"] == "separate"         # five 64-unit heads
    assert int(flags["air_head_hidden_units"]) == 64
    assert float(flags["air_decoder_noise_std"]) == 0.3   # vae_likelihood_std


def test_grayscale_reconstruction_term_counts_each_pixel_once():
    """With grayscale=True the BCE sums over H·W pixels of one channel, not H·W·3 (§4.2)."""
    config = small_config(max_steps=2, shared_scale=True)
    gray = AIR(dataclasses.replace(config, grayscale=True), image_shape=(12, 10, 3), seed=0)
    images = tf.tile(random_images((3, 12, 10, 1), seed=3), [1, 1, 1, 3])
    noise = gray.draw_noise(3)
    _, terms_gray = gray.compute_loss(images, tf.constant(0, tf.int64), noise=noise)
    inferred = gray.infer(images, mode="train", noise=noise)
    r = np.clip(inferred["canvas"].numpy(), 0.0, 1.0)               # [3, 12, 10, 1]
    x = images.numpy()[..., :1]
    bce_one = -(x * np.log(np.maximum(r, 1e-9))
                + (1 - x) * np.log(np.maximum(1 - r, 1e-9))).sum(axis=(1, 2, 3)).mean()
    np.testing.assert_allclose(terms_gray["reconstruction"].numpy(), bce_one, rtol=1e-5)
    assert inferred["canvas"].shape == (3, 12, 10, 1)               # one channel modelled


# ---------------------------------------------------------------------------------------------
# The original aakhundov AIR's where heads and decoder noise (where_heads, decoder_noise_std)


def test_separate_heads_are_five_one_hidden_layer_mlps():
    """Each output block is Dense(sizes[k]) ∘ ReLU ∘ Dense(64) of h, with its own weights."""
    from baselines.air import WHERE_SIZES, SeparateHeads

    heads = SeparateHeads(WHERE_SIZES, hidden_units=5)
    hidden = np.random.default_rng(4).normal(size=(6, 7)).astype(np.float32)
    out = heads(tf.constant(hidden)).numpy()                        # [6, 9]
    assert out.shape == (6, sum(WHERE_SIZES))
    expected, seen = [], set()
    for head, size in zip(heads.heads, WHERE_SIZES):
        w1, b1, w2, b2 = (w.numpy() for w in head.weights)
        assert w1.shape == (7, 5) and w2.shape == (5, size)
        seen.add(id(head.weights[0]))
        expected.append(np.maximum(hidden @ w1 + b1, 0.0) @ w2 + b2)
    assert len(seen) == len(WHERE_SIZES)                            # no sharing
    np.testing.assert_allclose(out, np.concatenate(expected, axis=1), rtol=1e-5, atol=1e-6)
    model = AIR(small_config(where_heads="separate", head_hidden_units=5), (8, 8, 3), seed=0)
    assert [tuple(w.shape) for w in model.where_network.weights][::4] == [(32, 5)] * 5


def test_decoder_noise_is_added_to_the_logits_in_sampled_passes_only():
    """objects = sigmoid(clip(decoder(z_what) + σ·ε)) in training; no noise in mean mode."""
    from baselines.air import LOGIT_CLIP

    noisy = AIR(small_config(max_steps=2, decoder_noise_std=0.3), (8, 8, 3), seed=0)
    clean = AIR(small_config(max_steps=2), (8, 8, 3), seed=0)
    clean.set_weights(noisy.get_weights())
    images = random_images((3, 8, 8, 3), seed=21)
    noise = noisy.draw_noise(3)
    assert noise["eps_object"].shape == (3, 2, 6 * 6 * 3)
    assert "eps_object" not in clean.draw_noise(3)
    inferred = noisy.infer(images, mode="train", noise=noise)
    logits = clean.object_decoder(tf.reshape(inferred["z_what"], (6, 4))).numpy()
    logits = logits.reshape(3, 2, -1) + 0.3 * noise["eps_object"].numpy()
    expected = 1.0 / (1.0 + np.exp(-np.clip(logits, -LOGIT_CLIP, LOGIT_CLIP)))
    np.testing.assert_allclose(inferred["objects"].numpy().reshape(3, 2, -1), expected,
                               rtol=1e-5, atol=1e-6)
    zero = {**noise, "eps_object": tf.zeros_like(noise["eps_object"])}
    np.testing.assert_allclose(noisy.infer(images, mode="train", noise=zero)["canvas"].numpy(),
                               clean.infer(images, mode="train", noise=noise)["canvas"].numpy(),
                               rtol=1e-6)
    assert not np.allclose(inferred["canvas"].numpy(),
                           clean.infer(images, mode="train", noise=noise)["canvas"].numpy())
    np.testing.assert_allclose(noisy.infer(images, mode="mean")["canvas"].numpy(),
                               clean.infer(images, mode="mean")["canvas"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("model_name, where_heads", [("air", "shared"), ("air", "separate"),
                                                     ("dair", "separate")])
def test_a_model_checkpoint_restores_every_weight(tmp_path, model_name, where_heads):
    """Every variable is reachable from the model in tf.train.Checkpoint's object graph.

    Trainer's checkpoint also holds the optimizer, whose variable list restores training
    either way; evaluate/export restore the model alone, so a layer the model does not
    track (a Keras list of layers did exactly that) would come back untrained.
    """
    config = small_config(model=model_name, max_steps=2, where_heads=where_heads)
    trained = AIR(config, (8, 8, 3), seed=0)
    optimizer = keras.optimizers.Adam()
    optimizer.build(trained.trainable_variables)
    for v in trained.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=(len(v.path), 3)))
    path = tf.train.Checkpoint(model=trained, optimizer=optimizer).save(str(tmp_path / "ck"))
    fresh = AIR(config, (8, 8, 3), seed=1)
    tf.train.Checkpoint(model=fresh).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    assert len(fresh.trainable_variables) == len(trained.trainable_variables)
    for a, b in zip(trained.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
