"""Functions with several results: the engine, ``F.split`` and ``F.split_fused_heads``.

A multi-output op's backward must run once, after every use of every result
has sent its gradient, and get None for a result nobody used. The results may
be used at different depths of the graph (q, k and v meet in attention, but a
residual may read one of them much later), so the tests mix depths.
"""
import gc
import weakref

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.functional as F
from minillm import Tensor, backend, gradcheck
from minillm.autograd import Function


def host(x):
    return backend.to_numpy(x.data if isinstance(x, Tensor) else x)


def normal(seed, shape):
    return numpy.random.default_rng(seed).standard_normal(shape)


class TwoAndThree(Function):
    """(2x, 3x); counts its backward calls and remembers which gradients arrived."""
    calls = []

    def forward(self, x):
        return x * 2.0, x * 3.0

    def backward(self, grad_a, grad_b):
        TwoAndThree.calls.append((grad_a is not None, grad_b is not None))
        total = 0.0
        if grad_a is not None:
            total = total + 2.0 * grad_a
        if grad_b is not None:
            total = total + 3.0 * grad_b
        return total


def test_backward_runs_once_after_every_use_of_every_result():
    TwoAndThree.calls = []
    x = Tensor(numpy.array([1.0, -2.0]), requires_grad=True)
    a, b = TwoAndThree.apply(x)
    deep = a
    for _ in range(5):
        deep = deep * 1.5                        # a is used early, b at the end
    loss = (deep * b).sum()
    loss.backward()
    assert TwoAndThree.calls == [(True, True)]
    # loss = sum(2x * 1.5^5 * 3x) = 6 * 1.5^5 * sum(x^2), so dloss/dx = 12 * 1.5^5 * x
    numpy.testing.assert_allclose(host(x.grad), 12 * 1.5 ** 5 * numpy.array([1.0, -2.0]))


def test_an_unused_result_gets_none_and_no_gradient():
    TwoAndThree.calls = []
    x = Tensor(numpy.array([1.0, 4.0]), requires_grad=True)
    a, _ = TwoAndThree.apply(x)
    (a * a).sum().backward()
    assert TwoAndThree.calls == [(True, False)]
    numpy.testing.assert_allclose(host(x.grad), [8.0, 32.0])    # d(4x^2)/dx


def test_multi_output_graph_is_released_and_not_recorded_under_no_grad():
    from minillm import no_grad
    x = Tensor(numpy.array([1.0]), requires_grad=True)
    a, b = TwoAndThree.apply(x)
    fn = weakref.ref(a._creator)
    (a + b).sum().backward()
    gc.collect()
    assert fn() is None and a._creator is None and b._creator is None
    with pytest.raises(RuntimeError, match="already released"):
        (b * 2).sum().backward()
    with no_grad():
        a, b = TwoAndThree.apply(x)
    assert not a.requires_grad and b._creator is None


@settings(max_examples=10)
@given(batch=st.integers(1, 2), t=st.integers(1, 3), heads=st.integers(1, 2), seed=st.integers(0, 2**16),
       used=st.sampled_from(["qkv", "qk", "v"]))
def test_split_fused_heads_gradients(batch, t, heads, seed, used):
    x = Tensor(normal(seed, (batch, t, 3 * heads * 2)), requires_grad=True)
    weights = [Tensor(normal(seed + i, (batch, heads, t, 2))) for i in (1, 2, 3)]

    def loss_of(x):
        q, k, v = F.split_fused_heads(x, 3, heads)
        parts = {"q": q, "k": k, "v": v}
        total = None
        for name, w in zip("qkv", weights):
            if name in used:
                term = parts[name] * parts[name] * w           # nonlinear, so each part's gradient is its own
                total = term if total is None else total + term
        return total

    assert gradcheck(loss_of, x, seed=seed)
    q, k, v = F.split_fused_heads(Tensor(host(x)), 3, heads)       # the same numbers as the plain reshape
    expected = host(x).reshape(batch, t, 3, heads, 2).transpose(2, 0, 3, 1, 4)
    for i, part in enumerate((q, k, v)):
        numpy.testing.assert_array_equal(host(part), expected[i])


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), axis=st.integers(-2, 1), use_last=st.booleans())
def test_split_gradients_with_an_unused_piece(seed, axis, use_last):
    x = Tensor(normal(seed, (4, 6)), requires_grad=True)
    sizes = [1, 3] if x.shape[axis] == 4 else [2, 1, 3]

    def loss_of(x):
        pieces = F.split(x, sizes, axis=axis)
        return pieces[-1] * pieces[-1] if use_last else pieces[0] * 2.0

    assert gradcheck(loss_of, x, seed=seed)


def test_split_fused_heads_names_the_expected_shape():
    with pytest.raises(ValueError, match="divisible by n_parts"):
        F.split_fused_heads(Tensor(numpy.zeros((1, 2, 7))), 3, 1)


def test_an_op_may_save_arrays_under_any_name_the_engine_does_not_keep():
    class Scale(Function):                       # saves its own "outputs" and "results"
        def forward(self, x):
            self.outputs, self.results = x * 2.0, "mine"
            return self.outputs

        def backward(self, grad):
            assert self.results == "mine" and self.outputs.shape == grad.shape   # still the op's own
            return grad * 2.0

    x = Tensor(numpy.array([1.0, 3.0]), requires_grad=True)
    (Scale.apply(x) * x).sum().backward()        # d(2x^2)/dx = 4x
    numpy.testing.assert_allclose(host(x.grad), [4.0, 12.0])
