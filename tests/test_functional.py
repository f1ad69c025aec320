"""Every differentiable op against central differences, plus the invariants of the fused ops.

Each gradient test draws shapes (broadcasting, size-1 axes, 0-d arrays) and
float64 values inside the op's domain, backpropagates a RANDOM upstream
gradient with ``minillm.gradcheck`` and compares every element with central
differences (relative error <= 1e-6). It also checks that the op left its
inputs unchanged. Gradient checks cost two forward passes per input element,
so shapes are small and each test sets its own ``max_examples``.
"""
import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minillm.functional as F
from minillm import Tensor, backend, gradcheck
from minillm.autograd import Function
from tests.strategies import (arrays, away_from_zero_arrays, broadcastable_shapes, positive_arrays,
                              reduction_axes, seeds, shapes, spread_arrays)

FEW, SOME, MANY = 10, 20, 30  # max_examples by the cost of one example


def host(x):
    return backend.to_numpy(x.data if isinstance(x, Tensor) else x)


def normal(seed, shape, scale=1.0):
    return numpy.random.default_rng(seed).standard_normal(shape) * scale


def check_gradients(fn, *arrays, seed=0):
    """gradcheck ``fn`` at float64 copies of ``arrays`` (all differentiable), then
    check that every gradient has its input's shape and no input was modified."""
    originals = [numpy.array(a, dtype=numpy.float64) for a in arrays]
    tensors = [Tensor(a.copy(), requires_grad=True) for a in originals]
    assert gradcheck(fn, *tensors, seed=seed)
    for tensor, original in zip(tensors, originals):
        assert tensor.grad is None or tensor.grad.shape == original.shape
        numpy.testing.assert_array_equal(host(tensor), original, err_msg="the op modified its input")


# ---------------------------------------------------------------- Tensor operators

BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


@pytest.mark.parametrize("op", sorted(BINARY))
@settings(max_examples=MANY)
@given(data=st.data(), shape_pair=broadcastable_shapes(), seed=seeds())
def test_binary_operators_broadcast(op, data, shape_pair, seed):
    a = data.draw(arrays(shape_pair[0]))
    b = data.draw(away_from_zero_arrays(shape_pair[1], 0.5, 2.0) if op == "div" else arrays(shape_pair[1]))
    check_gradients(BINARY[op], a, b, seed=seed)


@settings(max_examples=SOME)
@given(x=away_from_zero_arrays(shapes(), 0.5, 2.0), scalar=st.sampled_from([-1.5, 2, 0.5]), seed=seeds())
def test_operators_with_a_python_number_on_either_side(x, scalar, seed):
    check_gradients(lambda x: (scalar - x) * scalar + scalar / x + x / scalar - (-x) + scalar * x, x, seed=seed)


@settings(max_examples=SOME)
@given(x=positive_arrays(shapes()), p=st.sampled_from([2, 3, 0.5, -1, 1.5, 0]), seed=seeds())
def test_pow(x, p, seed):
    check_gradients(lambda x: x ** p, x, seed=seed)


@settings(max_examples=FEW)
@given(x=arrays(shapes()), seed=seeds())
def test_neg(x, seed):
    check_gradients(lambda x: -x, x, seed=seed)


@st.composite
def matmul_operands(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch_a, batch_b = draw(broadcastable_shapes(max_dims=2, max_side=2))
    a_shape = (k,) if draw(st.booleans()) else batch_a + (n, k)
    b_shape = (k,) if draw(st.booleans()) else batch_b + (k, m)
    return draw(arrays(a_shape)), draw(arrays(b_shape))


@settings(max_examples=MANY)
@given(operands=matmul_operands(), as_function=st.booleans(), seed=seeds())
def test_matmul_batched_broadcast_and_vectors(operands, as_function, seed):
    check_gradients(F.matmul if as_function else (lambda a, b: a @ b), *operands, seed=seed)


@settings(max_examples=MANY)
@given(data=st.data(), shape=shapes(), seed=seeds())
def test_getitem_basic_indices(data, shape, seed):
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    check_gradients(lambda x: x[index], data.draw(arrays(shape)), seed=seed)


@settings(max_examples=MANY)
@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds())
def test_getitem_integer_arrays_with_repeats(data, shape, seed):
    def ids(n):  # repeats are likely: few distinct values, up to 6 draws; negatives count from the end
        return numpy.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=6)))
    forms = [lambda: ids(shape[0])]
    if len(shape) >= 2:
        forms.append(lambda: (slice(None), ids(shape[1])))
        forms.append(lambda: (ids(shape[0]), numpy.zeros(1, dtype=int)))
    index = data.draw(st.sampled_from(forms))()
    check_gradients(lambda x: F.getitem(x, index), data.draw(arrays(shape)), seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(), seed=seeds())
