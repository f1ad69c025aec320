"""Llama's blocks and model: gradient checks in float64 with random upstream gradients
(SwiGLU, attention with RoPE and grouped K/V heads, with and without a cached prefix,
the whole model), KV-cache exactness, the cache's bytes against multi-head attention,
RoPE's relative-position property, and the config's errors."""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import Llama, LlamaConfig, Tensor, backend, gradcheck, no_grad
from minillm.kvcache import KVCache
from minillm.models.llama import LlamaAttention, LlamaMLP
from minillm.nn import RotaryEmbedding
from minillm.nn.rotary import llama3_inv_freq
from minillm.functional.rotary import rotary_inv_freq


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def tiny(**overrides):
    settings_ = dict(vocab_size=23, block_size=32, n_layer=2, n_head=4, n_embd=16, n_kv_head=2, n_hidden=24,
                     dtype="float64")
    settings_.update(overrides)
    return LlamaConfig(**settings_)


def normal(seed, shape, scale=1.0):
    return backend.asarray(numpy.random.default_rng(seed).standard_normal(shape) * scale)


def perturb_norms(model, seed=0):
    """RMSNorm weights start at 1: spread them so their gradients are checked on non-trivial values."""
    rng = numpy.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.data[...] = backend.asarray(rng.uniform(0.5, 1.5, p.shape))


@settings(max_examples=5, deadline=None)
@given(batch=st.integers(1, 2), t=st.integers(1, 4), width=st.sampled_from([4, 6]), seed=st.integers(0, 99))
def test_swiglu_mlp_gradients(batch, t, width, seed):
    mlp = LlamaMLP(width, 5, bias=True, rng=seed, std=0.5, proj_std=0.5, dtype="float64")
    x = Tensor(normal(seed, (batch, t, width)), requires_grad=True)
    params = [mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight, mlp.gate_proj.bias]
    assert gradcheck(lambda x, *_: mlp(x), x, *params, seed=seed)


def test_swiglu_is_down_of_silu_gate_times_up():
    mlp = LlamaMLP(4, 6, rng=1, std=0.5, proj_std=0.5, dtype="float64")
    x = host(normal(2, (2, 3, 4)))
    gate, up, down = (host(getattr(mlp, n).weight) for n in ("gate_proj", "up_proj", "down_proj"))
    a = x @ gate
    expected = ((a / (1 + numpy.exp(-a))) * (x @ up)) @ down
    numpy.testing.assert_allclose(host(mlp(Tensor(x))), expected, rtol=1e-12)


@settings(max_examples=4, deadline=None)
@given(n_kv_head=st.sampled_from([1, 2, 4]), t=st.integers(1, 4), seed=st.integers(0, 99))
def test_attention_block_gradients(n_kv_head, t, seed):
    """LlamaAttention: projections, RoPE, grouped K/V heads, causal softmax, o_proj."""
    config = tiny(n_kv_head=n_kv_head, attention_bias=True)
    rotary = RotaryEmbedding(config.head_dim, config.block_size, theta=100.0, dtype="float64")
    attn = LlamaAttention(config, 0, rotary, numpy.random.default_rng(seed), None)
    x = Tensor(normal(seed + 2, (2, t, config.n_embd)), requires_grad=True)
    weights = [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight, attn.k_proj.bias]
    assert gradcheck(lambda x, *_: attn(x), x, *weights, seed=seed)


