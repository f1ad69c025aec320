"""Tests for minillm.ngram: counts, add-k and Kneser-Ney against hand computations, the
distribution summing to 1 for any context, perplexity through minillm.evaluate, sampling."""
import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.evaluate import perplexity, token_logprobs
from minillm.ngram import NGramConfig, NGramLM

A, B, C, D, E = range(5)
TEXT = [A, B, C, A, B, D, A, B, C]          # "a b c a b d a b c", vocabulary a ... e (e never seen)


@settings(max_examples=30)
@given(ids=st.lists(st.integers(0, 5), min_size=4, max_size=40), order=st.integers(1, 4),
       smoothing=st.sampled_from(["add_k", "kneser_ney"]), context=st.lists(st.integers(0, 5), max_size=5),
       k=st.floats(0.01, 2.0), discount=st.floats(0.1, 1.0))
def test_probabilities_sum_to_one_for_any_context(ids, order, smoothing, context, k, discount):
    model = NGramLM.fit(ids, order, vocab_size=6, smoothing=smoothing, k=k, discount=discount)
    p = model.probabilities(context)
    assert p.shape == (6,)
    assert abs(p.sum() - 1.0) < 1e-12
    assert (p > 0).all(), "smoothing must leave no token at probability 0"


def test_add_k_by_hand():
    model = NGramLM.fit(TEXT, 3, vocab_size=5, smoothing="add_k", k=0.5)
    # c(a b) = 3: followed by c twice, d once. (c(h w) + k) / (c(h) + k V) with k V = 2.5
    expected = numpy.array([0.5, 0.5, 2.5, 1.5, 0.5]) / 5.5
    numpy.testing.assert_allclose(model.probabilities([A, B]), expected, rtol=1e-12)
    # an unseen context gives the uniform distribution
    numpy.testing.assert_allclose(model.probabilities([E, E]), numpy.full(5, 0.2), rtol=1e-12)
    # the unigram (empty context): counts a 3, b 3, c 2, d 1, e 0 of 9
    numpy.testing.assert_allclose(model.probabilities([]), (numpy.array([3, 3, 2, 1, 0]) + 0.5) / 11.5)


def test_kneser_ney_by_hand():
    model = NGramLM.fit(TEXT, 3, vocab_size=5, smoothing="kneser_ney", discount=0.75)
    # unigram continuation counts N1+(. w) over the distinct bigrams ab bc ca bd da:
    #   a: 2 (ca, da), b 1, c 1, d 1, e 0; total 5, 4 types: lambda = 0.75 * 4 / 5, base 1/5
    unigram = numpy.array([1.25, 0.25, 0.25, 0.25, 0.0]) / 5 + 0.75 * 4 / 5 / 5
    numpy.testing.assert_allclose(unigram, [0.37, 0.17, 0.17, 0.17, 0.12])
    # bigram after b, continuation counts of (. b c) = 1 and (. b d) = 1: total 2, lambda 0.75
    bigram = 0.75 * unigram + numpy.array([0, 0, 0.25, 0.25, 0]) / 2
    # trigram after "a b", raw counts c 2, d 1: total 3, lambda = 0.75 * 2 / 3 = 0.5
    trigram = 0.5 * bigram + numpy.array([0, 0, 1.25, 0.25, 0]) / 3
    numpy.testing.assert_allclose(trigram, [0.13875, 0.06375, 0.542916666, 0.209583333, 0.045], rtol=1e-8)
    numpy.testing.assert_allclose(model.probabilities([A, B]), trigram, rtol=1e-12)
    numpy.testing.assert_allclose(model.probabilities([C, A, B]), trigram, rtol=1e-12)  # only n-1 count
    # unseen contexts fall through to the lower orders' continuation distributions
    numpy.testing.assert_allclose(model.probabilities([E, E]), unigram, rtol=1e-12)
    numpy.testing.assert_allclose(model.probabilities([E, B]), bigram, rtol=1e-12)
    # the top order of a short context uses raw counts: unigram counts a 3, b 3, c 2, d 1 of 9
    numpy.testing.assert_allclose(model.probabilities([]),
                                  numpy.array([2.25, 2.25, 1.25, 0.25, 0]) / 9 + 0.75 * 4 / 9 / 5)


@pytest.mark.parametrize("smoothing", ["add_k", "kneser_ney"])
def test_uniform_counts_give_perplexity_v(smoothing):
    V = 7
    ids = numpy.tile(numpy.arange(V), 20)                       # every token equally often
    model = NGramLM.fit(ids, 1, vocab_size=V, smoothing=smoothing, block_size=16)
    assert math.isclose(perplexity(model, ids), V, rel_tol=1e-12)


@pytest.mark.parametrize("stride", [None, 3])
def test_perplexity_uses_the_gpt_windows(stride):
    rng = numpy.random.default_rng(0)
    train, held_out = rng.integers(0, 4, 200), rng.integers(0, 4, 23)
    n, T = 3, 5
    model = NGramLM.fit(train, n, vocab_size=4, block_size=T)
    logp = token_logprobs(model, held_out, stride=stride)
    # brute force: target j is scored by the first window reaching it; its context is the
    # last n - 1 tokens inside that window
    stride = T if stride is None else stride
    expected = []
    for j in range(1, held_out.size):
        start = 0
        while start + T < j:                                    # the window must contain j - 1 ... (input)
            start += stride
        context = held_out[max(start, j - (n - 1)):j]
        expected.append(math.log(model.probabilities(context)[held_out[j]]))
    numpy.testing.assert_allclose(logp, expected, rtol=1e-12)


def test_lower_orders_share_the_counts():
    rng = numpy.random.default_rng(1)
    ids = rng.integers(0, 6, 300)
    big = NGramLM.fit(ids, 4, vocab_size=6)
    for order in (1, 2, 3):
        small = NGramLM.fit(ids, order, vocab_size=6)
        for context in ([], [1], [2, 3], [5, 0, 1]):
            numpy.testing.assert_allclose(big.with_order(order).probabilities(context),
                                          small.probabilities(context), rtol=1e-12)


def test_large_vocabularies_count_rows_directly():
    ids = numpy.array([0, 70000, 5, 0, 70000, 6], dtype=numpy.int64)
    model = NGramLM.fit(ids, 5, vocab_size=70001, smoothing="add_k", k=1.0)   # 70001^5 > 2^63
    p = model.probabilities([0, 70000])
    assert p[5] == p[6] == 2.0 / (2 + 70001)


def test_generate_is_seeded_and_follows_the_counts():
    model = NGramLM.fit([0, 1, 2] * 30, 2, vocab_size=4)
    assert model.generate([0], 8, temperature=0) == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    a = model.generate([0], 50, seed=3)
    assert a == model.generate([0], 50, seed=3)
    assert a != model.generate([0], 50, seed=4)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="smoothing"):
        NGramConfig(2, 5, smoothing="witten_bell")
    with pytest.raises(ValueError, match="k must be > 0"):
        NGramConfig(2, 5, smoothing="add_k", k=0)
    with pytest.raises(ValueError, match="order"):
        NGramConfig(0, 5)
    with pytest.raises(ValueError, match=r"token id 9 is outside the vocabulary \[0, 5\)"):
        NGramLM.fit([1, 2, 9], 2, vocab_size=5)
    with pytest.raises(ValueError, match="at least 3 training ids"):
        NGramLM.fit([1, 2], 3, vocab_size=5)
