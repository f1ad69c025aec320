"""The KV cache: keys and values of tokens already seen, kept between steps.

At inference a GPT generates one token at a time. Without a cache, step t
recomputes keys and values for all t tokens of the prefix; with it, step t
computes them for the one new token and appends them to per-layer buffers.
In causal attention a token's key and value depend only on the tokens before
it, so the cached ones are exactly what a full recomputation would produce.

    cache = KVCache(n_layer)
    logits = model(prompt_ids, cache=cache)        # prefill: fills every layer
    logits = model(next_id[:, None], cache=cache)  # one token: reads and extends

Each layer calls ``cache.update(layer, k, v)`` with its new keys and values
(B, n_head, T_new, head_dim) and attends over what it returns: the whole
prefix followed by the new ones. The model calls ``cache.advance(T_new)`` once
all layers are done. ``cache.position`` is the absolute position of the first
new token (the positional-embedding offset).

Memory: 2 (keys and values) * n_layer * B * T * n_embd numbers, because
n_head * head_dim = n_embd; ``nbytes()`` returns exactly that times the
itemsize. Learned absolute positions (GPT-2's wpe) mean a cached key belongs
to its position: when the context window slides, the cache is ``reset()``
and refilled (see ``minillm.generation``).
"""
from minillm.backend import xp


class KVCache:
    """Per-layer key/value buffers that grow along the time axis.

    Buffers are preallocated in chunks (or once, for ``capacity`` tokens), so
    appending one token is a copy of that token's keys and values, not of the
    whole prefix.
    """

    def __init__(self, n_layer, chunk=256, capacity=None):
        if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
            raise ValueError(f"n_layer must be a positive integer, got {n_layer!r}")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1):
            raise ValueError(f"capacity must be a positive integer or None, got {capacity!r}")
        self.n_layer = n_layer
        self.chunk = chunk
        self.capacity = capacity         # first allocation, in tokens (e.g. block_size)
        self.keys = [None] * n_layer     # each (B, H, allocated, D)
        self.values = [None] * n_layer
        self.position = 0                # tokens already stored in every layer

    def __repr__(self):
        return f"KVCache(n_layer={self.n_layer}, position={self.position}, nbytes={self.nbytes()})"

    def _check(self, layer, k, v):
        """Raise on a bad layer index or shapes; return the layer's buffer if it can be reused."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layer:
            raise IndexError(f"layer {layer!r} is outside [0, {self.n_layer})")
        if k.ndim != 4 or k.shape != v.shape:
            raise ValueError(f"keys {tuple(k.shape)} and values {tuple(v.shape)} must both be "
                             "(B, n_head, T_new, head_dim)")
        buffer = self.keys[layer]
        if buffer is None:
            return None
        if buffer.shape[:2] != k.shape[:2] or buffer.shape[3] != k.shape[3] or buffer.dtype != k.dtype:
            if self.position == 0:
                return None  # a fresh start with another batch or model: allocate anew
            raise ValueError(f"layer {layer} holds {self.position} cached tokens of (B, H, D) = "
                             f"{(buffer.shape[0], buffer.shape[1], buffer.shape[3])} {buffer.dtype}, got keys "
                             f"{tuple(k.shape)} {k.dtype}; call reset() before changing batch or model")
        return buffer

    def update(self, layer, k, v):
        """Store k, v (B, H, T_new, D) after the cached ones; return all keys and values
        (B, H, position + T_new, D) as arrays (views into the buffers)."""
        buffer = self._check(layer, k, v)
        start, stop = self.position, self.position + k.shape[-2]
        if buffer is None or buffer.shape[-2] < stop:
            size = -(-stop // self.chunk) * self.chunk                  # whole chunks
            if buffer is None and self.capacity is not None and stop <= self.capacity:
                size = self.capacity
            grown_k = xp.empty(k.shape[:-2] + (size, k.shape[-1]), dtype=k.dtype)  # (B, H, size, D)
            grown_v = xp.empty_like(grown_k)
            if buffer is not None and start:  # one copy of the prefix per chunk, not per token
                grown_k[..., :start, :] = buffer[..., :start, :]
                grown_v[..., :start, :] = self.values[layer][..., :start, :]
            self.keys[layer], self.values[layer] = grown_k, grown_v
        self.keys[layer][..., start:stop, :] = k
        self.values[layer][..., start:stop, :] = v
        return self.keys[layer][..., :stop, :], self.values[layer][..., :stop, :]

    def advance(self, steps):
        """Called by the model after every layer has stored ``steps`` new tokens."""
        self.position += steps

    def reset(self):
        """Forget everything (e.g. before re-prefilling a slid window). Keeps the buffers
        when the next use has the same shape, so refilling allocates nothing."""
        self.position = 0

    def clear(self):
        """Forget everything and free the buffers."""
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


class EncoderDecoderCache(KVCache):
    """The decoder's cache in an encoder-decoder (T5): a ``KVCache`` for its causal
    self-attention, plus each layer's cross-attention keys and values.

    Cross-attention reads the encoder's states, which do not change while the
    decoder generates: each layer's K = states W_k and V = states W_v
    (B, H, Ts, D) are computed on the first step and only read afterwards.
    Memory: the self-attention part as ``KVCache``, plus 2 * n_layer * B * Ts * H * D.
    """

    def __init__(self, n_layer, chunk=256, capacity=None):
        super().__init__(n_layer, chunk, capacity)
        self.cross = [None] * n_layer    # each (keys, values) (B, H, Ts, D) once computed

    def cross_attention(self, layer, compute):
        """Layer ``layer``'s cross-attention (keys, values): ``compute()`` on first use, then the stored pair."""
        if self.cross[layer] is None:
            self.cross[layer] = compute()
        return self.cross[layer]

    def clear(self):
        super().clear()
        self.cross = [None] * self.n_layer
