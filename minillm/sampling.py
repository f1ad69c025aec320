"""Decoding: turning next-token logits into a distribution, and a token.

The course's recipe, one step of decoding, for logits u (one score per token
of the vocabulary, the last axis of every array here):

    u' = u / tau                          apply_temperature  (tau = 0: greedy, argmax only)
    u' = -inf outside the k largest       top_k_filter       (ties: the lower token id wins)
    u' = -inf outside the nucleus         top_p_filter       (smallest set with mass >= p)
    P  = softmax(u')                      probabilities
    y  ~ P                                sample             (inverse CDF, drawn on the host)

Each filter takes logits and returns new logits (the input is never
modified), batched or not. ``probabilities`` applies them in that order and
is the exact final distribution; ``sample`` draws from it with one uniform
number per row from a ``numpy.random.Generator``: the vocabulary-sized vector
P is moved to the host (``backend.to_numpy``) and the token is the first whose
cumulative probability exceeds u * sum(P). NumPy and CuPy therefore draw the
same tokens from the same seed.

Logits of -inf are masked tokens: allowed, and never sampled. NaN, +inf and a
row with no finite logit are errors, as are tau < 0, k < 1 and p outside (0, 1].
"""
import math
import numbers

from minillm import backend
from minillm.autograd import Tensor
from minillm.backend import xp
from minillm.functional.softmax import stable_softmax

# ---------------------------------------------------------------- validation


def _as_logits(logits):
    """The logits as a floating xp array (a Tensor gives its data; integers become float64)."""
    if isinstance(logits, Tensor):
        logits = logits.data
    logits = xp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a vocabulary axis (last axis) of size >= 1, "
                         f"got shape {tuple(logits.shape)}")
    if backend.is_integer(logits):
        logits = logits.astype(xp.float64)
    elif not backend.is_floating(logits):
        raise TypeError(f"logits must be floating-point numbers, got {logits.dtype}")
    return logits


def _check_values(logits):
    """Raise on NaN, +inf, or a row whose logits are all -inf (nothing could be sampled).

    The three tests are reduced on the device and read back together: one
    device-to-host transfer per call, not three.
    """
    dead = (logits == -xp.inf).all(axis=-1)                            # (...,) rows with no finite logit
    flags = xp.stack([xp.isnan(logits).any(), (logits == xp.inf).any(), dead.any()])
    has_nan, has_pos_inf, has_dead = (bool(flag) for flag in backend.to_numpy(flags))
    if has_nan:
        raise ValueError("logits contain NaN")
    if has_pos_inf:
        raise ValueError("logits contain +inf; mask tokens with -inf, give finite scores otherwise")
    if has_dead:
        row = tuple(int(i) for i in backend.to_numpy(xp.argwhere(dead))[0]) if dead.ndim else ()
        where = f"row {row[0] if len(row) == 1 else row} of the logits" if row else "the logits"
        raise ValueError(f"{where} has no finite value: all logits are -inf, nothing can be sampled")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_temperature(temperature):
    """tau must be a finite real number >= 0 (0 means greedy)."""
    if not _is_real(temperature):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature}")


def check_top_k(k):
    """k must be an integer >= 1 (a bool is not an integer here)."""
    if not isinstance(k, numbers.Integral) or isinstance(k, bool):
        raise TypeError(f"top_k must be an integer >= 1, got {k!r} ({type(k).__name__})")
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")


def check_top_p(p):
    """p must be a real number in (0, 1]."""
    if not _is_real(p):
        raise TypeError(f"top_p must be a real number in (0, 1], got {p!r} ({type(p).__name__})")
    if not 0 < p <= 1:  # also rejects NaN
        raise ValueError(f"top_p must be in (0, 1], got {p}")


# ---------------------------------------------------------------- the logits processors
# Each public filter checks its arguments once, then calls the unchecked helper
# beside it; probabilities() checks once and chains the helpers.


def _temperature(logits, t):
    if t > 0:
        return logits / t
    best = logits.argmax(axis=-1)[..., None]                            # (..., 1) first maximum = lowest id
    ids = xp.arange(logits.shape[-1])                                   # (V,)
    return xp.where(ids == best, 0.0, -xp.inf).astype(logits.dtype)     # (..., V)


def apply_temperature(logits, t):
    """u / tau: tau < 1 sharpens softmax(u / tau), tau > 1 flattens it.

    tau = 0 is the limit tau -> 0, greedy decoding: only the argmax survives
    (its logit becomes 0, every other one -inf; the lowest token id wins a tie).
    """
    check_temperature(t)
    logits = _as_logits(logits)
    _check_values(logits)
    return _temperature(logits, t)


def _keep_largest(logits, counts):
    """Keep the ``counts`` largest logits of each row (ties: lower ids first), -inf elsewhere.

    counts is an int array (..., 1). With v the counts-th largest value, we keep
    every logit > v, then the first (lowest-id) logits == v until the row holds
    exactly ``counts``. No sort needs to be stable, so both backends agree.
    """
    descending = -xp.sort(-logits, axis=-1)                             # (..., V)
    threshold = xp.take_along_axis(descending, counts - 1, axis=-1)     # (..., 1) the counts-th largest
    above = logits > threshold                                          # (..., V)
    tied = logits == threshold                                          # (..., V)
    room = counts - above.sum(axis=-1, keepdims=True)                   # (..., 1) places left for ties
    keep = above | (tied & (xp.cumsum(tied, axis=-1) <= room))         # (..., V)
    return xp.where(keep, logits, -xp.inf).astype(logits.dtype)


