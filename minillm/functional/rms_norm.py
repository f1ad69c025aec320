"""RMS normalisation over the last axis, fused (T5's LayerNorm, Llama's RMSNorm).

No mean is subtracted and there is no bias: each row is divided by its root
mean square, then scaled per feature. With C the width of a row:

    r = 1 / sqrt(mean(x^2) + eps),   xhat = x * r,   y = xhat * w

Backward, with g = dL/dy and gh = g * w (the gradient reaching xhat):

    dL/dw = sum over rows of g * xhat
    dr/dx_j = -r^3 x_j / C, so
    dL/dx_j = gh_j r + sum_i gh_i x_i (-r^3 x_j / C)
            = r (gh_j - xhat_j * mean_i(gh_i xhat_i))

(LayerNorm's formula without the "- mean(gh)" term: no shift was removed,
only the rescaling along xhat is projected out.)
"""
from minillm.autograd import Function
from minillm.backend import xp


class RMSNorm(Function):

    def forward(self, x, weight=None, eps=1e-6):
        self.rstd = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # kept: r scales dL/dx
        self.xhat = x * self.rstd                                               # kept: the normalised input
        self.weight = weight
        return self.xhat * weight if weight is not None else self.xhat.copy()

    def backward(self, grad):
        xhat = self.xhat
        gh = grad * self.weight if self.weight is not None else grad
        grad_x = gh - xhat * (gh * xhat).mean(axis=-1, keepdims=True)
        grad_x *= self.rstd
        if self.weight is None:
            return grad_x
        grad_w = (grad * xhat).sum(axis=tuple(range(grad.ndim - 1)))
        return grad_x, grad_w


def rms_norm(x, weight=None, eps=1e-6):
    """x / sqrt(mean(x^2, last axis) + eps) * weight: no mean subtraction, no bias."""
    if weight is not None and tuple(weight.shape) != tuple(x.shape[-1:]):
        raise ValueError(f"rms_norm: weight has shape {tuple(weight.shape)}; "
                         f"expected ({x.shape[-1]},), the width of x's last axis")
    inputs = (x,) if weight is None else (x, weight)
    return RMSNorm.apply(*inputs, eps=eps)
