"""Elementwise ops: each output element depends on one input element.

For y = f(x) the chain rule is simply dL/dx = dL/dy * f'(x), so each backward
is one line: the local derivative times the upstream gradient.
"""
import math

from minillm.autograd import Function, Tensor
from minillm.functional.activation import gelu_exact
from minillm.backend import xp
from minillm.functional.blocked import blockwise


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
GELU_A = 0.044715


def gelu_tanh_reference(x):
    """The plain formula on raw arrays (the fused kernels below must agree with it)."""
    return 0.5 * x * (1.0 + xp.tanh(GELU_C * (x + GELU_A * x ** 3)))


def gelu_tanh_grad_reference(x, grad):
    """dL/dx = dL/dy * dy/dx, the plain formula on raw arrays."""
    t = xp.tanh(GELU_C * (x + GELU_A * x ** 3))
    return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x))


def _gelu_tanh_kernel(x, t):
    """t = tanh(c (x + a x^3)) on one piece, written into t."""
    xp.multiply(x, x, out=t)                  # x^2
    t *= GELU_A * GELU_C
    t += GELU_C                               # c (1 + a x^2)
    t *= x                                    # u = c (x + a x^3)
    xp.tanh(t, out=t)


def _gelu_forward_kernel(x, y):
    """y = 0.5 x (1 + t) on one piece; t lives only in a piece-sized scratch."""
    _gelu_tanh_kernel(x, y)                   # y holds t for a moment
    y += 1.0
    y *= x
    y *= 0.5                                  # 0.5 x (1 + t)


def _gelu_backward_kernel(x, grad, d):
    """d = grad * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2)) on one piece, t recomputed from x."""
    t = xp.empty(x.shape, x.dtype)            # the piece's tanh, recomputed rather than kept from forward
    _gelu_tanh_kernel(x, t)
    scratch = xp.multiply(t, t, out=xp.empty(t.shape, t.dtype))  # t^2
    xp.subtract(1.0, scratch, out=scratch)    # 1 - t^2
    xp.multiply(x, x, out=d)                  # x^2
    d *= 1.5 * GELU_A * GELU_C
    d += 0.5 * GELU_C                         # 0.5 du/dx = 0.5 c (1 + 3 a x^2)
    d *= x
    d *= scratch                              # 0.5 x (1 - t^2) du/dx
    t *= 0.5
    d += t
    d += 0.5                                  # + 0.5 (1 + t)
    d *= grad                                 # dL/dx = dL/dy * dy/dx


class GELU(Function):
    """GPT-2's GELU, tanh form:  y = 0.5 x (1 + tanh(c (x + a x^3))), c = sqrt(2/pi), a = 0.044715.

    With u = c (x + a x^3) and t = tanh u:
    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
    Both directions are one fused kernel each, run in pieces (``blockwise``).
    Only x is kept for backward, which recomputes t piece by piece (as
    PyTorch does): at block 256 / batch 16 the activation is 24 MiB a layer,
    so keeping t would cost that much memory, and reading it back from memory
    took about as long as computing it again on a piece already in the cache.
    ``gelu_tanh_reference`` and ``gelu_tanh_grad_reference`` are the plain
    formulas the kernels are tested against.
    """

    def forward(self, x):
        self.x = x                                # kept: the derivative is computed from x alone
        y = xp.empty(x.shape, x.dtype)
        blockwise(_gelu_forward_kernel, (x,), (y,))
        return y

    def backward(self, grad):
        d = xp.empty(grad.shape, self.x.dtype)
        blockwise(_gelu_backward_kernel, (self.x, grad), (d,))
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
