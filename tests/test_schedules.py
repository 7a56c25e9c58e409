"""Tests for spair_tf.schedules (SPAIR_SPEC §1.3, §1.10, §1.11, §4.2) against the spec's numbers."""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from spair_tf import schedules


def _np_s(t):
    return (1e6 - 0.0125) * 0.1 ** (t / 1000.0) + 0.0125


@pytest.mark.parametrize("t", [0, 500, 1000, 6000, 10000, 12000, 50000, 300000])
def test_count_prior_schedule_matches_formula(t):
    np.testing.assert_allclose(float(schedules.count_prior_s(t)), _np_s(t), rtol=1e-5)
    np.testing.assert_allclose(float(schedules.count_prior_log_odds(t)),
                               math.log(_np_s(t) + 1e-6), rtol=1e-5, atol=1e-6)


def test_count_prior_q_matches_the_spec_numbers():
    def q(t):
        return float(tf.sigmoid(schedules.count_prior_log_odds(t)))

    # SPAIR_SPEC §1.10: q ≈ 1 (no penalty) at the start, 0.50 at t ≈ 6000, 0.0123 from t ≈ 10k on.
    assert float(schedules.count_prior_s(0)) == pytest.approx(1e6)
    assert 1.0 - q(0) == pytest.approx(1e-6, rel=0.05)
    assert q(6000) == pytest.approx(0.50, abs=0.01)
    assert q(10000) == pytest.approx(0.0123, abs=2e-4)
    assert q(300000) == pytest.approx(0.0125 / 1.0125, rel=1e-4)


def test_count_prior_schedule_takes_other_searched_settings():
    # SPAIR_SPEC §1.10: final s ∈ {0.1, 0.05, 0.025, 0.0125}, decay steps ∈ {1000..4000}.
    t = 2500
    value = schedules.count_prior_s(t, final=0.05, decay_steps=3000)
    np.testing.assert_allclose(float(value), (1e6 - 0.05) * 0.1 ** (t / 3000) + 0.05, rtol=1e-5)


