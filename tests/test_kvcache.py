"""The KV cache: its buffers, and exactness: cached logits equal a full recomputation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import backend, generation, no_grad
from minillm.backend import xp
from minillm.kvcache import KVCache
from minillm.models import GPT, GPTConfig


def host(a):
    return backend.to_numpy(a)


def random_model(config, seed=0, std=0.5):
    """A GPT whose weights are N(0, std^2): large enough that greedy decoding varies
    (GPT-2's N(0, 0.02^2) start gives near-uniform logits and the same token every step)."""
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():
        p.data[...] = xp.asarray(rng.normal(0.0, std, p.data.shape).astype(p.data.dtype))
    model.eval()
    return model


@st.composite
def configs(draw, dtype="float64"):
    n_head = draw(st.integers(1, 3))
    return GPTConfig(vocab_size=draw(st.integers(2, 17)), block_size=draw(st.integers(1, 10)),
                     n_layer=draw(st.integers(1, 3)), n_head=n_head,
                     n_embd=n_head * draw(st.integers(1, 4)), dtype=dtype)


# ---------------------------------------------------------------- the buffers


def test_update_returns_the_whole_prefix_across_chunk_boundaries():
    rng = np.random.default_rng(0)
    cache = KVCache(2, chunk=3)
    seen_k, seen_v = [], []
    for t_new in (2, 1, 1, 4, 1, 4):                         # crosses 3, 6, 9 and 12
        k = xp.asarray(rng.normal(size=(2, 3, t_new, 5)))
        v = xp.asarray(rng.normal(size=(2, 3, t_new, 5)))
        seen_k.append(host(k))
        seen_v.append(host(v))
        for layer in range(2):
            all_k, all_v = cache.update(layer, k + layer, v - layer)
            np.testing.assert_array_equal(host(all_k), np.concatenate(seen_k, axis=2) + layer)
            np.testing.assert_array_equal(host(all_v), np.concatenate(seen_v, axis=2) - layer)
        cache.advance(t_new)
        assert cache.position == sum(x.shape[2] for x in seen_k)
    T = cache.position
    assert cache.nbytes() == 2 * 2 * 2 * T * (3 * 5) * 8      # 2 * n_layer * B * T * n_embd * itemsize
    assert cache.allocated_bytes() == 2 * 2 * 2 * 3 * 15 * 5 * 8   # 13 tokens in 5 whole chunks of 3
    assert "position=13" in repr(cache)


def test_capacity_allocates_once_and_reset_reuses_the_buffers():
    cache = KVCache(1, chunk=4, capacity=10)
    k = xp.zeros((1, 2, 3, 4))
    cache.update(0, k, k)
    buffer = cache.keys[0]
    assert buffer.shape == (1, 2, 10, 4)
    cache.advance(3)
    cache.update(0, xp.zeros((1, 2, 7, 4)), xp.zeros((1, 2, 7, 4)))
    assert cache.keys[0] is buffer                            # 10 tokens fit: no regrowth
    cache.advance(7)
    cache.update(0, xp.ones((1, 2, 1, 4)), xp.ones((1, 2, 1, 4)))
    assert cache.keys[0].shape == (1, 2, 12, 4)               # then whole chunks of 4
    cache.reset()
    assert cache.position == 0 and cache.nbytes() == 0
    all_k, _ = cache.update(0, 2 * xp.ones((3, 2, 1, 4)), xp.ones((3, 2, 1, 4)))  # another batch size
    assert all_k.shape == (3, 2, 1, 4) and float(all_k.sum()) == 2 * 3 * 2 * 4
    cache.clear()
    assert cache.keys == [None] and cache.allocated_bytes() == 0


def test_cache_errors():
    cache = KVCache(2)
    k = xp.zeros((1, 2, 3, 4))
    with pytest.raises(IndexError, match=r"layer 2 is outside \[0, 2\)"):
        cache.update(2, k, k)
    with pytest.raises(ValueError, match="must both be"):
        cache.update(0, k, xp.zeros((1, 2, 3, 5)))
    cache.update(0, k, k)
    cache.advance(3)
    with pytest.raises(ValueError, match="call reset"):
        cache.update(0, xp.zeros((2, 2, 1, 4)), xp.zeros((2, 2, 1, 4)))
    with pytest.raises(ValueError, match="n_layer must be a positive integer"):
        KVCache(0)
    with pytest.raises(ValueError, match="capacity"):
        KVCache(1, capacity=0)


# ---------------------------------------------------------------- exactness against the model


def assert_cache_matches_full_forward(model, ids, splits, tol):
    """Feed ``ids`` through the cache in pieces; every position's logits equal one full forward."""
    with no_grad():
        full = host(model(ids).data)                                      # (B, T, V)
        cache = KVCache(model.config.n_layer, chunk=2)
        pieces, start = [], 0
        for stop in splits + [ids.shape[1]]:
            if stop > start:
                pieces.append(host(model(ids[:, start:stop], cache=cache).data))
                start = stop
        assert cache.position == ids.shape[1]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=tol)


