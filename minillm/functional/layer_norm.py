"""Layer normalisation over the last axis, fused.

    mu = mean(x), var = mean((x - mu)^2), xhat = (x - mu) / sqrt(var + eps)
    y = xhat * w + b

With g = dL/dy and gh = g * w (the gradient reaching xhat), and C the width:
    dL/dw = sum over rows of g * xhat,   dL/db = sum over rows of g
    dL/dx = (gh - mean(gh) - xhat * mean(gh * xhat)) / sqrt(var + eps)
(the two means remove the parts of gh that normalisation projects out:
a shift of every element and a rescaling along xhat).
"""
from minillm.autograd import Function
from minillm.backend import xp


class LayerNorm(Function):

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        self.rstd = 1.0 / xp.sqrt(var + eps)   # kept: 1/sqrt(var + eps) scales dL/dx
        xc *= self.rstd
        self.xhat = xc                          # kept: the normalised input
        self.weight = weight
        self.has_bias = bias is not None
        y = xc * weight if weight is not None else xc.copy()
        if bias is not None:
            y += bias
        return y

    def backward(self, grad):
        xhat = self.xhat
        rows = tuple(range(grad.ndim - 1))
        grad_w = (grad * xhat).sum(axis=rows) if self.weight is not None else None
        grad_b = grad.sum(axis=rows) if self.has_bias else None
        gh = grad * self.weight if self.weight is not None else grad
        grad_x = gh - gh.mean(axis=-1, keepdims=True)
        grad_x -= xhat * (gh * xhat).mean(axis=-1, keepdims=True)
        grad_x *= self.rstd
        if self.weight is None:
            return (grad_x,) + ((grad_b,) if self.has_bias else ())
        return (grad_x, grad_w) + ((grad_b,) if self.has_bias else ())


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis."""
    inputs = [x] + [t for t in (weight, bias) if t is not None]
    if weight is None and bias is not None:
        raise ValueError("layer_norm: a bias without a weight is not supported")
    return LayerNorm.apply(*inputs, eps=eps)
