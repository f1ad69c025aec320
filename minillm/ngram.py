"""The n-gram language model: next-token probabilities from counts.

Before neural networks, a language model was a table of counts. An n-gram
model assumes the next token depends only on the n - 1 tokens before it,

    P(w | everything before) ~= P(w | h),   h = the last n - 1 tokens,

and estimates that from how often h was followed by w in the training text:
P(w | h) = c(h w) / c(h) (maximum likelihood). Any sequence never seen gets
probability 0, and one zero makes a held-out text's perplexity infinite, so
counts are *smoothed*. Two ways, both here:

**Add-k (Laplace for k = 1).** Pretend every token followed every context k
more times than it did, with V the vocabulary size:

    P(w | h) = (c(h w) + k) / (c(h) + k V)

A context never seen gives the uniform 1/V.

**Interpolated Kneser-Ney** (Chen and Goodman, 1998; Jurafsky and Martin,
"Speech and Language Processing", ch. 3). Take a fixed discount d (0.75) off
every seen count and give the mass set free to a lower-order distribution:

    P(w | h) = max(c(h w) - d, 0) / c(h)  +  lambda(h) P(w | h')
    lambda(h) = d * |{w : c(h w) > 0}| / c(h)          (the mass taken off)

where h' is h without its oldest token. At the top order c is the raw count;
at every lower order it is the *continuation count* N1+(. h w), the number of
different tokens seen before h w: "Francisco" may be frequent, but only after
"San", so it should not be a likely guess after a new context. The recursion
ends at the unigram, interpolated with the uniform 1/V, so every token has a
probability above 0. A context never seen passes straight to h'.

Both distributions sum to 1 over the vocabulary for any context (a test
checks it). ``NGramLM`` is called like a GPT, ``model(idx)`` -> log-probabilities
(B, T, V) whose position t sees the last n - 1 tokens of ``idx[:, :t+1]``, and
has a ``config.block_size``, so ``minillm.evaluate.perplexity(model, ids)``
scores it with exactly the GPT's definition and windows. Counting is host
work (plain NumPy); only the returned log-probabilities go to the backend.
"""
import dataclasses
import numbers

import numpy

from minillm import backend, sampling
from minillm.autograd import Tensor
from minillm.backend import xp

SMOOTHINGS = ("add_k", "kneser_ney")


