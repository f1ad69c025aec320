"""Evaluating a language model: perplexity, log-probabilities, zero-shot classification.

A language model gives every next token a probability. On a held-out text
ids[0], ..., ids[n-1] it is judged by the mean negative log-likelihood of the
targets ids[1:], each predicted from the tokens before it:

    nats           = -(1 / (n-1)) * sum_j log p(ids[j] | ids[<j])      (cross-entropy)
    perplexity     = exp(nats)          "as unsure as a uniform choice among this many tokens"
    bits per token = nats / ln 2
    bits per char  = (total nats / ln 2) / (characters of the scored text)

A model that gives every token the same probability 1/V has perplexity
exactly V. Perplexity depends on the tokenizer (a char model and a BPE model
predict different things); bits per character does not, so it compares them.

**Longer than the context.** The model sees at most ``block_size`` = T
tokens. Window k feeds the inputs ids[k*stride : k*stride + T] and predicts
targets ids[k*stride + 1 : k*stride + T + 1]; only the targets that no earlier
window counted are scored, so every target is scored exactly once. With
``stride = T`` (the default) the windows sit back to back; a smaller stride
costs more forward passes but gives each target more context (and lower,
fairer perplexity).

**Conditional generation.** ``sequence_logprob`` is log P(continuation |
prompt); ``classify`` compares the labels as continuations of a prompt
(P(" positive" | "The sentiment of ... is:") versus P(" negative" | ...)) and
normalises over the labels: zero-shot classification, the course's framing.
"""
import math

import numpy

from minillm import backend
from minillm import functional as F
from minillm.autograd import Tensor
from minillm.backend import xp
from minillm.nn import eval_mode

LN2 = math.log(2.0)


# ---------------------------------------------------------------- helpers

def _block_size(model):
    config = getattr(model, "config", None)
    block_size = getattr(config, "block_size", None)
    if block_size is None:
        raise TypeError(f"the model ({type(model).__name__}) needs a .config.block_size "
                        "(the longest input it accepts)")
    return int(block_size)


def _host_ids(ids, what="ids"):
    """``ids`` as a 1-D int64 host array, or a clear error."""
    if isinstance(ids, Tensor):
        ids = ids.data
    ids = backend.to_numpy(ids) if not isinstance(ids, (list, tuple)) else numpy.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{what} must be one sequence of token ids (1-D), got shape {ids.shape}")
    if ids.size and not numpy.issubdtype(ids.dtype, numpy.integer):
        raise TypeError(f"token ids must be integers, got {ids.dtype}")
    return ids.astype(numpy.int64)


def window_plan(n_ids, block_size, stride=None):
    """The windows that score targets 1 ... n_ids - 1 exactly once.

    Returns a list of (start, first) pairs: window k feeds ids[start : start +
    block_size] (start = k * stride) and counts the predictions at positions
    first, first + 1, ... of the window (position p predicts target start + p + 1),
    up to the end of the window or of the text. (The text's last token has no
    target, so a last window stops one token short of it: by causality this
    changes none of the scored predictions.)

    >>> window_plan(10, block_size=4)            # back to back
    [(0, 0), (4, 0), (8, 0)]
    >>> window_plan(10, block_size=4, stride=2)  # overlapping: later windows count their last 2
    [(0, 0), (2, 2), (4, 2), (6, 2)]
    """
    stride = block_size if stride is None else stride
    if isinstance(stride, bool) or int(stride) != stride or not 1 <= stride <= block_size:
        raise ValueError(f"stride must be an integer in [1, block_size={block_size}], got {stride!r} "
                         "(a larger stride would leave tokens unscored)")
    stride = int(stride)
    plan, counted = [], 0                      # counted: the last target index scored so far
    start = 0
    while counted < n_ids - 1:
        plan.append((start, max(counted - start, 0)))
        counted = min(start + block_size, n_ids - 1)
        start += stride
    return plan