def _top_k(logits, k):
    if k >= logits.shape[-1]:
        return logits.copy()
    counts = xp.full(logits.shape[:-1] + (1,), k, dtype=xp.int64)     # (..., 1)
    return _keep_largest(logits, counts)


def top_k_filter(logits, k):
    """Keep the k largest logits of each row (exactly k; ties: the lower token id), -inf elsewhere.

    k >= the vocabulary size keeps every token. A token already at -inf stays -inf.
    """
    check_top_k(k)
    logits = _as_logits(logits)
    _check_values(logits)
    return _top_k(logits, k)


def _top_p(logits, p):
    if p == 1:
        return logits.copy()
    descending = -xp.sort(-logits, axis=-1)                             # (..., V) logits, largest first
    mass = xp.cumsum(stable_softmax(descending), axis=-1)               # (..., V) P_(1) + ... + P_(n)
    counts = (mass < p).sum(axis=-1, keepdims=True) + 1                 # (..., 1) first n with mass >= p
    counts = xp.minimum(counts, logits.shape[-1])                       # rounding: never more than V
    return _keep_largest(logits, counts)


def top_p_filter(logits, p):
    """Nucleus sampling: keep the smallest set of most probable tokens whose mass is >= p.

    With P = softmax(u) sorted in decreasing order, P_(1) >= P_(2) >= ..., keep the
    first n tokens where n = min{n : P_(1) + ... + P_(n) >= p} (at least one token;
    ties in probability: the lower token id first). p = 1 keeps every token.
    """
    check_top_p(p)
    logits = _as_logits(logits)
    _check_values(logits)
    return _top_p(logits, p)


# ---------------------------------------------------------------- distribution and draw


class Sampler:
    """The settings of one decoding run, checked once: ``Sampler(temperature, top_k, top_p)``.

    ``sampler.probabilities(logits)`` and ``sampler.sample(logits, rng)`` then
    run every step without checking the settings again (``generate`` makes one
    sampler per call; the logits' values are still checked each step).
    """

    def __init__(self, temperature=1.0, top_k=None, top_p=None):
        check_temperature(temperature)
        if top_k is not None:
            check_top_k(top_k)
        if top_p is not None:
            check_top_p(top_p)
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def probabilities(self, logits):
        """softmax(top_p(top_k(u / tau))) along the last axis; rows sum to 1."""
        logits = _as_logits(logits)
        _check_values(logits)
        u = _temperature(logits, self.temperature)                      # (..., V)
        if self.top_k is not None:
            u = _top_k(u, self.top_k)
        if self.top_p is not None:
            u = _top_p(u, self.top_p)
        return stable_softmax(u)                                        # (..., V)

    def sample(self, logits, rng):
        """One token id per row, drawn from ``probabilities(logits)`` with one
        ``rng.random()`` per row (see ``sample``)."""
        if not hasattr(rng, "random"):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        probs = backend.to_numpy(self.probabilities(logits))                # (..., V) host
        uniforms = rng.random(probs.shape[:-1])                             # (...) one per row
        return xp.asarray(inverse_cdf(probs, uniforms))


def probabilities(logits, temperature=1.0, top_k=None, top_p=None):
    """The final next-token distribution: softmax(top_p(top_k(u / tau))).

    Temperature first, then top-k, then top-p (on the distribution top-k left,
    renormalised), then softmax. temperature=0 gives one-hot on the argmax.
    Returns an xp array of the logits' shape whose rows sum to 1.
    """
    return Sampler(temperature, top_k, top_p).probabilities(logits)


def inverse_cdf(probs, uniforms):
    """Host-side draw: for each row, the first token whose cumulative probability exceeds u * total.

    probs is a host array (..., V) of probabilities (rows need not sum exactly to 1),
    uniforms a host array (...) of numbers in [0, 1). Token i is chosen when
    C_(i-1) <= u * C_V < C_i, with C the cumulative sum: a stretch of width P_i of
    [0, 1), so a token of probability 0 is never chosen. Returns host int64 ids (...).
    """
    probs = probs.astype("float64")                                      # (..., V) host
    cdf = probs.cumsum(axis=-1)                                          # (..., V)
    target = uniforms * cdf[..., -1]                                     # (...) u * total
    tokens = (cdf <= target[..., None]).sum(axis=-1)                     # (...) tokens passed before u
    last = probs.shape[-1] - 1 - (probs > 0)[..., ::-1].argmax(axis=-1)  # (...) last token with P > 0
    return tokens.clip(0, last).astype("int64")                          # u * total rounded up to total


def sample(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """Draw one token id per row from probabilities(logits, temperature, top_k, top_p).

    ``rng`` is a ``numpy.random.Generator``; each row uses exactly one
    ``rng.random()`` (also when temperature is 0, so the stream does not depend on
    the settings). Returns an xp int64 array of the logits' shape without the last axis.
    """
    return Sampler(temperature, top_k, top_p).sample(logits, rng)
