"""The basic layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout.

Each owns its parameters and calls one fused op of ``minillm.functional``.
Initial weights are drawn on the host from a seeded ``numpy.random.Generator``
(``backend.random_normal``) so that NumPy and CuPy start from identical numbers.

``with skip_init():`` builds layers whose weights are zeros instead: a loader
that overwrites every parameter next (``load_state_dict``) then draws no random
numbers at all (zeros are cheap: the operating system hands out zeroed pages
only when they are written, so a loaded model is allocated once, not twice).
"""
import contextlib

from minillm import backend
from minillm import functional as F
from minillm.backend import xp
from minillm.nn.module import Module, Parameter


_INIT = {"random": True}   # False inside skip_init()


@contextlib.contextmanager
def skip_init():
    """Within the block, Linear and Embedding weights start at zero, unseeded and undrawn:
    for a model whose every parameter is loaded next. Outside it nothing changes
    (the same seed gives the same weights)."""
    previous, _INIT["random"] = _INIT["random"], False
    try:
        yield
    finally:
        _INIT["random"] = previous


def initial_weight(rng, shape, std, dtype):
    """N(0, std^2) from ``rng`` (a seed or Generator), or zeros inside ``skip_init()``."""
    if not _INIT["random"]:
        return xp.zeros(shape, dtype=dtype)
    return backend.random_normal(_rng(rng), shape, std, dtype)


def _rng(rng):
    """A host generator from a seed (int, default 0) or an existing Generator."""
    return backend.host_rng(0 if rng is None else rng)


class Linear(Module):
    """h = x W + b with W of shape (in_features, out_features) (GPT-2's layout).

    W ~ N(0, std^2) drawn from ``rng`` (a seed or a numpy Generator), b = 0.
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, std=0.02, dtype="float32"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(initial_weight(rng, (in_features, out_features), std, dtype))
        self.bias = Parameter(xp.zeros(out_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)                     # (..., out_features)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table; ``forward(ids)`` picks rows. W ~ N(0, std^2)."""

    def __init__(self, num_embeddings, embedding_dim, rng=None, std=0.02, dtype="float32"):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(initial_weight(rng, (num_embeddings, embedding_dim), std, dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)                           # (..., embedding_dim)

    def __repr__(self):
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis; weight 1, bias 0."""

    def __init__(self, n_features, eps=1e-5, bias=True, dtype="float32"):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(xp.ones(n_features, dtype=dtype))
        self.bias = Parameter(xp.zeros(n_features, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)   # (..., n_features)

    def __repr__(self):
        return f"LayerNorm({self.weight.shape[0]}, eps={self.eps})"


class RMSNorm(Module):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last axis; weight 1, no bias
    (Llama's RMSNorm, T5's LayerNorm)."""

    def __init__(self, n_features, eps=1e-6, dtype="float32"):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(xp.ones(n_features, dtype=dtype))

    def forward(self, x):
        return F.rms_norm(x, self.weight, eps=self.eps)                # (..., n_features)

    def __repr__(self):
        return f"RMSNorm({self.weight.shape[0]}, eps={self.eps})"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode; the identity in eval mode.

    ``rng`` is a seed (int or None) for ``backend.device_rng`` or a generator
    to share (a model may hand one generator to all its dropouts).
    """

    def __init__(self, p=0.0, rng=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None and not isinstance(rng, int) else backend.device_rng(rng)

    def forward(self, x):
        return F.dropout(x, self.p, training=self.training, rng=self.rng)

    def __repr__(self):
        return f"Dropout(p={self.p})"