@settings(max_examples=5, deadline=None)
@given(n_kv_head=st.sampled_from([1, 2, 4]), t=st.integers(1, 3), cached=st.integers(0, 3), seed=st.integers(0, 99))
def test_rotary_gqa_attention_with_a_cached_prefix_gradients(n_kv_head, t, cached, seed):
    """t new queries at positions cached .. cached + t - 1 against cached + t keys at 0 .. cached + t - 1:
    the gradient reaches every key and value, the prefix's too, through RoPE and the grouped heads."""
    from minillm.functional import apply_rotary, scaled_dot_product_attention
    rotary = RotaryEmbedding(4, 16, theta=100.0, dtype="float64")
    q = Tensor(normal(seed, (2, 4, t, 4)), requires_grad=True)
    k, v = (Tensor(normal(seed + i, (2, n_kv_head, cached + t, 4)), requires_grad=True) for i in (1, 2))

    def run(q, k, v):
        cos_q, sin_q = rotary.tables(cached, cached + t)
        cos_k, sin_k = rotary.tables(0, cached + t)
        return scaled_dot_product_attention(apply_rotary(q, cos_q, sin_q), apply_rotary(k, cos_k, sin_k), v)
    assert gradcheck(run, q, k, v, seed=seed)


def test_cached_prefix_attention_equals_the_full_pass_rows():
    """Attention over [prefix | new] with the prefix cached gives the full pass's last rows:
    so the new tokens were rotated at their absolute positions."""
    config = tiny()
    rotary = RotaryEmbedding(config.head_dim, config.block_size, dtype="float64")
    attn = LlamaAttention(config, 0, rotary, numpy.random.default_rng(0), None)
    x = normal(1, (2, 7, config.n_embd))
    with no_grad():
        full = host(attn(Tensor(x)))
        cache = KVCache(1)
        attn(Tensor(x[:, :4]), cache)
        cache.advance(4)
        tail = host(attn(Tensor(x[:, 4:]), cache))
        cache.reset()
        unrotated = host(attn(Tensor(x[:, 4:]), cache))           # the same tokens at positions 0..2
    numpy.testing.assert_allclose(tail, full[:, 4:], rtol=1e-10, atol=1e-12)
    assert not numpy.allclose(unrotated, full[:, 4:], atol=1e-3)


def test_rope_scores_depend_only_on_relative_position():
    rotary = RotaryEmbedding(8, 64, theta=50.0, dtype="float64")
    q, k = normal(0, (1, 1, 1, 8)), normal(1, (1, 1, 1, 8))
    scores = []
    for shift in (0, 5, 17):
        cos_q, sin_q = rotary.tables(shift + 9, shift + 10)               # q at position shift + 9
        cos_k, sin_k = rotary.tables(shift + 2, shift + 3)                # k at position shift + 2
        from minillm.functional import apply_rotary
        qr, kr = host(apply_rotary(Tensor(q), cos_q, sin_q)), host(apply_rotary(Tensor(k), cos_k, sin_k))
        scores.append(float((qr * kr).sum()))
    numpy.testing.assert_allclose(scores, scores[0], rtol=1e-12)
    assert abs(scores[0] - float((host(q) * host(k)).sum())) > 1e-3   # but the rotation did change it


def test_llama3_frequency_bands():
    inv_freq = rotary_inv_freq(16, 100.0)
    scaled = host(llama3_inv_freq(inv_freq, 8.0, 1.0, 4.0, 64))
    inv_freq, wavelen = host(inv_freq), 2 * numpy.pi / host(inv_freq)
    fast, slow = wavelen < 16, wavelen > 64
    assert fast.sum() == 2 and slow.sum() == 3
    numpy.testing.assert_array_equal(scaled[fast], inv_freq[fast])          # short wavelengths untouched
    numpy.testing.assert_allclose(scaled[slow], inv_freq[slow] / 8.0)       # long ones 8 times slower
    middle = ~fast & ~slow
    assert numpy.all((scaled[middle] < inv_freq[middle]) & (scaled[middle] > inv_freq[middle] / 8.0))


