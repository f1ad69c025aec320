"""Reductions and matrix products as plain functions (the Functions live in
``minillm.autograd``, because the Tensor methods need them)."""
from minillm.autograd import Sum, Mean, Max, MatMul


def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return Max.apply(x, axis=axis, keepdims=keepdims)


def matmul(a, b):
    """Batched matrix product with broadcasting over leading axes."""
    return MatMul.apply(a, b)
