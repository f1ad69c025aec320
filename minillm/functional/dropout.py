"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p).

    y = x * m / (1 - p),  m_i ~ Bernoulli(1 - p)      dL/dx = g * m / (1 - p)

The expected value of y equals x, so nothing changes at evaluation time, where
dropout is the identity. The mask comes from an explicit random generator
(``backend.device_rng(seed)``), never a hidden global one. The mask is kept
as booleans (one byte an element, a quarter of a float32 copy) and the
1 / (1 - p) applied as a second multiplication: x * m, then * 1/(1-p), gives
the same float32 numbers as x * (m / (1 - p)) (m is 0 or 1).
"""
from minillm import backend
from minillm.autograd import Function
from minillm.backend import xp


class Dropout(Function):

    def forward(self, x, p, rng):
        self.keep = backend.random_keep_mask(rng, x.shape, p, dtype=x.dtype)   # kept: the mask m, booleans
        self.scale = 1.0 / (1.0 - p)
        y = xp.multiply(x, self.keep, dtype=x.dtype)
        y *= self.scale
        return y

    def backward(self, grad):
        d = xp.multiply(grad, self.keep, dtype=grad.dtype)
        d *= self.scale
        return d


def dropout(x, p, training=True, rng=None):
    """Zero elements of ``x`` with probability ``p`` (only when ``training``)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout in training mode needs an explicit rng (backend.device_rng(seed))")
    return Dropout.apply(x, p=p, rng=rng)
