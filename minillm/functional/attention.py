"""Scaled dot-product attention as one fused op, forward and backward by hand.

For queries Q (B, H, Tq, D), keys K and values V (B, H, Tk, D):

    S = Q K^T * scale + bias       (B, H, Tq, Tk)  scores; scale = 1/sqrt(D) unless given
    S[i, j] = -inf where j > i + (Tk - Tq)         causal mask, aligned bottom-right:
                                                   the last query sees every key
    S[b, :, :, j] = -inf where key_mask[b, j] == 0 padding: key j of row b is never seen
    P = softmax(S) along keys      (B, H, Tq, Tk)  attention weights
    O = P V                        (B, H, Tq, D)

With G = dL/dO, backward is the chain rule through the three steps:

    dV = P^T G
    dP = G V^T
    dS = P * (dP - sum_j(dP * P))                  softmax backward, row by row
    dQ = dS K * scale,  dK = dS^T Q * scale,  dBias = dS

Two savings keep every pass over the big (Tq, Tk) arrays that can be avoided
off them: the scale multiplies Q (Tq x D numbers) rather than S, and the row
sums sum_j(dP * P) are computed as sum_d(G * O) (Tq x D numbers; equal
because O = P V, so sum_j (G V^T)_ij P_ij = sum_d G_id O_id; FlashAttention's
"D_i").

Masks. A masked key has S = -inf, so P = exp(-inf - max) = 0 exactly, and
then dS = P * (...) = 0: it gets exactly zero weight and zero gradient. A
query whose keys are ALL masked (say a padding query under a causal mask)
would be 0/0; its row max is set to 0 and its row sum to 1, so P = 0, O = 0
and every gradient from it is 0 (never NaN). The bias (T5's relative
positions; or a constant, e.g. -inf at padded keys) is added to S, so
dBias = dS, summed down to the bias's shape by the engine (``unbroadcast``).
T5 does not scale its scores: it passes scale=1.

Grouped-query attention (Llama's GQA): K and V may have fewer heads, Hkv, than
Q, with H = r * Hkv; query head h uses key/value head h // r (Hugging Face's
repeat_kv). Instead of copying K and V r times, Q is viewed as
(B, Hkv, r * Tq, D): the r query heads of a group become r * Tq queries of one
head, so every matmul above is unchanged and dK, dV (= dS^T Q, P^T G) come out
summed over the group. Masks and bias are applied with S viewed back as
(B, H, Tq, Tk); both views are free (no copy).

When Tk > Tq the first Tk - Tq keys are a cached prefix (the KV cache): query i
is at absolute position i + (Tk - Tq). Optional dropout on P (GPT-2's
attn_pdrop) multiplies P by a Bernoulli mask M of 0/1, kept as booleans (a
byte each, not four), and by 1 / (1 - p): O = (P*M) V / (1 - p), the scale
applied to the small (Tq, D) output rather than the (Tq, Tk) weights; then
dV = (P*M)^T G / (1 - p) and dP = (G V^T / (1 - p)) * M.
Cross-attention (T5's decoder) is the same op with causal=False and Tq != Tk.
"""
import functools
import math

from minillm import backend
from minillm.autograd import Function, Tensor
from minillm.backend import xp
from minillm.functional import blocked
from minillm.functional.blocked import blockwise
from minillm.shapes import shape_text


_CAUSAL_BIASES = {}   # (Tq, Tk, dtype) -> the causal bias, built once per shape


def causal_bias(t_query, t_key, dtype):
    """(Tq, Tk) array: 0 where query i may see key j (j <= i + Tk - Tq), -inf elsewhere.

    Built once per (Tq, Tk, dtype) and reused (training calls it with one shape
    every step); it is read-only, never written in place."""
    key = (t_query, t_key, str(dtype))
    if key not in _CAUSAL_BIASES:
        if len(_CAUSAL_BIASES) > 64:     # generation walks through many (1, Tk): keep the cache small
            _CAUSAL_BIASES.clear()
        query_pos = xp.arange(t_query)[:, None] + (t_key - t_query)
        key_pos = xp.arange(t_key)[None, :]
        _CAUSAL_BIASES[key] = xp.where(key_pos > query_pos, -xp.inf, 0.0).astype(dtype)
    return _CAUSAL_BIASES[key]


def padding_bias(key_mask, score_ndim, dtype):
    """key_mask (B, Tk) of 1/0 -> an additive (B, 1, .., 1, Tk) array: 0 to attend, -inf for padding."""
    bias = xp.where(key_mask.astype(bool), 0.0, -xp.inf).astype(dtype)
    lead = key_mask.shape[:-1]
    return bias.reshape(lead + (1,) * (score_ndim - len(lead) - 1) + key_mask.shape[-1:])


