"""Rotary position embedding (RoPE), Hugging Face's rotate-half convention.

A head vector x of even width D is split into halves (x1, x2); pair i is
(x1[i], x2[i]), a point in the plane, rotated by the angle p * f_i, where p is
the token's position and f_i = theta^(-2i/D) its frequency:

    y = x * cos + rotate_half(x) * sin,   rotate_half(x) = concat(-x2, x1)

with cos, sin of shape (T, D) holding cos(p f_i), sin(p f_i) twice (once for
each half). Because q_p . k_s after rotating both depends only on p - s, the
scores see relative positions.

Backward: y = (diag(cos) + diag(sin) R) x with R = rotate_half, a linear map,
so dL/dx = (diag(cos) + R^T diag(sin)) g. R sends (x1, x2) to (-x2, x1); its
transpose sends (u1, u2) to (u2, -u1):

    dx = g * cos + rotate_half^T(g * sin),   rotate_half^T(u) = concat(u2, -u1)

(a rotation's inverse: the same turn backwards).
"""
from minillm.autograd import Function, Tensor
from minillm.backend import xp


def rotate_half(x):
    """concat(-x2, x1) along the last axis (a plain array function)."""
    half = x.shape[-1] // 2
    return xp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rotate_half_transposed(u):
    """concat(u2, -u1): the transpose (and inverse) of ``rotate_half``."""
    half = u.shape[-1] // 2
    return xp.concatenate([u[..., half:], -u[..., :half]], axis=-1)


class ApplyRotary(Function):

    def forward(self, x, cos, sin):
        self.cos, self.sin = cos, sin                 # kept: the rotation, transposed in backward
        y = rotate_half(x)
        y *= sin
        y += x * cos
        return y

    def backward(self, grad):
        grad_x = rotate_half_transposed(grad * self.sin)
        grad_x += grad * self.cos
        return grad_x


def apply_rotary(x, cos, sin):
    """Rotate each pair (x[..., i], x[..., i + D/2]) of x (B, H, T, D) by the angles in cos/sin.

    ``cos`` and ``sin`` (from ``rotary_tables``) broadcast against x: (T, D)
    for one set of positions, or (B, 1, T, D) for positions per row. They are
    constants (no gradient).
    """
    cos = cos.data if isinstance(cos, Tensor) else xp.asarray(cos)
    sin = sin.data if isinstance(sin, Tensor) else xp.asarray(sin)
    width = x.shape[-1]
    if width % 2:
        raise ValueError(f"apply_rotary: head_dim (x's last axis) is {width}; expected an even number")
    if cos.shape != sin.shape or cos.shape[-1:] != (width,):
        raise ValueError(f"apply_rotary: cos {tuple(cos.shape)} and sin {tuple(sin.shape)} must have "
                         f"the same shape, ending in head_dim {width}")
    return ApplyRotary.apply(x, cos=cos.astype(x.dtype, copy=False), sin=sin.astype(x.dtype, copy=False))


def rotary_inv_freq(head_dim, theta=10000.0):
    """f_i = theta^(-2i / head_dim), i = 0 .. head_dim/2 - 1, in float64."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"rotary: head_dim is {head_dim}; expected a positive even number")
    return 1.0 / (theta ** (xp.arange(0, head_dim, 2, dtype=xp.float64) / head_dim))


def rotary_tables(positions, head_dim, theta=10000.0, inv_freq=None, dtype="float32"):
    """The cos and sin tables for ``positions`` (any int shape (...,)): two arrays (..., head_dim).

    ``inv_freq`` (head_dim / 2 numbers) replaces theta^(-2i/D), e.g. after
    Llama 3's frequency remapping. The angles are computed in float64 and cast
    to ``dtype`` at the end (Hugging Face computes them in float32; at
    position p the two differ by about p * 1e-7 radians).
    """
    inv_freq = rotary_inv_freq(head_dim, theta) if inv_freq is None else xp.asarray(inv_freq, dtype=xp.float64)
    if inv_freq.shape != (head_dim // 2,):
        raise ValueError(f"rotary_tables: inv_freq has shape {tuple(inv_freq.shape)}; expected "
                         f"({head_dim // 2},), half of head_dim {head_dim}")
    angles = xp.asarray(positions, dtype=xp.float64)[..., None] * inv_freq    # (..., D/2)
    angles = xp.concatenate([angles, angles], axis=-1)                         # (..., D)
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)
