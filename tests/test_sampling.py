"""Samplers: exact probabilities against a brute-force reference, properties, draws, errors.

The reference below is written independently of minillm.sampling: pure Python
floats, sorting with ``sorted`` on (-logit, id), softmax with ``math.exp``.
"""
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minillm import backend, sampling
from minillm.backend import xp

INF = float("inf")

# ---------------------------------------------------------------- the reference


def ref_softmax(u, kept):
    """softmax over the kept ids (float64, pure Python); 0 elsewhere."""
    m = max(u[i] for i in kept)
    e = {i: math.exp(u[i] - m) for i in kept}
    total = sum(e.values())
    return [e[i] / total if i in e else 0.0 for i in range(len(u))]


def ref_probabilities(row, temperature=1.0, top_k=None, top_p=None):
    """The course's recipe, step by step, in plain Python."""
    V = len(row)
    finite = [i for i in range(V) if row[i] != -INF]
    if temperature == 0:
        best = sorted(finite, key=lambda i: (-row[i], i))[0]
        return [1.0 if i == best else 0.0 for i in range(V)]
    u = [x / temperature for x in row]
    order = sorted(finite, key=lambda i: (-u[i], i))         # most probable first, ties: lower id
    if top_k is not None:
        order = order[:top_k]
    if top_p is not None:
        probs = ref_softmax(u, set(order))
        mass, nucleus = 0.0, []
        for i in order:
            nucleus.append(i)
            mass += probs[i]
            if mass >= top_p:
                break
        order = nucleus
    return ref_softmax(u, set(order))


def partial_sums(row, temperature, top_k):
    """Cumulative masses the top-p step compares with p (to keep p away from them)."""
    u = [x / temperature for x in row]
    order = sorted([i for i in range(len(row)) if row[i] != -INF], key=lambda i: (-u[i], i))
    if top_k is not None:
        order = order[:top_k]
    probs = ref_softmax(u, set(order))
    sums, mass = [], 0.0
    for i in order:
        mass += probs[i]
        sums.append(mass)
    return sums


# ---------------------------------------------------------------- strategies

# A small pool of values makes ties and -inf frequent; free floats make the rest.
logit_values = st.one_of(st.sampled_from([-INF, -2.0, -1.0, 0.0, 0.5, 1.0, 3.0]),
                         st.floats(-6, 6, allow_nan=False, width=64))
logit_rows = st.lists(logit_values, min_size=1, max_size=12).filter(lambda r: any(x != -INF for x in r))
temperatures = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.05, 5.0))
top_ks = st.one_of(st.none(), st.integers(1, 14))
top_ps = st.one_of(st.none(), st.just(1.0), st.floats(0.01, 0.99))


def as_xp(row):
    return xp.asarray(np.array(row, dtype=np.float64))


def host(a):
    return backend.to_numpy(a)


# ---------------------------------------------------------------- exact distribution


@given(logit_rows, temperatures, top_ks, top_ps)
@settings(max_examples=300)
def test_probabilities_match_brute_force_reference(row, temperature, top_k, top_p):
    if top_p is not None and top_p < 1 and temperature > 0:  # p on a cumulative sum: rounding decides
        assume(all(abs(s - top_p) > 1e-9 for s in partial_sums(row, temperature, top_k)))
    got = host(sampling.probabilities(as_xp(row), temperature, top_k, top_p))
    np.testing.assert_allclose(got, ref_probabilities(row, temperature, top_k, top_p), rtol=1e-12, atol=1e-15)


@given(st.lists(logit_rows.filter(lambda r: len(r) == 7), min_size=1, max_size=4), temperatures, top_ks, top_ps)
@settings(max_examples=60)
def test_batched_rows_equal_single_rows(rows, temperature, top_k, top_p):
    batch = sampling.probabilities(as_xp(rows), temperature, top_k, top_p)
    single = [host(sampling.probabilities(as_xp(r), temperature, top_k, top_p)) for r in rows]
    np.testing.assert_allclose(host(batch), np.stack(single), rtol=1e-14, atol=1e-300)   # GPU sums may differ
    three_d = sampling.probabilities(as_xp([rows, rows]), temperature, top_k, top_p)
    np.testing.assert_allclose(host(three_d)[1], np.stack(single), rtol=1e-14, atol=1e-300)


