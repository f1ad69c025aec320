"""Sparse mixture of experts: route, dispatch, combine (Mixtral's feed-forward, fused where it pays).

N tokens (rows of x, (N, C)), E experts, each token uses k of them:

    route     chosen = the k largest router logits of each token      (N, k) expert ids
              (ties go to the lower expert id; not differentiable: a choice)
    dispatch  x_e = x[tokens_e]                                        (n_e, C) only expert e's tokens
    combine   y[t] = sum over the k choices (e, s) of token t of  w[t, s] * h_e[t]
                                                                       (N, C) a weighted scatter-add

where tokens_e lists, in increasing order, the tokens that chose expert e
(slots_e says which of their k choices it was), h_e = expert_e(x_e), and
w = softmax(chosen logits) (N, k) are the gate weights. Every expert computes
its own n_e rows and nothing else: sum_e n_e = N k, so the work per token is k
expert MLPs whatever E is. No token is dropped: there is no capacity limit.

Backward. A token visits an expert at most once, so tokens_e has no repeats
and the gather's adjoint is a plain assignment (no scatter-*add* needed inside
one expert):

    dispatch:  dL/dx[tokens_e] = dL/dx_e                    (zero elsewhere)
    combine:   with G = dL/dy (N, C),
               dL/dh_e[i]            = w[t, s] G[t]           t = tokens_e[i], s = slots_e[i]
               dL/dw[t, s]           = <G[t], h_e[i]>         (a dot product over C)

The second line is how the router learns: the loss reaches the router's
weights only through the gate weights w (the choice itself has no gradient).
"""
from minillm.autograd import Function, Tensor
from minillm.backend import xp
from minillm.shapes import shape_text


def top_k_experts(logits, k):
    """The k best expert ids per row of ``logits`` (N, E) -> int array (N, k), best first.

    k passes of argmax, each masking the expert it took. ``argmax`` returns
    the first maximum, so equal logits go to the lower expert id, on NumPy and
    CuPy alike (a sort's order among equals would depend on the algorithm).
    """
    logits = logits.copy()
    rows = xp.arange(logits.shape[0])
    chosen = xp.empty((logits.shape[0], k), dtype=xp.int64)
    for s in range(k):
        chosen[:, s] = logits.argmax(axis=-1)                          # (N,)
        logits[rows, chosen[:, s]] = -xp.inf
    return chosen


def tokens_per_expert(chosen, n_experts):
    """For each expert e: (tokens_e, slots_e), the rows of ``chosen`` (N, k) holding e and the column.

    Row-major order, so tokens_e increases; a token lists an expert at most once.
    """
    return [xp.nonzero(chosen == e) for e in range(n_experts)]


class Dispatch(Function):
    """y = x[rows] for distinct ``rows``.  dL/dx[rows] = dL/dy, zero elsewhere."""

    def forward(self, x, rows):
        self.rows, self.shape = rows, x.shape                         # where the gradient goes back to
        return x[rows]                                                 # (n, C)

    def backward(self, grad):
        grad_x = xp.zeros(self.shape, dtype=grad.dtype)                # (N, C)
        grad_x[self.rows] = grad                                       # rows are distinct: assign
        return grad_x


class Combine(Function):
    """y[t] = sum_e w[t, s] h_e[i] over the (e, i) with tokens_e[i] = t, s = slots_e[i]."""

    def forward(self, weights, *outputs, tokens, slots):
        self.weights, self.outputs = weights, outputs                  # each backward line needs the other
        self.tokens, self.slots = tokens, slots
        C = outputs[0].shape[-1]
        y = xp.zeros((weights.shape[0], C), dtype=outputs[0].dtype)   # (N, C)
        for h, t, s in zip(outputs, tokens, slots):
            y[t] += weights[t, s][:, None] * h                         # distinct t within an expert
        return y

    def backward(self, grad):
        grad_w = xp.zeros_like(self.weights)                           # (N, k)
        grad_outputs = []
        for h, t, s in zip(self.outputs, self.tokens, self.slots):
            g = grad[t]                                                # (n_e, C)
            grad_outputs.append(g * self.weights[t, s][:, None])       # w[t, s] G[t]
            grad_w[t, s] = (g * h).sum(axis=-1)                        # <G[t], h_e[i]>
        return (grad_w, *grad_outputs)


def dispatch(x, rows):
    """Rows ``rows`` (distinct ints) of the 2-D tensor ``x`` (N, C) -> (len(rows), C)."""
    if x.ndim != 2:
        raise ValueError(f"dispatch: x must be 2-D (tokens, channels), got shape {shape_text(x.shape)}")
    return Dispatch.apply(x, rows=rows.data if isinstance(rows, Tensor) else rows)


def moe_combine(weights, outputs, tokens, slots):
    """The weighted scatter-add back to the tokens: (N, k) gate weights, one (n_e, C) output per expert.

    ``tokens[e]``, ``slots[e]`` (from ``tokens_per_expert``) say where row i of
    ``outputs[e]`` goes and which gate weight scales it.
    """
    if not (len(outputs) == len(tokens) == len(slots)) or not outputs:
        raise ValueError(f"moe_combine: one (tokens, slots) pair per expert output, got {len(outputs)} "
                         f"outputs, {len(tokens)} token lists and {len(slots)} slot lists")
    for e, (h, t) in enumerate(zip(outputs, tokens)):
        if h.ndim != 2 or h.shape[0] != len(t):
            raise ValueError(f"moe_combine: expert {e}'s output has shape {shape_text(h.shape)}; "
                             f"expected ({len(t)}, C), one row per routed token")
    return Combine.apply(weights, *outputs, tokens=tuple(tokens), slots=tuple(slots))
