"""The ops the newer families need (BERT, T5, Llama, Mixtral), against central differences and plain formulas.

rms_norm, silu, exact gelu, rotary embedding, and attention's padding mask,
additive bias, scale and grouped-query heads: each gradient test draws shapes
and float64 values, backpropagates a RANDOM upstream gradient with
``minillm.gradcheck`` (via ``check_gradients``) and each fused op is compared
with its plain NumPy formula.
"""
import math
import warnings

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.functional as F
from minillm import Tensor, backend
from tests.strategies import arrays, seeds, shapes
from tests.test_functional import check_gradients, host, normal

FEW, SOME = 10, 20


# ---------------------------------------------------------------- rms_norm

def reference_rms_norm(x, w, eps):
    return x / numpy.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps) * (1.0 if w is None else w)


@settings(max_examples=SOME)
@given(batch=shapes(max_dims=2, max_side=3), width=st.integers(1, 5), weighted=st.booleans(), seed=seeds())
def test_rms_norm_gradients_and_formula(batch, width, weighted, seed):
    x = normal(seed, batch + (width,)) + 0.3
    w = normal(seed + 1, (width,))
    numpy.testing.assert_allclose(host(F.rms_norm(Tensor(x), Tensor(w) if weighted else None, eps=1e-3)),
                                  reference_rms_norm(x, w if weighted else None, 1e-3), rtol=1e-12, atol=1e-14)
    if weighted:
        check_gradients(lambda x, w: F.rms_norm(x, w, eps=1e-3), x, w, seed=seed)
    else:
        check_gradients(lambda x: F.rms_norm(x, eps=1e-3), x, seed=seed)


def test_rms_norm_rows_have_unit_root_mean_square_and_keep_their_mean():
    x = normal(0, (3, 8), 4.0) + 2.0
    y = host(F.rms_norm(Tensor(x), eps=0.0))
    numpy.testing.assert_allclose((y ** 2).mean(axis=-1), 1.0, rtol=1e-12)
    ratio = y / x  # each row only rescaled by a positive number: no mean subtraction, unlike layer_norm
    numpy.testing.assert_allclose(ratio, ratio[:, :1] * numpy.ones(8), rtol=1e-12)
    assert (ratio > 0).all()
    with pytest.raises(ValueError, match="expected \\(8,\\)"):
        F.rms_norm(Tensor(x), Tensor(numpy.ones(7)))


# ---------------------------------------------------------------- silu and gelu

