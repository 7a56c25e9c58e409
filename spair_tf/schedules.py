"""Schedules of the global step t: count prior, training wheels, gradient noise, AIR's prior.

SPAIR_SPEC §1.10 (count prior), §1.3 (training wheels), §1.11 (gradient noise), §4.2 (AIR's
z_pres prior). Plain functions of `t` (a Python number or a TF scalar, int or float), usable
inside `tf.function`; they return float32 (bool for `training_wheels`) tensors, evaluated in
float64 internally.

All decays are the paper-era code's continuous exponential schedule
value(t) = (initial − final)·decay_rate^(t / decay_steps) + final.
"""

import math

import tensorflow as tf


def _step(t, dtype=tf.float32):
    return tf.cast(t, dtype)


def _exponential(t, initial, final, decay_steps, decay_rate):
    """(initial − final)·decay_rate^(t/decay_steps) + final, evaluated in float64.

    float64 keeps e.g. s_6000 = 1e6·1e-6 + 0.0125 exact to ~1e-12 (float32 would lose ~1e-6 in
    the 1e6 − 0.0125 difference); the result stays float64 for the callers to finish in.
    """
    if not decay_steps > 0:
        raise ValueError(f"decay_steps must be > 0; got {decay_steps!r}.")
    if not 0.0 <= decay_rate <= 1.0:
        raise ValueError(f"decay_rate must be in [0, 1]; got {decay_rate!r}.")
    t = _step(t, tf.float64)
    decay = tf.pow(tf.constant(decay_rate, tf.float64), t / float(decay_steps))
    return (float(initial) - float(final)) * decay + float(final)


def count_prior_s(t, initial=1e6, final=0.0125, decay_steps=1000.0, decay_rate=0.1):
    """s_t = (initial − final)·decay_rate^(t/decay_steps) + final (SPAIR_SPEC §1.10).

    The count prior's q = s_t/(1 + s_t): ≈ 1 at t = 0 (no pressure on the count), 0.50 at
    t ≈ 6000, 0.0124 at t = 10000 and → 0.0123 after.
    """
    return tf.cast(_exponential(t, initial, final, decay_steps, decay_rate), tf.float32)


def count_prior_log_odds(t, initial=1e6, final=0.0125, decay_steps=1000.0, decay_rate=0.1):
    """The count prior's log-odds log(s_t + 1e-6) (SPAIR_SPEC §1.10); q = sigmoid of this."""
    s = _exponential(t, initial, final, decay_steps, decay_rate)
    return tf.cast(tf.math.log(s + 1e-6), tf.float32)


def training_wheels(t, until_step=1000):
    """True while t < until_step (SPAIR_SPEC §1.3: 1000 steps in the paper)."""
    return _step(t) < float(until_step)


def with_training_wheels(x, t, until_step=1000):
    """stop_gradient(x) while the training wheels are on (t < until_step), else x (SPAIR_SPEC §1.3).

    The value is x unchanged either way; only the gradient is cut. Applied to the box
    mean/std, depth mean/std and pres logits. `x` may be a tensor or a nested structure.
    """
    wheels_on = training_wheels(t, until_step)

    def apply(value):
        value = tf.convert_to_tensor(value)
        return tf.where(wheels_on, tf.stop_gradient(value), value)

    return tf.nest.map_structure(apply, x)


def gradient_noise_std(t, initial=0.001, decay_rate=0.1, decay_steps=1000):
    """σ_t = initial·decay_rate^(t/decay_steps) = 0.001·0.1^(t/1000) (SPAIR_SPEC §1.11)."""
    return tf.cast(_exponential(t, initial, 0.0, decay_steps, decay_rate), tf.float32)


