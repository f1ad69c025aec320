"""Autoregressive generation: the decoding loop, with or without the KV cache.

The course's loop: given a prompt x_1 .. x_t, repeat

    logits = model(context)[:, -1]             next-token scores (B, V)
    x_{t+1} ~ sample(logits, tau, k, p)         minillm.sampling
    context = context + [x_{t+1}]

Two ways to compute ``logits`` (``use_cache``):

- without the cache (the baseline), every step runs the model over the whole
  context window again: step t costs O(t) token-passes through the network;
- with the KV cache, the prompt is run once (the *prefill*), then each step
  feeds only the one new token, whose attention reads the keys and values
  kept from earlier steps: one token-pass per step.

Both give the same logits (up to rounding), because in causal attention a
token's keys and values never depend on later tokens.

The context window. GPT-2 has ``block_size`` learned positions, so the model
sees at most ``block_size`` tokens. When the sequence outgrows it, the window
*slides*: it restarts at the last ``slide_keep`` tokens (default
``block_size // 2``) and grows again until it is full. A cached key belongs to
its absolute position, so the cached path resets the cache and re-prefills those
``slide_keep`` tokens; the uncached path uses the very same windows, so both
paths still compute identical logits. ``slide_keep=block_size`` is nanoGPT's
rule (always the last ``block_size`` tokens), at the price of a full re-prefill
at every step once the window is full; a smaller ``slide_keep`` re-prefills
only every ``block_size - slide_keep + 1`` steps. A prompt longer than
``block_size`` is cut to its last ``block_size`` tokens.

Stopping. ``stop`` is a token id or a list of ids. A row that produces one of
them is finished: its later positions repeat that stop token (padding), and
the loop ends as soon as every row is finished. For a batch of one this simply
stops early, the stop token included. Rows keep drawing their uniform numbers
while padded, so each row's tokens before its stop do not depend on the others.

This module never imports ``minillm.models``: it receives the model object and
uses ``model(idx, cache=..., last_only=True)``, ``model.config.block_size``, ``.vocab_size``,
``.n_layer`` and ``model.training`` / ``model.train(mode)``.
An encoder-decoder (T5) runs the same ``collect`` loop over
``stream_encoder_decoder``, which uses ``model.encode`` and ``model.decode``.
"""
import numbers

from minillm import backend
from minillm import sampling
from minillm.autograd import Tensor
from minillm.backend import xp
from minillm.kvcache import EncoderDecoderCache, KVCache
from minillm.nn import eval_mode


def _check_prompt(idx, vocab_size):
    """idx (T,) or (B, T) of ints in [0, V) -> a backend array (B, T) and whether it was 1-D."""
    if isinstance(idx, Tensor):
        idx = idx.data
    idx = xp.asarray(idx)
    if not backend.is_integer(idx):
        raise TypeError(f"token ids must be integers, got {idx.dtype}")
    if idx.ndim not in (1, 2):
        raise ValueError(f"idx must be 1-D (T,) or 2-D (B, T) token ids, got shape {tuple(idx.shape)}")
    if idx.shape[-1] == 0 or idx.size == 0:
        raise ValueError(f"the prompt must hold at least one token per row, got shape {tuple(idx.shape)}")
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")
    return (idx[None, :] if idx.ndim == 1 else idx).astype(xp.int64), idx.ndim == 1


def _check_stop(stop, vocab_size):
    """None, an int or a list of ints -> a tuple of ids (maybe empty)."""
    if stop is None:
        return ()
    ids = [stop] if isinstance(stop, numbers.Integral) else list(stop)
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise TypeError(f"stop must be a token id or a list of token ids, got {token!r}")
        if not 0 <= token < vocab_size:
            raise ValueError(f"stop token id {token} is outside the vocabulary [0, {vocab_size})")
    return tuple(int(token) for token in ids)


def window_start(start, length, block_size, slide_keep):
    """The first position the model sees once the sequence has ``length`` tokens.

    ``start`` is the current window's first position. While the window
    [start, length) fits in ``block_size`` it stays; when it would hold
    block_size + 1 tokens it restarts at the last ``slide_keep`` tokens.
    """
    if length - start > block_size:
        return length - slide_keep
    return start