@settings(max_examples=SOME)
@given(x=arrays(shapes(), -6.0, 6.0), seed=seeds())
def test_silu_gradients_and_formula(x, seed):
    numpy.testing.assert_allclose(host(F.silu(Tensor(x))), x / (1 + numpy.exp(-x)), rtol=1e-12, atol=1e-15)
    check_gradients(F.silu, x, seed=seed)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_silu_is_stable_for_large_inputs(dtype):
    x = Tensor(numpy.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4], dtype=dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in exp
        y = F.silu(x)
        y.backward(numpy.ones(7, dtype=dtype))
    numpy.testing.assert_array_equal(host(y)[[0, 1, 3, 5, 6]], numpy.array([0, 0, 0, 800, 1e4], dtype=dtype))
    numpy.testing.assert_array_equal(host(x.grad)[[0, 1, 5, 6]], numpy.array([0, 0, 1, 1], dtype=dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype


@settings(max_examples=SOME)
@given(x=arrays(shapes(), -5.0, 5.0), seed=seeds())
def test_exact_gelu_gradients_and_erf_formula(x, seed):
    expected = numpy.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(x)
    numpy.testing.assert_allclose(host(F.gelu(Tensor(x), approximate="none")), expected, rtol=1e-12, atol=1e-15)
    check_gradients(lambda x: F.gelu(x, approximate="none"), x, seed=seed)


def test_gelu_default_stays_the_tanh_form_and_rejects_unknown_forms():
    x = numpy.linspace(-4, 4, 17)
    tanh_form = 0.5 * x * (1 + numpy.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    numpy.testing.assert_allclose(host(F.gelu(Tensor(x))), tanh_form, rtol=1e-12, atol=1e-15)
    numpy.testing.assert_array_equal(host(F.gelu(Tensor(x), approximate="tanh")), host(F.gelu(Tensor(x))))
    assert numpy.abs(host(F.gelu(Tensor(x), approximate="none")) - tanh_form).max() > 1e-5  # really differs
    with pytest.raises(ValueError, match="approximate='erf'"):
        F.gelu(Tensor(x), approximate="erf")


# ---------------------------------------------------------------- rotary embedding

def reference_rotary(x, positions, theta):
    """Pair i = (x[i], x[i + D/2]) as the complex number x[i] + j x[i + D/2], times e^(j p f_i)."""
    half = x.shape[-1] // 2
    freq = theta ** (-numpy.arange(half) * 2.0 / x.shape[-1])
    z = (x[..., :half] + 1j * x[..., half:]) * numpy.exp(1j * positions[:, None] * freq)  # (..., T, D/2)
    return numpy.concatenate([z.real, z.imag], axis=-1)


@settings(max_examples=SOME)
@given(batch=shapes(min_dims=0, max_dims=2, max_side=2), t=st.integers(1, 3), half=st.integers(1, 3),
       offset=st.integers(0, 5), seed=seeds())
def test_apply_rotary_gradients_and_complex_formula(batch, t, half, offset, seed):
    x = normal(seed, batch + (t, 2 * half))
    positions = numpy.arange(offset, offset + t)  # a cached prefix: positions start past 0
    cos, sin = F.rotary_tables(positions, 2 * half, theta=100.0, dtype="float64")
    numpy.testing.assert_allclose(host(F.apply_rotary(Tensor(x), cos, sin)), reference_rotary(x, positions, 100.0),
                                  rtol=1e-12, atol=1e-14)
    check_gradients(lambda x: F.apply_rotary(x, cos, sin), x, seed=seed)


def test_rotated_scores_depend_only_on_relative_position():
    q, k = normal(0, (1, 1, 1, 8)), normal(1, (1, 1, 1, 8))

    def score(p, s):
        ck, sk = F.rotary_tables([s], 8, dtype="float64")
        cq, sq = F.rotary_tables([p], 8, dtype="float64")
        return float((host(F.apply_rotary(Tensor(q), cq, sq)) * host(F.apply_rotary(Tensor(k), ck, sk))).sum())
    assert score(7, 3) == pytest.approx(score(4, 0), rel=1e-12) == pytest.approx(score(104, 100), rel=1e-10)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)


def test_rotary_tables_take_an_inverse_frequency_array_and_check_shapes():
    inv_freq = numpy.array([1.0, 0.25])
    cos, sin = F.rotary_tables(numpy.array([[0, 2], [1, 3]]), 4, inv_freq=inv_freq, dtype="float64")  # (B, T)
    angles = numpy.array([[0, 2], [1, 3]])[..., None] * numpy.array([1.0, 0.25, 1.0, 0.25])
    numpy.testing.assert_allclose(host(cos), numpy.cos(angles), rtol=1e-15)
    numpy.testing.assert_allclose(host(sin), numpy.sin(angles), rtol=1e-15, atol=1e-300)
    assert F.rotary_tables([0, 1], 4)[0].dtype == numpy.float32
    with pytest.raises(ValueError, match="expected \\(2,\\)"):
        F.rotary_tables([0], 4, inv_freq=numpy.ones(3))
    with pytest.raises(ValueError, match="even"):
        F.rotary_tables([0], 5)
    with pytest.raises(ValueError, match="even"):
        F.apply_rotary(Tensor(numpy.ones((1, 3))), numpy.ones((1, 3)), numpy.ones((1, 3)))


# ---------------------------------------------------------------- attention: padding, bias, scale, GQA

def reference_attention(q, k, v, causal, key_mask=None, bias=None, scale=None):
    """Brute force, one query and one key at a time; query head h reads key/value head h // r."""
    (batch, n_head, t_query, dim), (n_kv_head, t_key) = q.shape, k.shape[1:3]
    scale = 1 / math.sqrt(dim) if scale is None else scale
    bias = numpy.zeros((batch, n_head, t_query, t_key)) if bias is None else \
        numpy.broadcast_to(bias, (batch, n_head, t_query, t_key))
    out = numpy.zeros(q.shape)
    for b, h, i in numpy.ndindex(batch, n_head, t_query):
        g = h // (n_head // n_kv_head)
        visible = [j for j in range(t_key) if (not causal or j <= i + t_key - t_query)
                   and (key_mask is None or key_mask[b, j])]
        if not visible:
            continue  # every key masked: zeros
        scores = numpy.array([q[b, h, i] @ k[b, g, j] * scale + bias[b, h, i, j] for j in visible])
        weights = numpy.exp(scores - scores.max())
        weights /= weights.sum()
        out[b, h, i] = sum(w * v[b, g, j] for w, j in zip(weights, visible))
    return out


@st.composite
def attention_cases(draw):
    """q (B, H, Tq, D), k/v (B, Hkv, Tk, D) with H = r Hkv, and the options: causal with a cached
    prefix, a key mask (rows of all padding included), a bias of several broadcast shapes, a scale."""
    batch, n_kv_head, group = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.sampled_from([1, 1, 2, 3]))
    n_head, t_query, dim = n_kv_head * group, draw(st.integers(1, 3)), draw(st.integers(1, 3))
    causal = draw(st.booleans())
    t_key = draw(st.integers(t_query, t_query + 2)) if causal else draw(st.integers(1, 4))
    seed = draw(seeds())
    rng = numpy.random.default_rng(seed)
    q = rng.standard_normal((batch, n_head, t_query, dim))
    k, v = (rng.standard_normal((batch, n_kv_head, t_key, dim)) for _ in range(2))
    key_mask = draw(st.sampled_from([None, bool, int]))
    if key_mask is not None:
        key_mask = (rng.random((batch, t_key)) < 0.6).astype(key_mask)
    bias_shape = draw(st.sampled_from([None, (batch, n_head, t_query, t_key), (n_head, t_query, t_key),
                                       (1, n_head, 1, t_key), (t_query, t_key)]))
    bias = None if bias_shape is None else rng.standard_normal(bias_shape)
    scale = draw(st.sampled_from([None, 1.0, 0.7]))
    return dict(q=q, k=k, v=v, causal=causal, key_mask=key_mask, bias=bias, scale=scale)


def attention_of(case, dropout_p=0.0, seed=0):
    """(fn, inputs): fn(q, k, v[, bias]) calls the fused op with the case's options."""
    options = dict(causal=case["causal"], key_mask=case["key_mask"], scale=case["scale"], dropout_p=dropout_p)

    def fn(q, k, v, bias=None):
        rng = backend.device_rng(seed) if dropout_p else None
        return F.scaled_dot_product_attention(q, k, v, bias=bias, rng=rng, **options)
    inputs = [case["q"], case["k"], case["v"]] + ([] if case["bias"] is None else [case["bias"]])
    return fn, inputs


@settings(max_examples=40)
@given(case=attention_cases(), dropout_p=st.sampled_from([0.0, 0.0, 0.3]), seed=seeds())
def test_attention_options_gradients(case, dropout_p, seed):
    fn, inputs = attention_of(case, dropout_p, seed)
    check_gradients(fn, *inputs, seed=seed)  # q, k, v and the bias; the bias's gradient keeps its shape


@settings(max_examples=SOME)
@given(case=attention_cases())
def test_attention_options_match_brute_force(case):
    fn, inputs = attention_of(case)
    expected = reference_attention(case["q"], case["k"], case["v"], case["causal"], case["key_mask"],
                                   case["bias"], case["scale"])
    numpy.testing.assert_allclose(host(fn(*(Tensor(a) for a in inputs))), expected, rtol=1e-10, atol=1e-12)


def test_padded_keys_get_exactly_zero_weight_and_gradient_and_an_all_padded_row_gives_zeros():
    q, k, v = normal(0, (2, 2, 3, 4)), normal(1, (2, 2, 5, 4)), normal(2, (2, 2, 5, 4))
    key_mask = numpy.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]])  # row 1: every key is padding
    tensors = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*tensors, causal=False, key_mask=key_mask)
    out.backward(normal(3, out.shape))
    padded = key_mask == 0
    for grad in (tensors[1].grad, tensors[2].grad):
        assert (host(grad).transpose(0, 2, 1, 3)[padded] == 0.0).all()  # (B, Tk, H, D) at padded keys
    assert (host(out)[1] == 0.0).all() and (host(tensors[0].grad)[1] == 0.0).all()
    assert numpy.isfinite(host(out)).all() and numpy.isfinite(host(tensors[0].grad)).all()
    k2, v2 = k.copy(), v.copy()  # anything at the padded keys: exactly the same output
    k2.transpose(0, 2, 1, 3)[padded] = 1e3
    v2.transpose(0, 2, 1, 3)[padded] = -1e3
    out2 = F.scaled_dot_product_attention(Tensor(q), Tensor(k2), Tensor(v2), causal=False, key_mask=key_mask)
    numpy.testing.assert_array_equal(host(out2), host(out))


