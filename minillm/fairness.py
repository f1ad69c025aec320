"""Fairness, measured with the data at hand: gaps between groups, with bootstrap intervals.

The lecture asks whether a model works as well "for language from or about
some groups", and whether it repeats stereotypes. Three measurements, each a
number with an interval:

* **A performance gap.** The same content in two varieties of the language
  (here: Shakespeare in modern spelling and in the First Folio's spelling)
  scored by one model: bits per character of each, and their difference.
* **Filter flag rates.** How often a data filter removes documents of each
  variety (every removal of a good document is a false positive).
* **A stereotype probe.** log P(" he" | context) - log P(" she" | context)
  after templates that name a role ("The queen is come, and"), per role.

**The bootstrap.** A figure computed from n units (text blocks, documents,
templates) would change with another sample of units. The percentile bootstrap
estimates that spread: draw n units with replacement, recompute the figure,
repeat B times; the 2.5th and 97.5th percentiles of the B figures are a 95 %
interval. Neighbouring tokens are not independent, so a text is cut into
blocks of many tokens and the blocks are resampled (a block bootstrap). For
two independent samples (two texts) each is resampled on its own and the
difference recomputed. Everything is seeded: the same seed gives the same
interval.
"""
import dataclasses
import math
import re

import numpy

LN2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A figure and its bootstrap interval [low, high] at ``level``."""
    estimate: float
    low: float
    high: float
    level: float = 0.95

    def __str__(self):
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def _units(values, what):
    values = numpy.asarray(values, dtype=numpy.float64)
    if values.ndim not in (1, 2) or values.shape[0] < 2:
        raise ValueError(f"{what} must hold at least 2 units (rows), got shape {values.shape}")
    return values


def _check(n_resamples, level):
    if isinstance(n_resamples, bool) or int(n_resamples) != n_resamples or n_resamples < 10:
        raise ValueError(f"n_resamples must be an integer >= 10, got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _percentiles(estimate, draws, level):
    tail = 100 * (1 - level) / 2
    low, high = numpy.percentile(draws, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def bootstrap(units, statistic=numpy.mean, n_resamples=2000, level=0.95, seed=0):
    """The percentile-bootstrap interval of ``statistic(units)``.

    ``units`` is an array whose rows are the resampled units (1-D: one number
    per unit); ``statistic`` maps such an array to a number. Seeded.
    """
    _check(n_resamples, level)
    units = _units(units, "units")
    rng = numpy.random.default_rng(seed)
    n = units.shape[0]
    draws = [statistic(units[rng.integers(0, n, n)]) for _ in range(int(n_resamples))]
    return _percentiles(statistic(units), draws, level)


def bootstrap_difference(units_a, units_b, statistic=numpy.mean, n_resamples=2000, level=0.95, seed=0):
    """Interval of statistic(units_b) - statistic(units_a), the two samples resampled independently."""
    _check(n_resamples, level)
    a, b = _units(units_a, "units_a"), _units(units_b, "units_b")
    rng = numpy.random.default_rng(seed)
    draws = [statistic(b[rng.integers(0, len(b), len(b))]) - statistic(a[rng.integers(0, len(a), len(a))])
             for _ in range(int(n_resamples))]
    return _percentiles(statistic(b) - statistic(a), draws, level)


# ---------------------------------------------------------------- bits per character by blocks

def char_blocks(token_logprobs, token_chars, block_chars=2000):
    """Cut a scored text into blocks of about ``block_chars`` characters: an array (n_blocks, 2) of
    (total nats, characters) per block, the units for ``bits_per_char``.

    token_logprobs: log p of each target token (n,); token_chars: the characters each spells (n,)
    (all 1 for a char model). A last block shorter than half a block joins the one before.
    """
    logp = numpy.asarray(token_logprobs, dtype=numpy.float64)
    chars = numpy.asarray(token_chars, dtype=numpy.float64)
    if logp.shape != chars.shape or logp.ndim != 1:
        raise ValueError(f"token_logprobs {logp.shape} and token_chars {chars.shape} must be equal 1-D shapes")
    edges = numpy.searchsorted(numpy.cumsum(chars), numpy.arange(block_chars, chars.sum(), block_chars))
    blocks = [(-part_l.sum(), part_c.sum()) for part_l, part_c in
              zip(numpy.split(logp, edges), numpy.split(chars, edges)) if part_c.sum() > 0]
    if len(blocks) > 1 and blocks[-1][1] < block_chars / 2:
        last = blocks.pop()
        blocks[-1] = (blocks[-1][0] + last[0], blocks[-1][1] + last[1])
    return numpy.array(blocks, dtype=numpy.float64)


def bits_per_char(blocks):
    """Total nats / ln 2 / total characters over (nats, chars) blocks: a ratio of sums."""
    blocks = numpy.asarray(blocks)
    return float(blocks[:, 0].sum() / LN2 / blocks[:, 1].sum())


# ---------------------------------------------------------------- stereotype probe

def pronoun_probe(logprob, roles, templates, pronouns=(" he", " she"), **bootstrap_options):
    """{role: Interval of mean over templates of log P(pronouns[0] | t) - log P(pronouns[1] | t)}.

    ``logprob(prompt, continuation)`` returns log P(continuation | prompt) in nats
    (e.g. ``functools.partial(evaluate.sequence_logprob, model, tokenizer)``);
    each template holds "{role}". Positive: the model expects "he" more than
    "she" after that role. The interval resamples the templates.
    """
    templates = list(templates)
    if len(templates) < 2 or any("{role}" not in t for t in templates):
        raise ValueError("templates must be at least 2 strings, each with a '{role}' placeholder")
    result = {}
    for role in roles:
        gaps = [logprob(t.format(role=role), pronouns[0]) - logprob(t.format(role=role), pronouns[1])
                for t in templates]
        result[role] = bootstrap(gaps, **bootstrap_options)
    return result


def cooccurrence_log_ratio(text, roles, window=10, male=("he", "him", "his"), female=("she", "her", "hers"),
                           smoothing=0.5):
    """The corpus's own association: {role: (log ratio, male count, female count)}.

    Counts male and female pronouns among the ``window`` words after each
    occurrence of the role word (case-insensitive), and returns
    log((m + s) / (f + s)), s = ``smoothing``: what a model trained on the text can learn.
    """
    words = re.findall(r"[a-z]+", text.lower())
    male, female = set(male), set(female)
    positions = {}
    for i, w in enumerate(words):
        positions.setdefault(w, []).append(i)
    result = {}
    for role in roles:
        m = f = 0
        for i in positions.get(role.lower(), ()):
            following = words[i + 1:i + 1 + window]
            m += sum(w in male for w in following)
            f += sum(w in female for w in following)
        result[role] = (math.log((m + smoothing) / (f + smoothing)), m, f)
    return result
