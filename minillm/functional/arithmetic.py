"""Arithmetic: the Functions behind ``+ - * / **`` and unary ``-`` on Tensors.

Each is one line of calculus. Broadcasting is not handled here: an op returns
the gradient in the broadcast shape and the engine (``autograd.unbroadcast``)
sums it back to each input's shape.
"""
from minillm.autograd import Function, Tensor
from minillm.backend import xp


class Add(Function):
    """y = a + b (broadcasting).  dy/da = dy/db = 1."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """y = a - b.  dy/da = 1, dy/db = -1."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    """y = a * b.  dy/da = b, dy/db = a."""

    def forward(self, a, b):
        self.a, self.b = a, b  # each is the other's derivative
        return a * b

    def backward(self, grad):
        return grad * self.b, grad * self.a


class Div(Function):
    """y = a / b.  dy/da = 1 / b, dy/db = -a / b^2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        grad_a = grad / self.b
        return grad_a, -grad_a * self.a / self.b


class Neg(Function):
    """y = -x."""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = x ** p for a constant p.  dy/dx = p * x ** (p - 1)."""

    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x ** exponent

    def backward(self, grad):
        p = self.exponent
        if p == 0:  # y = 1: no gradient (and no 0 * x ** -1 = NaN at x = 0)
            return xp.zeros_like(grad)
        return grad * (p * self.x ** (p - 1))


def power(x, exponent):
    """``x ** exponent`` for a Python number ``exponent`` (``Tensor.__pow__``)."""
    if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float)):
        raise TypeError(f"x ** p needs a Python number p, got {type(exponent).__name__}")
    return Pow.apply(x, exponent=exponent)
