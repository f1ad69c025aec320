"""Tests for minillm.evaluate: perplexity, sliding windows, log-probabilities, zero-shot classification."""
import math
from types import SimpleNamespace

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.functional as F
from minillm import Tensor, backend
from minillm.backend import xp
from minillm.evaluate import (classify, evaluate_lm, perplexity, sequence_logprob, token_logprobs,
                              window_plan)
from minillm.models import GPT, GPTConfig
from minillm.tokenizers import CharTokenizer


class TableModel:
    """A stub language model whose logits depend on the token *and its position in the window*:

        logits[b, t] = token_table[idx[b, t]] + position_table[t]      (float64)

    so a target's log-probability tells which window (and position) scored it.
    Every call's input is recorded in ``calls``.
    """

    def __init__(self, vocab_size, block_size, seed=0):
        rng = numpy.random.default_rng(seed)
        self.config = SimpleNamespace(vocab_size=vocab_size, block_size=block_size)
        self.token_table = rng.normal(size=(vocab_size, vocab_size))
        self.position_table = rng.normal(size=(block_size, vocab_size))
        self.calls = []

    def __call__(self, idx):
        idx = backend.to_numpy(idx)
        assert idx.ndim == 2 and 1 <= idx.shape[1] <= self.config.block_size, idx.shape
        self.calls.append(idx.copy())
        return Tensor(xp.asarray(self.token_table[idx] + self.position_table[:idx.shape[1]]))  # (B, L, V)

    def logprob(self, previous, position, target):
        """log p(target | previous token at window position ``position``), by hand."""
        u = self.token_table[previous] + self.position_table[position]
        return u[target] - (u.max() + math.log(numpy.exp(u - u.max()).sum()))


def brute_force_assignment(n, block_size, stride):
    """{target j: (window start, position)} by the DESIGN rule, one window at a time."""
    assigned, k = {}, 0
    while len(assigned) < n - 1:
        start = k * stride
        for p in range(block_size):
            j = start + p + 1
            if j <= n - 1 and j not in assigned:
                assigned[j] = (start, p)
        k += 1
    return assigned


def tiny_gpt(vocab_size=11, block_size=8, seed=0, dropout=0.0):
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=8,
                       dropout=dropout, dtype="float64")
    return GPT(config, seed=seed)


# ---------------------------------------------------------------- perplexity

def test_equal_logits_give_perplexity_equal_to_the_vocabulary_size():
    model = tiny_gpt(vocab_size=13)
    model.ln_f.weight.data[...] = 0.0            # ln_f output 0, so logits = 0 @ wte^T = 0
    model.ln_f.bias.data[...] = 0.0
    ids = numpy.random.default_rng(0).integers(0, 13, size=30)
    with_logits = model(ids[None, :8]).data
    assert float(xp.abs(with_logits).max()) == 0.0
    assert perplexity(model, ids) == pytest.approx(13.0, rel=1e-13)
    assert perplexity(model, ids, stride=3) == pytest.approx(13.0, rel=1e-13)
    result = evaluate_lm(model, ids, n_chars=29)
    assert result["bits_per_token"] == pytest.approx(math.log2(13), rel=1e-13)
    assert result["bits_per_char"] == pytest.approx(math.log2(13), rel=1e-13)  # one char per token


def test_perplexity_is_exp_of_the_training_cross_entropy():
    model = tiny_gpt(seed=1)
    ids = numpy.random.default_rng(1).integers(0, 11, size=3 * 8 + 1)
    one_window = ids[:9]
    loss = F.cross_entropy(model(one_window[None, :-1]), one_window[None, 1:]).item()
    assert perplexity(model, one_window) == pytest.approx(math.exp(loss), rel=1e-12)
    # back-to-back windows (stride = block_size) are a batch of 3 training rows
    x, y = ids[:-1].reshape(3, 8), ids[1:].reshape(3, 8)
    loss = F.cross_entropy(model(x), y).item()
    for batch_size in (1, 2, 8):
        assert perplexity(model, ids, batch_size=batch_size) == pytest.approx(math.exp(loss), rel=1e-12)
    result = evaluate_lm(model, ids)
    assert result["nats"] == pytest.approx(loss, rel=1e-12)
    assert result["bits_per_token"] == pytest.approx(loss / math.log(2), rel=1e-12)
    assert result["tokens"] == 24 and result["bits_per_char"] is None
    assert result["total_nats"] == pytest.approx(24 * loss, rel=1e-12)