def stream(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
           use_cache=True, slide_keep=None):
    """Yield (logits (B, V), token (B,)) once per generated token; the decoding loop itself.

    ``idx`` is a backend int array (B, T) already checked. The caller runs this
    under ``eval_mode(model)`` (``generate`` does). The sampler settings are
    checked once, here, not at every token.
    """
    sampler = sampling.Sampler(temperature, top_k, top_p)
    config = model.config
    block_size = config.block_size
    if slide_keep is None:
        slide_keep = max(1, block_size // 2)
    rng = backend.host_rng(seed)
    capacity = min(block_size, idx.shape[1] + max_new_tokens)  # not block_size: Llama 3's is 131072
    cache = KVCache(config.n_layer, capacity=capacity) if use_cache else None
    length = idx.shape[1]
    start = max(0, length - block_size)                      # a long prompt keeps its last block_size
    refill = True                                            # the cache must be (re)filled from `start`
    tokens = idx
    for _ in range(max_new_tokens):
        if use_cache and refill:
            cache.reset()
            logits = model(tokens[:, start:], cache=cache, last_only=True).data[:, -1, :]       # (B, V) prefill
        elif use_cache:
            logits = model(tokens[:, -1:], cache=cache, last_only=True).data[:, -1, :]          # (B, V) one new token
        else:
            logits = model(tokens[:, start:], last_only=True).data[:, -1, :]                     # (B, V) whole window
        token = sampler.sample(logits, rng)                                      # (B,)
        yield logits, token
        tokens = xp.concatenate([tokens, token[:, None].astype(tokens.dtype)], axis=1)  # (B, T + 1)
        length += 1
        new_start = window_start(start, length, block_size, slide_keep)
        refill, start = new_start != start, new_start


def _check_max_new_tokens(max_new_tokens):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")


def collect(model, steps, tokens, stop_ids, pad=None):
    """Run ``steps`` (a ``stream``) under ``eval_mode(model)`` and append its tokens to
    ``tokens`` (B, T) -> (B, T + new). A row that draws one of ``stop_ids`` is
    finished: its later positions hold ``pad`` (None: its own stop token); the loop
    ends as soon as every row is finished."""
    new = []                                                             # each (B,)
    finished = xp.zeros(tokens.shape[0], dtype=bool)                     # (B,) rows that hit a stop id
    pad_ids = xp.zeros(tokens.shape[0], dtype=xp.int64) + (0 if pad is None else pad)   # (B,)
    with eval_mode(model):                                               # dropout off, no graph
        for _, token in steps:
            token = xp.where(finished, pad_ids, token)                   # (B,) finished rows are padded
            new.append(token)
            if stop_ids:
                hit = ~finished & (token[:, None] == xp.asarray(stop_ids)[None, :]).any(axis=1)
                if pad is None:
                    pad_ids = xp.where(hit, token, pad_ids)
                finished = finished | hit
                if bool(finished.all()):
                    break
        steps.close()
    return xp.concatenate([tokens] + [t[:, None] for t in new], axis=1) if new else tokens.copy()


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
             use_cache=True, stop=None, slide_keep=None):
    """Continue ``idx`` by up to ``max_new_tokens`` sampled tokens.

    idx: int array (T,) or (B, T); returns the same rank, (T + new,) or (B, T + new),
    as a backend array. temperature=0 is greedy. The same ``seed`` gives the same
    tokens, with or without the cache and on either backend. ``stop``: a token id
    or list of ids ending a row (see the module docstring). ``slide_keep``: tokens
    kept when the window slides past block_size (default block_size // 2).
    Runs under ``no_grad()`` in eval mode, and restores the model's mode after.
    """
    config = model.config
    _check_max_new_tokens(max_new_tokens)
    sampling.Sampler(temperature, top_k, top_p)                          # settings checked before we start
    if slide_keep is None:
        slide_keep = max(1, config.block_size // 2)
    if (isinstance(slide_keep, bool) or not isinstance(slide_keep, numbers.Integral)
            or not 1 <= slide_keep <= config.block_size):
        raise ValueError(f"slide_keep must be an integer in [1, block_size={config.block_size}], got {slide_keep!r}")
    tokens, was_1d = _check_prompt(idx, config.vocab_size)               # (B, T)
    stop_ids = _check_stop(stop, config.vocab_size)
    steps = stream(model, tokens, int(max_new_tokens), temperature, top_k, top_p, seed, use_cache, int(slide_keep))
    out = collect(model, steps, tokens, stop_ids)
    return out[0] if was_1d else out


# ---------------------------------------------------------------- encoder-decoder (T5)

def stream_encoder_decoder(model, input_ids, attention_mask, max_new_tokens, temperature=1.0, top_k=None,
                           top_p=None, seed=None, use_cache=True):
    """Yield (logits (B, V), token (B,)) per generated token of an encoder-decoder.

    The encoder runs once, here. The decoder starts from
    ``decoder_start_token_id``; with the cache (an ``EncoderDecoderCache``) each
    step feeds one token: its self-attention appends to the cached keys and
    values, its cross-attention reads keys and values computed from the
    encoder's states on the first step. Without it, each step reruns the
    decoder over every token so far (never the encoder). The model provides
    ``encode(ids, mask)`` and ``decode(ids, states, mask, cache=, last_only=)``;
    the caller runs this under ``eval_mode(model)``.
    """
    sampler = sampling.Sampler(temperature, top_k, top_p)
    config = model.config
    states = model.encode(input_ids, attention_mask)                     # (B, Ts, C), once
    cache = EncoderDecoderCache(config.n_layer, capacity=1 + max_new_tokens) if use_cache else None
    rng = backend.host_rng(seed)
    tokens = xp.full((input_ids.shape[0], 1), config.decoder_start_token_id, dtype=xp.int64)   # (B, 1)
    for _ in range(max_new_tokens):
        new = tokens[:, -1:] if use_cache else tokens                    # (B, 1) or (B, t)
        logits = model.decode(new, states, attention_mask, cache=cache, last_only=True).data[:, -1, :]  # (B, V)
        token = sampler.sample(logits, rng)                              # (B,)
        yield logits, token
        tokens = xp.concatenate([tokens, token[:, None].astype(tokens.dtype)], axis=1)


def generate_encoder_decoder(model, input_ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None,
                             seed=None, use_cache=True, attention_mask=None):
    """Translate ``input_ids`` (B, Ts) -> (B, 1 + new): ``decoder_start_token_id`` first, then
    up to ``max_new_tokens`` tokens. A row that produced ``eos_token_id`` is finished: its
    later positions hold ``pad_token_id`` (as Hugging Face's ``generate``); the loop ends when
    every row is finished. ``attention_mask`` (B, Ts): 1 = token, 0 = padding. Every sampler
    of ``minillm.sampling`` works (temperature=0: greedy).
    """
    config = model.config
    _check_max_new_tokens(max_new_tokens)
    sampling.Sampler(temperature, top_k, top_p)                          # settings checked before we start
    if 1 + max_new_tokens > config.n_positions:
        raise ValueError(f"max_new_tokens {max_new_tokens} + the start token exceeds n_positions {config.n_positions}")
    input_ids, was_1d = _check_prompt(input_ids, config.vocab_size)      # (B, Ts)
    if attention_mask is not None:
        attention_mask = xp.asarray(attention_mask)
        attention_mask = attention_mask[None, :] if was_1d and attention_mask.ndim == 1 else attention_mask
    start = xp.full((input_ids.shape[0], 1), config.decoder_start_token_id, dtype=xp.int64)   # (B, 1)
    steps = stream_encoder_decoder(model, input_ids, attention_mask, int(max_new_tokens), temperature,
                                   top_k, top_p, seed, use_cache)   # starts (runs the encoder) inside collect
    out = collect(model, steps, start, (config.eos_token_id,), pad=config.pad_token_id)
    return out[0] if was_1d else out
