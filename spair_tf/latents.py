"""SPAIR's latent variables: their distributions, samples, squashes and KLs.

SPAIR_SPEC §1.3 (paper §4.1–4.5, supplementary Table 1) and the per-latent KLs of §1.9.

Every function here is elementwise and shape-agnostic; float32 is the working dtype and
float64 works too. The encoder draws all of a cell's noise up front and passes it in, so
every sample is reparameterised from explicit noise (`eps ~ N(0, 1)`, `u ~ U(0, 1)`).

Notation (SPAIR_SPEC §1.3): clip(v) = clip to [-10, 10]; std = 2·sigmoid(clip(raw)) for every
Normal latent.

| latent  | distribution            | used as                                       |
|---------|-------------------------|-----------------------------------------------|
| z_where | Normal (z_y, z_x, z_h, z_w) | b̃_y, b̃_x = 2·σ(clip(z)) − 0.5; h, w = σ(clip(z)) |
| z_what  | Normal (50)             | raw                                           |
| z_depth | Normal (1)              | depth = 4·σ(clip(z_depth))                    |
| z_pres  | binary Concrete, τ = 1  | σ(pre) in training, round(σ(pre)) in paper eval |
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from spair_tf import config

tfd = tfp.distributions

LOGIT_CLIP = 10.0

# Offset of the box centre: b̃ = 2·σ(z) − 0.5 ∈ (−0.5, 1.5) cells (SPAIR_SPEC §1.3).
_CENTRE_SCALE = 2.0
_CENTRE_SHIFT = 0.5
# depth = 4·σ(z_depth) ∈ (0, 4) (SPAIR_SPEC §1.3; the code's mirror of the supplement's σ(−z)).
_DEPTH_SCALE = 4.0


def clip_logits(x):
    """clip(x) to [−LOGIT_CLIP, LOGIT_CLIP] = [−10, 10] (SPAIR_SPEC §1.3)."""
    return tf.clip_by_value(x, -LOGIT_CLIP, LOGIT_CLIP)


def std_from_raw(raw, transform="sigmoid"):
    """Standard deviation of every Normal latent from the network's raw output.

    "sigmoid": 2·sigmoid(clip(raw)) ∈ (0, 2) (SPAIR_SPEC §1.3). "exp": exp(clip(raw)), the
    runs behind the paper's Figs. 2–3 (§6: std = exp(log-std); the ±10 clip is ours, a guard
    against overflow that bounds std to [4.5e-5, 2.2e4]).
    """
    if transform == "sigmoid":
        return 2.0 * tf.sigmoid(clip_logits(raw))
    if transform == "exp":
        return tf.exp(clip_logits(raw))
    raise ValueError(f"transform={transform!r}: use one of {config.STD_TRANSFORMS}.")


def normal(mean, raw_std):
    """The Normal posterior N(mean, std_from_raw(raw_std)) of a latent (SPAIR_SPEC §1.3).

    Args:
      mean: the network's mean output, any shape.
      raw_std: the network's raw-std output, same shape; mapped by `std_from_raw`.

    Returns:
      A `tfd.Normal` with loc=mean and scale=2·sigmoid(clip(raw_std)).
    """
    return tfd.Normal(loc=mean, scale=std_from_raw(raw_std))


def reparameterise(mean, std, eps):
    """Reparameterised Normal sample mean + std·eps, with eps ~ N(0, 1) drawn by the caller."""
    return mean + std * eps


def squash_where(z_where):
    """Box of a cell from its z_where sample (SPAIR_SPEC §1.3, §1.4).

    Args:
      z_where: [..., 4], ordered (z_y, z_x, z_h, z_w) (pre-squash Normal logits).

    Returns:
      (b_y, b_x, h, w), each [...]:
        b_y, b_x = 2·sigmoid(clip(z)) − 0.5 ∈ (−0.5, 1.5): the centre's offset in cells;
        h, w = sigmoid(clip(z)) ∈ (0, 1): the size as a fraction of the 48-px anchor.
    """
    z_where = tf.convert_to_tensor(z_where)
    if z_where.shape.rank is not None and z_where.shape[-1] is not None and z_where.shape[-1] != 4:
        raise ValueError(
            f"squash_where: z_where must end in an axis of size 4 ordered (z_y, z_x, z_h, z_w); "
            f"got shape {z_where.shape}.")
    z_y, z_x, z_h, z_w = tf.unstack(z_where, num=4, axis=-1)  # each [...]
    b_y = _CENTRE_SCALE * tf.sigmoid(clip_logits(z_y)) - _CENTRE_SHIFT
    b_x = _CENTRE_SCALE * tf.sigmoid(clip_logits(z_x)) - _CENTRE_SHIFT
    h = tf.sigmoid(clip_logits(z_h))
    w = tf.sigmoid(clip_logits(z_w))
    return b_y, b_x, h, w


def squash_depth(z_depth):
    """depth = 4·sigmoid(clip(z_depth)) ∈ (0, 4) (SPAIR_SPEC §1.3)."""
    return _DEPTH_SCALE * tf.sigmoid(clip_logits(z_depth))


def pres_probability(logits):
    """β = sigmoid(clip(logits)): the Bernoulli probability of z_pres used in the KL (SPAIR_SPEC §1.3)."""
    return tf.sigmoid(clip_logits(logits))


def relaxed_pres(logits, uniform_noise, temperature=1.0, hard=False):
    """z_pres sample from the binary Concrete (relaxed Bernoulli) (SPAIR_SPEC §1.3).

    ℓ = clip(logits); pre = (ℓ + log u − log(1 − u)) / τ, u ~ U(0, 1) given as `uniform_noise`.

    Args:
      logits: the pres network's logit, any shape.
      uniform_noise: u, same shape, in [0, 1]. u = 0 or 1 is guarded (log(0) is replaced by
        the log of the dtype's smallest normal number), so the sample stays finite.
      temperature: τ > 0 (1.0 in the paper).
      hard: False (training) returns sigmoid(pre) ∈ (0, 1); True (paper evaluation mode)
        returns round(sigmoid(pre)) ∈ {0, 1}, a random hard sample.

    Returns:
      z_pres, same shape as logits.
    """
    if not isinstance(temperature, (tf.Tensor, tf.Variable)) and not temperature > 0:
        raise ValueError(f"relaxed_pres: temperature must be > 0; got {temperature!r}.")
    logits = tf.convert_to_tensor(logits)
    u = tf.cast(uniform_noise, logits.dtype)
    tiny = np.finfo(logits.dtype.as_numpy_dtype).tiny
    # Guard u ∈ {0, 1}: log(0) would make the pre-sigmoid value infinite.
    logistic_noise = tf.math.log(tf.maximum(u, tiny)) - tf.math.log(tf.maximum(1.0 - u, tiny))
    pre = (clip_logits(logits) + logistic_noise) / tf.cast(temperature, logits.dtype)
    value = tf.sigmoid(pre)
    if hard:
        return tf.round(value)
    return value


def normal_kl(q_mean, q_std, p_mean, p_std):
    """Analytic KL(N(q_mean, q_std²) ‖ N(p_mean, p_std²)), elementwise (SPAIR_SPEC §1.9).

    KL = log(p_std / q_std) + (q_std² + (q_mean − p_mean)²) / (2·p_std²) − 1/2.
    """
    q_mean = tf.convert_to_tensor(q_mean)
    dtype = q_mean.dtype
    q_std = tf.cast(q_std, dtype)
    p_mean = tf.cast(p_mean, dtype)
    p_std = tf.cast(p_std, dtype)
    q_var = tf.square(q_std)
    p_var = tf.square(p_std)
    return (tf.math.log(p_std) - tf.math.log(q_std)
            + (q_var + tf.square(q_mean - p_mean)) / (2.0 * p_var) - 0.5)


def bernoulli_kl(beta, pi, eps=1e-10):
    """Analytic KL(Bernoulli(β) ‖ Bernoulli(π)), elementwise (SPAIR_SPEC §1.10).

    KL = β(log β − log π) + (1 − β)(log(1 − β) − log(1 − π)).

    Each of β, π, 1 − β, 1 − π is floored at `eps` inside the log, so β ∈ {0, 1} gives the
    correct limit (0·log 0 = 0) and a degenerate π gives a large finite value, never NaN.
    """
    beta = tf.convert_to_tensor(beta)
    pi = tf.cast(pi, beta.dtype)

    def safe_log(x):
        return tf.math.log(tf.maximum(x, eps))

    return (beta * (safe_log(beta) - safe_log(pi))
            + (1.0 - beta) * (safe_log(1.0 - beta) - safe_log(1.0 - pi)))


_HW_PRIOR_MEAN = math.log(0.1 / 0.9)  # −2.1972 (the supplement's table rounds it to −2.2)


@dataclasses.dataclass(frozen=True)
class Priors:
    """Normal priors on the pre-squash latents (SPAIR_SPEC §1.3).

    Attributes:
      where_mean, where_std: 4-tuples ordered (y, x, h, w): y, x ~ N(0, 1);
        h, w ~ N(log(0.1/0.9), 0.5).
      depth_mean, depth_std: z_depth ~ N(0, 1).
      what_mean, what_std: each z_what entry ~ N(0, 1).
    """
    where_mean: tuple = (0.0, 0.0, _HW_PRIOR_MEAN, _HW_PRIOR_MEAN)
    where_std: tuple = (1.0, 1.0, 0.5, 0.5)
    depth_mean: float = 0.0
    depth_std: float = 1.0
    what_mean: float = 0.0
    what_std: float = 1.0

    def __post_init__(self):
        for name in ("where_mean", "where_std"):
            value = tuple(getattr(self, name))
            if len(value) != 4:
                raise ValueError(
                    f"Priors.{name} must have 4 entries ordered (y, x, h, w); got {value!r}.")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        stds = list(self.where_std) + [self.depth_std, self.what_std]
        if not all(s > 0 for s in stds):
            raise ValueError(f"Priors: every std must be > 0; got where_std={self.where_std}, "
                             f"depth_std={self.depth_std}, what_std={self.what_std}.")