@settings(max_examples=30)
@given(n=st.integers(2, 60), block_size=st.integers(1, 9), data=st.data())
def test_sliding_window_scores_each_token_exactly_once_with_the_designed_context(n, block_size, data):
    stride = data.draw(st.integers(1, block_size), label="stride")
    batch_size = data.draw(st.integers(1, 4), label="batch_size")
    model = TableModel(vocab_size=7, block_size=block_size, seed=n)
    ids = numpy.random.default_rng(n + 100).integers(0, 7, size=n)
    got = token_logprobs(model, ids, stride=stride, batch_size=batch_size)
    assigned = brute_force_assignment(n, block_size, stride)
    assert sorted(assigned) == list(range(1, n))            # every target, once
    expected = [model.logprob(ids[j - 1], p, ids[j]) for j, (start, p) in sorted(assigned.items())]
    numpy.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # every window fed was the designed slice ids[k*stride : k*stride + block_size]
    # (cut before the text's final token, which has no target)
    rows = [row for call in model.calls for row in call]
    starts = sorted({start for start, _ in assigned.values()})
    assert len(rows) == len(starts)
    fed = sorted(tuple(r) for r in rows)
    designed = sorted(tuple(ids[s:min(s + block_size, n - 1)]) for s in starts)
    assert fed == designed
    assert all(s % stride == 0 for s in starts)


def test_window_plan_examples_and_a_smaller_stride_gives_more_context():
    assert window_plan(9, 4) == [(0, 0), (4, 0)]
    assert window_plan(2, 4) == [(0, 0)]
    assert window_plan(7, 3, stride=1) == [(0, 0), (1, 2), (2, 2), (3, 2)]
    # a trained-ish model: with stride 1, every target after the first window sees T-1 tokens
    model = tiny_gpt(seed=2)
    ids = numpy.random.default_rng(2).integers(0, 11, size=40)
    a, b = token_logprobs(model, ids, stride=8), token_logprobs(model, ids, stride=1)
    numpy.testing.assert_allclose(a[:8], b[:8], rtol=1e-12)  # the first window is the same
    assert not numpy.allclose(a[8:], b[8:])


def test_evaluation_runs_in_eval_mode_and_restores_training_mode():
    model = tiny_gpt(seed=3, dropout=0.5).train()
    ids = numpy.random.default_rng(3).integers(0, 11, size=20)
    first, second = perplexity(model, ids), perplexity(model, ids)
    assert first == second                                # dropout was off
    assert model.training is True
    model.eval()
    assert perplexity(model, ids) == first


def test_perplexity_errors_say_what_is_wrong():
    model = TableModel(vocab_size=5, block_size=4)
    with pytest.raises(ValueError, match="at least 2 token ids"):
        perplexity(model, [])
    with pytest.raises(ValueError, match="at least 2 token ids"):
        perplexity(model, [3])
    with pytest.raises(ValueError, match=r"1-D"):
        perplexity(model, numpy.zeros((2, 3), dtype=numpy.int64))
    with pytest.raises(TypeError, match="integers, got float64"):
        perplexity(model, numpy.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"token id 5 is outside the vocabulary \[0, 5\)"):
        perplexity(model, [1, 5, 2])
    with pytest.raises(ValueError, match="stride must be an integer in \\[1, block_size=4\\], got 5"):
        perplexity(model, [1, 2, 3], stride=5)
    with pytest.raises(ValueError, match="stride"):
        perplexity(model, [1, 2, 3], stride=0)
    with pytest.raises(ValueError, match="n_chars"):
        evaluate_lm(model, [1, 2, 3], n_chars=0)
    with pytest.raises(TypeError, match="block_size"):
        perplexity(object(), [1, 2, 3])
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        perplexity(model, [1, 2, 3], batch_size=0)


def test_default_batch_size_bounds_the_logits():
    from minillm.evaluate import _default_batch_size
    assert _default_batch_size(64, 76) == 8              # a char model: 8 windows at once
    assert _default_batch_size(1024, 50257) == 1         # GPT-2: one window (51M logits) at a time


# ---------------------------------------------------------------- sequence log-probability

TEXT = "hello world, the sentiment is positive or negative"


def test_sequence_logprob_is_the_sum_of_hand_computed_token_logprobs():
    tok = CharTokenizer.from_text(TEXT)
    model = tiny_gpt(vocab_size=tok.vocab_size, block_size=16, seed=4)
    prompt, continuation = "hello wor", "ld, the"
    ids = numpy.array(tok.encode(prompt + continuation))
    logits = model(ids[None, :-1]).data[0]                                   # (n-1, V)
    logp = backend.to_numpy(logits) - numpy.log(numpy.exp(backend.to_numpy(logits)).sum(-1, keepdims=True))
    P = len(prompt)
    by_hand = sum(logp[j - 1, ids[j]] for j in range(P, ids.size))
    assert sequence_logprob(model, tok, prompt, continuation) == pytest.approx(by_hand, rel=1e-12)


