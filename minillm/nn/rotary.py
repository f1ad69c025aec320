"""RoPE's tables as a model holds them: cos and sin for every position, made once.

The op (``F.apply_rotary``, its backward, the derivation) is in
``minillm/functional/rotary.py``. This file answers the model's questions:
which frequencies, and which rows of the tables for the tokens at hand.

    f_i = theta^(-2i / D)                     i = 0 .. D/2 - 1, one per pair of channels
    cos[p], sin[p] = cos(p f), sin(p f)       (D,) per position p (each angle twice)
    q', k' = rotate(q, start), rotate(k, start)   tokens at positions start .. start + T - 1

With a KV cache, ``start`` is the number of cached tokens: a key is rotated
once, at its own position, before it is stored.

Llama 3.1/3.2 stretch the context from ``original_max_position_embeddings``
(8192) by remapping the frequencies (``rope_type: "llama3"``). With wavelength
w_i = 2 pi / f_i, L = original_max_position_embeddings and s the factor:

    w_i < L / high_freq_factor       f_i unchanged          (fast pairs: local word order)
    w_i > L / low_freq_factor        f_i / s                (slow pairs: stretched s times)
    in between                       (1 - a) f_i / s + a f_i,  a = (L / w_i - low) / (high - low)

so the slow pairs, which encode long distances, turn s times slower and
positions up to s L look like the positions the model was trained on.
"""
import math

from minillm import functional as F
from minillm.backend import xp
from minillm.functional.rotary import rotary_inv_freq

LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, original_max_position_embeddings):
    """Llama 3's remapped frequencies (see the module docstring); float64 in, float64 out."""
    old_context = original_max_position_embeddings
    wavelen = 2 * math.pi / inv_freq                                       # (D/2,)
    smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    slow = xp.where(wavelen > old_context / low_freq_factor, inv_freq / factor, blended)
    return xp.where(wavelen < old_context / high_freq_factor, inv_freq, slow)


class RotaryEmbedding:
    """cos/sin tables for positions 0 .. max_positions - 1, grown on demand.

    ``scaling`` is None or ``{"rope_type": "llama3", "factor": ..., "low_freq_factor": ...,
    "high_freq_factor": ..., "original_max_position_embeddings": ...}`` (the model's config
    checks it). Not a Module: it holds no parameters, and nothing of it is saved.
    """

    def __init__(self, head_dim, max_positions, theta=10000.0, scaling=None, dtype="float32"):
        self.head_dim, self.max_positions, self.dtype = head_dim, max_positions, dtype
        inv_freq = rotary_inv_freq(head_dim, theta)                        # (D/2,) float64
        if scaling is not None:
            inv_freq = llama3_inv_freq(inv_freq, **{key: scaling[key] for key in LLAMA3_KEYS})
        self.inv_freq = inv_freq
        self.cos = self.sin = xp.zeros((0, head_dim), dtype=dtype)         # (P, D), P grows

    def tables(self, start, stop):
        """cos, sin (stop - start, D) for positions start .. stop - 1."""
        if stop > self.max_positions:
            raise ValueError(f"position {stop - 1} is past the rotary tables' {self.max_positions} positions "
                             f"(max_position_embeddings)")
        if stop > self.cos.shape[0]:  # grow to the next power of two: a long generation refills rarely
            size = min(self.max_positions, 1 << (stop - 1).bit_length())
            self.cos, self.sin = F.rotary_tables(xp.arange(size), self.head_dim, inv_freq=self.inv_freq,
                                                 dtype=self.dtype)
        return self.cos[start:stop], self.sin[start:stop]

    def __call__(self, q, k, start=0):
        """Rotate q (B, H, T, D) and k (B, Hkv, T, D) as the tokens at positions start .. start + T - 1."""
        cos, sin = self.tables(start, start + q.shape[-2])                 # (T, D) each
        return F.apply_rotary(q, cos, sin), F.apply_rotary(k, cos, sin)
