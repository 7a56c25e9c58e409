"""Tests for spair_tf.latents (SPAIR_SPEC §1.3, §1.9): each against numpy / scipy references."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from spair_tf import latents


def _np_sigmoid(x):
    return scipy.special.expit(x)


def _np_clip(x):
    return np.clip(x, -10.0, 10.0)


EXTREMES = np.array([-1e6, -1e3, -50.0, -10.5, -10.0, -3.0, 0.0, 2.5, 10.0, 11.0, 1e3, 1e6],
                    np.float32)


def test_clip_logits_clips_to_plus_minus_ten():
    out = latents.clip_logits(EXTREMES).numpy()
    np.testing.assert_array_equal(out, np.clip(EXTREMES, -10.0, 10.0))
    assert latents.LOGIT_CLIP == 10.0


def test_std_from_raw_is_two_sigmoid_of_clipped_raw_and_in_open_0_2():
    raw = np.concatenate([EXTREMES, np.random.default_rng(0).normal(0, 5, 1000).astype(np.float32)])
    std = latents.std_from_raw(raw).numpy()
    np.testing.assert_allclose(std, 2.0 * _np_sigmoid(_np_clip(raw.astype(np.float64))),
                               rtol=1e-6)
    assert np.all(std > 0.0) and np.all(std < 2.0)


def test_std_from_raw_exp_is_exp_of_clipped_raw():
    """The Fig. 2–3 runs' std = exp(log-std) (SPAIR_SPEC §6), with our ±10 overflow guard."""
    raw = np.concatenate([EXTREMES, np.random.default_rng(0).normal(0, 5, 1000).astype(np.float32)])
    std = latents.std_from_raw(raw, "exp").numpy()
    np.testing.assert_allclose(std, np.exp(_np_clip(raw.astype(np.float64))), rtol=1e-6)
    with pytest.raises(ValueError, match=r"transform='softplus'"):
        latents.std_from_raw(raw, "softplus")


def test_normal_has_mean_and_std_from_raw():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 4)).astype(np.float32)
    raw = rng.normal(0, 4, size=(3, 4)).astype(np.float32)
    dist = latents.normal(mean, raw)
    np.testing.assert_allclose(dist.loc.numpy(), mean)
    np.testing.assert_allclose(dist.scale.numpy(), 2.0 * _np_sigmoid(_np_clip(raw)), rtol=1e-6)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        dist.log_prob(x).numpy(),
        scipy.stats.norm.logpdf(x, mean, 2.0 * _np_sigmoid(_np_clip(raw))), rtol=1e-5, atol=1e-5)


def test_reparameterise_is_mean_plus_std_eps_with_pathwise_gradients():
    rng = np.random.default_rng(2)
    mean = tf.constant(rng.normal(size=(5,)), tf.float32)
    std = tf.constant(rng.uniform(0.1, 2.0, size=(5,)), tf.float32)
    eps = rng.normal(size=(5,)).astype(np.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([mean, std])
        sample = latents.reparameterise(mean, std, eps)
        total = tf.reduce_sum(sample)
    np.testing.assert_allclose(sample.numpy(), mean.numpy() + std.numpy() * eps, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, mean).numpy(), np.ones(5))
    np.testing.assert_allclose(tape.gradient(total, std).numpy(), eps, rtol=1e-6)


