"""Layer normalisation over the last axis, fused.

    mu = mean(x), var = mean((x - mu)^2), xhat = (x - mu) / sqrt(var + eps)
    y = xhat * w + b

With g = dL/dy and gh = g * w (the gradient reaching xhat), and C the width:
    dL/dw = sum over rows of g * xhat,   dL/db = sum over rows of g
    dL/dx = (gh - mean(gh) - xhat * mean(gh * xhat)) / sqrt(var + eps)
(the two means remove the parts of gh that normalisation projects out:
a shift of every element and a rescaling along xhat).

``layer_norm_reference`` and ``layer_norm_grad_reference`` are these formulas
as written; the Function runs the same arithmetic as two kernels over pieces
of whole rows that stay in the cache (``blockwise``), dL/dw and dL/db added
up from the pieces' partial sums.
"""
from minillm.autograd import Function
from minillm.backend import xp
from minillm.functional.blocked import blockwise


def layer_norm_reference(x, weight, bias, eps):
    """The forward formula on raw arrays (no weight / no bias: pass None)."""
    xhat = (x - x.mean(axis=-1, keepdims=True)) / xp.sqrt(x.var(axis=-1, keepdims=True) + eps)
    return xhat * (1.0 if weight is None else weight) + (0.0 if bias is None else bias)


def layer_norm_grad_reference(x, weight, grad, eps):
    """(dL/dx, dL/dw, dL/db) from the formulas above, on raw arrays."""
    xhat = layer_norm_reference(x, None, None, eps)
    rows = tuple(range(x.ndim - 1))
    gh = grad * (1.0 if weight is None else weight)
    grad_x = (gh - gh.mean(axis=-1, keepdims=True) - xhat * (gh * xhat).mean(axis=-1, keepdims=True)) \
        / xp.sqrt(x.var(axis=-1, keepdims=True) + eps)
    return grad_x, (grad * xhat).sum(axis=rows), grad.sum(axis=rows)


def _row_means(a):
    """The mean of each row of a (n, C) array, (n, 1): a matrix-vector product with a column of
    1/C (the BLAS reads each row once, faster than NumPy's mean along an axis)."""
    return a @ xp.full((a.shape[-1], 1), 1.0 / a.shape[-1], dtype=a.dtype)


def _forward_kernel(x, xhat, rstd, y, weight, bias, eps):
    """One piece of rows (..., C): xhat, rstd (..., 1) and y, written in place.

    The variance is the row-wise dot product of x - mu with itself (einsum: no temporary
    (x - mu)^2)."""
    width = x.shape[-1]
    x2, xhat2, y2 = x.reshape(-1, width), xhat.reshape(-1, width), y.reshape(-1, width)   # (n, C)
    xp.subtract(x2, _row_means(x2), out=xhat2)                          # x - mu
    variance = xp.einsum("nc,nc->n", xhat2, xhat2)[:, None]             # sum (x - mu)^2, (n, 1)
    variance *= 1.0 / width
    variance += eps                                                     # var + eps
    xp.sqrt(variance, out=variance)
    xp.divide(1.0, variance, out=rstd.reshape(-1, 1))                   # 1 / sqrt(var + eps)
    xhat2 *= rstd.reshape(-1, 1)
    if weight is None:
        y2[...] = xhat2
    else:
        xp.multiply(xhat2, weight, out=y2)
    if bias is not None:
        y2 += bias


def _backward_kernel(grad, xhat, rstd, grad_x, weight):
    """One piece of rows: grad_x in place; returns the piece's sums over rows of g * xhat and of g."""
    width = grad.shape[-1]
    grad, xhat, rstd, grad_x = (a.reshape(-1, a.shape[-1]) for a in (grad, xhat, rstd, grad_x))  # (n, C), (n, 1)
    partial_w = xp.einsum("nc,nc->c", grad, xhat)               # sum over rows of g * xhat, no temporary
    partial_b = xp.ones(grad.shape[0], grad.dtype) @ grad       # sum over rows of g (a vector-matrix product)
    if weight is None:
        grad_x[...] = grad                                      # gh = g
    else:
        xp.multiply(grad, weight, out=grad_x)                   # gh = g * w
    projection = xp.einsum("nc,nc->n", grad_x, xhat)[:, None]   # sum(gh * xhat), (n, 1)
    projection *= 1.0 / width                                   # mean(gh * xhat)
    grad_x -= _row_means(grad_x)                                # gh - mean(gh)
    grad_x -= xhat * projection                                 # - xhat * mean(gh * xhat)
    grad_x *= rstd
    return partial_w, partial_b


class LayerNorm(Function):

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        xhat, rstd, y = xp.empty(x.shape, x.dtype), xp.empty(x.shape[:-1] + (1,), x.dtype), xp.empty(x.shape, x.dtype)
        blockwise(_forward_kernel, (x,), (xhat, rstd, y), rows=rstd.size, extra=(weight, bias, eps))
        self.xhat, self.rstd = xhat, rstd        # kept: the normalised input, and 1/sqrt(var + eps) scales dL/dx
        self.weight = weight
        self.has_bias = bias is not None
        return y

    def backward(self, grad):
        xhat = self.xhat
        grad_x = xp.empty(xhat.shape, xhat.dtype)
        partials = blockwise(_backward_kernel, (grad, xhat, self.rstd), (grad_x,), rows=self.rstd.size,
                             extra=(self.weight,))
        grad_w, grad_b = partials[0]                            # dL/dw, dL/db: the pieces' sums, in order
        for partial_w, partial_b in partials[1:]:
            grad_w += partial_w
            grad_b += partial_b
        grad_w = grad_w if self.weight is not None else None
        grad_b = grad_b if self.has_bias else None
        if self.weight is None:
            return (grad_x,) + ((grad_b,) if self.has_bias else ())
        return (grad_x, grad_w) + ((grad_b,) if self.has_bias else ())


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis."""
    inputs = [x] + [t for t in (weight, bias) if t is not None]
    if weight is None and bias is not None:
        raise ValueError("layer_norm: a bias without a weight is not supported")
    return LayerNorm.apply(*inputs, eps=eps)
