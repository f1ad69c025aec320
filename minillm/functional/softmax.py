"""Softmax and log-softmax, fused, with their backward derived by hand.

softmax:      y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (for stability;
              subtracting a constant does not change y).
              dy_i/dx_k = y_i (delta_ik - y_k), so
              dL/dx = y * (g - sum(g * y))                      (g = dL/dy)
log_softmax:  y_i = x_i - m - log sum_j exp(x_j - m).
              dy_i/dx_k = delta_ik - softmax_k, so
              dL/dx = g - softmax(x) * sum(g)
"""
from minillm.autograd import Function
from minillm.backend import xp


def stable_softmax(x, axis=-1):
    """softmax on raw arrays: exp(x - max) / sum(exp(x - max)), in two passes."""
    e = x - x.max(axis=axis, keepdims=True)
    xp.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def stable_log_softmax(x, axis=-1):
    """log-softmax on raw arrays: (x - m) - log sum exp(x - m)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


class Softmax(Function):

    def forward(self, x, axis):
        self.axis = axis
        self.y = stable_softmax(x, axis)  # the Jacobian is written in terms of y
        return self.y

    def backward(self, grad):
        y = self.y
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):

    def forward(self, x, axis):
        self.axis = axis
        out = stable_log_softmax(x, axis)
        self.softmax = xp.exp(out)  # the Jacobian needs softmax(x) = exp(log_softmax(x))
        return out

    def backward(self, grad):
        return grad - self.softmax * grad.sum(axis=self.axis, keepdims=True)


def softmax(x, axis=-1):
    """y = exp(x) / sum(exp(x)) along ``axis``."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis=-1):
    """y = log softmax(x) along ``axis``, computed without overflow for any finite x."""
    return LogSoftmax.apply(x, axis=axis)
