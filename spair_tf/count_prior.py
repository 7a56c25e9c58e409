"""The count prior over the number of objects and the z_pres KL it induces.

SPAIR_SPEC §1.10 (supplementary A–B).

Prior: C ∈ {0..N} (N = H·W cells) with P(C = c) ∝ (1 − q)·q^c, q = sigmoid(log_odds) (the
paper's truncated geometric whose "success probability" is 1 − q); given C, z_pres is uniform
over the binary vectors with C ones.

KL: in raster order k = 0..N−1, with n_k the number of hard ones (z_pres > 0.5) before cell k,
  π_k = P(z_k = 1 | prefix) = Σ_c P(C = c | k, n_k)·(c − n_k)/(N − k),
  P(C = c | k, n) ∝ P(C = c)·binom(N − k, c − n)/binom(N, c),
  KL_k = KL(Bernoulli(β_k) ‖ Bernoulli(π_k)).
π depends only on (k, n_k), so it is tabulated once per step (`pres_prior_table`) and
gathered with an exclusive cumulative sum of the hard samples (`z_pres_kl`): no loop over
cells. `sequential_z_pres_kl` is the original's sequential Bayes update, kept as a reference.

Cost: the table is [N, N+1]; its vectorised fill builds an [N, N+1, N+1] float64 intermediate
(N = 16: 35 KB; N = 49: 1 MB; N = 100: 8 MB; N = 300: 0.2 GB), so it is meant for N up to a
couple of hundred. Training uses N = 16 (48×48) and N = 49 (84×84). Only training and ELBO
evaluation need this KL; detection and reconstruction never call it.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from spair_tf import latents

tfd = tfp.distributions

# The table is filled in float64 (lgamma of numbers up to N and sums of tiny weights) and
# cast to the caller's dtype; it is at most a few MB and is built once per step.
_TABLE_DTYPE = tf.float64
# Value written into the unused entries T[k, n] with n > k (never gathered).
_UNUSED_ENTRY = 0.5


def _check_n_cells(n_cells, where, allow_tensor=False):
    if allow_tensor and isinstance(n_cells, (tf.Tensor, tf.Variable)):
        if n_cells.shape.rank not in (None, 0) or not n_cells.dtype.is_integer:
            raise TypeError(f"{where}: a tensor n_cells must be an integer scalar; got "
                            f"{n_cells.dtype} of shape {n_cells.shape}.")
        return n_cells
    if isinstance(n_cells, (bool, np.bool_)) or not isinstance(n_cells, (int, np.integer)):
        raise TypeError(f"{where}: n_cells must be a Python int (the number of cells N = H·W); "
                        f"got {n_cells!r} of type {type(n_cells).__name__}.")
    if n_cells < 1:
        raise ValueError(f"{where}: n_cells must be ≥ 1 (N = H·W cells); got {n_cells}.")
    return int(n_cells)


def _check_log_odds(log_odds, where, validate_args=True):
    log_odds = tf.convert_to_tensor(log_odds)
    if not log_odds.dtype.is_floating:
        log_odds = tf.cast(log_odds, tf.float32)
    if log_odds.shape.rank is not None and log_odds.shape.rank != 0:
        raise ValueError(f"{where}: log_odds must be a scalar (the count prior's log-odds "
                         f"log(s_t + 1e-6), see schedules.count_prior_log_odds); "
                         f"got shape {log_odds.shape}.")
    if validate_args:
        if tf.executing_eagerly():
            if not np.isfinite(log_odds.numpy()):
                raise ValueError(f"{where}: log_odds must be finite; got {log_odds.numpy()}.")
        else:
            log_odds = tf.debugging.assert_all_finite(
                log_odds, f"{where}: log_odds must be finite.")
    return log_odds


class CountPrior:
    """Truncated geometric prior over the object count C ∈ {0..N} (SPAIR_SPEC §1.10).

    P(C = c) = (1 − q)·q^c / Σ_{c'=0}^{N} (1 − q)·q^{c'},  q = sigmoid(log_odds).

    Small q (late in training, s_t → 0.0125, q ≈ 0.0123) puts the mass at few objects; q → 1
    (early, s_t = 1e6) makes C nearly uniform on {0..N}. Computed in log space, so any
    finite log_odds is safe.

    Args:
      log_odds: scalar tensor, log(q / (1 − q)).
      n_cells: N ≥ 1, the number of cells (the largest possible count).
      validate_args: check that log_odds is a finite scalar.
    """

    def __init__(self, log_odds, n_cells, validate_args=True):
        self._n_cells = _check_n_cells(n_cells, "CountPrior")
        self._log_odds = _check_log_odds(log_odds, "CountPrior", validate_args)
        self._validate_args = validate_args
        dtype = self._log_odds.dtype
        support = tf.range(self._n_cells + 1, dtype=dtype)  # [N+1]
        log_q = tf.math.log_sigmoid(self._log_odds)
        unnormalised = support * log_q  # [N+1]; the (1 − q) factor cancels in the normaliser
        self._log_probs = unnormalised - tf.reduce_logsumexp(unnormalised)  # [N+1]

    @property
    def n_cells(self):
        return self._n_cells

    @property
    def log_odds(self):
        return self._log_odds

    @property
    def dtype(self):
        return self._log_odds.dtype

    def log_probs_vector(self):
        """log P(C = c) for c = 0..N, shape [N+1]."""
        return self._log_probs

    def probs_vector(self):
        """P(C = c) for c = 0..N, shape [N+1]."""
        return tf.exp(self._log_probs)

    def log_prob(self, c):
        """log P(C = c), elementwise; −inf for c outside {0..N} or not an integer."""
        c = tf.cast(c, self.dtype)
        in_support = (c >= 0) & (c <= self._n_cells) & tf.equal(c, tf.round(c))
        index = tf.cast(tf.clip_by_value(tf.round(c), 0, self._n_cells), tf.int32)
        value = tf.gather(self._log_probs, index)
        return tf.where(in_support, value, tf.constant(-np.inf, self.dtype))

    def prob(self, c):
        """P(C = c), elementwise; 0 outside the support."""
        return tf.exp(self.log_prob(c))

    def sample(self, sample_shape=(), seed=None):
        """Counts drawn from the prior, int32 of shape sample_shape."""
        return tfd.Categorical(logits=self._log_probs, validate_args=self._validate_args).sample(
            sample_shape, seed=seed)

    def mean(self):
        """E[C] = Σ_c c·P(C = c)."""
        support = tf.range(self._n_cells + 1, dtype=self.dtype)
        return tf.reduce_sum(support * self.probs_vector())


def pres_prior_table(log_odds, n_cells):
    """T[k, n] = P(z_k = 1 | n ones among cells 0..k−1) under the count prior (SPAIR_SPEC §1.10).

    T[k, n] = Σ_c P(C = c | k, n)·(c − n)/(N − k),
    P(C = c | k, n) ∝ P(C = c)·binom(N − k, c − n)/binom(N, c), c ∈ [n, N − k + n].

    Computed in log space (lgamma) in float64, vectorised over (k, n, c); entries with n > k
    can never be reached and hold 0.5.

    Args:
      log_odds: scalar, the count prior's log-odds (see CountPrior).
      n_cells: N ≥ 1, a Python int (static table shape, preferred) or an int scalar tensor.

    Returns:
      T: [N, N+1], in log_odds' floating dtype.
    """
    n_cells = _check_n_cells(n_cells, "pres_prior_table", allow_tensor=True)
    log_odds = _check_log_odds(log_odds, "pres_prior_table")
    out_dtype = log_odds.dtype
    f = _TABLE_DTYPE
    big_n = tf.cast(n_cells, f)

    k = tf.range(n_cells, dtype=f)[:, None, None]  # [N, 1, 1]   cells already visited
    n = tf.range(n_cells + 1, dtype=f)[None, :, None]  # [1, N+1, 1] ones among them
    c = tf.range(n_cells + 1, dtype=f)[None, None, :]  # [1, 1, N+1] total count
    remaining_slots = big_n - k  # [N, 1, 1], ≥ 1
    ones_to_come = c - n  # [1, N+1, N+1]
    reachable = n <= k  # [N, N+1, 1]
    in_support = (ones_to_come >= 0) & (ones_to_come <= remaining_slots) & reachable  # [N, N+1, N+1]

    # log P(C = c) + log binom(N − k, c − n) − log binom(N, c), dropping terms constant in c.
    # x is clamped at 0 inside lgamma(x + 1) so unreachable entries stay finite (then masked).
    def lgamma_plus_one(x):
        return tf.math.lgamma(tf.maximum(x, 0.0) + 1.0)

    log_q = tf.math.log_sigmoid(tf.cast(log_odds, f))
    log_weight = (c * log_q
                  - lgamma_plus_one(ones_to_come) - lgamma_plus_one(remaining_slots - ones_to_come)
                  + lgamma_plus_one(c) + lgamma_plus_one(big_n - c))  # [N, N+1, N+1]
    lowest = tf.constant(np.finfo(np.float64).min, f)
    log_weight = tf.where(in_support, log_weight, lowest)
    log_weight_max = tf.reduce_max(log_weight, axis=-1, keepdims=True)  # [N, N+1, 1]
    # Masked entries get weight exactly 0, never exp(−inf), so gradients stay finite too.
    weight = tf.where(in_support, tf.exp(log_weight - log_weight_max), tf.zeros_like(log_weight))
    p_one_given_c = ones_to_come / remaining_slots  # [N, N+1, N+1]: (c − n)/(N − k)

    numerator = tf.reduce_sum(weight * p_one_given_c, axis=-1)  # [N, N+1]
    normaliser = tf.reduce_sum(weight, axis=-1)  # [N, N+1]
    reachable_2d = reachable[..., 0]  # [N, N+1]
    table = tf.where(reachable_2d,
                     numerator / tf.where(reachable_2d, normaliser, tf.ones_like(normaliser)),
                     tf.constant(_UNUSED_ENTRY, f))
    return tf.cast(table, out_dtype)


def _check_beta_z_pres(beta, z_pres, where):
    beta = tf.convert_to_tensor(beta)
    if not beta.dtype.is_floating:
        raise TypeError(f"{where}: beta must be a floating tensor; got dtype {beta.dtype}.")
    z_pres = tf.cast(z_pres, beta.dtype)
    if beta.shape.rank != 2:
        raise ValueError(f"{where}: beta must have shape [B, N] (cells flattened in raster "
                         f"order); got {beta.shape}.")
    if not z_pres.shape.is_compatible_with(beta.shape):
        raise ValueError(f"{where}: z_pres shape {z_pres.shape} must equal beta's {beta.shape}.")
    # A static N (e.g. from tf.reshape(x, [-1, H * W])) keeps the table's shape static.
    n_cells = beta.shape[-1] if beta.shape[-1] is not None else z_pres.shape[-1]
    if n_cells is None:
        n_cells = tf.shape(beta)[-1]
    return beta, z_pres, n_cells


def z_pres_kl(beta, z_pres, log_odds):
    """Per-cell z_pres KL against the count prior, vectorised (SPAIR_SPEC §1.10).

    KL_k = β_k(log β_k − log π_k) + (1 − β_k)(log(1 − β_k) − log(1 − π_k)),
    π_k = T[k, n_k], n_k = Σ_{j<k} 1[z_pres_j > 0.5] (exclusive cumulative sum).

    Args:
      beta: [B, N] Bernoulli probability of each cell, cells in raster order. A static N
        (reshape with [-1, H * W] rather than [batch, -1]) keeps every shape static; a
        dynamic N works too.
      z_pres: [B, N] the z_pres sample (relaxed or hard); only z_pres > 0.5 matters and no
        gradient flows through it.
      log_odds: scalar, the count prior's log-odds at this step.

    Returns:
      kl: [B, N], in beta's dtype (sum over cells for the loss; not multiplied by z_pres).
    """
    beta, z_pres, n_cells = _check_beta_z_pres(beta, z_pres, "z_pres_kl")
    log_odds = tf.convert_to_tensor(log_odds, dtype_hint=beta.dtype)
    table = tf.cast(pres_prior_table(log_odds, n_cells), beta.dtype)  # [N, N+1]
    hard = tf.cast(z_pres > 0.5, tf.int32)  # [B, N]
    ones_before = tf.cumsum(hard, axis=1, exclusive=True)  # [B, N]: n_k
    cell = tf.range(n_cells, dtype=tf.int32)[None, :]  # [1, N]: k
    flat_index = cell * (n_cells + 1) + ones_before  # [B, N]
    pi = tf.gather(tf.reshape(table, [-1]), flat_index)  # [B, N]
    return latents.bernoulli_kl(beta, pi)


def _original_safe_log(x):
    """log(x) with NaN (from x < 0) replaced by −100, as the paper-era code did; −inf stays."""
    log_x = tf.math.log(x)
    return tf.where(tf.math.is_nan(log_x), tf.constant(-100.0, x.dtype), log_x)


def sequential_z_pres_kl(beta, z_pres, log_odds):
    """Reference z_pres KL by the original's sequential Bayes update (SPAIR_SPEC §1.10).

    Follows the paper-era code (supplementary B): start from P(C) ∝ (1 − q)·q^c; at each
    cell k (a `tf.scan` over cells) π_k = Σ_c P(C = c | prefix)·(c − n_k)/(N − k), take the
    Bernoulli KL with logs guarded NaN → −100 (−inf is not guarded), then update
    P(C | prefix) by the likelihood of the hard sample 1[z_k > 0.5] and renormalise with the
    normaliser floored at 1e-6.

    The recursion runs in beta's dtype. In float32, P(C = c) ∝ q^c underflows to 0 for
    c ≳ 24 at q ≈ 0.0123, so this reference gives inf once a sample has that many ones; the
    table of `z_pres_kl` is computed in log space and has no such limit. Pass float64 inputs
    to use this as a reference for large N.

    Args/returns: as `z_pres_kl`.
    """
    beta, z_pres, n_cells = _check_beta_z_pres(beta, z_pres, "sequential_z_pres_kl")
    dtype = beta.dtype
    log_odds = tf.convert_to_tensor(log_odds, dtype_hint=dtype)
    log_odds = tf.cast(_check_log_odds(log_odds, "sequential_z_pres_kl"), dtype)
    batch = tf.shape(beta)[0]
    support = tf.range(n_cells + 1, dtype=dtype)[None, :]  # [1, N+1]

    q = tf.sigmoid(log_odds)
    count_dist = (1.0 - q) * q ** support  # [1, N+1]
    count_dist = count_dist / tf.reduce_sum(count_dist)
    count_dist = tf.tile(count_dist, [batch, 1])  # [B, N+1]
    ones_so_far = tf.zeros([batch, 1], dtype)  # [B, 1]

    def step(carry, cell_inputs):
        count_dist, ones_so_far, _ = carry
        k, beta_k, z_k = cell_inputs  # scalar, [B], [B]
        p_one_given_c = (support - ones_so_far) / (tf.cast(n_cells, dtype) - k)  # [B, N+1]
        pi = tf.reduce_sum(count_dist * p_one_given_c, axis=1)  # [B]
        kl = (beta_k * (_original_safe_log(beta_k) - _original_safe_log(pi))
              + (1.0 - beta_k) * (_original_safe_log(1.0 - beta_k) - _original_safe_log(1.0 - pi)))
        sample = tf.cast(z_k > 0.5, dtype)[:, None]  # [B, 1]
        likelihood = sample * p_one_given_c + (1.0 - sample) * (1.0 - p_one_given_c)  # [B, N+1]
        count_dist = likelihood * count_dist
        normaliser = tf.maximum(tf.reduce_sum(count_dist, axis=1, keepdims=True), 1e-6)
        return count_dist / normaliser, ones_so_far + sample, kl

    cells = tf.range(n_cells, dtype=dtype)  # [N]
    _, _, kl = tf.scan(
        step,
        (cells, tf.transpose(beta), tf.transpose(z_pres)),  # [N], [N, B], [N, B]
        initializer=(count_dist, ones_so_far, tf.zeros([batch], dtype)))
    return tf.transpose(kl)  # [B, N]
