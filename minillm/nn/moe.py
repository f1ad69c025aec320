"""Mixtral's sparse mixture-of-experts feed-forward, and the load-balancing loss that keeps it sparse.

In place of one MLP, E expert MLPs and a router. Each token goes to k of them
(Mixtral: k = 2 of E = 8):

    logits = x @ W_gate                         (N, E)   the router: a linear map, no bias
    chosen = top-k of logits                    (N, k)   ties: the lower expert id first
    w      = softmax(logits[chosen])            (N, k)   softmax over the k chosen logits only
    y[t]   = sum_s w[t, s] expert_{chosen[t, s]}(x[t])   each expert a SwiGLU MLP

(Mixtral's order: top-k first, then a softmax of those k logits. The same as
a softmax over all E renormalised over the chosen k, which is how transformers
writes it.) The experts run only on their own tokens (``F.dispatch`` /
``F.moe_combine``, minillm/functional/moe.py): a layer holds E MLPs' worth of
parameters but each token costs k MLPs of compute. Nothing caps an expert's
load, so no token is ever dropped (no "capacity factor").

``dense_forward`` computes the same function the slow way, every expert on
every token with the unchosen weights set to zero: the reference the tests
compare the sparse path with.

The parameter names are those of Mixtral's checkpoints: ``gate`` (the router)
and ``experts.{e}.w1`` (gate projection), ``w3`` (up projection), ``w2`` (down).
"""
from minillm import functional as F
from minillm.backend import xp
from minillm.functional.moe import top_k_experts, tokens_per_expert
from minillm.nn.layers import Linear
from minillm.nn.module import Module, ModuleList


class Expert(Module):
    """One expert: SwiGLU, w2(silu(w1(x)) * w3(x)), C -> n_hidden -> C, no biases (Llama's MLP
    under Mixtral's names)."""

    def __init__(self, n_embd, n_hidden, rng=None, std=0.02, proj_std=0.02, dtype="float32"):
        super().__init__()
        self.w1 = Linear(n_embd, n_hidden, False, rng, std, dtype)
        self.w2 = Linear(n_hidden, n_embd, False, rng, proj_std, dtype)
        self.w3 = Linear(n_embd, n_hidden, False, rng, std, dtype)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))                  # (n, C)


class SparseMoE(Module):
    """The sparse MoE block: a router ``gate`` and ``n_experts`` experts, ``top_k`` per token.

    After each forward, ``router_logits`` (N, E) Tensor and ``chosen`` (N, k)
    expert ids hold the routing of the N = B*T tokens it saw: the
    load-balancing loss and the load plots read them.
    """

    def __init__(self, n_embd, n_hidden, n_experts, top_k=2, rng=None, std=0.02, proj_std=0.02,
                 dtype="float32"):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k ({top_k}) must be between 1 and n_experts ({n_experts})")
        self.n_experts, self.top_k = n_experts, top_k
        self.gate = Linear(n_embd, n_experts, False, rng, std, dtype)
        self.experts = ModuleList(Expert(n_embd, n_hidden, rng, std, proj_std, dtype)
                                  for _ in range(n_experts))
        self.router_logits = self.chosen = None

    def route(self, x):
        """Router logits (N, E), the chosen experts (N, k) and their gate weights (N, k)."""
        logits = self.gate(x)                                             # (N, E)
        chosen = top_k_experts(logits.data, self.top_k)                   # (N, k), no gradient: a choice
        rows = xp.arange(x.shape[0])[:, None]                             # (N, 1)
        weights = F.softmax(logits[rows, chosen], axis=-1)                # (N, k)
        self.router_logits, self.chosen = logits, chosen
        return logits, chosen, weights

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])                                      # (N, C)
        _, chosen, weights = self.route(x)
        outputs, tokens, slots = [], [], []
        for expert, (t, s) in zip(self.experts, tokens_per_expert(chosen, self.n_experts)):
            if len(t) == 0:
                continue                                                  # an idle expert computes nothing
            outputs.append(expert(F.dispatch(x, t)))                      # (n_e, C): its tokens only
            tokens.append(t)
            slots.append(s)
        y = F.moe_combine(weights, outputs, tokens, slots)                # (N, C)
        return y.reshape(shape)                                           # (B, T, C)

    def dense_forward(self, x):
        """The same function, every expert on every token: sum_e W[:, e] expert_e(x), W (N, E) zero
        off the chosen experts (a softmax over the logits with the unchosen set to -inf)."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])                                      # (N, C)
        logits, chosen, _ = self.route(x)
        unchosen = xp.ones(logits.shape, dtype=bool)                      # (N, E)
        unchosen[xp.arange(x.shape[0])[:, None], chosen] = False
        weights = F.softmax(F.masked_fill(logits, unchosen, -xp.inf), axis=-1)   # (N, E)
        y = 0.0
        for e, expert in enumerate(self.experts):
            y = y + weights[:, e:e + 1] * expert(x)                       # (N, C)
        return y.reshape(shape)

    def expert_load(self):
        """The fraction of the last forward's tokens each expert received (E,), adding up to k."""
        return xp.bincount(self.chosen.reshape(-1), minlength=self.n_experts) / self.chosen.shape[0]


def load_balancing_loss(router_logits, chosen, n_experts):
    """The Switch Transformer / Mixtral auxiliary loss over every layer's tokens at once:

        aux = E * sum_e f_e P_e
        f_e = (times expert e was chosen) / rows        (the f_e add up to k)
        P_e = (sum of softmax(router logits)[:, e]) / rows

    where the counts and sums run over all layers and tokens together (rows =
    layers * tokens), exactly as transformers' ``load_balancing_loss_func``.
    Balanced routing (f_e = k/E, P_e = 1/E) gives k; all tokens on the same k
    experts gives up to E. f is a count (no gradient); the gradient,
    dAux/dP_e = E f_e, lowers the router probability of the busiest experts.

    ``router_logits``: list of (N, E) Tensors, one per layer; ``chosen``: the
    matching list of (N, k) expert-id arrays.
    """
    if not router_logits or len(router_logits) != len(chosen):
        raise ValueError(f"load_balancing_loss: one chosen-experts array per router-logits tensor, "
                         f"got {len(router_logits)} and {len(chosen)}")
    rows = sum(logits.shape[0] for logits in router_logits)
    counts = sum(xp.bincount(c.reshape(-1), minlength=n_experts) for c in chosen)          # (E,)
    f = (counts / rows).astype(router_logits[0].dtype)                                    # (E,)
    P = sum(F.softmax(logits, axis=-1).sum(axis=0) for logits in router_logits) * (1.0 / rows)   # (E,)
    return (P * f).sum() * float(n_experts)
