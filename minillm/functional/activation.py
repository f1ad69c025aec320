"""The gated-MLP activations of the newer families: SiLU (Llama's SwiGLU) and exact GELU (BERT).

GPT-2's tanh GELU lives in elementwise.py; ``F.gelu(x, approximate="none")``
reaches the erf form below.

SiLU ("swish"):  y = x s,  s = sigmoid(x) = 1 / (1 + e^-x)
    ds/dx = s (1 - s), so  dy/dx = s + x s (1 - s) = s (1 + x (1 - s)).
    Computed stably: with e = exp(-|x|) <= 1 (never overflows),
    s = 1 / (1 + e) for x >= 0 and s = e / (1 + e) for x < 0.

GELU, exact:  y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
    dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)  (the normal density).
"""
import math

from minillm import backend
from minillm.autograd import Function
from minillm.backend import xp


def sigmoid(x):
    """1 / (1 + e^-x) without overflow for any finite x (a plain array function)."""
    e = xp.exp(-xp.abs(x))                       # in (0, 1]
    return xp.where(x >= 0, 1.0, e) / (1.0 + e)


class SiLU(Function):
    """y = x sigmoid(x).  dy/dx = s (1 + x (1 - s))."""

    def forward(self, x):
        self.x = x
        self.s = sigmoid(x)                      # kept: the derivative is built from s
        return x * self.s

    def backward(self, grad):
        d = 1.0 - self.s
        d *= self.x
        d += 1.0
        d *= self.s                              # s (1 + x (1 - s))
        d *= grad
        return d


INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELUExact(Function):
    """y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)).  dy/dx = Phi(x) + x phi(x)."""

    def forward(self, x):
        self.x = x
        cdf = backend.erf(x * INV_SQRT_2)
        cdf += 1.0
        cdf *= 0.5
        self.cdf = cdf                           # kept: Phi(x) is half the derivative
        return x * cdf

    def backward(self, grad):
        x = self.x
        d = xp.multiply(x, x, out=xp.empty_like(x))  # x^2 (out= keeps a 0-d input an array)
        d *= -0.5
        xp.exp(d, out=d)
        d *= INV_SQRT_2PI                        # phi(x)
        d *= x
        d += self.cdf                            # Phi(x) + x phi(x)
        d *= grad
        return d


def silu(x):
    """x * sigmoid(x) (SwiGLU's gate: down(silu(gate(x)) * up(x)))."""
    return SiLU.apply(x)


def gelu_exact(x):
    """0.5 x (1 + erf(x / sqrt 2)): BERT's (Hugging Face's "gelu") exact GELU."""
    return GELUExact.apply(x)
