"""Elementwise ops: each output element depends on one input element.

For y = f(x) the chain rule is simply dL/dx = dL/dy * f'(x), so each backward
is one line: the local derivative times the upstream gradient.
"""
import math

from minillm.autograd import Function, Tensor
from minillm.functional.activation import gelu_exact
from minillm.backend import xp


class Exp(Function):
    """y = e^x.  dy/dx = e^x = y."""

    def forward(self, x):
        self.y = xp.exp(x)  # the derivative is the output itself
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    """y = ln x (x > 0).  dy/dx = 1 / x."""

    def forward(self, x):
        self.x = x
        return xp.log(x)

    def backward(self, grad):
        return grad / self.x


class Tanh(Function):
    """y = tanh x.  dy/dx = 1 - y^2."""

    def forward(self, x):
        self.y = xp.tanh(x)  # the derivative needs only the output
        return self.y

    def backward(self, grad):
        return grad * (1 - self.y * self.y)


class Sqrt(Function):
    """y = sqrt(x) (x > 0).  dy/dx = 1 / (2 y)."""

    def forward(self, x):
        self.y = xp.sqrt(x)
        return self.y

    def backward(self, grad):
        return grad / (2 * self.y)


class ReLU(Function):
    """y = max(x, 0).  dy/dx = 1 where x > 0, else 0."""

    def forward(self, x):
        self.positive = x > 0  # the only thing the derivative depends on
        return x * self.positive

    def backward(self, grad):
        return grad * self.positive


GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """GPT-2's GELU, tanh form:  y = 0.5 x (1 + tanh(c (x + 0.044715 x^3))), c = sqrt(2/pi).

    With u = c (x + 0.044715 x^3) and t = tanh u:
    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2).
    """

    def forward(self, x):
        self.x = x
        t = xp.multiply(x, x, out=xp.empty_like(x))  # x^2  (then in place: one new array; out= keeps 0-d an array)
        t *= 0.044715 * GELU_C
        t += GELU_C                               # c (1 + 0.044715 x^2)
        t *= x                                    # u = c (x + 0.044715 x^3)
        self.t = xp.tanh(t, out=t)                # t = tanh u, reused by the derivative
        y = t + 1.0
        y *= x
        y *= 0.5                                  # 0.5 x (1 + t)
        return y

    def backward(self, grad):
        x, t = self.x, self.t
        d = x * x                                 # x^2
        d *= 3 * 0.044715 * GELU_C
        d += GELU_C                               # du/dx = c (1 + 3 * 0.044715 x^2)
        d *= x
        one_minus_t2 = xp.multiply(t, t, out=xp.empty_like(t))
        xp.subtract(1.0, one_minus_t2, out=one_minus_t2)
        d *= one_minus_t2                         # x (1 - t^2) du/dx
        d += t
        d += 1.0                                  # (1 + t) + x (1 - t^2) du/dx
        d *= 0.5
        d *= grad                                 # dL/dx = dL/dy * dy/dx
        return d


class Where(Function):
    """y = a where cond else b.  The gradient flows to whichever input was picked."""

    def forward(self, a, b, condition):
        self.condition = xp.asarray(condition, dtype=bool)
        return xp.where(self.condition, a, b)

    def backward(self, grad):
        zero = xp.zeros((), dtype=grad.dtype)
        return xp.where(self.condition, grad, zero), xp.where(self.condition, zero, grad)


def exp(x):
    return Exp.apply(x)


def log(x):
    return Log.apply(x)


def tanh(x):
    return Tanh.apply(x)


def sqrt(x):
    return Sqrt.apply(x)


def relu(x):
    return ReLU.apply(x)


def gelu(x, approximate="tanh"):
    """GELU: ``approximate="tanh"`` (default) is GPT-2's and T5 v1.1's tanh form
    (Hugging Face "gelu_new"); ``"none"`` is the exact erf form (BERT, "gelu")."""
    if approximate == "tanh":
        return GELU.apply(x)
    if approximate == "none":
        return gelu_exact(x)
    raise ValueError(f"gelu: approximate={approximate!r}; expected 'tanh' or 'none' (the exact erf form)")


def where(condition, a, b):
    """Pick ``a`` where ``condition`` (a boolean array or Tensor) holds, else ``b``."""
    if isinstance(condition, Tensor):
        condition = condition.data
    return Where.apply(a, b, condition=condition)


def masked_fill(x, mask, value):
    """``x`` with ``value`` wherever ``mask`` is True (no gradient flows there)."""
    return where(mask, value, x)