def test_transpose_T_and_permute(data, shape, seed):
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    negative = tuple(a - len(shape) for a in axes)
    check_gradients(lambda x: x.T * 2 + 0, data.draw(arrays(shape)), seed=seed)
    check_gradients(lambda x: x.transpose(*axes) + F.permute(x, negative), data.draw(arrays(shape)), seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(), as_function=st.booleans(), seed=seeds())
def test_reshape(data, shape, as_function, seed):
    size = int(numpy.prod(shape, dtype=int))
    new_shape = data.draw(st.sampled_from([(-1,), (size, 1), (1, -1), tuple(reversed(shape))]))
    check_gradients(lambda x: F.reshape(x, new_shape) if as_function else x.reshape(new_shape),
                    data.draw(arrays(shape)), seed=seed)
    assert Tensor(numpy.zeros(shape)).reshape(*new_shape).size == size


@pytest.mark.parametrize("name", ["sum", "mean"])
@settings(max_examples=MANY)
@given(data=st.data(), shape=shapes(), keepdims=st.booleans(), as_function=st.booleans(), seed=seeds())
def test_sum_and_mean(name, data, shape, keepdims, as_function, seed):
    axis = data.draw(reduction_axes(len(shape)))
    if as_function:
        fn = lambda x: getattr(F, name)(x, axis=axis, keepdims=keepdims)  # noqa: E731
    else:
        fn = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)  # noqa: E731
    x = data.draw(arrays(shape))
    expected = getattr(numpy, name)(x, axis=axis, keepdims=keepdims)
    numpy.testing.assert_allclose(host(fn(Tensor(x))), expected, rtol=1e-12)
    check_gradients(fn, x, seed=seed)


@settings(max_examples=MANY)
@given(data=st.data(), shape=shapes(), keepdims=st.booleans(), seed=seeds())
def test_max_with_unique_values(data, shape, keepdims, seed):
    axis = data.draw(reduction_axes(len(shape)))
    x = data.draw(spread_arrays(shape))
    numpy.testing.assert_array_equal(host(F.max(Tensor(x), axis, keepdims)), x.max(axis=axis, keepdims=keepdims))
    check_gradients(lambda x: x.max(axis=axis, keepdims=keepdims), x, seed=seed)


def test_max_splits_the_gradient_between_ties():
    x = Tensor(numpy.array([1.0, 3.0, 3.0]), requires_grad=True)
    x.max().backward()
    numpy.testing.assert_array_equal(host(x.grad), [0.0, 0.5, 0.5])


# ---------------------------------------------------------------- elementwise

ELEMENTWISE = {
    "exp": (F.exp, arrays), "log": (F.log, positive_arrays), "tanh": (F.tanh, arrays),
    "sqrt": (F.sqrt, positive_arrays), "relu": (F.relu, away_from_zero_arrays), "gelu": (F.gelu, arrays),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(), seed=seeds())
def test_elementwise(name, data, shape, seed):
    fn, domain = ELEMENTWISE[name]
    check_gradients(fn, data.draw(domain(shape)), seed=seed)


def test_gelu_matches_gpt2_formula():
    x = numpy.linspace(-4, 4, 17)
    expected = 0.5 * x * (1 + numpy.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    numpy.testing.assert_allclose(host(F.gelu(Tensor(x))), expected, rtol=1e-10, atol=1e-12)


@settings(max_examples=SOME)
@given(data=st.data(), shape_triple=broadcastable_shapes(num_shapes=3), seed=seeds())
def test_where_broadcasts(data, shape_triple, seed):
    condition = data.draw(hnp.arrays(numpy.bool_, shape_triple[0]))
    a, b = data.draw(arrays(shape_triple[1])), data.draw(arrays(shape_triple[2]))
    check_gradients(lambda a, b: F.where(condition, a, b), a, b, seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), shape_pair=broadcastable_shapes(), seed=seeds())
