"""The cache-blocked fused kernels against their plain NumPy formulas.

GELU (tanh), LayerNorm and attention run their arithmetic in cache-sized pieces
(``minillm.functional.blocked.blockwise``), shared out over threads. Each test
shrinks ``BLOCK`` so that tiny arrays are cut into many pieces (several rows and
a ragged last piece), runs them on one thread or on two (``THREADED``), then
compares with the plain formula kept next to the fused form, and runs a float64
gradient check with a random upstream gradient through the pieces. Causal
attention also runs by query blocks (``QUERY_BLOCK``), shrunk the same way.
"""
import contextlib

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minillm.functional as F
from minillm import Tensor, backend, gradcheck
from minillm.backend import xp
from minillm.functional import attention, blocked, parallel
from minillm.functional.attention import attention_reference
from minillm.functional.elementwise import gelu_tanh_grad_reference, gelu_tanh_reference
from minillm.functional.layer_norm import layer_norm_grad_reference, layer_norm_reference
from tests.strategies import shapes


BLOCKS = pytest.mark.parametrize("block", [None, 5], ids=["whole", "pieces"])  # default, or pieces of ~5


THREADED = pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])


@contextlib.contextmanager
def pieces_on(block, threads, query_block=None):
    """Within: pieces of about ``block`` elements (None: the default) on ``threads`` threads, even
    for tiny arrays, and causal attention by ``query_block`` queries (None: the default)."""
    saved = blocked.BLOCK, parallel.THREADS, parallel.MIN_THREADED, attention.QUERY_BLOCK
    blocked.BLOCK = saved[0] if block is None else block
    parallel.THREADS, parallel.MIN_THREADED = threads, 0               # even tiny arrays are shared out
    attention.QUERY_BLOCK = saved[3] if query_block is None else query_block
    try:
        yield
    finally:
        blocked.BLOCK, parallel.THREADS, parallel.MIN_THREADED, attention.QUERY_BLOCK = saved


def host(x):
    return backend.to_numpy(x.data if isinstance(x, Tensor) else x)


def normal(seed, shape):
    return numpy.random.default_rng(seed).standard_normal(shape)


def test_blockwise_pieces_equal_one_call_and_keep_rows_whole(monkeypatch):
    x = xp.asarray(normal(0, (7, 3)))
    seen = []

    def row_sums(piece, out):
        seen.append(piece.shape)
        out[...] = piece.sum(axis=-1, keepdims=True)

    whole = blocked.blockwise(row_sums, (x,), (xp.empty((7, 1)),), rows=7)[0]
    assert seen == [(7, 3)]
    monkeypatch.setattr(blocked, "BLOCK", 6)
    seen.clear()
    pieces = blocked.blockwise(row_sums, (x.T.T,), (xp.empty((7, 1)),), rows=7)[0]
    assert seen == [(2, 3), (2, 3), (2, 3), (1, 3)] or backend.name == "cupy"
    numpy.testing.assert_array_equal(host(pieces), host(whole))
    with pytest.raises(ValueError, match="C-contiguous"):
        blocked.blockwise(row_sums, (x,), (xp.empty((2, 7)).T,), rows=7)


@THREADED
@BLOCKS
@settings(max_examples=15)
@given(shape=shapes(min_dims=0, max_dims=3), seed=st.integers(0, 2**16))
def test_gelu_kernels_equal_the_formula(shape, seed, block, threads):
    with pieces_on(block, threads):
        x, g = normal(seed, shape) * 3, normal(seed + 1, shape)
        t = Tensor(x.copy(), requires_grad=True)
        y = F.gelu(t)
        y.backward(g)
        numpy.testing.assert_allclose(host(y), host(gelu_tanh_reference(xp.asarray(x))), rtol=1e-12, atol=1e-14)
        numpy.testing.assert_allclose(host(t.grad), host(gelu_tanh_grad_reference(xp.asarray(x), xp.asarray(g))),
                                      rtol=1e-12, atol=1e-14)
        assert gradcheck(F.gelu, Tensor(x, requires_grad=True), seed=seed)


