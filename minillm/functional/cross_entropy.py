"""Cross-entropy of logits against integer targets, fused with log-softmax.

For one row with logits u and target t:
    loss = -log softmax(u)_t = logsumexp(u) - u_t
    dloss/du = softmax(u) - onehot(t)
The op returns the mean over the N targets that are not ``ignore_index``, so
each row's gradient is (softmax(u) - onehot(t)) / N, and 0 for ignored rows.
An all-ignored batch has loss 0 and zero gradient (never 0/0 = NaN).

The (N, V) arrays are the largest of a GPT step (V = 50257 for GPT-2), so the
op makes as few passes over them as it can: forward keeps e = exp(u - max u)
and its row sums z, and backward turns e into the gradient in place with one
multiplication, softmax(u) * s = e * (s / z), for the per-row factor
s = [t is kept] * dL/dloss / N.
"""
from minillm import backend
from minillm.autograd import Function, Tensor
from minillm.backend import xp
from minillm.shapes import shape_text


def _check_targets(targets, logits_shape, ignore_index):
    if not backend.is_integer(targets):
        raise TypeError(f"cross_entropy targets must be integers, got {targets.dtype}")
    if targets.shape != logits_shape[:-1]:
        raise ValueError(f"cross_entropy targets have shape {shape_text(targets.shape)}, expected "
                         f"{shape_text(logits_shape[:-1])} (the logits' shape without the vocabulary axis)")
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
        e = u - u.max(axis=1, keepdims=True)                        # (N, V), u - m, max 0
        picked = e[rows, safe_t]                                    # (N,)  u_t - m
        xp.exp(e, out=e)                                            # (N, V) e = exp(u - m)
        total = e.sum(axis=1)                                       # (N,)  z = sum_v e_v
        losses = xp.log(total) - picked                             # (N,)  logsumexp(u) - u_t
        # N, kept on the device (no host sync); at least 1, so an all-ignored batch gives 0 / 1
        self.count = xp.maximum(keep.sum(), 1).astype(e.dtype)
        # kept for backward: e and z (softmax = e / z), and which rows/targets count
        self.e, self.total, self.rows, self.targets, self.keep = e, total, rows, safe_t, keep
        self.shape = logits.shape
        return (losses * keep).sum() / self.count

    def backward(self, grad):
        s = (self.keep * (grad / self.count)).astype(self.e.dtype)  # (N,)  dL/dloss_row, 0 if ignored
        d = self.e                                                  # (N, V) reused in place
        d *= (s / self.total)[:, None]                              # softmax * s
        d[self.rows, self.targets] -= s                             # (softmax - onehot) * s
        return d.reshape(self.shape)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean of -log softmax(logits)[target] over the targets that are not ``ignore_index``.

    logits: Tensor (..., V); targets: integer array or Tensor (...).
    """
    if isinstance(targets, Tensor):
        targets = targets.data
    return CrossEntropy.apply(logits, targets=xp.asarray(targets), ignore_index=ignore_index)