def test_masked_fill(data, shape_pair, seed):
    x = data.draw(arrays(shape_pair[0]))
    mask = data.draw(hnp.arrays(numpy.bool_, shape_pair[1]))
    out = host(F.masked_fill(Tensor(x), mask, -7.0))
    numpy.testing.assert_array_equal(out, numpy.where(mask, -7.0, x))
    check_gradients(lambda x: F.masked_fill(x, Tensor(mask), -7.0), x, seed=seed)


# ---------------------------------------------------------------- joining and cutting

@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(min_dims=1), count=st.integers(1, 3), seed=seeds())
def test_concat(data, shape, count, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    pieces = []
    for _ in range(count):
        piece_shape = list(shape)
        piece_shape[axis] = data.draw(st.integers(1, 3))
        pieces.append(data.draw(arrays(tuple(piece_shape))))
    check_gradients(lambda *xs: F.concat(list(xs), axis=axis), *pieces, seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(), count=st.integers(1, 3), seed=seeds())
def test_stack(data, shape, count, seed):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    pieces = [data.draw(arrays(shape)) for _ in range(count)]
    numpy.testing.assert_array_equal(host(F.stack([Tensor(p) for p in pieces], axis)), numpy.stack(pieces, axis))
    check_gradients(lambda *xs: F.stack(list(xs), axis=axis), *pieces, seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(min_dims=1, max_side=6), seed=seeds())
def test_split(data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    length = shape[axis]
    divisors = [d for d in range(1, length + 1) if length % d == 0]
    cuts = sorted(data.draw(st.lists(st.integers(1, length - 1), unique=True))) if length > 1 else []
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [length])]
    sections = data.draw(st.sampled_from(divisors + [sizes]))
    weights = normal(seed, (6,))

    def fn(x):  # every piece used, each with its own weight
        pieces = F.split(x, sections, axis=axis)
        return F.concat([p * float(weights[i]) for i, p in enumerate(pieces)], axis=axis)
    check_gradients(fn, data.draw(arrays(shape)), seed=seed)


def test_split_bad_sections_are_clear_errors():
    x = Tensor(numpy.zeros((2, 5)))
    with pytest.raises(ValueError, match="length 5 cannot be cut into 2 equal parts"):
        F.split(x, 2)
    with pytest.raises(ValueError, match=r"sizes \[1, 2\] add up to 3, not the axis length 5"):
        F.split(x, [1, 2])


# ---------------------------------------------------------------- layers

@settings(max_examples=SOME)
@given(batch=shapes(min_dims=0, max_dims=2, max_side=3), n_in=st.integers(1, 4), n_out=st.integers(1, 3),
       bias=st.booleans(), seed=seeds())
def test_linear(batch, n_in, n_out, bias, seed):
    x, w, b = normal(seed, batch + (n_in,)), normal(seed + 1, (n_in, n_out)), normal(seed + 2, (n_out,))
    numpy.testing.assert_allclose(host(F.linear(Tensor(x), Tensor(w), Tensor(b))), x @ w + b, rtol=1e-12)
    if bias:
        check_gradients(F.linear, x, w, b, seed=seed)
    else:
        check_gradients(F.linear, x, w, seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), vocab=st.integers(1, 5), width=st.integers(1, 3), seed=seeds())
def test_embedding_with_repeated_ids(data, vocab, width, seed):
    ids = data.draw(hnp.arrays(numpy.int64, shapes(min_dims=1, max_dims=2), elements=st.integers(0, vocab - 1)))
    weight = normal(seed, (vocab, width))
    numpy.testing.assert_array_equal(host(F.embedding(ids, Tensor(weight))), weight[ids])
    check_gradients(lambda w: F.embedding(Tensor(ids), w), weight, seed=seed)


def test_embedding_gradient_counts_each_use():
    weight = Tensor(numpy.zeros((3, 2)), requires_grad=True)
    F.embedding(numpy.array([[2, 0, 2, 2]]), weight).sum().backward()
    numpy.testing.assert_array_equal(host(weight.grad), [[1, 1], [0, 0], [3, 3]])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@settings(max_examples=SOME)