def softmax_rows_(s, guard_empty_rows):
    """Softmax along the last axis, in place. With ``guard_empty_rows``, a row of
    all -inf becomes all zeros instead of NaN."""
    row_max = s.max(axis=-1, keepdims=True)
    if guard_empty_rows:
        row_max[~xp.isfinite(row_max)] = 0.0
    s -= row_max
    xp.exp(s, out=s)
    row_sum = s.sum(axis=-1, keepdims=True)
    if guard_empty_rows:
        row_sum[row_sum == 0] = 1.0
    s /= row_sum
    return s


def attention_reference(q, k, v, causal=True, scale=None):
    """softmax(Q K^T * scale + causal mask) V written plainly on raw arrays, (..., H, T, D)
    with as many k/v heads as q heads: what the fused op is tested against."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = xp.matmul(q, xp.swapaxes(k, -1, -2)) * scale
    if causal:
        s = s + causal_bias(q.shape[-2], k.shape[-2], s.dtype)
    p = xp.exp(s - s.max(axis=-1, keepdims=True))
    return xp.matmul(p / p.sum(axis=-1, keepdims=True), v)


# The op runs its arithmetic in pieces of whole (batch, kv-head) slices, a few at a time, so that
# the scores of a piece stay in the cache while they are masked, normalised and multiplied by V
# (``blockwise``). With a bias or a padding mask it runs once over the whole arrays: those
# broadcast over the batch and head axes in ways a piece cannot cut. Every piece below is
# (n, r*Tq, D) for queries and outputs, (n, Tk, D) for keys and values, (n, r*Tq, Tk) for scores.

def _forward_kernel(q, k, v, *pieces, dims, causal, additive, scores_shape, guard, keep_scale):
    """S = Q K^T (+ masks), P = softmax(S) in place, O = (P [* M]) V, for one piece.
    ``additive`` terms (bias, padding) come only with the whole arrays: S viewed as ``scores_shape``."""
    keep = pieces[0] if keep_scale else None
    s, out = pieces[-2:]
    n_query, t_query, t_key, head_dim = dims
    q, k, v = q.reshape(-1, n_query, head_dim), k.reshape(-1, t_key, head_dim), v.reshape(-1, t_key, head_dim)
    s, out = s.reshape(-1, n_query, t_key), out.reshape(-1, n_query, head_dim)
    xp.matmul(q, xp.swapaxes(k, -1, -2), out=s)                        # (n, r*Tq, Tk), q already scaled
    for term in additive:                                               # bias, padding (whole arrays)
        s.reshape(scores_shape).__iadd__(term)                          # S as (B, H, Tq, Tk), a view
    if causal:
        s4 = s.reshape(s.shape[0], -1, t_query, t_key)                  # (n, r, Tq, Tk): per query head
        s4 += causal_bias(t_query, t_key, s.dtype)
    softmax_rows_(s, guard)                                             # P, kept for backward
    weights = s if keep is None else s * keep.reshape(s.shape)          # dropout on P: P * M
    xp.matmul(weights, v, out=out)                                      # (n, r*Tq, D)
    if keep is not None:
        out *= keep_scale                                               # / (1 - p)


def _backward_kernel(grad, p, q, k, v, out, *pieces, dims, scale, keep_scale):
    """dV, dS (into dP), dQ, dK for one piece; see the module docstring."""
    keep = pieces[0] if keep_scale else None
    grad_q, grad_k, grad_v, grad_s = pieces[-4:]
    n_query, t_query, t_key, head_dim = dims
    grad, q, out = (a.reshape(-1, n_query, head_dim) for a in (grad, q, out))
    k, v = k.reshape(-1, t_key, head_dim), v.reshape(-1, t_key, head_dim)
    p, grad_s = p.reshape(-1, n_query, t_key), grad_s.reshape(-1, n_query, t_key)
    grad_q, grad_k, grad_v = grad_q.reshape(q.shape), grad_k.reshape(k.shape), grad_v.reshape(v.shape)
    p_used, grad_used = (p, grad) if keep is None else (p * keep.reshape(p.shape), grad * keep_scale)
    xp.matmul(xp.swapaxes(p_used, -1, -2), grad_used, out=grad_v)       # dV = P^T G, summed over the group
    xp.matmul(grad_used, xp.swapaxes(v, -1, -2), out=grad_s)            # dP = G V^T
    if keep is not None:
        grad_s *= keep.reshape(grad_s.shape)
    # dS = P * (dP - sum_j(dP * P)); the row sum is cheaper on (Tq, D) than on (Tq, Tk):
    # sum_j dP_j P_j = sum_j (G . v_j) P_j = G . (sum_j P_j v_j) = G . O   (FlashAttention's trick)
    grad_s -= xp.einsum("nqd,nqd->nq", grad, out)[:, :, None]
    grad_s *= p
    xp.matmul(grad_s, k, out=grad_q)                                    # dQ = dS K * scale
    grad_q *= scale
    xp.matmul(xp.swapaxes(grad_s, -1, -2), q, out=grad_k)               # dK = dS^T Q * scale (q scaled)


# Causal attention without bias or padding (every decoder's training step) skips the masked half.
# Queries are taken QUERY_BLOCK at a time: queries start..stop-1 see only keys 0..end-1, end =
# stop + Tk - Tq, so S, P and dS are computed on (stop - start) x end and the rest of P is 0; only
# the block's last QUERY_BLOCK columns need the -inf mask. At T = 256 and blocks of 64 that is
# (1 + 2 + 3 + 4) / 16 = 62.5% of the scores. dS is never kept whole (no dBias to return).
QUERY_BLOCK = 64


def _query_blocks(t_query, t_key):
    """(start, stop, end): queries start..stop-1 see keys 0..end-1 (causal, bottom-right aligned)."""
    return [(start, min(start + QUERY_BLOCK, t_query), min(start + QUERY_BLOCK, t_query) + t_key - t_query)
            for start in range(0, t_query, QUERY_BLOCK)]


def _causal_forward_kernel(q, k, v, *pieces, dims, keep_scale):
    """The forward kernel for causal attention, by query blocks, on one piece."""
    keep = pieces[0] if keep_scale else None
    s, out = pieces[-2:]
    n_query, t_query, t_key, head_dim = dims
    group = n_query // t_query                                          # r query heads per k/v head
    q, out = q.reshape(-1, group, t_query, head_dim), out.reshape(-1, group, t_query, head_dim)
    k, v = k.reshape(-1, t_key, head_dim), v.reshape(-1, t_key, head_dim)
    s = s.reshape(-1, group, t_query, t_key)
    keep = None if keep is None else keep.reshape(s.shape)
    bias = causal_bias(t_query, t_key, s.dtype)
    for head in range(group):
        for start, stop, end in _query_blocks(t_query, t_key):
            diagonal = start + t_key - t_query                          # keys from here on may be masked
            scores = s[:, head, start:stop, :end]                       # (n, block, end), a view into S
            xp.matmul(q[:, head, start:stop], xp.swapaxes(k[:, :end], -1, -2), out=scores)
            scores[..., diagonal:] += bias[start:stop, diagonal:end]
            softmax_rows_(scores, False)                                # P for this block, in place
            s[:, head, start:stop, end:] = 0.0                          # unseen keys: weight 0
            weights = scores if keep is None else scores * keep[:, head, start:stop, :end]   # P * M
            xp.matmul(weights, v[:, :end], out=out[:, head, start:stop])
            if keep is not None:
                out[:, head, start:stop] *= keep_scale                  # / (1 - p)


def _causal_backward_kernel(grad, p, q, k, v, out, *pieces, dims, scale, keep_scale):
    """dQ, dK, dV for causal attention, by query blocks, on one piece (same formulas as above)."""
    keep = pieces[0] if keep_scale else None
    grad_q, grad_k, grad_v = pieces[-3:]
    n_query, t_query, t_key, head_dim = dims
    group = n_query // t_query
    grad, q, out, grad_q = (a.reshape(-1, group, t_query, head_dim) for a in (grad, q, out, grad_q))
    k, v, grad_k, grad_v = (a.reshape(-1, t_key, head_dim) for a in (k, v, grad_k, grad_v))
    p = p.reshape(-1, group, t_query, t_key)
    keep = None if keep is None else keep.reshape(p.shape)
    row_dot = xp.einsum("nhqd,nhqd->nhq", grad, out)[..., None]         # sum_j dP_ij P_ij = G_i . O_i
    grad_k[...] = 0.0
    grad_v[...] = 0.0
    for head in range(group):
        for start, stop, end in _query_blocks(t_query, t_key):
            probs, g = p[:, head, start:stop, :end], grad[:, head, start:stop]
            kept = None if keep is None else keep[:, head, start:stop, :end]
            used, g = (probs, g) if kept is None else (probs * kept, g * keep_scale)   # P * M, G / (1 - p)
            grad_v[:, :end] += xp.matmul(xp.swapaxes(used, -1, -2), g)              # dV += P^T G
            grad_s = xp.matmul(g, xp.swapaxes(v[:, :end], -1, -2))                   # dP = G V^T
            if kept is not None:
                grad_s *= kept
            grad_s -= row_dot[:, head, start:stop]
            grad_s *= probs                                                          # dS
            xp.matmul(grad_s, k[:, :end], out=grad_q[:, head, start:stop])           # dQ (scaled below)
            grad_k[:, :end] += xp.matmul(xp.swapaxes(grad_s, -1, -2), q[:, head, start:stop])  # dK += dS^T Q
    grad_q *= scale


class ScaledDotProductAttention(Function):

    def forward(self, q, k, v, *bias, causal, dropout_p, rng, key_mask, scale):
        self.scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
        self.q_shape = q.shape                                      # (B, H, Tq, D)
        self.has_bias = bool(bias)                                  # a 4th input: dBias = dS
        t_query, t_key = q.shape[-2], k.shape[-2]
        q = xp.multiply(q, self.scale, out=xp.empty(q.shape, q.dtype))  # (B, H, Tq, D), Q * scale, C order
        q = q.reshape(k.shape[:-2] + (-1, q.shape[-1]))             # (B, Hkv, r*Tq, D): GQA groups as queries
        s = xp.empty(q.shape[:-1] + (t_key,), q.dtype)              # (B, Hkv, r*Tq, Tk) scores, then P
        out = xp.empty(q.shape[:-1] + (v.shape[-1],), q.dtype)      # (B, Hkv, r*Tq, D)
        scores_shape = self.q_shape[:-1] + (t_key,)                 # (B, H, Tq, Tk)
        additive = list(bias)                                       # added to S viewed as scores_shape
        if key_mask is not None:
            additive.append(padding_bias(key_mask, len(scores_shape), s.dtype))
        self.mask, self.keep_scale = None, None
        if dropout_p > 0.0:                                         # all of S at once: one mask whatever the pieces
            self.mask = backend.random_keep_mask(rng, s.shape, dropout_p, dtype=s.dtype)   # kept: M, booleans
            self.keep_scale = 1.0 / (1.0 - dropout_p)
        self.dims = (q.shape[-2], t_query, t_key, q.shape[-1])      # r*Tq, Tq, Tk, D
        lead = s.size // (s.shape[-2] * s.shape[-1])                # B * Hkv: pieces cut along it
        self.by_query_blocks = causal and not additive              # the masked half skipped
        if self.by_query_blocks:
            kernel = functools.partial(_causal_forward_kernel, dims=self.dims, keep_scale=self.keep_scale)
        else:
            kernel = functools.partial(_forward_kernel, dims=self.dims, causal=causal, keep_scale=self.keep_scale,
                                       additive=additive, scores_shape=scores_shape,
                                       guard=key_mask is not None or bool(bias))
        blockwise(kernel, (q, k, v) + (() if self.mask is None else (self.mask,)), (s, out),
                  rows=1 if additive else lead, block=self._block())
        self.p, self.q, self.k, self.v, self.out = s, q, k, v, out  # kept: each feeds another's gradient
        return out.reshape(self.q_shape[:-1] + (v.shape[-1],))      # (B, H, Tq, D)

    def _block(self):
        """Elements of S per piece. By query blocks, a piece's live scores are one block's rows, so
        pieces hold more (batch, head) slices: a BLOCK of scores per query block. At block 256 /
        batch 16 (4 query blocks) attention forward + backward took 50.7 ms with 64K elements per
        query block, 40.5 ms with 256K and 52.3 ms with 1M (fewer, larger NumPy calls against
        cache misses)."""
        if not self.by_query_blocks:
            return None                                             # blockwise's default
        return blocked.BLOCK * len(_query_blocks(self.dims[1], self.dims[2]))

    def backward(self, grad):
        q, k, v, p = self.q, self.k, self.v, self.p
        lead = p.size // (p.shape[-2] * p.shape[-1])
        saved = (grad.reshape(self.out.shape), p, q, k, v, self.out) + (() if self.mask is None else (self.mask,))
        if self.by_query_blocks:
            grad_q, grad_k, grad_v = (xp.empty(a.shape, a.dtype) for a in (q, k, v))       # C order
            blockwise(functools.partial(_causal_backward_kernel, dims=self.dims, scale=self.scale,
                                        keep_scale=self.keep_scale), saved, (grad_q, grad_k, grad_v), rows=lead,
                      block=self._block())
            return grad_q.reshape(self.q_shape), grad_k, grad_v
        grad_q, grad_k, grad_v, grad_s = (xp.empty(a.shape, a.dtype) for a in (q, k, v, p))   # C order
        blockwise(functools.partial(_backward_kernel, dims=self.dims, scale=self.scale, keep_scale=self.keep_scale),
                  saved, (grad_q, grad_k, grad_v, grad_s), rows=1 if self.has_bias else lead)
        grads = (grad_q.reshape(self.q_shape), grad_k, grad_v)
        if self.has_bias:
            grads += (grad_s.reshape(self.q_shape[:-1] + (k.shape[-2],)),)  # dBias = dS, (B, H, Tq, Tk)
        return grads


def _check_shapes(q, k, v):
    """q (..., H, Tq, D), k and v (..., Hkv, Tk, D) with Hkv dividing H, or a clear ValueError."""
    shapes = f"q {shape_text(q.shape)}, k {shape_text(k.shape)}, v {shape_text(v.shape)}"
    if q.ndim < 2 or k.shape != v.shape or q.ndim != k.ndim or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention shapes do not fit: {shapes}; expected q (..., Tq, D) and k, v (..., Tk, D)")
    if q.shape[:-2] == k.shape[:-2]:
        return
    n_head, n_kv_head = (q.shape[-3], k.shape[-3]) if q.ndim >= 3 else (None, None)
    if q.ndim < 3 or q.shape[:-3] != k.shape[:-3] or n_head % n_kv_head:
        raise ValueError(f"attention shapes do not fit: {shapes}; expected equal batch axes and, for "
                         f"grouped-query attention, k/v heads (axis -3) dividing q's heads "
                         f"(here {n_head} and {n_kv_head})")


def _broadcasts_to(shape, target):
    """True when an array of ``shape`` broadcasts to ``target`` without growing it."""
    return len(shape) <= len(target) and all(n in (1, m) for n, m in zip(reversed(shape), reversed(target)))


def _as_key_mask(key_mask, q, k):
    """key_mask as a backend array of shape q.shape[:-3] + (Tk,), i.e. (B, Tk), or a clear error."""
    key_mask = key_mask.data if isinstance(key_mask, Tensor) else xp.asarray(key_mask)
    expected = q.shape[:-3] + (k.shape[-2],)
    if q.ndim < 3 or key_mask.shape != expected:
        raise ValueError(f"attention key_mask has shape {shape_text(key_mask.shape)}; expected "
                         f"{shape_text(expected)} (batch, keys): 1 = attend, 0 = padding")
    if not (key_mask.dtype == bool or backend.is_integer(key_mask)):
        raise TypeError(f"attention key_mask has dtype {key_mask.dtype}; expected bool or int (1/0)")
    return key_mask


def scaled_dot_product_attention(q, k, v, causal=True, dropout_p=0.0, rng=None, key_mask=None, bias=None,
                                 scale=None):
    """softmax(Q K^T * scale + bias + masks) V on (B, n_head, T, head_dim) tensors.

    k and v may be longer than q (a cached prefix of keys comes first); the
    causal mask lets query i see keys 0 .. i + (Tk - Tq). k and v may have
    fewer heads than q (grouped-query attention; their count must divide q's).
    ``key_mask`` (B, Tk): 1 = attend, 0 = padding (bool or int). ``bias``: a
    Tensor or array broadcastable to (B, n_head, Tq, Tk), added to the scores
    (differentiable). ``scale``: None means 1/sqrt(head_dim); T5 passes 1.0.
    """
    _check_shapes(q, k, v)
    if causal and k.shape[-2] < q.shape[-2]:
        raise ValueError(f"causal attention needs at least as many keys ({k.shape[-2]}) as queries ({q.shape[-2]})")
    if dropout_p > 0.0 and rng is None:
        raise ValueError("attention dropout needs an explicit rng")
    if key_mask is not None:
        key_mask = _as_key_mask(key_mask, q, k)
    scores_shape = tuple(q.shape[:-1]) + (k.shape[-2],)
    if bias is not None and not _broadcasts_to(tuple(bias.shape), scores_shape):
        raise ValueError(f"attention bias of shape {shape_text(bias.shape)} does not broadcast to the scores' "
                         f"shape {shape_text(scores_shape)} (batch, heads, queries, keys)")
    extra = () if bias is None else (bias,)
    return ScaledDotProductAttention.apply(q, k, v, *extra, causal=causal, dropout_p=dropout_p, rng=rng,
                                           key_mask=key_mask, scale=scale)
