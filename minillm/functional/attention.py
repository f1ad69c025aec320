"""Scaled dot-product attention as one fused op, forward and backward by hand.

For queries Q (B, H, Tq, D), keys K and values V (B, H, Tk, D), Tk >= Tq:

    S = Q K^T / sqrt(D)            (B, H, Tq, Tk)  scores
    S[i, j] = -inf where j > i + (Tk - Tq)         causal mask, aligned bottom-right:
                                                   the last query sees every key
    P = softmax(S) along keys      (B, H, Tq, Tk)  attention weights
    O = P V                        (B, H, Tq, D)

With G = dL/dO, backward is the chain rule through the three steps:

    dV = P^T G
    dP = G V^T
    dS = P * (dP - sum_j(dP * P))                  softmax backward, row by row
    dQ = dS K / sqrt(D),  dK = dS^T Q / sqrt(D)

Two savings keep every pass over the big (Tq, Tk) arrays that can be avoided
off them: the scale 1/sqrt(D) multiplies Q (Tq x D numbers) rather than S, and
the row sums sum_j(dP * P) are computed as sum_d(G * O) (Tq x D numbers; equal
because O = P V, so sum_j (G V^T)_ij P_ij = sum_d G_id O_id; FlashAttention's
"D_i").

When Tk > Tq the first Tk - Tq keys are a cached prefix (the KV cache): query i
is at absolute position i + (Tk - Tq). Optional dropout on P (GPT-2's
attn_pdrop) multiplies P by a scaled Bernoulli mask M: O = (P*M) V.

Two options serve the other families. ``bias`` is added to the scores,
S = Q K^T * scale + bias, broadcast to (B, H, Tq, Tk): a padding mask (BERT:
-inf at padded keys, a constant) or a learned relative-position bias (T5; its
gradient is dS, summed over the broadcast axes by the engine). ``scale``
replaces 1/sqrt(D) (T5 does not scale its scores: scale=1). A query row whose
every key is masked has no softmax (0/0); a mask must leave each query a key.
"""
import math

from minillm import backend
from minillm.autograd import Function
from minillm.backend import xp
from minillm.shapes import shape_text


def causal_bias(t_query, t_key, dtype):
    """(Tq, Tk) array: 0 where query i may see key j (j <= i + Tk - Tq), -inf elsewhere."""
    query_pos = xp.arange(t_query)[:, None] + (t_key - t_query)
    key_pos = xp.arange(t_key)[None, :]
    return xp.where(key_pos > query_pos, -xp.inf, 0.0).astype(dtype)


class ScaledDotProductAttention(Function):

    def forward(self, q, k, v, bias=None, causal=True, dropout_p=0.0, rng=None, scale=None):
        self.scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        self.has_bias = bias is not None
        q = q * self.scale                                          # (B, H, Tq, D), Q / sqrt(D)
        s = xp.matmul(q, xp.swapaxes(k, -1, -2))                   # (B, H, Tq, Tk)
        if bias is not None:
            s += bias                                               # broadcast to (B, H, Tq, Tk)
        if causal:
            s += causal_bias(q.shape[-2], k.shape[-2], s.dtype)
        s -= s.max(axis=-1, keepdims=True)                          # softmax, in place
        xp.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        self.p = s                                                  # kept: P for dV and dS
        if dropout_p > 0.0:
            keep = backend.random_uniform(rng, s.shape, dtype=s.dtype) >= dropout_p
            self.mask = keep.astype(s.dtype) / (1.0 - dropout_p)    # kept: the scaled mask
            s = s * self.mask
        else:
            self.mask = None
        self.q, self.k, self.v = q, k, v                            # kept: each feeds another's gradient
        self.out = xp.matmul(s, v)                                  # (B, H, Tq, D), kept for sum_j(dP * P)
        return self.out

    def backward(self, grad):
        p, q, k, v = self.p, self.q, self.k, self.v
        p_used = p if self.mask is None else p * self.mask
        grad_v = xp.matmul(xp.swapaxes(p_used, -1, -2), grad)       # (B, H, Tk, D)
        grad_p = xp.matmul(grad, xp.swapaxes(v, -1, -2))            # (B, H, Tq, Tk)
        if self.mask is not None:
            grad_p *= self.mask
        # dS = P * (dP - sum_j(dP * P)); the row sum is cheaper on (Tq, D) than on (Tq, Tk):
        # sum_j dP_j P_j = sum_j (G . v_j) P_j = G . (sum_j P_j v_j) = G . O   (FlashAttention's trick)
        grad_p -= (grad * self.out).sum(axis=-1, keepdims=True)
        grad_p *= p
        grad_q = xp.matmul(grad_p, k)                               # (B, H, Tq, D)
        grad_q *= self.scale
        grad_k = xp.matmul(xp.swapaxes(grad_p, -1, -2), q)          # (B, H, Tk, D), q already scaled
        if self.has_bias:  # dL/dbias = dS (the engine sums it over bias's broadcast axes)
            return grad_q, grad_k, grad_v, grad_p
        return grad_q, grad_k, grad_v


def scaled_dot_product_attention(q, k, v, causal=True, dropout_p=0.0, rng=None, bias=None, scale=None):
    """softmax(Q K^T * scale + bias + mask) V on (B, n_head, T, head_dim) tensors.

    k and v may be longer than q (a cached prefix of keys comes first); the
    causal mask lets query i see keys 0 .. i + (Tk - Tq). ``bias`` (a Tensor
    or array broadcastable to (B, H, Tq, Tk)) is added to the scores and gets
    a gradient when it requires one; ``scale`` defaults to 1 / sqrt(head_dim).
    """
    if q.ndim < 2 or k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention shapes do not fit: q {shape_text(q.shape)}, k {shape_text(k.shape)}, "
                         f"v {shape_text(v.shape)}; expected q (..., Tq, D) and k, v (..., Tk, D)")
    if causal and k.shape[-2] < q.shape[-2]:
        raise ValueError(f"causal attention needs at least as many keys ({k.shape[-2]}) as queries ({q.shape[-2]})")
    if dropout_p > 0.0 and rng is None:
        raise ValueError("attention dropout needs an explicit rng")
    options = dict(causal=causal, dropout_p=dropout_p, rng=rng, scale=scale)
    if bias is None:
        return ScaledDotProductAttention.apply(q, k, v, **options)
    scores_shape = q.shape[:-1] + (k.shape[-2],)
    fits = len(bias.shape) <= len(scores_shape) and all(
        b in (1, s) for b, s in zip(bias.shape[::-1], scores_shape[::-1]))
    if not fits:
        raise ValueError(f"attention bias of shape {shape_text(bias.shape)} does not broadcast to the scores' "
                         f"shape {shape_text(scores_shape)} (..., Tq, Tk)")
    return ScaledDotProductAttention.apply(q, k, v, bias, **options)
