"""The masked-language-model objective: hide some tokens, predict them from both sides.

A causal LM predicts every next token. An encoder sees the whole sequence at
once, so "predict token t" would be copying: the token must be hidden first.
BERT's recipe (Devlin et al. 2019, section 3.1), done here on the host:

1. In each row choose round(15 %) of the positions that may be chosen: not a
   special token ([CLS], [SEP], [PAD], ...) and not padding. The choice is
   uniform without replacement, as the original ``create_pretraining_data.py``
   (at least one position when the row has any).
2. Replace each chosen token: with [MASK] 80 % of the time, with a random
   ordinary token 10 %, and leave it unchanged 10 %.
3. The targets are the original tokens at the chosen positions and
   ``ignore_index`` (-100) everywhere else, so ``F.cross_entropy`` counts only
   the chosen positions: the others add nothing to the loss or the gradient.

Why not always [MASK]? [MASK] never occurs when the model is finetuned or used,
so a model that only learned "predict at [MASK]" would have no reason to build
a good representation of an ordinary token. The 10 % random tokens make every
position a possible error to correct; the 10 % unchanged ones bias the
representation towards the real token. Every chosen position is predicted,
whichever of the three it became.

Everything is drawn from one ``numpy.random.Generator``: the same seed gives
the same masks. Inputs and outputs are host int64 arrays (B, T).
"""
import numpy

IGNORE_INDEX = -100


def mask_tokens(ids, rng, mask_id, vocab_size, special_ids, attention_mask=None, mlm_probability=0.15,
                ignore_index=IGNORE_INDEX):
    """(inputs, targets) for a batch of token ids (B, T), BERT's 15 % and 80/10/10 rule.

    ids             int array (B, T)
    rng             a numpy Generator (the only source of randomness)
    mask_id         the [MASK] id
    vocab_size      V; random replacements are drawn uniformly from the ids in [0, V)
                    that are not in ``special_ids``
    special_ids     ids never chosen (and never drawn as random replacements); include [MASK]
    attention_mask  (B, T) 1 = real token, 0 = padding (never chosen); None: all real
    """
    ids = numpy.asarray(ids)
    if ids.ndim != 2 or not numpy.issubdtype(ids.dtype, numpy.integer):
        raise ValueError(f"ids must be a 2-D integer array (batch, time), got {ids.dtype} of shape {ids.shape}")
    if not 0.0 < mlm_probability <= 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token id {ids.min() if ids.min() < 0 else ids.max()} is outside the vocabulary "
                         f"[0, {vocab_size})")
    special = numpy.asarray(sorted(set(int(i) for i in special_ids)), dtype=numpy.int64)
    if mask_id not in special:
        raise ValueError(f"special_ids must include mask_id ({mask_id}): [MASK] is never a target")
    ordinary = numpy.setdiff1d(numpy.arange(vocab_size), special)                # random replacements
    if len(ordinary) == 0:
        raise ValueError("every id is special: there is no ordinary token to mask or draw")
    eligible = ~numpy.isin(ids, special)                                         # (B, T)
    if attention_mask is not None:
        attention_mask = numpy.asarray(attention_mask)
        if attention_mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {attention_mask.shape}; expected {ids.shape} like ids")
        eligible &= attention_mask.astype(bool)

    chosen = choose_positions(eligible, rng, mlm_probability)                    # (B, T) bool
    action = rng.random(ids.shape)                                               # (B, T) in [0, 1)
    random_tokens = ordinary[rng.integers(0, len(ordinary), size=ids.shape)]    # (B, T)
    inputs = ids.astype(numpy.int64, copy=True)
    inputs[chosen & (action < 0.8)] = mask_id                                    # 80 %: [MASK]
    swap = chosen & (action >= 0.8) & (action < 0.9)                             # 10 %: a random token
    inputs[swap] = random_tokens[swap]                                           # 10 %: unchanged
    targets = numpy.where(chosen, ids, ignore_index).astype(numpy.int64)
    return inputs, targets


def choose_positions(eligible, rng, probability=0.15):
    """(B, T) bool: in each row, k = max(1, round(probability * n)) of its n eligible
    positions, uniformly without replacement (none when n = 0).

    One uniform key per position; ineligible ones get +inf; a row's k smallest keys win."""
    n = eligible.sum(axis=1)                                                     # (B,)
    k = numpy.where(n > 0, numpy.maximum(1, numpy.floor(probability * n + 0.5)), 0).astype(numpy.int64)
    keys = numpy.where(eligible, rng.random(eligible.shape), numpy.inf)          # (B, T)
    ranks = numpy.argsort(numpy.argsort(keys, axis=1, kind="stable"), axis=1)   # rank of each key in its row
    return ranks < k[:, None]


def masked_accuracy(logits, targets, ignore_index=IGNORE_INDEX):
    """(correct, counted): argmax predictions equal to the targets at the counted positions.

    logits (B, T, V) host array; targets (B, T)."""
    targets = numpy.asarray(targets)
    counted = targets != ignore_index
    correct = (numpy.asarray(logits).argmax(axis=-1) == targets) & counted
    return int(correct.sum()), int(counted.sum())


def mlm_batch(data_ids, batch_size, seq_len, rng, cls_id, sep_id, mask_id, vocab_size, special_ids,
              mlm_probability=0.15):
    """A pretraining batch from a long id stream: ``batch_size`` random windows of
    ``seq_len - 2`` tokens, each as [CLS] window [SEP], then ``mask_tokens``.
    Returns (inputs, targets), host int64 (B, seq_len); no padding is needed."""
    data_ids = numpy.asarray(data_ids)
    if seq_len < 3 or len(data_ids) < seq_len:
        raise ValueError(f"seq_len ({seq_len}) must be at least 3 and at most the data's {len(data_ids)} tokens")
    starts = rng.integers(0, len(data_ids) - seq_len + 3, size=batch_size)            # (B,)
    windows = data_ids[starts[:, None] + numpy.arange(seq_len - 2)[None, :]]           # (B, T - 2)
    column = numpy.ones((batch_size, 1), dtype=numpy.int64)
    ids = numpy.concatenate([cls_id * column, windows, sep_id * column], axis=1)      # (B, T)
    return mask_tokens(ids, rng, mask_id, vocab_size, special_ids, mlm_probability=mlm_probability)


def fill_mask(model, ids, mask_id, top_k=5, attention_mask=None):
    """The ``top_k`` most probable tokens at each [MASK] of one sequence ``ids`` (list or 1-D array).

    Returns [(position, [(token id, probability), ...]), ...], one entry per [MASK],
    computed in eval mode without a graph (the model's training mode is restored)."""
    from minillm.autograd import no_grad
    from minillm.backend import to_numpy

    ids = numpy.asarray(ids, dtype=numpy.int64)[None, :]                               # (1, T)
    positions = numpy.flatnonzero(ids[0] == mask_id)
    if len(positions) == 0:
        raise ValueError("the text has no [MASK] token to fill")
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            logits = to_numpy(model(ids, attention_mask).data)[0, positions]          # (M, V)
    finally:
        model.train(was_training)
    probs = numpy.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    best = numpy.argsort(-probs, axis=-1, kind="stable")[:, :top_k]                   # (M, k)
    return [(int(p), [(int(i), float(probs[m, i])) for i in best[m]]) for m, p in enumerate(positions)]
