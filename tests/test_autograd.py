"""The engine: graphs built by hand whose gradients we know, and its error messages.

Gradients of every op against finite differences are in test_functional.py;
here we check what the engine itself does: visiting order, accumulation over
several uses, depth without recursion, releasing the graph, no_grad, dtypes.
"""
import gc
import weakref

import numpy
import pytest

from minillm import Tensor, backend, no_grad, is_grad_enabled
from minillm.autograd import Function, unbroadcast


def host(array):
    return backend.to_numpy(array)


def leaf(values, dtype=numpy.float64):
    return Tensor(numpy.asarray(values, dtype=dtype), requires_grad=True)


def test_diamond_graph_adds_both_paths():
    # x -> a = 2x, b = x^2 -> y = a * b = 2 x^3, dy/dx = 6 x^2
    x = leaf([1.0, -2.0, 3.0])
    a = x * 2
    b = x * x
    y = (a * b).sum()
    y.backward()
    numpy.testing.assert_allclose(host(x.grad), 6 * numpy.array([1.0, 4.0, 9.0]))


def test_a_plus_a_counts_twice():
    a = leaf([1.0, 2.0])
    (a + a).sum().backward()
    numpy.testing.assert_array_equal(host(a.grad), [2.0, 2.0])


def test_x_times_x():
    x = leaf([3.0, -1.5])
    (x * x).backward(numpy.array([1.0, 10.0]))
    numpy.testing.assert_array_equal(host(x.grad), [6.0, -30.0])


def test_tensor_used_in_two_ops_sums_its_gradients():
    x = leaf([1.0, 2.0])
    y = (x * 3).sum() + (x * x).sum() + x.sum()  # d/dx = 3 + 2x + 1
    y.backward()
    numpy.testing.assert_array_equal(host(x.grad), [6.0, 8.0])


def test_both_outputs_of_a_shared_grad_stay_independent():
    # Add hands the very same array to both inputs; accumulating into one
    # leaf's .grad must not change the other's.
    a, b = leaf([1.0]), leaf([2.0])
    (a + b).sum().backward()
    a.grad += 100
    assert host(b.grad)[0] == 1.0


def test_order_matters_chain():
    # y = ((x + 1) * 3) ** 2, visiting in the wrong order gives a wrong answer
    x = leaf([2.0])
    y = ((x + 1) * 3) ** 2
    y.sum().backward()
    numpy.testing.assert_allclose(host(x.grad), [2 * (3 * (2.0 + 1)) * 3])  # 54


def test_grad_accumulates_across_backward_calls_on_leaves():
    x = leaf([1.0, 2.0])
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    numpy.testing.assert_array_equal(host(x.grad), [5.0, 5.0])


def test_chain_of_10000_ops_has_no_recursion_error():
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    numpy.testing.assert_allclose(host(x.grad), [1.0001 ** 10_000], rtol=1e-9)


def test_graph_is_released_after_backward():
    x = leaf([1.0, 2.0])
    h = x * x
    fn = weakref.ref(h._creator)
    y = (h * 2).sum()
    assert not h.is_leaf
    y.backward()
    gc.collect()
    assert h._creator is None and y._creator is None
    assert fn() is None  # the Function and the arrays it saved are gone
    assert not h.is_leaf  # still an intermediate, not a new leaf
    assert h.grad is None  # only leaves receive .grad


def test_second_backward_through_a_freed_graph_is_a_clear_error():
    x = leaf([1.0, 2.0])
    h = x * x
    y = h.sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already released"):
        y.backward()
    with pytest.raises(RuntimeError, match="already released"):
        (h * 3).sum().backward()
    numpy.testing.assert_array_equal(host(x.grad), [2.0, 4.0])  # unchanged by the failed calls


def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = x * x + 1
    assert is_grad_enabled()
    assert not y.requires_grad and y._creator is None
    with pytest.raises(RuntimeError, match="does not require gradients"):
        y.sum().backward()


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_backward_on_non_scalar_without_grad_is_a_clear_error():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"shape \(2\) needs an explicit gradient"):
        (x * 2).backward()


