"""Cross-entropy of logits against integer targets, fused with log-softmax.

For one row with logits u and target t:
    loss = -log softmax(u)_t = logsumexp(u) - u_t
    dloss/du = softmax(u) - onehot(t)
The op returns the mean over the N targets that are not ``ignore_index``, so
each row's gradient is (softmax(u) - onehot(t)) / N, and 0 for ignored rows.
An all-ignored batch has loss 0 and zero gradient (never 0/0 = NaN).
"""
from minillm import backend
from minillm.autograd import Function, Tensor, _shape_text
from minillm.backend import xp


def _check_targets(targets, logits_shape, ignore_index):
    if not backend.is_integer(targets):
        raise TypeError(f"cross_entropy targets must be integers, got {targets.dtype}")
    if targets.shape != logits_shape[:-1]:
        raise ValueError(f"cross_entropy targets have shape {_shape_text(targets.shape)}, expected "
                         f"{_shape_text(logits_shape[:-1])} (the logits' shape without the vocabulary axis)")
    vocab = logits_shape[-1]
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= vocab))
    if bool(bad.any()):
        value = int(targets[bad].reshape(-1)[0])
        raise ValueError(f"target {value} is outside the vocabulary [0, {vocab}) "
                         f"(and is not ignore_index={ignore_index})")


class CrossEntropy(Function):

    def forward(self, logits, targets, ignore_index):
        _check_targets(targets, logits.shape, ignore_index)
        vocab = logits.shape[-1]
        u = logits.reshape(-1, vocab)                               # (N, V)
        t = targets.reshape(-1)                                     # (N,)
        keep = t != ignore_index                                    # (N,)
        safe_t = xp.where(keep, t, 0)
        rows = xp.arange(u.shape[0])
        shifted = u - u.max(axis=1, keepdims=True)                  # (N, V), max 0
        picked = shifted[rows, safe_t]                              # (N,)  u_t - m
        xp.exp(shifted, out=shifted)                                # exp(u - m)
        total = shifted.sum(axis=1)                                 # (N,)
        losses = xp.log(total) - picked                             # (N,)  logsumexp(u) - u_t
        self.count = int(keep.sum())
        # kept for backward: softmax(u) and which rows/targets count
        shifted /= total[:, None]
        self.probs, self.rows, self.targets, self.keep = shifted, rows, safe_t, keep
        self.shape = logits.shape
        return (losses * keep).sum() / max(self.count, 1)

    def backward(self, grad):
        if self.count == 0:
            return xp.zeros(self.shape, dtype=self.probs.dtype)
        d = self.probs                                              # (N, V) softmax, reused in place
        d[self.rows, self.targets] -= 1                             # softmax - onehot
        d *= (self.keep * (grad / self.count))[:, None].astype(d.dtype)
        return d.reshape(self.shape)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean of -log softmax(logits)[target] over the targets that are not ``ignore_index``.

    logits: Tensor (..., V); targets: integer array or Tensor (...).
    """
    if isinstance(targets, Tensor):
        targets = targets.data
    return CrossEntropy.apply(logits, targets=xp.asarray(targets), ignore_index=ignore_index)
