"""T5: gradients of its new pieces, cache exactness, generation (every sampler, EOS), errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minillm.hf
from minillm import GPT, GPTConfig, T5, T5Config, Tensor, gradcheck, no_grad
from minillm import functional as F
from minillm import generation, sampling
from minillm.backend import to_numpy as host, xp
from minillm.kvcache import EncoderDecoderCache
from minillm.models.t5 import T5Attention, relative_position_bucket
from minillm.nn import RMSNorm

TINY = dict(vocab_size=11, d_model=6, d_kv=3, d_ff=5, num_layers=1, num_decoder_layers=2, num_heads=2,
            relative_attention_num_buckets=4, relative_attention_max_distance=6, dtype="float64")


def tiny(seed=0, **overrides):
    return T5(T5Config(**{**TINY, **overrides}), seed=seed)


def varied():
    """A random T5 whose greedy tokens are not one token repeated (most tiny random ones are):
    rows [17, 10, 19, 8, 10, 19, 10, 19, ...] and [17, 10, 19, 10, 19, 10, ...] on ``padded_batch``."""
    return tiny(seed=2, vocab_size=23, d_model=16, d_ff=24, tie_word_embeddings=False, eos_token_id=22)


def padded_batch(rng, vocab, batch=2, length=5):
    """Encoder ids (B, Ts) with row 0 padded after 3 tokens, and its mask."""
    ids = rng.integers(2, vocab, (batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, 3:] = 0
    ids[0, 3:] = 0
    return ids, mask


# ---------------------------------------------------------------- gradients (float64, random upstream)

def test_gradcheck_cross_attention_through_the_encoder_output():
    config = T5Config(**TINY)
    attention = T5Attention(config, causal=False, cross=True, has_relative_attention_bias=False, layer_index=0,
                            rng=np.random.default_rng(0), dropout_rng=None)
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 3, 6)), requires_grad=True)          # decoder side (B, Td, C)
    states = Tensor(rng.standard_normal((2, 4, 6)), requires_grad=True)     # encoder output (B, Ts, C)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert gradcheck(lambda x, s, wk: attention(x, key_mask=mask, states=s), x, states, attention.k.weight)
    # padded encoder positions get exactly no gradient: nothing attends to them
    states.grad = None
    attention(x, key_mask=mask, states=states).backward(xp.asarray(rng.standard_normal((2, 3, 6))))
    assert (host(states.grad)[0, 2:] == 0).all() and (host(states.grad)[0, :2] != 0).all()


def test_gradcheck_rms_norm_layer():
    norm = RMSNorm(5, eps=1e-6, dtype="float64")
    norm.weight.data[...] = xp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, 5))
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 5)), requires_grad=True)
    assert gradcheck(lambda x, w: norm(x), x, norm.weight)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_relative_position_bias_through_attention(causal):
    config = T5Config(**TINY)
    attention = T5Attention(config, causal=causal, cross=False, has_relative_attention_bias=True, layer_index=0,
                            rng=np.random.default_rng(0), dropout_rng=None)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 5, 6)))
    table = attention.relative_attention_bias.weight                       # (num_buckets, H)
    assert gradcheck(lambda t: attention(x, attention.position_bias(5, 5, 0)), table)
    assert host(table.grad).any()


def test_gradcheck_whole_model_loss_through_the_tied_embedding():
    model = tiny(seed=2)
    rng = np.random.default_rng(3)
    ids, mask = padded_batch(rng, 11)
    decoder_ids = rng.integers(0, 11, (2, 4))
    targets = rng.integers(0, 11, (2, 4))
    targets[1, 3] = -100                                                    # ignored
    assert gradcheck(lambda w: model(ids, decoder_ids, mask, targets)[1], model.shared.weight, upstream=1.0)


def test_loss_is_the_mean_cross_entropy_of_the_logits():
    model = tiny()
    ids, mask = padded_batch(np.random.default_rng(0), 11)
    decoder_ids, targets = np.array([[0, 3, 4], [0, 5, 6]]), np.array([[3, 4, 1], [5, 6, -100]])
    with no_grad():
        logits, loss = model(ids, decoder_ids, mask, targets)
    logp = host(F.log_softmax(logits, axis=-1).data)
    picked = [logp[b, t, targets[b, t]] for b in range(2) for t in range(3) if targets[b, t] != -100]
    assert abs(float(loss.data) + np.mean(picked)) < 1e-12


def test_padding_does_not_change_the_unpadded_rows_logits():
    model = tiny()
    ids = np.array([[4, 5, 6, 0, 0]])
    with no_grad():
        padded = host(model(ids, [[0, 7, 8]], attention_mask=[[1, 1, 1, 0, 0]]).data)
        short = host(model(ids[:, :3], [[0, 7, 8]]).data)
    np.testing.assert_allclose(padded, short, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- the cache is exact

@st.composite
def t5_configs(draw):
    heads = draw(st.integers(1, 3))
    return T5Config(vocab_size=draw(st.integers(5, 13)), d_model=draw(st.integers(2, 6)), d_kv=draw(st.integers(1, 3)),
                    d_ff=draw(st.integers(2, 6)), num_layers=draw(st.integers(1, 2)),
                    num_decoder_layers=draw(st.integers(1, 3)), num_heads=heads,
                    relative_attention_num_buckets=draw(st.integers(4, 8)),
                    relative_attention_max_distance=draw(st.integers(4, 10)),
                    feed_forward_proj=draw(st.sampled_from(["relu", "gated-gelu"])),
                    tie_word_embeddings=draw(st.booleans()), n_positions=32, dtype="float64")


def decode_both_ways(model, ids, mask, new, temperature=0.0, top_k=None, top_p=None, seed=0):
    """Every step's logits and tokens, with the cache and with full recomputation."""
    with no_grad():
        runs = [list(generation.stream_encoder_decoder(model, xp.asarray(ids), mask, new, temperature, top_k, top_p,
                                                       seed, use_cache)) for use_cache in (True, False)]
    return [(np.stack([host(l) for l, _ in run]), np.stack([host(t) for _, t in run])) for run in runs]


