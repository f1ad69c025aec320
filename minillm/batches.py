"""Batches of token ids for pretraining: one long sequence, cut into random windows.

Pretraining is *self-supervised*: the text is its own label. A window of
``block_size + 1`` consecutive token ids gives ``block_size`` training
examples at once:

    window  = ids[i : i + T + 1]
    inputs  = window[:-1]      x_t = ids[i + t]
    targets = window[1:]       y_t = ids[i + t + 1]   (the next token)

so the model learns P(y_t | x_0 ... x_t) at every position t. Feeding the true
previous tokens (never the model's own guesses) is *teacher forcing*.

    text = minillm.corpus.load_corpus()               # the shipped Shakespeare corpus
    train_ids, val_ids = split_ids(tokenizer.encode(text))   # 90 % / 10 %
    x, y = get_batch(train_ids, batch_size, block_size, rng)  # int64 (B, T) each

This is host-side code: plain NumPy, the arrays move to the backend later.
"""
import numpy


def split_ids(ids, val_fraction=0.1):
    """Split a token-id sequence into (train, val) int64 arrays: the first 90 %, the last 10 %.

    A contiguous split (not a shuffle of windows), so no validation window
    overlaps a training window except at the single boundary.
    """
    ids = numpy.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"token ids must be one sequence (1-D), got shape {ids.shape}")
    if ids.size and not numpy.issubdtype(ids.dtype, numpy.integer):
        raise TypeError(f"token ids must be integers, got {ids.dtype}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = int(round(len(ids) * (1.0 - val_fraction)))
    ids = ids.astype(numpy.int64)
    return ids[:n_train], ids[n_train:]


def split_text(text, val_fraction=0.1):
    """(train_text, val_text): the first 90 % of the characters and the last 10 %.

    Cut the text, not the ids, when the tokenizer is itself learned from text
    (BPE): learn it from ``train_text`` alone and encode the two parts
    separately, so that nothing of the validation text shapes the vocabulary.
    With one id per character this is the same cut as ``split_ids``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_train = int(round(len(text) * (1.0 - val_fraction)))
    return text[:n_train], text[n_train:]


def get_batch(data_ids, batch_size, block_size, rng):
    """``batch_size`` random windows of ``data_ids``: int64 inputs and targets, each (B, T).

    ``targets[b, t] == inputs[b, t + 1]`` (shifted by one). Window starts are
    drawn uniformly from [0, len - T - 1] with the numpy Generator ``rng``, so the
    same generator state gives the same batch.
    """
    data_ids = numpy.asarray(data_ids)
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size ({batch_size}) and block_size ({block_size}) must be positive")
    if len(data_ids) < block_size + 1:
        raise ValueError(f"the data has {len(data_ids)} tokens, fewer than block_size + 1 = "
                         f"{block_size + 1}: use a smaller block_size or more text")
    starts = rng.integers(0, len(data_ids) - block_size, size=batch_size)     # (B,)
    offsets = numpy.arange(block_size + 1)                                     # (T+1,)
    windows = data_ids[starts[:, None] + offsets[None, :]].astype(numpy.int64)  # (B, T+1)
    x = numpy.ascontiguousarray(windows[:, :-1])                               # (B, T)
    y = numpy.ascontiguousarray(windows[:, 1:])                                # (B, T)
    return x, y
