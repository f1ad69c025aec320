"""Multi-head attention: the math every transformer family shares.

    q, k, v = project(x)                    the family's own projections      (B, H, T, D), (B, Hkv, T, D)
    q, k    = rotate(q, k, start)           position hook (Llama's RoPE); GPT-2: none
    k, v    = cache.update(k, v)            inference: cached keys first      (B, Hkv, Tk, D)
    y       = softmax(q k^T / sqrt(D) + mask) v                               (B, H, T, D)
                                            grouped-query attention: query head h reads
                                            k/v head h // (H / Hkv) inside the fused op
    out     = output(merge_heads(y))        the family's output projection    (B, T, C)

``MultiHeadAttention`` does every line except the two that name parameters:
a family subclasses it and writes ``project`` and ``output`` with its own
Linear layers, so parameter names stay the checkpoint's (GPT-2's fused
``c_attn`` and ``c_proj``; Llama's ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``). The options cover the families of the course:

    causal=True          decoders (GPT-2, Llama, Mixtral); False for BERT and T5's encoder
    n_kv_head < n_head   grouped-query attention (Llama 3, Mixtral): each key/value head
                         serves n_head / n_kv_head query heads
    rotate(q, k, start)  override to rotate queries and keys by their absolute positions
                         start .. start + T - 1 (RoPE); start is the number of cached tokens
    **options            ``forward`` and ``attend`` pass other keywords on to
                         ``F.scaled_dot_product_attention``: ``key_mask=`` (BERT's
                         padding mask), ``bias=`` added to the scores (T5's learned
                         relative-position bias) and ``scale=`` (T5: 1, no 1/sqrt(D))

Cross-attention (T5's decoder) is a ``project`` that takes its keys and values
from the encoder's states: override ``forward`` and reuse the pieces
(``split_heads``, ``attend``, ``merge_heads``).
"""
from minillm import functional as F
from minillm.autograd import Tensor
from minillm.backend import xp
from minillm.nn.module import Module


def split_heads(x, n_head):
    """(B, T, n_head * D) -> (B, n_head, T, D): the heads side by side become a batch axis."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def split_fused_heads(x, n_parts, n_head):
    """(B, T, n_parts * n_head * D) -> n_parts tensors (B, n_head, T, D).

    For a fused projection such as GPT-2's c_attn, whose output is [q | k | v]
    along the last axis: views of it, one op for all parts (``F.split_fused_heads``)."""
    return F.split_fused_heads(x, n_parts, n_head)


def merge_heads(y):
    """(B, H, T, D) -> (B, T, H * D): the inverse of ``split_heads``."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def repeat_kv_heads(x, n_rep):
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D): key/value head j serves query heads
    j * n_rep .. (j + 1) * n_rep - 1. An index, so the gradient is summed back."""
    if n_rep == 1:
        return x
    heads = xp.repeat(xp.arange(x.shape[1]), n_rep)                  # (H,) 0 0 1 1 ...
    return x[:, heads]


class MultiHeadAttention(Module):
    """The shared core. Subclasses define ``project(x)`` and ``output(y)``.

    n_head       query heads H
    n_kv_head    key/value heads (default H); must divide H
    causal       mask future keys (query i sees keys 0 .. i + Tk - Tq)
    dropout      probability on the attention weights in training mode
    dropout_rng  the generator for those masks (a model shares one stream)
    layer_index  which layer of a ``KVCache`` this attention reads and writes
    """

    def __init__(self, n_head, n_kv_head=None, causal=True, dropout=0.0, dropout_rng=None, layer_index=0):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_kv_head < 1 or n_head % n_kv_head:
            raise ValueError(f"n_kv_head ({n_kv_head}) must be a positive divisor of n_head ({n_head})")
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.causal = causal
        self.dropout_p = dropout
        self.dropout_rng = dropout_rng
        self.layer_index = layer_index

    # -- what a family writes
    def project(self, x):
        """x (B, T, C) -> q (B, H, T, D), k and v (B, Hkv, T, D)."""
        raise NotImplementedError(f"{type(self).__name__} must define project(x) -> q, k, v")

    def output(self, y):
        """y (B, T, H * D) -> (B, T, C): the output projection (and its dropout)."""
        raise NotImplementedError(f"{type(self).__name__} must define output(y)")

    def rotate(self, q, k, start):
        """Position hook: no change (GPT-2 adds learned positions before the blocks)."""
        return q, k

    # -- the shared math
    def attend(self, q, k, v, cache=None, **options):
        """softmax(q k^T / sqrt(D) + mask) v with the cached prefix and grouped heads.

        q (B, H, T, D); k, v (B, Hkv, T, D) for the new tokens only. With a
        ``cache``, they are appended to this layer's cached keys and values and
        q attends to all of them. Returns (B, H, T, D)."""
        if cache is not None:  # the cached prefix first, then the new keys/values
            k_all, v_all = cache.update(self.layer_index, k.data, v.data)  # (B, Hkv, Tk, D)
            k, v = Tensor(k_all), Tensor(v_all)
        # grouped heads: the fused op lets query head h read k/v head h // (H / Hkv), no copy
        p = self.dropout_p if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, causal=self.causal, dropout_p=p,
                                              rng=self.dropout_rng, **options)  # (B, H, T, D)

    def forward(self, x, cache=None, **options):
        """x (B, T, C) -> (B, T, C); with a ``cache``, x holds only the new tokens.
        ``options`` (``key_mask``, ``bias``, ``scale``) go to the attention op."""
        q, k, v = self.project(x)                                        # (B, H, T, D), (B, Hkv, T, D)
        q, k = self.rotate(q, k, 0 if cache is None else cache.position)
        y = self.attend(q, k, v, cache, **options)                       # (B, H, T, D)
        return self.output(merge_heads(y))                               # (B, T, C)
