"""The matrix product y = a @ b, batched over leading axes, with broadcasting.

For 2-D operands, y_ij = sum_k a_ik b_kj, so

    dL/da = dL/dy @ b^T        dL/db = a^T @ dL/dy

on the last two axes. Leading (batch) axes broadcast, so each gradient is
summed back over the axes its operand was broadcast along. A 1-D operand is
treated as a row (a) or a column (b) vector, as NumPy does.
"""
from minillm.autograd import Function, unbroadcast
from minillm.backend import xp
from minillm.shapes import check_matmul_shapes


class MatMul(Function):
    """y = a @ b (``Tensor.__matmul__``)."""

    def forward(self, a, b):
        check_matmul_shapes(a, b)
        self.a, self.b = a, b  # each is needed for the other's gradient
        return xp.matmul(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a            # (..., n, k)
        b2 = b[:, None] if b.ndim == 1 else b            # (..., k, m)
        if b.ndim == 1:  # b first: for 1-D @ 1-D, grad is 0-d and has no axis -2 yet
            grad = xp.expand_dims(grad, -1)
        if a.ndim == 1:
            grad = xp.expand_dims(grad, -2)              # (..., n, m)
        grad_a = xp.matmul(grad, xp.swapaxes(b2, -1, -2))  # (..., n, k)
        grad_b = xp.matmul(xp.swapaxes(a2, -1, -2), grad)  # (..., k, m)
        return (unbroadcast(grad_a, a2.shape).reshape(a.shape),
                unbroadcast(grad_b, b2.shape).reshape(b.shape))


def matmul(a, b):
    """Batched matrix product with broadcasting over leading axes."""
    return MatMul.apply(a, b)