@given(logit_rows, temperatures, top_ks, top_ps)
def test_probabilities_sum_to_one_and_keep_the_order_of_logits(row, temperature, top_k, top_p):
    p = host(sampling.probabilities(as_xp(row), temperature, top_k, top_p))
    assert p.shape == (len(row),)
    assert abs(p.sum() - 1.0) < 1e-12
    assert (p >= 0).all()
    r = np.array(row)
    for i in range(len(row)):
        for j in range(len(row)):
            if r[i] > r[j]:
                assert p[i] >= p[j]
            if temperature > 0 and top_k is None and top_p is None and r[i] == r[j]:
                assert p[i] == p[j]
            if r[j] == -INF:
                assert p[j] == 0.0                          # masked tokens are never kept


def test_inputs_are_not_modified():
    logits = as_xp([[1.0, 2.0, -INF, 2.0], [0.0, 0.0, 0.0, 5.0]])
    before = host(logits).copy()
    for call in (lambda: sampling.apply_temperature(logits, 0.5), lambda: sampling.apply_temperature(logits, 0),
                 lambda: sampling.top_k_filter(logits, 2), lambda: sampling.top_k_filter(logits, 9),
                 lambda: sampling.top_p_filter(logits, 0.5), lambda: sampling.top_p_filter(logits, 1.0),
                 lambda: sampling.probabilities(logits, 0.7, 2, 0.9)):
        call()
        np.testing.assert_array_equal(host(logits), before)


# ---------------------------------------------------------------- each processor


@given(logit_rows, st.floats(0.05, 20.0))
def test_apply_temperature_divides(row, t):
    np.testing.assert_array_equal(host(sampling.apply_temperature(as_xp(row), t)), np.array(row) / t)


def test_temperature_zero_keeps_only_the_first_argmax():
    out = host(sampling.apply_temperature(as_xp([1.0, 3.0, -INF, 3.0]), 0))
    np.testing.assert_array_equal(out, [-INF, 0.0, -INF, -INF])


@given(logit_rows)
def test_temperature_one_is_softmax(row):
    r = np.array(row)
    e = np.exp(r - r.max())
    np.testing.assert_allclose(host(sampling.probabilities(as_xp(row), 1.0)), e / e.sum(), rtol=1e-13, atol=1e-300)