def test_left_padding_under_a_causal_mask_gives_zero_rows_not_nan():
    q, k = normal(0, (1, 1, 4, 2)), normal(1, (1, 1, 4, 2))
    q_t = Tensor(q, requires_grad=True)
    out = F.scaled_dot_product_attention(q_t, Tensor(k), Tensor(k), key_mask=numpy.array([[False, False, True, True]]))
    out.backward(numpy.ones(out.shape))
    assert (host(out)[0, 0, :2] == 0).all() and (host(out)[0, 0, 2:] != 0).all()
    assert (host(q_t.grad)[0, 0, :2] == 0).all() and numpy.isfinite(host(q_t.grad)).all()


def test_grouped_query_attention_equals_repeated_heads_with_summed_gradients():
    q, k, v = normal(0, (2, 6, 3, 4)), normal(1, (2, 2, 5, 4)), normal(2, (2, 2, 5, 4))  # 3 query heads a group
    upstream = normal(3, (2, 6, 3, 4))
    grouped = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    repeated = [Tensor(q, requires_grad=True)] + [Tensor(numpy.repeat(a, 3, axis=1), requires_grad=True)
                                                  for a in (k, v)]  # Hugging Face's repeat_kv
    outs = [F.scaled_dot_product_attention(*tensors) for tensors in (grouped, repeated)]
    for out in outs:
        out.backward(upstream)
    numpy.testing.assert_allclose(host(outs[0]), host(outs[1]), rtol=1e-12)
    numpy.testing.assert_allclose(host(grouped[0].grad), host(repeated[0].grad), rtol=1e-12)
    for g, r in zip(grouped[1:], repeated[1:]):
        numpy.testing.assert_allclose(host(g.grad), host(r.grad).reshape(2, 2, 3, 5, 4).sum(axis=2), rtol=1e-12)