@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds())
def test_softmax_and_log_softmax(name, data, shape, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check_gradients(lambda x: getattr(F, name)(x, axis=axis), normal(seed, shape, 2.0), seed=seed)


@st.composite
def logits_and_targets(draw, ignore_index=-100):
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    vocab = draw(st.integers(1, 5))
    targets = draw(hnp.arrays(numpy.int64, batch, elements=st.sampled_from(list(range(vocab)) + [ignore_index])))
    return normal(draw(seeds()), batch + (vocab,), 2.0), targets


@settings(max_examples=MANY)
@given(pair=logits_and_targets(ignore_index=-1), seed=seeds())
def test_cross_entropy_with_ignore_index(pair, seed):
    logits, targets = pair
    check_gradients(lambda u: F.cross_entropy(u, targets, ignore_index=-1), logits, seed=seed)


@settings(max_examples=SOME)
@given(data=st.data(), batch=shapes(min_dims=0, max_dims=2, max_side=3), width=st.integers(1, 5),
       affine=st.sampled_from(["none", "weight", "both"]), seed=seeds())
def test_layer_norm(data, batch, width, affine, seed):
    x = normal(seed, batch + (width,))
    w, b = normal(seed + 1, (width,)), normal(seed + 2, (width,))
    if affine == "none":
        check_gradients(F.layer_norm, x, seed=seed)
    elif affine == "weight":
        check_gradients(F.layer_norm, x, w, seed=seed)
    else:
        check_gradients(F.layer_norm, x, w, b, seed=seed)


@settings(max_examples=SOME)
@given(x=arrays(shapes()), p=st.sampled_from([0.0, 0.1, 0.5, 0.9]), seed=seeds())
def test_dropout_with_a_fixed_generator(x, p, seed):
    def fn(x):  # a fresh generator from the same seed: the same mask in every call
        return F.dropout(x, p, training=True, rng=backend.device_rng(seed))
    check_gradients(fn, x, seed=seed)
    out = host(fn(Tensor(x)))
    kept = out != 0
    numpy.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    numpy.testing.assert_array_equal(host(F.dropout(Tensor(x), p, training=False)), x)


def test_dropout_drops_about_p_and_keeps_the_mean():
    x = Tensor(numpy.ones(20_000))
    out = host(F.dropout(x, 0.25, rng=backend.device_rng(0)))
    assert abs((out == 0).mean() - 0.25) < 0.02  # fixed seed: deterministic
    assert abs(out.mean() - 1.0) < 0.03


@st.composite
def attention_inputs(draw):
    causal = draw(st.booleans())
    batch = draw(shapes(min_dims=1, max_dims=2, max_side=2))
    t_query, dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    t_key = draw(st.integers(t_query, t_query + 2)) if causal else draw(st.integers(1, 4))
    seed = draw(seeds())
    q = normal(seed, batch + (t_query, dim))
    k, v = normal(seed + 1, batch + (t_key, dim)), normal(seed + 2, batch + (t_key, dim))
    return causal, q, k, v


@settings(max_examples=MANY)
@given(inputs=attention_inputs(), dropout_p=st.sampled_from([0.0, 0.3]), seed=seeds())
def test_attention_causal_prefix_and_dropout(inputs, dropout_p, seed):
    causal, q, k, v = inputs
    rng = (lambda: backend.device_rng(seed)) if dropout_p else (lambda: None)

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, causal=causal, dropout_p=dropout_p, rng=rng())
    check_gradients(fn, q, k, v, seed=seed)


@settings(max_examples=SOME)
@given(inputs=attention_inputs(), bias_axes=st.sampled_from(["full", "keys", "heads"]),
       scale=st.sampled_from([None, 1.0, 0.3]), seed=seeds())
def test_attention_bias_and_scale_gradients(inputs, bias_axes, scale, seed):
    """A learned additive bias (T5's relative positions) gets dS, summed over its broadcast axes."""
    causal, q, k, v = inputs
    scores = q.shape[:-1] + (k.shape[-2],)
    shape = {"full": scores, "keys": scores[:-2] + (1, scores[-1]), "heads": scores[-2:]}[bias_axes]
    bias = normal(seed + 3, shape)

    def fn(q, k, v, bias):
        return F.scaled_dot_product_attention(q, k, v, causal=causal, bias=bias, scale=scale)
    check_gradients(fn, q, k, v, bias, seed=seed)