def test_squash_where_formula_order_and_ranges():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 6, size=(2, 7, 4)).astype(np.float32)
    z[0, :4, :] = np.array([[-1e6], [1e6], [-10.0], [10.0]], np.float32)  # extremes, every entry
    b_y, b_x, h, w = (v.numpy() for v in latents.squash_where(z))
    zc = _np_clip(z.astype(np.float64))
    np.testing.assert_allclose(b_y, 2 * _np_sigmoid(zc[..., 0]) - 0.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b_x, 2 * _np_sigmoid(zc[..., 1]) - 0.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h, _np_sigmoid(zc[..., 2]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(w, _np_sigmoid(zc[..., 3]), rtol=1e-6, atol=1e-7)
    for centre in (b_y, b_x):
        assert centre.shape == (2, 7)
        assert np.all(centre > -0.5) and np.all(centre < 1.5)
    for size in (h, w):
        assert np.all(size > 0.0) and np.all(size < 1.0)


def test_squash_where_rejects_wrong_last_axis():
    with pytest.raises(ValueError, match="size 4"):
        latents.squash_where(tf.zeros([3, 5]))


def test_squash_depth_formula_and_range():
    z = np.concatenate([EXTREMES, np.random.default_rng(4).normal(0, 6, 200).astype(np.float32)])
    depth = latents.squash_depth(z).numpy()
    np.testing.assert_allclose(depth, 4 * _np_sigmoid(_np_clip(z.astype(np.float64))), rtol=1e-6)
    assert np.all(depth > 0.0) and np.all(depth < 4.0)


def test_pres_probability_is_sigmoid_of_clipped_logit():
    np.testing.assert_allclose(latents.pres_probability(EXTREMES).numpy(),
                               _np_sigmoid(_np_clip(EXTREMES.astype(np.float64))), rtol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_relaxed_pres_matches_binary_concrete_formula(temperature):
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 8, size=(6, 50)).astype(np.float32)
    u = rng.uniform(1e-4, 1 - 1e-4, size=(6, 50)).astype(np.float32)
    value = latents.relaxed_pres(logits, u, temperature=temperature).numpy()
    u64 = u.astype(np.float64)
    pre = (_np_clip(logits.astype(np.float64)) + np.log(u64) - np.log1p(-u64)) / temperature
    np.testing.assert_allclose(value, _np_sigmoid(pre), rtol=1e-4, atol=1e-6)
    hard = latents.relaxed_pres(logits, u, temperature=temperature, hard=True).numpy()
    assert set(np.unique(hard)) <= {0.0, 1.0}
    decided = np.abs(pre) > 1e-3  # away from the rounding tie at sigmoid(pre) = 0.5
    np.testing.assert_array_equal(hard[decided], (pre[decided] > 0).astype(np.float32))


def test_relaxed_pres_is_finite_at_noise_endpoints():
    logits = tf.constant([-10.0, 0.0, 10.0, 3.0], tf.float32)
    for u, expected in ((0.0, 0.0), (1.0, 1.0)):
        noise = tf.fill([4], u)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = latents.relaxed_pres(logits, noise)
        grad = tape.gradient(value, logits)
        assert np.all(np.isfinite(value.numpy())) and np.all(np.isfinite(grad.numpy()))
        np.testing.assert_allclose(value.numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(latents.relaxed_pres(logits, noise, hard=True).numpy(),
                                      np.full(4, expected, np.float32))


def test_relaxed_pres_frequency_of_ones_matches_beta():
    # A hard Concrete sample at τ = 1 is Bernoulli(β): P(σ(ℓ + logistic) > 1/2) = σ(ℓ).
    rng = np.random.default_rng(6)
    logits = np.array([-3.0, -1.0, 0.0, 0.7, 2.0], np.float32)
    u = rng.uniform(size=(40000, 5)).astype(np.float32)
    hard = latents.relaxed_pres(np.broadcast_to(logits, u.shape), u, hard=True).numpy()
    beta = _np_sigmoid(logits.astype(np.float64))
    se = np.sqrt(beta * (1 - beta) / u.shape[0])
    assert np.all(np.abs(hard.mean(0) - beta) < 4 * se)


def test_relaxed_pres_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        latents.relaxed_pres(tf.zeros([2]), tf.fill([2], 0.5), temperature=0.0)


def _np_normal_kl(qm, qs, pm, ps):
    return np.log(ps / qs) + (qs ** 2 + (qm - pm) ** 2) / (2 * ps ** 2) - 0.5


def test_normal_kl_matches_closed_form():
    rng = np.random.default_rng(7)
    qm, pm = rng.normal(0, 2, size=(2, 100))
    qs, ps = rng.uniform(0.05, 2.0, size=(2, 100))
    for dtype in (np.float32, np.float64):
        kl = latents.normal_kl(qm.astype(dtype), qs.astype(dtype), pm.astype(dtype),
                               ps.astype(dtype)).numpy()
        assert kl.dtype == dtype
        np.testing.assert_allclose(kl, _np_normal_kl(qm, qs, pm, ps), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(latents.normal_kl(qm, qs, qm, qs).numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("qm,qs,pm,ps", [
    (0.3, 0.7, 0.0, 1.0),
    (-1.0, 0.2, math.log(0.1 / 0.9), 0.5),
    (2.0, 1.8, 0.5, 0.6),
])
def test_normal_kl_matches_monte_carlo(qm, qs, pm, ps):
    x = np.random.default_rng(8).normal(qm, qs, size=400_000)
    log_ratio = scipy.stats.norm.logpdf(x, qm, qs) - scipy.stats.norm.logpdf(x, pm, ps)
    estimate, se = log_ratio.mean(), log_ratio.std() / np.sqrt(x.size)
    kl = float(latents.normal_kl(tf.constant(qm, tf.float64), qs, pm, ps))
    assert abs(kl - estimate) < 4 * se + 1e-6


def _np_bernoulli_kl(b, p):
    return b * np.log(b / p) + (1 - b) * np.log((1 - b) / (1 - p))


def test_bernoulli_kl_matches_formula_and_is_zero_at_equality():
    rng = np.random.default_rng(9)
    beta, pi = rng.uniform(1e-4, 1 - 1e-4, size=(2, 500))
    np.testing.assert_allclose(latents.bernoulli_kl(beta, pi).numpy(), _np_bernoulli_kl(beta, pi),
                               rtol=1e-9, atol=1e-12)
    kl32 = latents.bernoulli_kl(beta.astype(np.float32), pi.astype(np.float32)).numpy()
    np.testing.assert_allclose(kl32, _np_bernoulli_kl(beta, pi), rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(latents.bernoulli_kl(beta, beta).numpy(), 0.0, atol=1e-12)


def test_bernoulli_kl_is_finite_at_degenerate_probabilities():
    beta = tf.constant([0.0, 1.0, 0.3, 0.3, 0.0, 1.0], tf.float32)
    pi = tf.constant([0.2, 0.2, 0.0, 1.0, 0.0, 1.0], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(beta)
        kl = latents.bernoulli_kl(beta, pi)
    assert np.all(np.isfinite(kl.numpy()))
    assert np.all(np.isfinite(tape.gradient(kl, beta).numpy()))
    # β ∈ {0, 1}: the limits −log(1 − π) and −log π.
    np.testing.assert_allclose(kl.numpy()[:2], [-np.log(0.8), -np.log(0.2)], rtol=1e-6)
    np.testing.assert_allclose(kl.numpy()[4:], [0.0, 0.0], atol=1e-6)


def test_priors_defaults_are_the_spec_values():
    priors = latents.Priors()
    np.testing.assert_allclose(priors.where_mean, [0.0, 0.0, -2.1972, -2.1972], atol=1e-4)
    assert priors.where_std == (1.0, 1.0, 0.5, 0.5)
    assert (priors.depth_mean, priors.depth_std) == (0.0, 1.0)
    assert (priors.what_mean, priors.what_std) == (0.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        priors.depth_std = 2.0


def test_priors_validate_their_arguments():
    with pytest.raises(ValueError, match="4 entries"):
        latents.Priors(where_mean=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="std"):
        latents.Priors(what_std=0.0)