@THREADED
@BLOCKS
@settings(max_examples=15)
@given(shape=shapes(min_dims=1, max_dims=3, min_side=2), seed=st.integers(0, 2**16), affine=st.booleans())
def test_layer_norm_kernels_equal_the_formula(shape, seed, affine, block, threads):
    with pieces_on(block, threads):
        x, g = normal(seed, shape), normal(seed + 1, shape)
        w, b = (normal(seed + 2, shape[-1:]), normal(seed + 3, shape[-1:])) if affine else (None, None)
        inputs = [Tensor(a.copy(), requires_grad=True) for a in (x, w, b) if a is not None]
        y = F.layer_norm(*inputs)
        y.backward(g)
        as_xp = (lambda a: None if a is None else xp.asarray(a))
        expected_y = layer_norm_reference(xp.asarray(x), as_xp(w), as_xp(b), 1e-5)
        expected = layer_norm_grad_reference(xp.asarray(x), as_xp(w), xp.asarray(g), 1e-5)
        numpy.testing.assert_allclose(host(y), host(expected_y), rtol=1e-10, atol=1e-12)
        for tensor, want in zip(inputs, expected):
            numpy.testing.assert_allclose(host(tensor.grad), host(want), rtol=1e-9, atol=1e-11)
        fresh = [Tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
        # atol 1e-6: a row of nearly equal numbers (variance ~1e-3, seen with seed 1493) curves so
        # sharply that central differences miss by ~1.5e-8 where the gradient reaches ~10 (the formula
        # agrees with a complex-step derivative to 1e-13 there)
        assert gradcheck(F.layer_norm, *fresh, seed=seed, atol=1e-6)


@THREADED
@pytest.mark.parametrize("query_block", [None, 2], ids=["one-query-block", "query-blocks-of-2"])
@BLOCKS
@settings(max_examples=10)
@given(batch=st.integers(1, 3), heads=st.sampled_from([(1, 1), (2, 2), (4, 2)]), t=st.integers(1, 5),
       prefix=st.integers(0, 3), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_pieces_equal_the_formula(batch, heads, t, prefix, causal, seed, block, query_block, threads):
    with pieces_on(block, threads, query_block):
        n_head, n_kv = heads
        q = normal(seed, (batch, n_head, t, 3))                        # keys: a cached prefix, then t more
        k, v = normal(seed + 1, (batch, n_kv, prefix + t, 3)), normal(seed + 2, (batch, n_kv, prefix + t, 3))
        y = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
        repeat = n_head // n_kv                                        # the plain formula wants every head
        expected = attention_reference(xp.asarray(q), xp.asarray(numpy.repeat(k, repeat, axis=1)),
                                                 xp.asarray(numpy.repeat(v, repeat, axis=1)), causal=causal)
        numpy.testing.assert_allclose(host(y), host(expected), rtol=1e-10, atol=1e-12)
        tensors = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, causal=causal), *tensors, seed=seed)


def test_attention_dropout_pieces_draw_the_same_masks():
    """Dropout masks are drawn whole, so pieces, threads and query blocks use the same ones."""
    q, k, v = (Tensor(normal(s, (2, 2, 6, 4)), requires_grad=True) for s in (0, 1, 2))
    g = normal(3, (2, 2, 6, 4))
    results = []
    for block, threads, query_block in ((None, 1, None), (7, 1, None), (7, 2, 4), (None, 2, 1)):
        with pieces_on(block, threads, query_block):
            for t in (q, k, v):
                t.grad = None
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, rng=backend.device_rng(5))
            y.backward(g)
        results.append([host(y)] + [host(t.grad) for t in (q, k, v)])
    for other in results[1:]:
        for whole, pieces in zip(results[0], other):
            numpy.testing.assert_allclose(pieces, whole, rtol=1e-12, atol=1e-14)


def test_whole_gpt_gradient_through_the_pieces():
    """A tiny float64 GPT with every blocked kernel cut into pieces: gradients still match
    central differences, element by element, on parameters of each kind."""
    from minillm.models import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, dtype="float64"), seed=0)
    idx = numpy.random.default_rng(6).integers(0, 7, size=(2, 6))
    with pieces_on(5, 2, query_block=4):
        for name in ("h.0.attn.c_attn.weight", "h.1.ln_1.bias", "h.1.mlp.c_fc.bias", "ln_f.weight"):
            p = dict(model.named_parameters())[name]
            model.zero_grad()
            assert gradcheck(lambda _: model(idx), p, seed=7, rtol=1e-5)