# ---------------------------------------------------------------- invariants

def test_softmax_rows_sum_to_one_and_ignore_a_shift():
    x = normal(0, (4, 7), 3.0)
    y = host(F.softmax(Tensor(x)))
    numpy.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
    numpy.testing.assert_allclose(host(F.softmax(Tensor(x + 123.0))), y, rtol=1e-12)
    numpy.testing.assert_allclose(host(F.softmax(Tensor(x), axis=0)).sum(axis=0), 1.0, rtol=1e-12)
    numpy.testing.assert_allclose(numpy.exp(host(F.log_softmax(Tensor(x)))), y, rtol=1e-12)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_log_softmax_and_cross_entropy_are_finite_for_huge_logits(dtype):
    logits = numpy.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    assert numpy.isfinite(host(F.log_softmax(Tensor(logits)))).all()
    u = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(u, numpy.array([1, 2]))
    loss.backward()
    assert numpy.isfinite(loss.item()) and numpy.isfinite(host(u.grad)).all()
    numpy.testing.assert_allclose(loss.item(), (2e4 + 0) / 2, rtol=1e-6)
    assert loss.dtype == dtype and u.grad.dtype == dtype


@settings(max_examples=SOME)
@given(pair=logits_and_targets())
def test_cross_entropy_is_mean_negative_log_probability_of_the_target(pair):
    logits, targets = pair
    u = logits.reshape(-1, logits.shape[-1])
    t = targets.reshape(-1)
    p = numpy.exp(u - u.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    kept = t != -100
    expected = -numpy.log(p[kept.nonzero()[0], t[kept]]).mean() if kept.any() else 0.0
    numpy.testing.assert_allclose(F.cross_entropy(Tensor(logits), targets).item(), expected, rtol=1e-12)


def test_cross_entropy_of_an_all_ignored_batch_is_zero_with_zero_gradient():
    u = Tensor(normal(0, (2, 3, 5)), requires_grad=True)
    loss = F.cross_entropy(u, numpy.full((2, 3), -100))
    loss.backward()
    assert loss.item() == 0.0
    numpy.testing.assert_array_equal(host(u.grad), numpy.zeros((2, 3, 5)))


def test_cross_entropy_accepts_a_target_tensor():
    logits = normal(0, (3, 4))
    targets = numpy.array([0, 3, 1])
    assert F.cross_entropy(Tensor(logits), Tensor(targets)).item() == F.cross_entropy(Tensor(logits), targets).item()


@settings(max_examples=SOME)
@given(batch=shapes(min_dims=1, max_dims=2), width=st.integers(2, 16), seed=seeds())
def test_layer_norm_rows_have_zero_mean_and_unit_variance_before_affine(batch, width, seed):
    x = normal(seed, batch + (width,), 5.0) + 3.0
    y = host(F.layer_norm(Tensor(x), eps=0.0))
    numpy.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=1e-12)
    numpy.testing.assert_allclose(y.var(axis=-1), 1.0, rtol=1e-10)
    w, b = normal(seed + 1, (width,)), normal(seed + 2, (width,))
    numpy.testing.assert_allclose(host(F.layer_norm(Tensor(x), Tensor(w), Tensor(b), eps=0.0)), y * w + b,
                                  rtol=1e-10, atol=1e-12)


def reference_attention(q, k, v, causal):
    """Brute force, one query and one key at a time: query i sees keys j <= i + (Tk - Tq)."""
    t_query, t_key, dim = q.shape[-2], k.shape[-2], q.shape[-1]
    out = numpy.zeros(q.shape[:-1] + (v.shape[-1],))
    for index in numpy.ndindex(*q.shape[:-2]):
        for i in range(t_query):
            visible = [j for j in range(t_key) if not causal or j <= i + (t_key - t_query)]
            scores = numpy.array([q[index][i] @ k[index][j] / math.sqrt(dim) for j in visible])
            weights = numpy.exp(scores - scores.max())
            weights /= weights.sum()
            out[index][i] = sum(w * v[index][j] for w, j in zip(weights, visible))
    return out