@dataclasses.dataclass
class NGramConfig:
    """order n (context n - 1 tokens), vocab_size V, smoothing and its constant.

    block_size is only the length of one evaluation window (as the GPT's
    context): set it to the GPT's block_size to score both on the same windows.
    """
    order: int
    vocab_size: int
    smoothing: str = "kneser_ney"
    k: float = 1.0               # add-k
    discount: float = 0.75       # Kneser-Ney's d
    block_size: int = 256

    def __post_init__(self):
        for field in ("order", "vocab_size", "block_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
            setattr(self, field, int(value))
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {self.smoothing!r}")
        if not self.k > 0:
            raise ValueError(f"k must be > 0 (k = 0 gives unseen tokens probability 0), got {self.k}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")


def _key(context):
    """A dict key for a context (a sequence of ids): its int64 bytes."""
    return numpy.asarray(context, dtype=numpy.int64).tobytes()


def _unique_rows(ids, m, vocab_size):
    """The distinct m-grams, sorted lexicographically, and how often each occurs: ((M, m), (M,)).

    ``ids`` is a sequence (1-D: its m-grams are its windows) or already a (N, m)
    array of m-grams. When V^m fits in int64 each m-gram is one number, its ids
    read as digits in base V (same order, a much faster sort); otherwise rows
    are compared directly.
    """
    rows = (numpy.lib.stride_tricks.sliding_window_view(ids, m) if ids.ndim == 1 else ids)  # (N, m)
    if vocab_size ** m >= 2 ** 63:
        return numpy.unique(rows, axis=0, return_counts=True)
    powers = vocab_size ** numpy.arange(m - 1, -1, -1, dtype=numpy.int64)            # (m,) V^(m-1) ... 1
    codes, counts = numpy.unique(rows @ powers, return_counts=True)                   # (M,) each
    return (codes[:, None] // powers) % vocab_size, counts                            # (M, m), (M,)


def _group_by_context(grams, counts):
    """{context key: (next ids, counts)} from lexicographically sorted unique m-grams (M, m)."""
    table = {}
    if len(grams) == 0:
        return table
    contexts = grams[:, :-1]                                              # (M, m-1)
    new = numpy.ones(len(grams), dtype=bool)
    new[1:] = (contexts[1:] != contexts[:-1]).any(axis=1)                 # a new context starts here
    starts = numpy.flatnonzero(new)
    stops = numpy.append(starts[1:], len(grams))
    for a, b in zip(starts, stops):
        table[_key(contexts[a])] = (grams[a:b, -1], counts[a:b].astype(numpy.float64))
    return table


class NGramLM:
    """An n-gram model of token ids, ``NGramLM.fit(ids, order, vocab_size, ...)``.

    ``raw[m]`` maps each seen context of m - 1 tokens to (next ids, counts);
    ``continuation[m]`` (m < n) to (next ids, N1+(. h w)).
    """

    def __init__(self, config):
        if not isinstance(config, NGramConfig):
            raise TypeError(f"NGramLM needs an NGramConfig, got {type(config).__name__}")
        self.config = config
        self.raw = {}
        self.continuation = {}

    @classmethod
    def fit(cls, ids, order, vocab_size, **options):
        """Count every m-gram of ``ids`` for m = 1 ... order (options: see ``NGramConfig``)."""
        model = cls(NGramConfig(order, vocab_size, **options))
        ids = model._check_ids(ids)
        if ids.size < order:
            raise ValueError(f"an order-{order} model needs at least {order} training ids, got {ids.size}")
        unique = {m: _unique_rows(ids, m, vocab_size) for m in range(1, min(order + 1, ids.size) + 1)}
        for m in range(1, order + 1):
            model.raw[m] = _group_by_context(*unique[m])
            if m < order:   # N1+(. h w): how many distinct (m+1)-grams end in the m-gram h w
                grams = unique[m + 1][0][:, 1:] if m + 1 in unique else numpy.zeros((0, m), numpy.int64)
                model.continuation[m] = _group_by_context(*_unique_rows(grams, m, vocab_size))
        return model

    def with_order(self, order):
        """The model of a lower order n' <= n, sharing these counts (fit the largest n once)."""
        if isinstance(order, bool) or int(order) != order or not 1 <= order <= self.config.order:
            raise ValueError(f"order must be an integer in [1, {self.config.order}], got {order!r}")
        lower = NGramLM(dataclasses.replace(self.config, order=int(order)))
        lower.raw = {m: t for m, t in self.raw.items() if m <= order}
        lower.continuation = {m: t for m, t in self.continuation.items() if m < order}
        return lower

    def _check_ids(self, ids, what="token ids"):
        ids = numpy.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"{what} must be one sequence (1-D), got shape {ids.shape}")
        if ids.size and not numpy.issubdtype(ids.dtype, numpy.integer):
            raise TypeError(f"token ids must be integers, got {ids.dtype}")
        V = self.config.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {V})")
        return ids.astype(numpy.int64)

    # ------------------------------------------------------------ probabilities

    def probabilities(self, context=()):
        """P(w | context) for every w: a float64 host vector (V,) that sums to 1.

        Only the last n - 1 tokens of ``context`` count; a shorter context
        (the start of a text) uses the model of order len(context) + 1.
        """
        context = self._check_ids(context, "context")
        context = context[max(0, context.size - (self.config.order - 1)):]
        if self.config.smoothing == "add_k":
            return self._add_k(context)
        return self._kneser_ney(context, top=True)

    def _add_k(self, context):
        V, k = self.config.vocab_size, self.config.k
        p = numpy.full(V, k, dtype=numpy.float64)                             # (V,) k for every w
        entry = self.raw[context.size + 1].get(_key(context))
        total = 0.0
        if entry is not None:
            words, counts = entry
            p[words] += counts                                                # c(h w) + k
            total = counts.sum()                                              # c(h)
        return p / (total + k * V)

    def _kneser_ney(self, context, top):
        V, d = self.config.vocab_size, self.config.discount
        m = context.size + 1
        table = self.raw[m] if top else self.continuation[m]
        entry = table.get(_key(context))
        lower = (numpy.full(V, 1.0 / V) if m == 1                              # (V,) the uniform base
                 else self._kneser_ney(context[1:], top=False))                # (V,) P(w | h')
        if entry is None:
            return lower                                                      # unseen h: all to h'
        words, counts = entry
        total = counts.sum()                                                  # c(h)
        p = lower * (d * words.size / total)                                  # lambda(h) P(w | h')
        p[words] += numpy.maximum(counts - d, 0.0) / total                    # + discounted counts
        return p

    def log_probabilities(self, context=()):
        """log P(w | context) for every w (V,)."""
        return numpy.log(self.probabilities(context))

    # ------------------------------------------------------------ as a language model

    def __call__(self, idx):
        """Log-probabilities (B, T, V) for ids (B, T): position t predicts the token after idx[:, t].

        Called like a GPT so that ``minillm.evaluate.perplexity`` scores it on
        the same windows; returned as a Tensor, as a GPT's logits (they are
        already normalised, so their log-softmax is themselves).
        """
        idx = numpy.asarray(backend.to_numpy(getattr(idx, "data", idx)))
        if idx.ndim != 2:
            raise ValueError(f"idx must be a 2-D array (batch, time) of token ids, got shape {idx.shape}")
        B, T = idx.shape
        n, V = self.config.order, self.config.vocab_size
        out = numpy.empty((B, T, V), dtype=numpy.float64)                      # (B, T, V)
        memo = {}                                                             # context -> row
        for b in range(B):
            row = self._check_ids(idx[b], "idx row")
            for t in range(T):
                context = row[max(0, t + 2 - n):t + 1]                        # the last n - 1 tokens
                key = _key(context)
                if key not in memo:
                    memo[key] = self.log_probabilities(context)
                out[b, t] = memo[key]
        return Tensor(xp.asarray(out))

    def generate(self, prompt, max_new_tokens, seed=None, temperature=1.0, top_k=None, top_p=None):
        """Continue the token ids ``prompt`` by sampling: a list of len(prompt) + max_new_tokens ids.

        Each step draws from P(w | last n - 1 tokens) (through ``sampling.sample``,
        so temperature, top-k and top-p work as for the GPT).
        """
        ids = [int(i) for i in self._check_ids(prompt, "prompt")]
        if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        rng = numpy.random.default_rng(seed)
        for _ in range(int(max_new_tokens)):
            logits = xp.asarray(self.log_probabilities(ids[-(self.config.order - 1):]
                                                       if self.config.order > 1 else ()))
            ids.append(int(sampling.sample(logits, rng, temperature, top_k, top_p)))
        return ids

    def num_ngrams(self):
        """How many distinct m-grams were seen, per order m: {m: count}."""
        return {m: sum(words.size for words, _ in table.values()) for m, table in self.raw.items()}