def test_backward_with_grad_of_the_wrong_shape_names_both_shapes():
    x = leaf([[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"grad has shape \(2\), the tensor has shape \(1, 2\)"):
        (x * 2).backward(numpy.ones(2))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(numpy.array([1, 2]), requires_grad=True)


@pytest.mark.parametrize("make", [
    lambda x: x + 2, lambda x: 2 + x, lambda x: x - 2, lambda x: 2 - x,
    lambda x: x * 2.5, lambda x: 2.5 * x, lambda x: x / 2, lambda x: 2 / x,
    lambda x: x ** 2, lambda x: x ** 0.5, lambda x: -x,
    lambda x: x + numpy.float64(2.0), lambda x: numpy.float64(2.0) * x,
])
def test_python_scalars_on_either_side_keep_float32(make):
    x = Tensor(numpy.array([1.0, 4.0], dtype=numpy.float32), requires_grad=True)
    y = make(x)
    assert isinstance(y, Tensor) and y.dtype == numpy.float32
    y.sum().backward()
    assert x.grad.dtype == numpy.float32


def test_integer_tensor_times_a_float_is_not_truncated():
    ids = Tensor(numpy.array([1, 3]))
    numpy.testing.assert_array_equal(host((ids * 0.5).data), [0.5, 1.5])
    assert (ids * 2).dtype == ids.dtype


def test_float64_stays_float64():
    x = leaf([1.0], dtype=numpy.float64)
    assert (x * 2).dtype == numpy.float64
    assert Tensor(numpy.zeros(2, numpy.float32)).dtype == numpy.float32


@pytest.mark.parametrize("op", ["add", "radd", "mul", "rmul", "sub", "rsub", "matmul"])
def test_ndarray_and_tensor_mix_on_either_side(op):
    a = backend.xp.asarray(numpy.array([[1.0, 2.0], [3.0, 4.0]]))
    x = leaf([[1.0, -1.0], [0.5, 2.0]])
    y = {"add": lambda: x + a, "radd": lambda: a + x, "mul": lambda: x * a, "rmul": lambda: a * x,
         "sub": lambda: x - a, "rsub": lambda: a - x, "matmul": lambda: a @ x}[op]()
    assert isinstance(y, Tensor)
    y.sum().backward()
    expected = {"add": 1.0, "radd": 1.0, "mul": host(a), "rmul": host(a), "sub": 1.0, "rsub": -1.0,
                "matmul": host(a).sum(axis=0)[:, None] * numpy.ones((2, 2))}[op]
    numpy.testing.assert_allclose(host(x.grad), numpy.broadcast_to(expected, (2, 2)))


def test_forward_and_backward_leave_inputs_unchanged():
    rng = numpy.random.default_rng(0)
    values = rng.standard_normal((3, 4))
    x = Tensor(values.copy(), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    w_before = host(w.data).copy()
    y = ((x @ w).sum(axis=0) * 2 + x.max()).sum()
    y.backward()
    numpy.testing.assert_array_equal(host(x.data), values)
    numpy.testing.assert_array_equal(host(w.data), w_before)


def test_tensor_of_a_tensor_shares_the_data():
    x = Tensor(numpy.ones(2))
    assert Tensor(x).data is x.data


def test_detach_cuts_the_graph():
    x = leaf([2.0])
    y = (x * x).detach()
    assert not y.requires_grad and y.is_leaf


def test_unbroadcast_sums_new_and_size_one_axes():
    grad = numpy.ones((2, 3, 4))
    numpy.testing.assert_array_equal(unbroadcast(grad, (3, 1)), numpy.full((3, 1), 8.0))
    numpy.testing.assert_array_equal(unbroadcast(grad, ()), numpy.array(24.0))
    assert unbroadcast(grad, (2, 3, 4)) is grad


def test_a_function_returning_none_gives_no_gradient_to_that_input():
    class FirstOnly(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, grad):
            return grad, None

    a, b = leaf([1.0]), leaf([2.0])
    (FirstOnly.apply(a, b) * 1.0).sum().backward()
    assert host(a.grad)[0] == 1.0 and b.grad is None


def test_python_scalar_inputs_become_constants():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    assert len(y._creator.inputs) == 2 and not y._creator.inputs[1].requires_grad


def test_pow_with_a_tensor_exponent_is_a_type_error():
    x = leaf([1.0])
    with pytest.raises(TypeError, match="Python number"):
        x ** x


def test_pow_zero_has_zero_gradient_even_at_zero():
    x = leaf([0.0, 2.0])
    (x ** 0).sum().backward()
    numpy.testing.assert_array_equal(host(x.grad), [0.0, 0.0])


def test_properties_and_item():
    x = Tensor(numpy.arange(6.0).reshape(2, 3))
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert Tensor(numpy.array(4.5)).item() == 4.5
    assert isinstance(x.numpy(), numpy.ndarray)
    assert "Tensor(" in repr(x)
