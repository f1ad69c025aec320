"""The blocks every model family is assembled from: ``nn.MultiHeadAttention`` and ``nn.MLP``.

A Llama-style subclass (separate q/k/v/o projections, grouped KV heads) and a
BERT-style one (no causal mask, a padding bias) are written here in a few
lines each and compared with a brute-force NumPy computation; the KV-cache
path must give the full pass's outputs; head repetition must pass gradient
checks.
"""
import math

import numpy
import pytest

import minillm.functional as F
from minillm import Tensor, backend, gradcheck, no_grad
from minillm.kvcache import KVCache
from minillm.nn import MLP, Linear, MultiHeadAttention, merge_heads, repeat_kv_heads, split_heads


class SeparateProjections(MultiHeadAttention):
    """Llama's layout: q_proj, k_proj, v_proj (n_kv_head heads), o_proj; no biases."""

    def __init__(self, n_embd, n_head, n_kv_head, causal=True, seed=0):
        super().__init__(n_head, n_kv_head, causal=causal)
        D = n_embd // n_head
        self.q_proj = Linear(n_embd, n_head * D, False, seed, 0.5, "float64")
        self.k_proj = Linear(n_embd, n_kv_head * D, False, seed + 1, 0.5, "float64")
        self.v_proj = Linear(n_embd, n_kv_head * D, False, seed + 2, 0.5, "float64")
        self.o_proj = Linear(n_head * D, n_embd, False, seed + 3, 0.5, "float64")

    def project(self, x):
        return (split_heads(self.q_proj(x), self.n_head), split_heads(self.k_proj(x), self.n_kv_head),
                split_heads(self.v_proj(x), self.n_kv_head))

    def output(self, y):
        return self.o_proj(y)


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def brute_force(block, x, causal, key_bias=None):
    """Every head, query and key in plain NumPy loops."""
    wq, wk, wv, wo = (host(getattr(block, n).weight) for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    H, Hkv = block.n_head, block.n_kv_head
    B, T, C = x.shape
    D = C // H
    out = numpy.zeros((B, T, H * D))
    for b in range(B):
        q, k, v = x[b] @ wq, x[b] @ wk, x[b] @ wv
        for h in range(H):
            g = h // (H // Hkv)                         # the key/value head this query head reads
            for i in range(T):
                s = numpy.array([q[i, h * D:(h + 1) * D] @ k[j, g * D:(g + 1) * D] / math.sqrt(D)
                                 + (0.0 if key_bias is None else key_bias[b, j]) for j in range(T)])
                if causal:
                    s[i + 1:] = -numpy.inf
                p = numpy.exp(s - s.max())
                p /= p.sum()
                out[b, i, h * D:(h + 1) * D] = p @ v[:, g * D:(g + 1) * D]
    return out @ wo


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_core_with_grouped_kv_heads_matches_brute_force(n_kv_head, causal):
    block = SeparateProjections(8, 4, n_kv_head, causal=causal)
    x = numpy.random.default_rng(0).standard_normal((2, 5, 8))
    numpy.testing.assert_allclose(host(block(Tensor(x))), brute_force(block, x, causal), rtol=1e-10, atol=1e-12)


def test_padding_bias_passes_through_the_attention_options():
    """BERT's padding mask: an additive -inf bias on the padded keys, via ``attend``'s options."""
    block = SeparateProjections(8, 2, 2, causal=False)
    x = numpy.random.default_rng(1).standard_normal((2, 4, 8))
    keep = numpy.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    key_bias = numpy.where(keep == 1, 0.0, -numpy.inf)                   # (B, Tk)
    y = block(Tensor(x), bias=key_bias[:, None, None, :])                # (B, T, C)
    numpy.testing.assert_allclose(host(y), brute_force(block, x, False, key_bias), rtol=1e-10, atol=1e-12)
    q, k, v = block.project(Tensor(x))                                   # the same from the pieces
    pieces = block.output(merge_heads(block.attend(q, k, v, bias=key_bias[:, None, None, :])))
    numpy.testing.assert_array_equal(host(pieces), host(y))


def test_kv_cache_path_equals_the_full_pass_with_grouped_heads():
    block = SeparateProjections(8, 4, 2, causal=True)
    block.layer_index = 0
    x = numpy.random.default_rng(2).standard_normal((1, 6, 8))
    with no_grad():
        full = host(block(Tensor(x)))
        cache = KVCache(1)
        steps = []
        for start, stop in ((0, 3), (3, 4), (4, 6)):
            steps.append(host(block(Tensor(x[:, start:stop]), cache)))
            cache.advance(stop - start)
    numpy.testing.assert_allclose(numpy.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)


def test_repeat_kv_heads_gradient_sums_over_the_query_heads_it_serves():
    x = Tensor(numpy.random.default_rng(3).standard_normal((2, 2, 3, 2)), requires_grad=True)
    assert gradcheck(lambda t: repeat_kv_heads(t, 3), x, seed=1)
    y = host(repeat_kv_heads(x, 3))
    assert y.shape == (2, 6, 3, 2)
    numpy.testing.assert_array_equal(y[:, 3], host(x)[:, 1])


def test_attention_core_needs_its_family_projections_and_a_divisor():
    with pytest.raises(NotImplementedError, match="MultiHeadAttention must define project"):
        MultiHeadAttention(2)(Tensor(numpy.zeros((1, 2, 4))))
    with pytest.raises(ValueError, match=r"n_kv_head \(3\) must be a positive divisor of n_head \(4\)"):
        MultiHeadAttention(4, 3)


def test_mlp_is_c_proj_of_activation_of_c_fc_with_gpt2_names():
    mlp = MLP(4, 16, rng=0, dtype="float64")
    assert [n for n, _ in mlp.named_parameters()] == ["c_fc.weight", "c_fc.bias", "c_proj.weight", "c_proj.bias"]
    x = Tensor(numpy.random.default_rng(4).standard_normal((2, 3, 4)))
    numpy.testing.assert_allclose(host(mlp(x)), host(mlp.c_proj(F.gelu(mlp.c_fc(x)))), rtol=1e-12)
    relu = MLP(4, 16, rng=0, dtype="float64", activation=F.relu)
    numpy.testing.assert_allclose(host(relu(x)), host(relu.c_proj(F.relu(relu.c_fc(x)))), rtol=1e-12)