@settings(max_examples=SOME)
@given(inputs=attention_inputs())
def test_attention_matches_brute_force_with_bottom_right_mask(inputs):
    causal, q, k, v = inputs
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
    numpy.testing.assert_allclose(host(out), reference_attention(q, k, v, causal), rtol=1e-10, atol=1e-12)


def test_attention_with_a_padding_mask_and_scale_matches_brute_force():
    q, k, v = normal(0, (2, 2, 3, 4)), normal(1, (2, 2, 5, 4)), normal(2, (2, 2, 5, 4))
    keep = numpy.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)    # row 0: 2 padded keys
    bias = numpy.where(keep, 0.0, -numpy.inf)[:, None, None, :]         # (B, 1, 1, Tk)
    out = host(F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=False, bias=bias, scale=1.0))
    expected = reference_attention(q[0:1] * 2.0, k[0:1, :, :3], v[0:1, :, :3], causal=False)  # D = 4: 2 = sqrt(D)
    numpy.testing.assert_allclose(out[0:1], expected, rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(out[1:], reference_attention(q[1:] * 2.0, k[1:], v[1:], causal=False),
                                  rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"attention bias of shape \(3, 3\) does not broadcast to the scores' "
                                         r"shape \(2, 2, 3, 5\)"):
        F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=False, bias=numpy.zeros((3, 3)))


def test_causal_attention_output_at_t_ignores_later_inputs():
    q, k, v = normal(0, (2, 3, 6, 4)), normal(1, (2, 3, 8, 4)), normal(2, (2, 3, 8, 4))  # 2 cached keys
    base = host(F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)))
    for t in range(6):
        q2, k2, v2 = q.copy(), k.copy(), v.copy()
        q2[..., t + 1:, :] += 10.0
        k2[..., t + 2 + 1:, :] += 10.0  # query t sees keys 0 .. t + 2
        v2[..., t + 2 + 1:, :] -= 10.0
        out = host(F.scaled_dot_product_attention(Tensor(q2), Tensor(k2), Tensor(v2)))
        numpy.testing.assert_allclose(out[..., :t + 1, :], base[..., :t + 1, :], rtol=1e-12)
        if t < 5:
            assert not numpy.allclose(out[..., t + 1:, :], base[..., t + 1:, :])