def test_attention_option_errors_name_the_shapes():
    q, k = Tensor(numpy.ones((1, 3, 2, 4))), Tensor(numpy.ones((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="dividing q's heads \\(here 3 and 2\\)"):
        F.scaled_dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match="key_mask has shape \\(2, 2\\); expected \\(1, 2\\)"):
        F.scaled_dot_product_attention(q, q, q, key_mask=numpy.ones((2, 2)))
    with pytest.raises(TypeError, match="key_mask has dtype float64"):
        F.scaled_dot_product_attention(q, q, q, key_mask=numpy.ones((1, 2)))
    with pytest.raises(ValueError, match="bias of shape \\(2, 2, 2\\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, bias=numpy.zeros((2, 2, 2)))


def test_every_new_op_matches_pytorch_forward_and_backward():
    """Against torch autograd in float64 (Hugging Face's formulas: rotate-half RoPE, repeat_kv GQA)."""
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional

    def both(ours, theirs, *arrays):
        mine = [Tensor(a, requires_grad=True) for a in arrays]
        ref = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, expected = ours(*mine), theirs(*ref)
        upstream = normal(9, tuple(expected.shape))
        out.backward(upstream)
        expected.backward(torch.tensor(upstream))
        numpy.testing.assert_allclose(host(out), expected.detach().numpy(), rtol=1e-10, atol=1e-12)
        for m, r in zip(mine, ref):
            numpy.testing.assert_allclose(host(m.grad), r.grad.numpy(), rtol=1e-10, atol=1e-12)

    x, w = normal(0, (2, 3, 8), 3.0), normal(1, (8,))
    both(F.silu, tf.silu, x)
    both(lambda x: F.gelu(x, approximate="none"), lambda x: tf.gelu(x, approximate="none"), x)
    both(F.gelu, lambda x: tf.gelu(x, approximate="tanh"), x)
    both(lambda x, w: F.rms_norm(x, w, eps=1e-6),
         lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)), x, w)

    cos, sin = F.rotary_tables(numpy.arange(3, 8), 8, theta=500.0, dtype="float64")  # (T, D), a prefix of 3

    def hf_rotary(x):
        half = torch.cat((-x[..., 4:], x[..., :4]), dim=-1)
        return x * torch.tensor(host(cos)) + half * torch.tensor(host(sin))
    both(lambda x: F.apply_rotary(x, cos, sin), hf_rotary, normal(2, (2, 4, 5, 8)))

    q, k, v = normal(3, (2, 4, 3, 8)), normal(4, (2, 2, 5, 8)), normal(5, (2, 2, 5, 8))  # GQA, 2 cached keys
    bias = normal(6, (1, 4, 3, 5))
    key_mask = numpy.array([[1, 0, 1, 1, 0], [1, 1, 1, 0, 1]], dtype=bool)  # key 0 kept: no empty rows
    allowed = numpy.tril(numpy.ones((3, 5), dtype=bool), k=2)[None, None] & key_mask[:, None, None, :]

    def theirs(q, k, v, bias):
        mask = bias + torch.tensor(numpy.where(allowed, 0.0, -numpy.inf))
        return tf.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5, enable_gqa=True)
    both(lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v, key_mask=key_mask, bias=b, scale=0.5),
         theirs, q, k, v, bias)


def test_rms_norm_module_has_one_weight_and_calls_the_fused_op():
    from minillm.nn import RMSNorm
    norm = RMSNorm(8, eps=1e-5, dtype="float64")
    assert [name for name, _ in norm.named_parameters()] == ["weight"] and repr(norm) == "RMSNorm(8, eps=1e-05)"
    norm.weight.data[:] = normal(1, (8,))
    x = normal(0, (2, 3, 8))
    numpy.testing.assert_allclose(host(norm(Tensor(x))), reference_rms_norm(x, host(norm.weight), 1e-5), rtol=1e-12)
