"""The KV cache: keys and values of tokens already seen, kept between steps.

At inference a GPT generates one token at a time. Without a cache, step t
recomputes keys and values for all t tokens of the prefix; with it, step t
computes them for the one new token and appends them to per-layer buffers.

    cache = KVCache(n_layer)
    logits = model(prompt_ids, cache=cache)        # prefill: fills every layer
    logits = model(next_id[:, None], cache=cache)  # one token: reads and extends

Each layer calls ``cache.update(layer, k, v)`` with its new keys and values
(B, n_head, T_new, head_dim) and attends over what it returns: the whole
prefix followed by the new ones. The model calls ``cache.advance(T_new)`` once
all layers are done. ``cache.position`` is the absolute position of the first
new token (the positional-embedding offset).
"""
from minillm.backend import xp


class KVCache:
    """Per-layer key/value buffers that grow along the time axis.

    Buffers are preallocated in chunks, so appending one token is a copy of
    that token's keys and values, not of the whole prefix.
    """

    def __init__(self, n_layer, chunk=256):
        self.n_layer = n_layer
        self.chunk = chunk
        self.keys = [None] * n_layer     # each (B, H, capacity, D)
        self.values = [None] * n_layer
        self.position = 0                # tokens already stored in every layer

    def update(self, layer, k, v):
        """Store k, v (B, H, T_new, D) after the cached ones; return all keys and values
        (B, H, position + T_new, D) as arrays (views into the buffers)."""
        start, stop = self.position, self.position + k.shape[-2]
        buffer = self.keys[layer]
        if buffer is None or buffer.shape[-2] < stop:
            capacity = ((stop + self.chunk - 1) // self.chunk) * self.chunk
            grown_k = xp.empty(k.shape[:-2] + (capacity, k.shape[-1]), dtype=k.dtype)
            grown_v = xp.empty_like(grown_k)
            if buffer is not None:
                grown_k[..., :start, :] = self.keys[layer][..., :start, :]
                grown_v[..., :start, :] = self.values[layer][..., :start, :]
            self.keys[layer], self.values[layer] = grown_k, grown_v
        self.keys[layer][..., start:stop, :] = k
        self.values[layer][..., start:stop, :] = v
        return self.keys[layer][..., :stop, :], self.values[layer][..., :stop, :]

    def advance(self, steps):
        """Called by the model after every layer has stored ``steps`` new tokens."""
        self.position += steps

    def reset(self):
        """Forget everything (e.g. before re-prefilling a slid window)."""
        self.keys = [None] * self.n_layer
        self.values = [None] * self.n_layer
        self.position = 0

    def nbytes(self):
        """Bytes of keys and values actually stored: 2 * n_layer * B * T * n_embd * itemsize."""
        total = 0
        for k in self.keys:
            if k is not None:
                b, h, _, d = k.shape
                total += 2 * b * h * self.position * d * k.itemsize
        return total

    def allocated_bytes(self):
        """Bytes the buffers hold, including the unused tail of the last chunk."""
        return sum(k.nbytes + v.nbytes for k, v in zip(self.keys, self.values) if k is not None)