def test_attention_equals_the_composition_of_small_ops():
    q, k, v = normal(0, (2, 2, 3, 4)), normal(1, (2, 2, 5, 4)), normal(2, (2, 2, 5, 4))
    upstream = normal(3, (2, 2, 3, 4))
    mask = numpy.triu(numpy.ones((3, 5), dtype=bool), k=1 + 5 - 3)

    def composed(q, k, v):
        scores = (q @ k.transpose(0, 1, 3, 2)) * (1 / math.sqrt(4))
        return F.softmax(F.masked_fill(scores, mask, -numpy.inf), axis=-1) @ v

    results = []
    for fn in (F.scaled_dot_product_attention, composed):
        tensors = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        out = fn(*tensors)
        out.backward(upstream)
        results.append([host(out)] + [host(t.grad) for t in tensors])
    for fused, small in zip(*results):
        numpy.testing.assert_allclose(fused, small, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- bad input

def test_matmul_shape_mismatch_names_both_shapes():
    a, b = Tensor(numpy.zeros((2, 3))), Tensor(numpy.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"matmul shapes \(2, 3\) and \(4, 5\) do not align"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        F.linear(a, b)
    with pytest.raises(ValueError, match=r"weight must be 2-D \(in_features, out_features\), got shape \(5\)"):
        F.linear(a, Tensor(numpy.zeros(5)))
    with pytest.raises(ValueError, match=r"bias has shape \(4\), expected \(5\) \(out_features\)"):
        F.linear(Tensor(numpy.zeros((2, 4))), b, Tensor(numpy.zeros(4)))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        F.matmul(Tensor(numpy.float64(1.0)), b)


@pytest.mark.parametrize("targets, error, message", [
    ([0, 5], ValueError, r"target 5 is outside the vocabulary \[0, 5\)"),
    ([-3, 1], ValueError, r"target -3 is outside the vocabulary \[0, 5\)"),
    ([0.0, 1.0], TypeError, "targets must be integers, got float64"),
    ([[0, 1]], ValueError, r"targets have shape \(1, 2\), expected \(2\)"),
])
def test_cross_entropy_rejects_bad_targets(targets, error, message):
    with pytest.raises(error, match=message):
        F.cross_entropy(Tensor(numpy.zeros((2, 5))), numpy.array(targets))


@pytest.mark.parametrize("ids, error, message", [
    ([1, 7], ValueError, r"token id 7 is outside the vocabulary \[0, 4\)"),
    ([-1, 2], ValueError, r"token id -1 is outside the vocabulary \[0, 4\)"),
    ([1.0], TypeError, "token ids must be integers, got float64"),
])
def test_embedding_rejects_bad_ids(ids, error, message):
    with pytest.raises(error, match=message):
        F.embedding(numpy.array(ids), Tensor(numpy.zeros((4, 2))))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        F.dropout(Tensor(numpy.ones(3)), p, rng=backend.device_rng(0))


def test_dropout_and_attention_dropout_need_an_explicit_generator():
    with pytest.raises(ValueError, match="explicit rng"):
        F.dropout(Tensor(numpy.ones(3)), 0.5)
    q = Tensor(numpy.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="explicit rng"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)


def test_attention_rejects_shapes_that_do_not_fit():
    q, k = Tensor(numpy.ones((1, 3, 2))), Tensor(numpy.ones((1, 2, 2)))
    with pytest.raises(ValueError, match=r"at least as many keys \(2\) as queries \(3\)"):
        F.scaled_dot_product_attention(q, k, k)
    with pytest.raises(ValueError, match=r"q \(1, 3, 2\), k \(1, 2, 2\), v \(1, 2, 3\)"):
        F.scaled_dot_product_attention(q, k, Tensor(numpy.ones((1, 2, 3))))


# ---------------------------------------------------------------- gradcheck can fail

class WrongSquare(Function):
    """y = x^2 with a deliberately wrong backward: the factor 2 is missing at element (1, 0)."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        wrong = 2 * self.x * grad
        wrong[1, 0] /= 2
        return wrong


class ForgetsUpstream(Function):
    """softmax whose backward ignores the upstream gradient: passes with sum(), not with a random one."""

    def forward(self, x):
        self.y = F.softmax(Tensor(x)).data
        return self.y

    def backward(self, grad):
        return self.y * (1 - self.y.sum(axis=-1, keepdims=True))


def test_gradcheck_catches_a_wrong_backward_and_names_input_and_element():
    x = Tensor(normal(0, (2, 2)) + 3, requires_grad=True)
    other = Tensor(normal(1, (2, 2)), requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 1 \(shape \(2, 2\)\), element \(1, 0\)"):
        gradcheck(lambda a, x: a * 1.0 + WrongSquare.apply(x), other, x)


def test_gradcheck_catches_a_backward_that_drops_the_upstream_gradient():
    x = Tensor(normal(0, (2, 3)), requires_grad=True)
    assert gradcheck(ForgetsUpstream.apply, x, upstream=numpy.ones((2, 3)))  # what y.sum() would test
    with pytest.raises(AssertionError, match="input 0"):
        gradcheck(ForgetsUpstream.apply, x)


def test_gradcheck_needs_float64_and_a_differentiable_input():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(F.exp, Tensor(numpy.ones(2, dtype=numpy.float32), requires_grad=True))
    with pytest.raises(ValueError, match="no input has requires_grad"):
        gradcheck(F.exp, Tensor(numpy.ones(2)))


def test_linear_skips_the_gradient_of_a_frozen_weight():
    """The engine tells each op which inputs need gradients; linear then skips dL/dW."""
    rng = numpy.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 4)))                      # frozen: requires_grad False
    b = Tensor(rng.standard_normal(4), requires_grad=True)
    y = F.linear(x, w, b)
    assert y._creator.needs_input_grad == (True, False, True)
    g = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = y._creator.backward(backend.asarray(g))
    assert grad_w is None
    numpy.testing.assert_allclose(backend.to_numpy(grad_x), g @ w.numpy().T, rtol=1e-12)
    numpy.testing.assert_allclose(backend.to_numpy(grad_b), g.sum(axis=(0, 1)), rtol=1e-12)
