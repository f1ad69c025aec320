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