def test_whole_model_gradient_along_a_random_direction():
    model = Llama(tiny(n_layer=1, tie_word_embeddings=True), seed=1)
    perturb_norms(model)
    idx = numpy.random.default_rng(2).integers(0, 23, (2, 5))
    targets = numpy.random.default_rng(3).integers(0, 23, (2, 5))
    _, loss = model(idx, targets)
    loss.backward()
    params = model.parameters()
    direction = [normal(10 + i, p.shape) for i, p in enumerate(params)]
    analytic = sum(float((host(p.grad) * host(d)).sum()) for p, d in zip(params, direction))
    eps, values = 1e-6, []
    for sign in (1, -1):
        for p, d in zip(params, direction):
            p.data += sign * eps * d
        with no_grad():
            values.append(float(model(idx, targets)[1].data))
        for p, d in zip(params, direction):
            p.data -= sign * eps * d
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(numeric))


@pytest.mark.parametrize("n_kv_head", [4, 1])
def test_cached_logits_equal_recomputed_logits_at_every_step(n_kv_head):
    """A prompt longer than the cache's first chunk, then one token at a time past the prompt."""
    model = Llama(tiny(n_kv_head=n_kv_head), seed=4)
    perturb_norms(model)
    rng = numpy.random.default_rng(5)
    tokens = rng.integers(0, 23, (2, 7))
    cache = KVCache(model.config.n_layer, chunk=4)
    with no_grad():
        cached = host(model(tokens, cache=cache))
        numpy.testing.assert_allclose(cached, host(model(tokens)), rtol=1e-10, atol=1e-12)
        for _ in range(10):
            step = rng.integers(0, 23, (2, 1))
            tokens = numpy.concatenate([tokens, step], axis=1)
            last = host(model(step, cache=cache, last_only=True))[:, -1]
            numpy.testing.assert_allclose(last, host(model(tokens))[:, -1], rtol=1e-10, atol=1e-12)
    assert cache.position == 17


def test_kv_cache_bytes_grouped_against_multi_head():
    """bytes = 2 * n_layer * T * n_kv_head * head_dim * itemsize, measured on the cache a generation fills."""
    measured = {}
    for n_kv_head in (4, 1):
        config = tiny(n_kv_head=n_kv_head, dtype="float32")
        model = Llama(config, seed=0)
        cache = KVCache(config.n_layer)
        with no_grad():
            model(numpy.zeros((1, 20), dtype=numpy.int64), cache=cache)
        measured[n_kv_head] = cache.nbytes()
        assert measured[n_kv_head] == 2 * 2 * 20 * n_kv_head * 4 * 4 == config.kv_cache_bytes(20)
    assert measured[4] == 4 * measured[1]


def test_parameter_names_and_tying():
    untied, tied = Llama(tiny(dtype="float32")), Llama(tiny(dtype="float32", tie_word_embeddings=True))
    names = [name for name, _ in untied.named_parameters()]
    assert names[:3] == ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                         "model.layers.0.self_attn.q_proj.weight"]
    assert names[-2:] == ["model.norm.weight", "lm_head.weight"]
    assert "lm_head.weight" not in dict(tied.named_parameters())
    assert untied.num_parameters() - tied.num_parameters() == 23 * 16


@pytest.mark.parametrize("overrides, error, message", [
    (dict(n_kv_head=3), ValueError, r"n_kv_head \(3\) must divide n_head \(4\)"),
    (dict(n_embd=18), ValueError, r"n_embd \(18\) must be divisible by n_head \(4\) unless head_dim is given"),
    (dict(head_dim=5), ValueError, r"head_dim \(5\) must be even"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), ValueError, r"rope_scaling type 'linear' is not"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), ValueError, r"missing \['low_freq_factor'"),
    (dict(rope_theta=0), ValueError, r"rope_theta must be positive"),
    (dict(n_layer=1.5), TypeError, r"n_layer must be an integer"),
    (dict(tie_word_embeddings=1), TypeError, r"tie_word_embeddings must be True or False"),
])
def test_config_errors_name_the_field(overrides, error, message):
    with pytest.raises(error, match=message):
        tiny(**overrides)


def test_positions_past_block_size_are_an_error():
    model = Llama(tiny(block_size=8, dtype="float32"))
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model(numpy.zeros((1, 9), dtype=numpy.int64))