def test_a_long_prompt_is_cut_on_the_left_to_the_last_block_size_inputs():
    tok = CharTokenizer.from_text(TEXT)
    model = TableModel(vocab_size=tok.vocab_size, block_size=5, seed=5)
    prompt, continuation = "hello world, the", "pos"                        # 16 + 3 tokens, T = 5
    ids = tok.encode(prompt + continuation)
    got = sequence_logprob(model, tok, prompt, continuation)
    # one window: the last 5 inputs ids[13:18]; target j sits at position j - 1 - 13
    by_hand = sum(model.logprob(ids[j - 1], j - 1 - 13, ids[j]) for j in range(16, 19))
    assert got == pytest.approx(by_hand, rel=1e-12)
    assert [list(row) for call in model.calls for row in call] == [ids[13:18]]


def test_a_continuation_longer_than_block_size_is_scored_by_sliding_windows():
    tok = CharTokenizer.from_text(TEXT)
    model = TableModel(vocab_size=tok.vocab_size, block_size=4, seed=6)
    prompt, continuation = "hello world", ", the sentiment"                 # P = 11, C = 15 > T = 4
    ids = tok.encode(prompt + continuation)
    P, T = len(prompt), 4
    got = sequence_logprob(model, tok, prompt, continuation)
    # windows start at P - T = 7 and move by T: target j lies in window s = 7 + 4 * ((j - 8) // 4)
    by_hand = 0.0
    for j in range(P, len(ids)):
        s = (P - T) + T * ((j - (P - T) - 1) // T)
        by_hand += model.logprob(ids[j - 1], j - 1 - s, ids[j])
    assert got == pytest.approx(by_hand, rel=1e-12)


def test_sequence_logprob_errors():
    tok = CharTokenizer.from_text(TEXT)
    model = TableModel(vocab_size=tok.vocab_size, block_size=8)
    with pytest.raises(ValueError, match="prompt encodes to no tokens"):
        sequence_logprob(model, tok, "", "hello")
    with pytest.raises(ValueError, match="continuation '' encodes to no tokens"):
        sequence_logprob(model, tok, "hello", "")
    with pytest.raises(TypeError, match="prompt must be a string"):
        sequence_logprob(model, tok, 3, "hello")


# ---------------------------------------------------------------- classification

def test_classify_probabilities_sum_to_one_and_follow_the_log_probabilities():
    tok = CharTokenizer.from_text(TEXT)
    model = tiny_gpt(vocab_size=tok.vocab_size, block_size=32, seed=7)
    prompt, labels = "the sentiment is", [" positive", " negative", " so"]
    probs = classify(model, tok, prompt, labels)
    assert list(probs) == labels
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(0.0 < p < 1.0 for p in probs.values())
    scores = numpy.array([sequence_logprob(model, tok, prompt, label) for label in labels])
    expected = numpy.exp(scores - scores.max()) / numpy.exp(scores - scores.max()).sum()
    numpy.testing.assert_allclose(list(probs.values()), expected, rtol=1e-10)
    normalised = classify(model, tok, prompt, labels, length_normalize=True)
    lengths = numpy.array([len(label) for label in labels])
    expected = numpy.exp(scores / lengths - (scores / lengths).max())
    numpy.testing.assert_allclose(list(normalised.values()), expected / expected.sum(), rtol=1e-10)
    assert classify(model, tok, prompt, [" so"]) == {" so": 1.0}


def test_classify_picks_the_label_the_model_prefers():
    tok = CharTokenizer.from_text(TEXT)
    model = TableModel(vocab_size=tok.vocab_size, block_size=8, seed=8)
    model.token_table[tok.encode(" ")[0], tok.encode("p")[0]] = 50.0   # after a space, "p" is near certain
    # both labels start with " "; the second token ("p" or "n") decides
    probs = classify(model, tok, "the sentiment is", [" positive", " negative"])
    assert probs[" positive"] > 0.999


def test_classify_errors():
    tok = CharTokenizer.from_text(TEXT)
    model = TableModel(vocab_size=tok.vocab_size, block_size=8)
    with pytest.raises(ValueError, match="labels is empty"):
        classify(model, tok, "hello", [])
    with pytest.raises(ValueError, match="distinct"):
        classify(model, tok, "hello", [" pos", " pos"])
    with pytest.raises(TypeError, match="list of strings"):
        classify(model, tok, "hello", " positive")