@given(st.lists(st.floats(-3, 3), min_size=2, max_size=10, unique=True))
def test_small_temperature_tends_to_one_hot_and_large_to_uniform(row):
    r = np.array(row)
    gap = np.sort(r)[-1] - np.sort(r)[-2]
    assume(gap > 1e-3)
    one_hot = np.eye(len(row))[r.argmax()]
    cold = host(sampling.probabilities(as_xp(row), gap / 50))       # e^-50: one-hot to 1e-20
    np.testing.assert_allclose(cold, one_hot, atol=1e-20)
    errors = [np.abs(host(sampling.probabilities(as_xp(row), t)) - 1 / len(row)).max() for t in (1, 10, 100, 1e4)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-3   # flatter and flatter


@given(logit_rows, st.integers(1, 14))
def test_top_k_keeps_exactly_k_with_ties_to_the_lower_ids(row, k):
    out = host(sampling.top_k_filter(as_xp(row), k))
    kept = [i for i in range(len(row)) if out[i] != -INF]
    finite = [i for i in range(len(row)) if row[i] != -INF]
    assert len(kept) == min(k, len(finite))
    assert kept == sorted(sorted(finite, key=lambda i: (-row[i], i))[:k])
    for i in kept:
        assert out[i] == row[i]                              # kept logits are unchanged


def test_top_k_ties_and_large_k():
    row = as_xp([2.0, 5.0, 2.0, 5.0, 2.0])
    np.testing.assert_array_equal(host(sampling.top_k_filter(row, 3)), [2.0, 5.0, -INF, 5.0, -INF])
    np.testing.assert_array_equal(host(sampling.top_k_filter(row, 1)), [-INF, 5.0, -INF, -INF, -INF])
    np.testing.assert_array_equal(host(sampling.top_k_filter(row, 5)), host(row))
    np.testing.assert_array_equal(host(sampling.top_k_filter(row, 500)), host(row))


@given(logit_rows, st.floats(0.01, 0.999))
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(row, p):
    r = np.array(row)
    probs = np.exp(r - r.max())
    probs /= probs.sum()
    order = sorted([i for i in range(len(row)) if row[i] != -INF], key=lambda i: (-probs[i], i))
    assume(all(abs(s - p) > 1e-9 for s in np.cumsum(probs[order])))
    out = host(sampling.top_p_filter(as_xp(row), p))
    kept = [i for i in range(len(row)) if out[i] != -INF]
    assert len(kept) >= 1
    assert probs[kept].sum() >= p
    least = min(kept, key=lambda i: (probs[i], -i))          # the last one the nucleus took in
    assert probs[kept].sum() - probs[least] < p
    assert all(probs[j] <= probs[least] for j in range(len(row)) if j not in kept)   # most probable ones
    assert all(row[i] != -INF for i in kept)


def test_top_p_ties_go_to_the_lower_id():
    row = as_xp([0.0, 1.0, 0.0, 1.0])                       # probs (a, b, a, b), b > a
    np.testing.assert_array_equal(host(sampling.top_p_filter(row, 0.3)), [-INF, 1.0, -INF, -INF])
    np.testing.assert_array_equal(host(sampling.top_p_filter(row, 0.8)), [0.0, 1.0, -INF, 1.0])
    np.testing.assert_array_equal(host(sampling.top_p_filter(row, 1.0)), host(row))
    quarters = as_xp([0.0, 0.0, 0.0, 0.0])                  # mass 0.25, 0.5, 0.75, 1 exactly
    np.testing.assert_array_equal(host(sampling.top_p_filter(quarters, 0.5)), [0.0, 0.0, -INF, -INF])
    np.testing.assert_array_equal(host(sampling.top_p_filter(quarters, 0.5000001)), [0.0, 0.0, 0.0, -INF])


@given(logit_rows)
def test_greedy_settings_all_reduce_to_the_argmax(row):
    finite = [i for i in range(len(row)) if row[i] != -INF]
    best = sorted(finite, key=lambda i: (-row[i], i))[0]
    one_hot = np.eye(len(row))[best]
    logits = as_xp(row)
    for p in (sampling.probabilities(logits, temperature=0), sampling.probabilities(logits, top_k=1),
              sampling.probabilities(logits, top_p=1e-12), sampling.probabilities(logits, 0, 3, 0.5)):
        np.testing.assert_array_equal(host(p), one_hot)
    rng = np.random.default_rng(0)
    for kwargs in (dict(temperature=0), dict(top_k=1), dict(top_p=1e-12)):
        assert int(sampling.sample(logits, rng, **kwargs)) == best


@given(logit_rows, st.floats(0.1, 3.0))
def test_top_k_vocabulary_and_top_p_one_is_plain_sampling(row, t):
    logits = as_xp(row)
    plain = host(sampling.probabilities(logits, t))
    np.testing.assert_array_equal(host(sampling.probabilities(logits, t, top_k=len(row), top_p=1.0)), plain)
    a = sampling.sample(xp.stack([logits] * 50), np.random.default_rng(7), t)
    b = sampling.sample(xp.stack([logits] * 50), np.random.default_rng(7), t, top_k=len(row), top_p=1.0)
    np.testing.assert_array_equal(host(a), host(b))


def test_float32_logits_stay_float32():
    logits = xp.asarray(np.array([[0.1, 0.2, 0.7]], dtype=np.float32))
    for out in (sampling.apply_temperature(logits, 0.5), sampling.apply_temperature(logits, 0),
                sampling.top_k_filter(logits, 2), sampling.top_p_filter(logits, 0.5),
                sampling.probabilities(logits, 0.5, 2, 0.9)):
        assert out.dtype == np.float32


# ---------------------------------------------------------------- the draw


def test_stratified_grid_gives_exact_counts():
    probs = np.array([0.1, 0.25, 0.0, 0.4, 0.25])
    n = 1000
    uniforms = (np.arange(n) + 0.5) / n                      # one uniform per 1/n of [0, 1)
    tokens = sampling.inverse_cdf(np.tile(probs, (n, 1)), uniforms)
    np.testing.assert_array_equal(np.bincount(tokens, minlength=5), [100, 250, 0, 400, 250])
    tokens = sampling.inverse_cdf(np.tile(probs * 3.0, (n, 1)), uniforms)   # unnormalised: scaled by the total
    np.testing.assert_array_equal(np.bincount(tokens, minlength=5), [100, 250, 0, 400, 250])


@given(logit_rows, temperatures, top_ks, top_ps)
@settings(max_examples=60)
def test_stratified_grid_counts_are_within_one_of_n_times_p(row, temperature, top_k, top_p):
    p = host(sampling.probabilities(as_xp(row), temperature, top_k, top_p))
    n = 2000
    tokens = sampling.inverse_cdf(np.tile(p, (n, 1)), (np.arange(n) + 0.5) / n)
    counts = np.bincount(tokens, minlength=len(row))
    assert np.abs(counts - n * p).max() <= 1.0 + 1e-9
    assert counts[p == 0].sum() == 0


def test_draw_edges_never_pick_zero_probability_tokens():
    probs = np.array([[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]])
    for u in (0.0, 0.5, np.nextafter(1.0, 0.0)):
        tokens = sampling.inverse_cdf(probs, np.array([u, u]))
        assert tokens[0] in (1, 2) and tokens[1] == 2
    assert list(sampling.inverse_cdf(probs, np.array([0.0, 0.3]))) == [1, 2]


def counts_and_expected(draw_temperature, model_temperature, n=20000, seed=1234):
    logits = as_xp([0.3, -0.2, 1.1, 0.0, -0.7, 0.6])
    tokens = host(sampling.sample(xp.stack([logits] * n), np.random.default_rng(seed), draw_temperature))
    expected = n * host(sampling.probabilities(logits, model_temperature))
    return np.bincount(tokens, minlength=6), expected


def test_chi_square_of_20000_draws_against_probabilities():
    counts, expected = counts_and_expected(0.8, 0.8)
    assert expected.min() >= 50
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert statistic < scipy.stats.chi2.ppf(0.999, df=len(counts) - 1)


def test_chi_square_with_filters():
    logits = as_xp([2.0, 1.5, 1.0, 0.5, 0.0, -3.0, -INF, 1.2])
    n = 20000
    p = host(sampling.probabilities(logits, 1.3, top_k=6, top_p=0.95))
    tokens = host(sampling.sample(xp.stack([logits] * n), np.random.default_rng(99), 1.3, 6, 0.95))
    counts = np.bincount(tokens, minlength=8)
    kept = p > 0
    assert (counts[~kept] == 0).all()
    assert (n * p[kept]).min() >= 50
    assert scipy.stats.chisquare(counts[kept], n * p[kept]).pvalue > 1e-3


def test_a_sampler_ignoring_temperature_would_fail():
    counts, expected = counts_and_expected(0.5, 1.0)        # draws at tau 0.5, judged against tau 1
    assert scipy.stats.chisquare(counts, expected).pvalue < 1e-10


def test_same_seed_same_tokens_one_uniform_per_row():
    logits = xp.stack([as_xp([0.1, 0.5, -1.0, 2.0])] * 5)
    a = sampling.sample(logits, np.random.default_rng(3), 1.5, 3, 0.9)
    b = sampling.sample(logits, np.random.default_rng(3), 1.5, 3, 0.9)
    np.testing.assert_array_equal(host(a), host(b))
    rng = np.random.default_rng(3)
    sampling.sample(logits, rng, 0.0)
    assert rng.random() == np.random.default_rng(3).random(6)[5]   # exactly 5 draws were used
    assert sampling.sample(as_xp([0.0, 1.0]), rng).shape == ()
    assert sampling.sample(logits, rng).dtype == np.int64


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(temperature=-0.1), ValueError, "temperature must be a finite number >= 0"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(temperature="hot"), TypeError, "temperature must be a real number"),
    (dict(top_k=0), ValueError, "top_k must be >= 1, got 0"),
    (dict(top_k=2.0), TypeError, "top_k must be an integer"),
    (dict(top_k=True), TypeError, "top_k must be an integer"),
    (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), ValueError, r"top_p must be in \(0, 1\], got 1.5"),
    (dict(top_p=float("nan")), ValueError, "top_p must be in"),
    (dict(top_p=True), TypeError, "top_p must be a real number"),
])
def test_invalid_settings_are_clear_errors(kwargs, error, message):
    logits = as_xp([0.0, 1.0])
    with pytest.raises(error, match=message):
        sampling.probabilities(logits, **kwargs)
    with pytest.raises(error, match=message):
        sampling.sample(logits, np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("logits, message", [
    ([0.0, float("nan")], "logits contain NaN"),
    ([0.0, INF], r"logits contain \+inf"),
    ([[0.0, 1.0], [-INF, -INF]], "row 1 of the logits has no finite value: all logits are -inf"),
    ([-INF, -INF], "all logits are -inf"),
])
def test_invalid_logits_are_clear_errors(logits, message):
    for call in (lambda x: sampling.probabilities(x), lambda x: sampling.sample(x, np.random.default_rng(0)),
                 lambda x: sampling.top_k_filter(x, 1), lambda x: sampling.top_p_filter(x, 0.5),
                 lambda x: sampling.apply_temperature(x, 1.0)):
        with pytest.raises(ValueError, match=message):
            call(as_xp(logits))


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="vocabulary axis"):
        sampling.probabilities(xp.asarray(np.float64(1.0)))
    with pytest.raises(TypeError, match="floating-point"):
        sampling.probabilities(xp.asarray(np.array([True, False])))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        sampling.sample(as_xp([0.0, 1.0]), 42)
    np.testing.assert_allclose(host(sampling.probabilities(xp.asarray(np.array([0, 1])))),
                               [1 / (1 + math.e), math.e / (1 + math.e)])