@given(t5_configs(), st.data())
@settings(max_examples=20)
def test_every_generated_step_matches_recomputation_float64(config, data):
    model = T5(config, seed=data.draw(st.integers(0, 3)))
    ids, mask = padded_batch(np.random.default_rng(config.vocab_size), config.vocab_size)
    new = data.draw(st.integers(1, 20))                    # past max_distance: the log buckets too
    (cached_logits, cached_tokens), (full_logits, full_tokens) = decode_both_ways(model, ids, xp.asarray(mask), new)
    np.testing.assert_allclose(cached_logits, full_logits, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(cached_tokens, full_tokens)


def test_greedy_tokens_vary_so_the_comparison_means_something():
    ids, mask = padded_batch(np.random.default_rng(0), 23)
    (cached_logits, tokens), (full_logits, _) = decode_both_ways(varied(), ids, xp.asarray(mask), 12)
    assert len(set(tokens[:, 0].tolist())) >= 4
    np.testing.assert_allclose(cached_logits, full_logits, rtol=0, atol=1e-10)


def test_cached_pieces_equal_the_full_decoder_forward():
    model = tiny(seed=4)
    rng = np.random.default_rng(5)
    ids, mask = padded_batch(rng, 11)
    decoder_ids = rng.integers(0, 11, (2, 9))
    with no_grad():
        states = model.encode(ids, mask)
        full = host(model.decode(decoder_ids, states, mask).data)
        cache, pieces = EncoderDecoderCache(model.config.n_layer), []
        for start, stop in [(0, 1), (1, 4), (4, 5), (5, 9)]:
            pieces.append(host(model.decode(decoder_ids[:, start:stop], states, mask, cache=cache).data))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=1e-10)


def test_encoder_runs_once_and_cross_keys_values_are_computed_once(monkeypatch):
    model = tiny(seed=1)
    calls = {"encode": 0, "cross": 0}
    encode, keys_values = T5.encode, T5Attention.keys_values

    def counting_encode(self, *args):
        calls["encode"] += 1
        return encode(self, *args)

    def counting_keys_values(self, states):
        calls["cross"] += self.cross
        return keys_values(self, states)
    monkeypatch.setattr(T5, "encode", counting_encode)
    monkeypatch.setattr(T5Attention, "keys_values", counting_keys_values)
    ids, mask = padded_batch(np.random.default_rng(0), 11)
    for use_cache, cross_calls in [(True, 2), (False, 2 * 7)]:    # 2 decoder layers, 7 steps
        calls.update(encode=0, cross=0)
        out = model.generate(ids, 7, attention_mask=mask, use_cache=use_cache)
        assert out.shape == (2, 8) and calls == {"encode": 1, "cross": cross_calls}


# ---------------------------------------------------------------- generation

@pytest.mark.parametrize("temperature, top_k, top_p", [(0.0, None, None), (1.0, None, None), (0.8, 4, None),
                                                       (1.2, None, 0.7), (0.9, 5, 0.9)])
