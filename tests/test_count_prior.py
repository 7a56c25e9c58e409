"""Tests for spair_tf.count_prior (SPAIR_SPEC §1.10).

References: the truncated-geometric formula in numpy, a χ² test of samples, exact binomial
sums, brute-force enumeration of all 2^N binary vectors, and the original's sequential update.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import tensorflow as tf

from spair_tf import count_prior

# s_t along the schedule (SPAIR_SPEC §1.10): start, decaying, q ≈ 0.5, q ≈ 0.09, final.
SCHEDULE_S = [1e6, 1e3, 1.0, 0.1, 0.0125]


def _log_odds(s):
    return math.log(s + 1e-6)


def _np_count_probs(log_odds, n_cells):
    """P(C = c) ∝ (1 − q)·q^c on {0..N}, float64."""
    q = scipy.special.expit(log_odds)
    p = (1 - q) * q ** np.arange(n_cells + 1, dtype=np.float64)
    return p / p.sum()


def _np_bernoulli_kl(beta, pi):
    return beta * np.log(beta / pi) + (1 - beta) * np.log((1 - beta) / (1 - pi))


# --- CountPrior -------------------------------------------------------------------------

@pytest.mark.parametrize("n_cells", [1, 16, 49])
@pytest.mark.parametrize("log_odds", [-20.0, _log_odds(0.0125), 0.0, _log_odds(1e6), 25.0])
def test_count_prior_log_prob_is_normalised_and_matches_formula(n_cells, log_odds):
    prior = count_prior.CountPrior(tf.constant(log_odds, tf.float64), n_cells)
    c = np.arange(n_cells + 1)
    log_p = prior.log_prob(c).numpy()
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, rtol=1e-12)
    expected = _np_count_probs(log_odds, n_cells)
    np.testing.assert_allclose(prior.prob(c).numpy(), expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(prior.probs_vector().numpy(), expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(float(prior.mean()), (c * expected).sum(), rtol=1e-9, atol=1e-12)


def test_count_prior_float32_matches_formula():
    prior = count_prior.CountPrior(tf.constant(_log_odds(0.0125), tf.float32), 16)
    assert prior.probs_vector().dtype == tf.float32
    np.testing.assert_allclose(prior.probs_vector().numpy(),
                               _np_count_probs(_log_odds(0.0125), 16), rtol=1e-5, atol=1e-30)


def test_count_prior_log_prob_is_minus_inf_outside_support():
    prior = count_prior.CountPrior(0.3, 5)
    out = prior.log_prob([-1.0, 6.0, 2.5, 3.0]).numpy()
    assert np.all(np.isneginf(out[:3])) and np.isfinite(out[3])


def test_count_prior_sample_frequencies_match_probs():
    n_cells, n_samples = 6, 30000
    prior = count_prior.CountPrior(tf.constant(0.0, tf.float32), n_cells)  # q = 1/2
    samples = prior.sample(n_samples, seed=(3, 14)).numpy()
    assert samples.shape == (n_samples,)
    observed = np.bincount(samples, minlength=n_cells + 1)
    assert observed.size == n_cells + 1  # no sample outside {0..N}
    expected = _np_count_probs(0.0, n_cells) * n_samples
    assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3


def test_count_prior_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_cells"):
        count_prior.CountPrior(0.0, 0)
    with pytest.raises(TypeError, match="n_cells"):
        count_prior.CountPrior(0.0, 4.0)
    with pytest.raises(ValueError, match="scalar"):
        count_prior.CountPrior(tf.zeros([2]), 4)
    with pytest.raises(ValueError, match="finite"):
        count_prior.CountPrior(np.inf, 4)


# --- pres_prior_table -------------------------------------------------------------------

def _np_table(log_odds, n_cells):
    """T[k, n] by exact binomial sums: Σ_c P(C=c)·C(N−k, c−n)/C(N, c)·(c−n)/(N−k), normalised."""
    prior = _np_count_probs(log_odds, n_cells)
    table = np.full((n_cells, n_cells + 1), np.nan)
    for k in range(n_cells):
        for n in range(k + 1):
            c = np.arange(n, n_cells - k + n + 1)
            weight = prior[c] * np.array(
                [math.comb(n_cells - k, int(ci - n)) / math.comb(n_cells, int(ci)) for ci in c])
            table[k, n] = (weight * (c - n) / (n_cells - k)).sum() / weight.sum()
    return table


@pytest.mark.parametrize("n_cells", [1, 7, 49])
@pytest.mark.parametrize("s", SCHEDULE_S)
def test_pres_prior_table_matches_exact_binomial_sums(n_cells, s):
    table = count_prior.pres_prior_table(tf.constant(_log_odds(s), tf.float64), n_cells).numpy()
    assert table.shape == (n_cells, n_cells + 1)
    expected = _np_table(_log_odds(s), n_cells)
    used = ~np.isnan(expected)
    np.testing.assert_allclose(table[used], expected[used], rtol=1e-9)
    # Unreachable entries (n > k) hold a valid number, never NaN.
    np.testing.assert_array_equal(table[~used], 0.5)
    assert np.all((table > 0) & (table < 1))


def test_pres_prior_table_first_cell_is_expected_fraction_of_ones():
    # Before any cell is seen, π_0 = E[C]/N.
    n_cells = 49
    for s in SCHEDULE_S:
        probs = _np_count_probs(_log_odds(s), n_cells)
        table = count_prior.pres_prior_table(_log_odds(s), n_cells).numpy()
        np.testing.assert_allclose(table[0, 0], (np.arange(n_cells + 1) * probs).sum() / n_cells,
                                   rtol=1e-5)


# --- z_pres_kl against brute-force enumeration ---------------------------------------------

def _enumeration_conditionals(hard, log_odds):
    """P(z_k = 1 | z_<k = hard_<k) for every cell k, by summing the prior over all 2^N vectors."""
    n_cells = hard.size
    vectors = np.array(list(itertools.product([0, 1], repeat=n_cells)), dtype=np.int8)  # [2^N, N]
    counts = vectors.sum(1)
    comb = np.array([math.comb(n_cells, int(c)) for c in range(n_cells + 1)], np.float64)
    p_vector = _np_count_probs(log_odds, n_cells)[counts] / comb[counts]  # uniform given C
    pi = np.empty(n_cells)
    prefix_matches = np.ones(len(vectors), bool)
    for k in range(n_cells):
        pi[k] = p_vector[prefix_matches & (vectors[:, k] == 1)].sum() / p_vector[prefix_matches].sum()
        prefix_matches &= vectors[:, k] == hard[k]
    return pi


@pytest.mark.parametrize("n_cells", [1, 4, 12])
def test_z_pres_kl_equals_brute_force_enumeration(n_cells):
    rng = np.random.default_rng(n_cells)
    batch = 6
    beta = rng.uniform(0.02, 0.98, size=(batch, n_cells)).astype(np.float32)
    z_pres = rng.uniform(size=(batch, n_cells)).astype(np.float32)  # relaxed values
    z_pres[0] = 0.9  # all on
    z_pres[1] = 0.1  # all off
    z_pres[2] = np.where(np.arange(n_cells) % 3 == 0, 0.51, 0.49)  # just either side of 1/2
    for s in SCHEDULE_S:
        log_odds = _log_odds(s)
        kl = count_prior.z_pres_kl(beta, z_pres, tf.constant(log_odds, tf.float32)).numpy()
        assert kl.shape == (batch, n_cells) and kl.dtype == np.float32
        for b in range(batch):
            pi = _enumeration_conditionals(z_pres[b] > 0.5, log_odds)
            expected = _np_bernoulli_kl(beta[b].astype(np.float64), pi)
            np.testing.assert_allclose(kl[b], expected, rtol=1e-4, atol=1e-5,
                                       err_msg=f"s={s}, row {b}")


# --- z_pres_kl against the original's sequential update --------------------------------

def _random_batch(rng, batch, n_cells):
    beta = rng.uniform(0.001, 0.999, size=(batch, n_cells))
    z_pres = rng.uniform(size=(batch, n_cells))  # relaxed sample
    z_pres[0] = 0.95  # every cell on: far beyond the float32 range of q^c at q = 0.0123
    z_pres[1] = 0.05
    return beta, z_pres


@pytest.mark.parametrize("s", SCHEDULE_S)
def test_z_pres_kl_equals_sequential_update_n49(s):
    beta, z_pres = _random_batch(np.random.default_rng(49), 8, 49)
    log_odds = _log_odds(s)
    reference = count_prior.sequential_z_pres_kl(beta, z_pres, tf.constant(log_odds, tf.float64))
    reference = reference.numpy()
    assert np.all(np.isfinite(reference))
    kl32 = count_prior.z_pres_kl(beta.astype(np.float32), z_pres.astype(np.float32),
                                 tf.constant(log_odds, tf.float32)).numpy()
    np.testing.assert_allclose(kl32, reference, rtol=1e-4, atol=1e-5)
    kl64 = count_prior.z_pres_kl(beta, z_pres, tf.constant(log_odds, tf.float64)).numpy()
    np.testing.assert_allclose(kl64, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("s", SCHEDULE_S)
def test_z_pres_kl_equals_float32_sequential_update_for_sparse_samples(s):
    # The original ran in float32; with few objects (the regime of trained models) its
    # recursion stays in range and the table must agree with it.
    rng = np.random.default_rng(7)
    beta = rng.uniform(0.001, 0.999, size=(8, 49)).astype(np.float32)
    z_pres = np.full((8, 49), 0.2, np.float32)
    for row in range(8):
        z_pres[row, rng.choice(49, size=row % 6, replace=False)] = 0.8
    log_odds = tf.constant(_log_odds(s), tf.float32)
    reference = count_prior.sequential_z_pres_kl(beta, z_pres, log_odds).numpy()
    kl = count_prior.z_pres_kl(beta, z_pres, log_odds).numpy()
    np.testing.assert_allclose(kl, reference, rtol=1e-4, atol=1e-5)


def test_z_pres_kl_gradient_wrt_beta_is_the_log_odds_difference():
    # d KL_k / d β_k = logit(β_k) − logit(π_k); check π through the enumeration at N = 6.
    rng = np.random.default_rng(11)
    beta = tf.constant(rng.uniform(0.05, 0.95, size=(2, 6)), tf.float64)
    z_pres = rng.uniform(size=(2, 6))
    log_odds = _log_odds(0.1)
    with tf.GradientTape() as tape:
        tape.watch(beta)
        total = tf.reduce_sum(count_prior.z_pres_kl(beta, z_pres, log_odds))
    grad = tape.gradient(total, beta).numpy()
    for b in range(2):
        pi = _enumeration_conditionals(z_pres[b] > 0.5, log_odds)
        np.testing.assert_allclose(grad[b], scipy.special.logit(beta.numpy()[b]) - scipy.special.logit(pi),
                                   rtol=1e-8)


def test_z_pres_kl_compiles_with_xla():
    rng = np.random.default_rng(12)
    beta = tf.constant(rng.uniform(0.01, 0.99, size=(4, 16)), tf.float32)
    z_pres = tf.constant(rng.uniform(size=(4, 16)), tf.float32)
    log_odds = tf.constant(_log_odds(1.0), tf.float32)
    compiled = tf.function(count_prior.z_pres_kl, jit_compile=True)
    np.testing.assert_allclose(compiled(beta, z_pres, log_odds).numpy(),
                               count_prior.z_pres_kl(beta, z_pres, log_odds).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_z_pres_kl_and_sequential_accept_dynamic_shapes():
    rng = np.random.default_rng(13)
    beta = rng.uniform(0.01, 0.99, size=(3, 9)).astype(np.float32)
    z_pres = rng.uniform(size=(3, 9)).astype(np.float32)
    log_odds = tf.constant(_log_odds(0.1), tf.float32)
    spec = tf.TensorSpec([None, None], tf.float32)
    dynamic = tf.function(count_prior.z_pres_kl, input_signature=[spec, spec, tf.TensorSpec([])])
    dynamic_seq = tf.function(count_prior.sequential_z_pres_kl,
                              input_signature=[spec, spec, tf.TensorSpec([])])
    expected = [_np_bernoulli_kl(beta[b].astype(np.float64),
                                 _enumeration_conditionals(z_pres[b] > 0.5, _log_odds(0.1)))
                for b in range(3)]
    np.testing.assert_allclose(dynamic(beta, z_pres, log_odds).numpy(), expected,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dynamic_seq(beta, z_pres, log_odds).numpy(), expected,
                               rtol=1e-4, atol=1e-5)


def test_z_pres_kl_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        count_prior.z_pres_kl(tf.zeros([2, 3, 4]), tf.zeros([2, 3, 4]), 0.0)
    with pytest.raises(ValueError, match="z_pres shape"):
        count_prior.z_pres_kl(tf.fill([2, 3], 0.5), tf.zeros([2, 4]), 0.0)