def add_gradient_noise(grads, t, seed=None):
    """grad + truncated_normal(0, 1)·gradient_noise_std(t) for each gradient (SPAIR_SPEC §1.11).

    Applied after clipping by global norm. The noise is the standard normal truncated to
    [−2, 2] (TF's truncated_normal), drawn for each gradient by inverting the normal CDF on a
    uniform draw over [Φ(−2), Φ(2)] (`truncated_normal_quantile`): that distribution to
    float32 accuracy, with no rejection loop. All the draws run in one XLA computation
    (`_add_truncated_normal`).

    Args:
      grads: list of gradients (tensors, `tf.IndexedSlices`, or None; None stays None).
      t: the global step.
      seed: None draws from TF's global RNG; an int makes the noise a deterministic function
        of (seed, t), different at every step.

    Returns:
      A list of the same length.
    """
    present = [i for i, grad in enumerate(grads) if grad is not None]
    if not present:
        return list(grads)
    dense = [tf.convert_to_tensor(grads[i]) for i in present]  # densifies IndexedSlices
    if seed is None:
        step_seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64)
    else:
        step_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 0], tf.int64), tf.cast(t, tf.int64))
    noisy = list(grads)
    for i, grad in zip(present, _add_truncated_normal(dense, step_seed, gradient_noise_std(t))):
        noisy[i] = grad
    return noisy


@tf.function(jit_compile=True)
def _add_truncated_normal(grads, step_seed, std):
    """[g + std·z_g for g in grads], z_g ~ N(0, 1) truncated to [−2, 2], elementwise.

    Each gradient gets its own counter-based draw (seed folded with its index), so XLA
    fuses the uniform draw, the inverse CDF and the addition into one pass per gradient.
    One draw for all gradients split afterwards is ≈ 3× slower: XLA re-generates the whole
    draw for each slice. The generator is ThreeFry, as XLA's CPU Philox is two orders of
    magnitude slower here (BUILD_NOTES, "Benchmarks").
    """
    lo, hi = _normal_cdf(-TRUNCATION), _normal_cdf(TRUNCATION)
    noisy = []
    for index, grad in enumerate(grads):
        seed = tf.random.experimental.stateless_fold_in(step_seed, index)
        u = tf.random.stateless_uniform(grad.shape, seed, lo, hi, dtype=grad.dtype,
                                        alg="threefry")
        z = tf.clip_by_value(truncated_normal_quantile(u), -TRUNCATION, TRUNCATION)
        noisy.append(grad + z * tf.cast(std, grad.dtype))
    return noisy


TRUNCATION = 2.0  # gradient noise is truncated at two standard deviations (TF's convention)

# Φ⁻¹(u) = x·Q(w), x = 2u − 1, w = −log(1 − x²), for u in [Φ(−2), Φ(2)]: Q is the polynomial
# below in w − W_MAX/2 (a float64 least-squares fit to scipy's ndtri; scripts/
# fit_noise_quantile.py prints these numbers), W_MAX = −log(1 − (2Φ(2) − 1)²).
_QUANTILE_W_MAX = 2.419902881891104
_QUANTILE_COEFFICIENTS = (  # lowest degree first
    1.6681679176111301,
    0.3525741760723043,
    0.0039370177490394755,
    -0.0032192915333728515,
    0.00019370969790442503,
    4.599355404676991e-05,
    -6.544072295737517e-06,
    -5.998076789222493e-07,
)


def truncated_normal_quantile(u):
    """Φ⁻¹(u) for u in [Φ(−2), Φ(2)]: the inverse CDF of the gradient noise (§1.11).

    Within 5e-7 of the exact quantile over that range in float32 (tests/test_schedules.py,
    against scipy.special.ndtri), as accurate as tf.math.ndtri there, and several times
    cheaper under XLA: one log and one polynomial per element (BUILD_NOTES, "Benchmarks").
    Outside the range the result is meaningless (the caller draws u inside it).
    """
    x = 2.0 * u - 1.0
    t = -tf.math.log((1.0 - x) * (1.0 + x)) - _QUANTILE_W_MAX / 2
    q = tf.constant(_QUANTILE_COEFFICIENTS[-1], u.dtype)
    for coefficient in _QUANTILE_COEFFICIENTS[-2::-1]:
        q = q * t + coefficient
    return x * q


def _normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def air_pres_prior_log_odds(t):
    """AIR's annealed z_pres prior log-odds log((1e4 − 1e-9)·0.1^(t/3000) + 1e-9 + 1e-6) (SPAIR_SPEC §4.2)."""
    return tf.cast(tf.math.log(_exponential(t, 1e4, 1e-9, 3000.0, 0.1) + 1e-6), tf.float32)