@given(configs(), st.data())
@settings(max_examples=25)
def test_cached_pieces_equal_the_full_forward_float64(config, data):
    T = data.draw(st.integers(1, config.block_size))
    B = data.draw(st.integers(1, 2))
    splits = sorted(data.draw(st.lists(st.integers(1, T), max_size=4)))
    ids = xp.asarray(np.random.default_rng(T).integers(0, config.vocab_size, (B, T)))
    assert_cache_matches_full_forward(random_model(config, seed=B), ids, splits, 1e-10)


def test_cached_pieces_equal_the_full_forward_float32():
    config = GPTConfig(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=8, dtype="float32")
    ids = xp.asarray(np.random.default_rng(0).integers(0, 23, (2, 16)))
    assert_cache_matches_full_forward(random_model(config, std=0.3), ids, [5, 6, 7, 12], 1e-5)


def decode_both_ways(model, prompt, new, slide_keep, temperature=0.0, seed=0):
    """Every step's logits and token, with the cache and with full recomputation."""
    with no_grad():
        runs = [list(generation.stream(model, prompt, new, temperature, None, None, seed, use_cache, slide_keep))
                for use_cache in (True, False)]
    return [(np.stack([host(l) for l, _ in run]), np.stack([host(t) for _, t in run])) for run in runs]


@given(configs(), st.data())
@settings(max_examples=25)
def test_every_generated_step_matches_recomputation_float64(config, data):
    """Also past block_size: both paths slide their window by the same rule."""
    block = config.block_size
    prompt_len = data.draw(st.integers(1, block + 3))
    new = data.draw(st.integers(1, 3 * block + 2))
    keep = data.draw(st.integers(1, block))
    prompt = xp.asarray(np.random.default_rng(prompt_len).integers(0, config.vocab_size, (2, prompt_len)))
    (cached_logits, cached_tokens), (full_logits, full_tokens) = decode_both_ways(
        random_model(config, seed=new), prompt, new, keep)
    np.testing.assert_allclose(cached_logits, full_logits, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(cached_tokens, full_tokens)


def test_every_generated_step_matches_recomputation_float32_with_sampling():
    config = GPTConfig(vocab_size=31, block_size=12, n_layer=2, n_head=2, n_embd=16, dtype="float32")
    prompt = xp.asarray(np.array([[3, 1, 4, 1, 5]]))
    (cached_logits, cached_tokens), (full_logits, full_tokens) = decode_both_ways(
        random_model(config, std=0.3), prompt, 30, 5, temperature=1.0, seed=11)
    np.testing.assert_allclose(cached_logits, full_logits, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cached_tokens, full_tokens)
    assert len(set(cached_tokens[:, 0].tolist())) > 3                 # really sampling, not one token


def test_greedy_tokens_vary_so_the_comparison_means_something():
    config = GPTConfig(vocab_size=13, block_size=6, n_layer=2, n_head=2, n_embd=8, dtype="float64")
    (_, tokens), _ = decode_both_ways(random_model(config), xp.asarray(np.array([[1, 2]])), 20, 3)
    assert len(set(tokens[:, 0].tolist())) >= 2


def test_window_rule():
    # block 4, keep 2: window [0, 4) then, at length 5, restart at the last 2 tokens.
    assert generation.window_start(0, 4, 4, 2) == 0
    assert generation.window_start(0, 5, 4, 2) == 3
    assert generation.window_start(3, 7, 4, 2) == 3
    assert generation.window_start(3, 8, 4, 2) == 6
    assert generation.window_start(0, 5, 4, 4) == 1                    # keep = block: slide by one


def test_slide_keep_block_size_is_nanogpts_rule():
    """Greedy with slide_keep=block_size equals the textbook loop on idx[:, -block_size:]."""
    config = GPTConfig(vocab_size=11, block_size=5, n_layer=2, n_head=1, n_embd=6, dtype="float64")
    model = random_model(config, seed=3)
    ids = np.array([[2, 7]])
    with no_grad():
        for _ in range(14):
            logits = host(model(xp.asarray(ids[:, -5:])).data)[:, -1]
            ids = np.concatenate([ids, logits.argmax(-1)[:, None]], axis=1)
    for use_cache in (True, False):
        out = generation.generate(model, np.array([[2, 7]]), 14, temperature=0, slide_keep=5, use_cache=use_cache)
        np.testing.assert_array_equal(host(out), ids)
