"""Embedding lookup: row ``ids[i]`` of a table, for every id.

y[b, t] = W[ids[b, t]]. Looking up is indexing, so the gradient of W is a
scatter-add: dL/dW[v] = sum of dL/dy[b, t] over every (b, t) with ids[b, t] = v.
A token that appears twice gets both contributions.

A 16-bit table is storage only on NumPy: the rows come out in
``backend.compute_dtype`` (float32 there), so the layers after it compute in
float32 and each product with a 16-bit weight upcasts that weight.
"""
from minillm import backend
from minillm.autograd import Function, Tensor
from minillm.backend import xp


def check_token_ids(ids, vocab_size, what="token id"):
    """Raise a clear error unless ``ids`` is an integer array inside [0, vocab_size)."""
    if not backend.is_integer(ids):
        raise TypeError(f"{what}s must be integers, got {ids.dtype}")
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        bad = low if low < 0 else high
        if low < 0 or high >= vocab_size:
            raise ValueError(f"{what} {bad} is outside the vocabulary [0, {vocab_size})")


class Embedding(Function):

    def forward(self, weight, ids):
        check_token_ids(ids, weight.shape[0])
        self.ids, self.table_shape = ids, weight.shape  # where each gradient row goes back to
        rows = weight[ids]                                       # (..., C)
        dtype = backend.compute_dtype(weight.dtype)
        return rows if rows.dtype == dtype else rows.astype(dtype)

    def backward(self, grad):
        grad_w = xp.zeros(self.table_shape, dtype=grad.dtype)    # (V, C)
        backend.rows_add(grad_w, self.ids.reshape(-1), grad.reshape(-1, self.table_shape[1]))
        return grad_w


def embedding(ids, weight):
    """Rows of ``weight`` (V, C) picked by the integer array (or Tensor) ``ids``."""
    if isinstance(ids, Tensor):
        ids = ids.data
    return Embedding.apply(weight, ids=xp.asarray(ids))