def test_every_sampler_equals_a_textbook_loop(temperature, top_k, top_p):
    """Recompute everything each step and draw sampling.sample from one Generator: the same tokens."""
    model = varied()
    model.config.eos_token_id = 10
    ids, mask = padded_batch(np.random.default_rng(1), 23)
    decoder = np.zeros((2, 1), dtype=np.int64)
    rng = np.random.default_rng(42)
    with no_grad():
        for _ in range(6):
            logits = model(ids, decoder, attention_mask=mask).data[:, -1]
            decoder = np.concatenate([decoder, host(sampling.sample(logits, rng, temperature, top_k, top_p))[:, None]],
                                     axis=1)
    for use_cache in (True, False):
        out = model.generate(ids, 6, temperature, top_k, top_p, seed=42, use_cache=use_cache, attention_mask=mask)
        finished = [list(row[1:]).index(10) + 1 if 10 in row[1:] else 7 for row in decoder]
        for row, end in enumerate(finished):   # equal up to EOS; pad_token_id after it
            np.testing.assert_array_equal(host(out)[row, :end + 1], decoder[row, :end + 1])
            assert (host(out)[row, end + 1:] == 0).all()


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = varied()
    ids, mask = padded_batch(np.random.default_rng(0), 23)
    free = host(model.generate(ids, 12, attention_mask=mask))
    assert free[0, 1:6].tolist() == [17, 10, 19, 8, 10] and free[1, 1:6].tolist() == [17, 10, 19, 10, 19]
    model.config.eos_token_id = 8                              # row 0 stops at step 4, row 1 goes on
    out = host(model.generate(ids, 12, attention_mask=mask))
    np.testing.assert_array_equal(out[1], free[1])
    np.testing.assert_array_equal(out[0, :5], free[0, :5])
    assert (out[0, 5:] == model.config.pad_token_id).all() and out.shape == (2, 13)
    model.config.eos_token_id = 19                             # both stop at step 3: the loop ends there
    np.testing.assert_array_equal(host(model.generate(ids, 12, attention_mask=mask)), free[:, :4])
    single = host(model.generate(ids[0], 12, attention_mask=mask[0]))
    assert single.tolist() == [0, 17, 10, 19]                  # one row (1-D in, 1-D out)


def test_generate_restores_training_mode_and_runs_without_gradient():
    model = tiny()
    model.train()
    model.generate([[3, 4]], 2)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_relative_buckets_by_hand():
    # bidirectional, 8 buckets: 4 a side, exact for |d| < 2, then 2 + floor(log2(|d| / 2)) up to 3;
    # the future (d > 0) takes the upper half, 4 + the same
    got = host(relative_position_bucket(np.arange(-9, 10), True, 8, 8)).tolist()
    assert got == [3, 3, 3, 3, 3, 3, 2, 2, 1, 0, 5, 6, 6, 7, 7, 7, 7, 7, 7]
    # causal, 8 buckets: exact for past distances < 4, then 4 + floor(4 log2(d / 4)) up to 7; future -> 0
    causal = host(relative_position_bucket(np.arange(-9, 3), False, 8, 8)).tolist()
    assert causal == [7, 7, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("overrides, error, message", [
    (dict(feed_forward_proj="gated-silu"), ValueError, "feed_forward_proj 'gated-silu' is not supported"),
    (dict(d_model=2.5), TypeError, "d_model must be an integer"),
    (dict(eos_token_id=11), ValueError, r"eos_token_id must be a token id in \[0, 11\)"),
    (dict(dropout_rate=1.0), ValueError, "dropout_rate"),
])
def test_config_errors_name_the_field(overrides, error, message):
    with pytest.raises(error, match=message):
        T5Config(**{**TINY, **overrides})


def test_call_errors(tmp_path):
    model = tiny(n_positions=6)
    with pytest.raises(ValueError, match=r"input_ids token id 11 is outside the vocabulary \[0, 11\)"):
        model([[1, 11]], [[0]])
    with pytest.raises(ValueError, match=r"decoder_input_ids token id -1 is outside"):
        model([[1, 2]], [[0, -1]])
    with pytest.raises(ValueError, match="decoder length 7 exceeds n_positions 6"):
        model([[1, 2]], [[0] * 7])
    with pytest.raises(ValueError, match=r"max_new_tokens 6 \+ the start token exceeds n_positions 6"):
        model.generate([[1, 2]], 6)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 3\); expected .* \(1, 2\)"):
        model([[1, 2]], [[0]], attention_mask=[[1, 1, 1]])
    GPT(GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, n_embd=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'gpt2'; this converter reads T5"):
        T5.from_pretrained(tmp_path)
    assert isinstance(minillm.hf.load(tmp_path), GPT)
