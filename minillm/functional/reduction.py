"""Reductions: sum, mean and max along axes.

A reduction maps many elements to one, so its backward hands the upstream
gradient back to every element that took part: all of them for ``sum``, each
with weight 1/n for ``mean``, the largest one(s) for ``max``. The reduced axes
are put back first (``_expand_reduced``) so the gradient broadcasts against the
input's shape.
"""
from minillm.autograd import Function
from minillm.backend import xp


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim if ndim else a for a in axes)


def _expand_reduced(grad, shape, axis, keepdims):
    """Put back the axes a reduction removed, so ``grad`` broadcasts against ``shape``."""
    if not keepdims:
        for a in sorted(_normalize_axes(axis, len(shape))):
            grad = xp.expand_dims(grad, a)
    return grad


class Sum(Function):
    """y = x.sum(axis).  Every summed element gets the whole upstream gradient."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return xp.broadcast_to(grad, self.shape)


class Mean(Function):
    """y = x.mean(axis) = x.sum(axis) / n.  Each element gets grad / n."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = x.mean(axis=axis, keepdims=keepdims)
        self.count = x.size // (out.size or 1)  # how many elements each mean averaged
        return out

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return xp.broadcast_to(grad / self.count, self.shape)


class Max(Function):
    """y = x.max(axis).  The gradient goes to the maximal element(s); ties share it equally."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = x.max(axis=axis, keepdims=True)
        self.is_max = x == out  # where the gradient goes
        return out if keepdims else xp.squeeze(out, axis=_normalize_axes(axis, x.ndim))

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        share = self.is_max.astype(grad.dtype)
        share /= share.sum(axis=self.axis, keepdims=True)
        return grad * share


def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return Max.apply(x, axis=axis, keepdims=keepdims)