def test_schedules_accept_tensor_steps_inside_tf_function():
    step = tf.Variable(6000, dtype=tf.int64)

    @tf.function
    def values():
        return (schedules.count_prior_log_odds(step), schedules.gradient_noise_std(step),
                schedules.air_pres_prior_log_odds(step), schedules.training_wheels(step))

    log_odds, noise_std, air_log_odds, wheels = values()
    np.testing.assert_allclose(float(log_odds), math.log(_np_s(6000) + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(float(noise_std), 0.001 * 0.1 ** 6, rtol=1e-5)
    np.testing.assert_allclose(float(air_log_odds),
                               math.log((1e4 - 1e-9) * 0.1 ** 2 + 1e-9 + 1e-6), rtol=1e-6)
    assert not bool(wheels)
    step.assign(10)
    assert bool(values()[3])


def test_schedules_reject_bad_decay_arguments():
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.count_prior_s(0, decay_steps=0)
    with pytest.raises(ValueError, match="decay_rate"):
        schedules.count_prior_s(0, decay_rate=1.5)


def test_training_wheels_are_on_before_step_1000_only():
    on = [bool(schedules.training_wheels(t)) for t in (0, 1, 999, 999.5, 1000, 1001, 50000)]
    assert on == [True, True, True, True, False, False, False]
    assert bool(schedules.training_wheels(199, until_step=200))
    assert not bool(schedules.training_wheels(200, until_step=200))


@pytest.mark.parametrize("t,gradient_flows", [(0, False), (999, False), (1000, True), (20000, True)])
def test_with_training_wheels_cuts_gradient_but_keeps_value(t, gradient_flows):
    rng = np.random.default_rng(0)
    v = tf.Variable(rng.normal(size=(3, 4)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        x = 3.0 * v + 1.0
        y = schedules.with_training_wheels(x, tf.constant(t))
        loss = tf.reduce_sum(tf.square(y))
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    grad = tape.gradient(loss, v)
    expected = 6.0 * x.numpy() if gradient_flows else np.zeros((3, 4), np.float32)
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6)


def test_with_training_wheels_maps_over_structures():
    x = {"mean": tf.ones([2]), "logits": tf.zeros([3])}
    y = schedules.with_training_wheels(x, 0)
    assert set(y) == {"mean", "logits"}
    np.testing.assert_array_equal(y["mean"].numpy(), np.ones(2))


@pytest.mark.parametrize("t", [0, 1000, 2500, 10000])
def test_gradient_noise_std_matches_spec(t):
    np.testing.assert_allclose(float(schedules.gradient_noise_std(t)), 0.001 * 0.1 ** (t / 1000),
                               rtol=1e-5)


def test_add_gradient_noise_is_scaled_truncated_normal():
    t = 1000  # σ = 1e-4
    grads = [tf.zeros([400, 500]), None, tf.fill([3], 5.0)]
    noisy = schedules.add_gradient_noise(grads, t, seed=1)
    assert noisy[1] is None and len(noisy) == 3
    standardised = noisy[0].numpy().ravel() / 1e-4
    assert np.all(np.abs(standardised) <= 2.0 + 1e-3)  # truncated at two standard deviations
    reference = scipy.stats.truncnorm(-2.0, 2.0)
    assert standardised.std() == pytest.approx(reference.std(), rel=0.01)
    assert abs(standardised.mean()) < 0.01
    # The whole distribution, not only its moments (Kolmogorov–Smirnov against scipy's).
    assert scipy.stats.kstest(standardised[::20], reference.cdf).pvalue > 1e-3
    np.testing.assert_allclose(noisy[2].numpy(), 5.0, atol=2.1e-4)
    assert not np.allclose(noisy[2].numpy(), 5.0, atol=0, rtol=0)


def test_truncated_normal_quantile_matches_scipy_over_the_truncated_range():
    """The noise's inverse CDF (§1.11) against scipy's ndtri, in float32, over [Φ(−2), Φ(2)]."""
    lo, hi = scipy.special.ndtr(-2.0), scipy.special.ndtr(2.0)
    u = np.linspace(lo, hi, 200_001).astype(np.float32)
    got = schedules.truncated_normal_quantile(tf.constant(u)).numpy()
    want = scipy.special.ndtri(u.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)
    # Odd about u = 1/2 and reaching ±2 at the ends.
    assert got[0] == pytest.approx(-2.0, abs=1e-5) and got[-1] == pytest.approx(2.0, abs=1e-5)
    np.testing.assert_allclose(got[::-1], -got, atol=2e-6)


def test_add_gradient_noise_seeded_is_deterministic_per_step():
    grads = [tf.zeros([1000])]
    a = schedules.add_gradient_noise(grads, 5, seed=7)[0].numpy()
    b = schedules.add_gradient_noise(grads, 5, seed=7)[0].numpy()
    c = schedules.add_gradient_noise(grads, 6, seed=7)[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a / a.std(), c / c.std(), atol=0.1)  # a new draw at every step
    # Unseeded noise also works and is not all zero.
    d = schedules.add_gradient_noise(grads, 5)[0].numpy()
    assert np.any(d != 0.0)


def test_add_gradient_noise_densifies_indexed_slices():
    slices = tf.IndexedSlices(values=tf.ones([2, 3]), indices=tf.constant([0, 2]),
                              dense_shape=tf.constant([4, 3]))
    noisy = schedules.add_gradient_noise([slices], 0, seed=3)[0].numpy()
    assert noisy.shape == (4, 3)
    np.testing.assert_allclose(noisy[[0, 2]], 1.0, atol=2.1e-3)
    np.testing.assert_allclose(noisy[[1, 3]], 0.0, atol=2.1e-3)


@pytest.mark.parametrize("t", [0, 3000, 15000, 30000, 100000])
def test_air_pres_prior_log_odds_matches_spec(t):
    expected = math.log((1e4 - 1e-9) * 0.1 ** (t / 3000) + 1e-9 + 1e-6)
    np.testing.assert_allclose(float(schedules.air_pres_prior_log_odds(t)), expected, rtol=1e-5)
    if t == 0:
        assert scipy.special.expit(expected) == pytest.approx(1.0, abs=2e-4)