def _log_probs_of_targets(model, inputs, targets):
    """log p(targets | inputs) for a batch: inputs and targets int (B, L) -> float64 host (B, L).

    log p(t) = u_t - logsumexp(u) with logsumexp(u) = m + log sum exp(u - m), m = max u:
    one temporary of the logits' size, no full log-softmax array.
    """
    logits = model(xp.asarray(inputs))                                     # (B, L, V) Tensor
    u = getattr(logits, "data", logits)
    m = u.max(axis=-1, keepdims=True)                                      # (B, L, 1)
    lse = (m + xp.log(xp.exp(u - m).sum(axis=-1, keepdims=True)))[..., 0]  # (B, L)
    picked = xp.take_along_axis(u, xp.asarray(targets)[..., None], axis=-1)[..., 0]  # (B, L) u_t
    return backend.to_numpy(picked - lse).astype(numpy.float64)


def _default_batch_size(block_size, vocab_size, budget=2 ** 25):
    """Windows per forward pass so that the logits stay under ``budget`` numbers (128 MB in
    float32): 8 for a char model, 1 for GPT-2 (1024 x 50257 logits per window)."""
    return max(1, min(8, budget // max(1, block_size * vocab_size)))


# ---------------------------------------------------------------- perplexity

def token_logprobs(model, ids, stride=None, batch_size=None):
    """log p(ids[j] | its window's context) for j = 1 ... n-1: a float64 host array (n-1,).

    Each target is scored exactly once, by the windows of ``window_plan``.
    Full-length windows run ``batch_size`` at a time (memory: batch_size *
    block_size * vocab_size logits; the default keeps that under 2^25 numbers).
    """
    T = _block_size(model)
    ids = _host_ids(ids)
    n = ids.size
    if n < 2:
        raise ValueError(f"scoring needs at least 2 token ids (an input and its target), got {n}")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab is not None:
        F.check_token_ids(ids, int(vocab))
    if batch_size is None:
        batch_size = _default_batch_size(T, int(vocab) if vocab is not None else 1)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plan = window_plan(n, T, stride)
    out = numpy.empty(n - 1, dtype=numpy.float64)
    with eval_mode(model):
        # windows of equal length run together: all are T long except maybe the last
        groups = []
        for start, first in plan:
            length = min(T, n - 1 - start)     # positions that have a target
            if groups and groups[-1][0] == length and len(groups[-1][1]) < batch_size:
                groups[-1][1].append((start, first))
            else:
                groups.append((length, [(start, first)]))
        for length, windows in groups:
            starts = numpy.array([s for s, _ in windows])                  # (B,)
            offsets = numpy.arange(length)                                 # (L,)
            inputs = ids[starts[:, None] + offsets]                        # (B, L)
            targets = ids[starts[:, None] + offsets + 1]                   # (B, L)
            logp = _log_probs_of_targets(model, inputs, targets)           # (B, L)
            for row, (start, first) in enumerate(windows):
                out[start + first:start + length] = logp[row, first:]      # target j sits at out[j - 1]
    return out


def perplexity(model, ids, stride=None, batch_size=None):
    """exp(mean negative log-likelihood of ids[1:]) under ``model``, sliding windows of block_size.

    ``stride`` (default block_size) is how far each window moves; every target
    is scored exactly once, by the first window that reaches it.
    """
    logp = token_logprobs(model, ids, stride=stride, batch_size=batch_size)
    return float(math.exp(-logp.mean()))


def evaluate_lm(model, ids, stride=None, n_chars=None, batch_size=None):
    """Perplexity and its relatives on one text, as a dict.

    nats            mean negative log-likelihood per target token (the cross-entropy loss)
    bits_per_token  nats / ln 2
    perplexity      exp(nats)
    tokens          number of targets scored (len(ids) - 1)
    total_nats      their sum
    bits_per_char   total_nats / ln 2 / n_chars, or None without ``n_chars``: the number
                    of characters the targets ids[1:] spell (for a char tokenizer,
                    len(ids) - 1; for BPE, len(tokenizer.decode(ids[1:])))
    """
    logp = token_logprobs(model, ids, stride=stride, batch_size=batch_size)
    total = float(-logp.sum())
    nats = total / logp.size
    result = {"nats": nats, "bits_per_token": nats / LN2, "perplexity": math.exp(nats),
              "tokens": int(logp.size), "total_nats": total, "bits_per_char": None}
    if n_chars is not None:
        if int(n_chars) < 1:
            raise ValueError(f"n_chars must be a positive number of characters, got {n_chars}")
        result["bits_per_char"] = total / LN2 / int(n_chars)
    return result


# ---------------------------------------------------------------- conditional probabilities

def _encode(tokenizer, text, what):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string, got {type(text).__name__}")
    return [int(i) for i in tokenizer.encode(text)]


def sequence_logprob(model, tokenizer, prompt, continuation, stride=None):
    """log P(continuation | prompt) = sum of log p(token | everything before it), in nats.

    The prompt and the continuation are encoded separately and joined, so the
    continuation's tokens are exactly ``tokenizer.encode(continuation)`` (with
    GPT-2's BPE, start a word continuation with its space: " positive").

    Longer than the context (block_size = T), as lm-evaluation-harness does:
    * a continuation of at most T tokens is scored in one forward pass over
      the last T inputs; the prompt loses its oldest tokens if needed;
    * a longer continuation is scored with the perplexity windows (``stride``,
      default T), starting T tokens before it, so its first token still sees
      the last T prompt tokens that fit.
    """
    T = _block_size(model)
    prompt_ids = _encode(tokenizer, prompt, "prompt")
    cont_ids = _encode(tokenizer, continuation, "continuation")
    if not prompt_ids:
        raise ValueError("the prompt encodes to no tokens: the first continuation token needs "
                         "at least one token of context (for GPT-2 use '<|endoftext|>')")
    if not cont_ids:
        raise ValueError(f"the continuation {continuation!r} encodes to no tokens")
    ids = numpy.array(prompt_ids + cont_ids, dtype=numpy.int64)
    n, P, C = ids.size, len(prompt_ids), len(cont_ids)
    start = max(0, n - 1 - T) if C <= T else max(0, P - T)
    logp = token_logprobs(model, ids[start:], stride=T if C <= T else stride)
    return float(logp[-C:].sum())


def classify(model, tokenizer, prompt, labels, length_normalize=False):
    """Zero-shot classification: {label: probability}, normalised over ``labels``.

    Each label is scored as a continuation of the prompt, s = log P(label |
    prompt), and the scores are turned into probabilities by a softmax over
    the labels: P(label) = exp(s) / sum over labels of exp(s'). This is the
    course's "P(positive | 'The sentiment of ... is:')" read as a classifier.

    Length: a label of several tokens multiplies several probabilities below
    1, so it is penalised. By default we keep the raw sum (the true
    conditional probability; exact for labels of one token each, as with a
    char model and labels that differ in their first character, or GPT-2 and
    " positive"/" negative"). ``length_normalize=True`` uses the mean log-
    probability per token instead (a geometric mean), a common correction
    when labels have different lengths.
    """
    if isinstance(labels, str) or not hasattr(labels, "__iter__"):
        raise TypeError(f"labels must be a list of strings, got {type(labels).__name__}")
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: classification needs at least one label")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")
    scores = []
    for label in labels:
        score = sequence_logprob(model, tokenizer, prompt, label)
        if length_normalize:
            score /= len(_encode(tokenizer, label, "label"))
        scores.append(score)
    scores = numpy.array(scores, dtype=numpy.float64)
    probs = numpy.exp(scores - scores.max())
    probs /= probs.sum()
    return {label: float(p) for label, p in zip(labels, probs)}
