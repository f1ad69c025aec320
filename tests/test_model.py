"""GPTConfig validation and the GPT: names, counts, init, gradients, causality, KV cache, overfitting."""
import json
import math

import numpy
import pytest

from minillm import backend, no_grad
from minillm import functional as F
from minillm.kvcache import KVCache
from minillm.models import GPT, GPTConfig
from minillm.optim import AdamW

TINY = dict(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8)


def tiny(seed=0, **overrides):
    """The tiny float64 GPT of the gradient checks (vocab 7, block 6, 2 layers, 2 heads, width 8)."""
    return GPT(GPTConfig(**{**TINY, "dtype": "float64", **overrides}), seed=seed)


def ids(rng, shape, vocab=7):
    return rng.integers(0, vocab, size=shape)


def logits_np(model, idx, **kwargs):
    return backend.to_numpy(model(idx, **kwargs).data)


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("overrides, error, words", [
    (dict(n_embd=30, n_head=4), ValueError, "n_embd (30) must be divisible by n_head (4)"),
    (dict(vocab_size=0), ValueError, "vocab_size must be positive, got 0"),
    (dict(block_size=-3), ValueError, "block_size must be positive, got -3"),
    (dict(n_layer=2.0), TypeError, "n_layer must be an integer"),
    (dict(n_head=True), TypeError, "n_head must be an integer"),
    (dict(dropout=1.0), ValueError, "dropout must be in [0, 1), got 1.0"),
    (dict(dropout=-0.1), ValueError, "dropout must be in [0, 1)"),
    (dict(bias="yes"), TypeError, "bias must be True or False"),
    (dict(dtype="float16"), ValueError, "dtype must be one of"),
])
def test_bad_config_names_the_field(overrides, error, words):
    with pytest.raises(error) as info:
        GPTConfig(**{**TINY, **overrides})
    assert words in str(info.value)


def test_config_round_trips_through_json():
    config = GPTConfig(**TINY, dropout=0.1, bias=False, dtype="float64")
    data = json.loads(json.dumps(config.to_dict()))
    assert GPTConfig.from_dict(data) == config
    assert config.head_dim == 4
    with pytest.raises(ValueError, match=r"unknown fields \['n_ctx'\]"):
        GPTConfig.from_dict({**data, "n_ctx": 6})
    with pytest.raises(ValueError, match=r"missing fields \['n_head'\]"):
        GPTConfig.from_dict({k: v for k, v in data.items() if k != "n_head"})


# ---------------------------------------------------------------- names, counts, init

def expected_count(V, T, L, C, bias=True):
    """GPT-2's parameter count by hand: embeddings, L blocks, the final LayerNorm; lm_head is wte."""
    b = 1 if bias else 0
    per_block = C + C * b                        # ln_1 (weight, bias)
    per_block += 3 * C * C + 3 * C * b           # c_attn
    per_block += C * C + C * b                   # attn.c_proj
    per_block += C + C * b                       # ln_2
    per_block += 4 * C * C + 4 * C * b           # c_fc
    per_block += 4 * C * C + C * b               # mlp.c_proj
    return V * C + T * C + L * per_block + (C + C * b)


def test_expected_count_formula_gives_gpt2_small():
    assert expected_count(50257, 1024, 12, 768) == 124_439_808    # GPT-2 "124M"


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_names_shapes_and_count(bias):
    model = GPT(GPTConfig(vocab_size=11, block_size=5, n_layer=3, n_head=2, n_embd=6, bias=bias))
    shapes = {name: p.shape for name, p in model.named_parameters()}
    want = {"wte.weight": (11, 6), "wpe.weight": (5, 6)}
    for i in range(3):
        want.update({f"h.{i}.ln_1.weight": (6,), f"h.{i}.attn.c_attn.weight": (6, 18),
                     f"h.{i}.attn.c_proj.weight": (6, 6), f"h.{i}.ln_2.weight": (6,),
                     f"h.{i}.mlp.c_fc.weight": (6, 24), f"h.{i}.mlp.c_proj.weight": (24, 6)})
        if bias:
            want.update({f"h.{i}.ln_1.bias": (6,), f"h.{i}.attn.c_attn.bias": (18,),
                         f"h.{i}.attn.c_proj.bias": (6,), f"h.{i}.ln_2.bias": (6,),
                         f"h.{i}.mlp.c_fc.bias": (24,), f"h.{i}.mlp.c_proj.bias": (6,)})
    want["ln_f.weight"] = (6,)
    if bias:
        want["ln_f.bias"] = (6,)
    assert shapes == want
    assert list(shapes)[:4] == ["wte.weight", "wpe.weight", "h.0.ln_1.weight",
                                "h.0.ln_1.bias" if bias else "h.0.attn.c_attn.weight"]
    assert model.num_parameters() == expected_count(11, 5, 3, 6, bias)
    assert model.num_parameters(non_embedding=True) == expected_count(11, 5, 3, 6, bias) - 5 * 6
    assert list(model.state_dict()) == list(shapes)


def test_lm_head_is_tied_to_wte():
    model = tiny()
    names = [name for name, _ in model.named_parameters()]
    assert not any("lm_head" in name for name in names)
    assert sum(p is model.wte.weight for p in model.parameters()) == 1
    # tokens 0 and 1 only: rows of other tokens get gradient only through the output layer
    idx = numpy.array([[0, 1, 0, 1]])
    logits, loss = model(idx, numpy.array([[1, 0, 1, 0]]))
    loss.backward()
    grad = backend.to_numpy(model.wte.weight.grad)
    assert numpy.abs(grad[2:]).min() > 0


def final_hidden(model, idx):
    """The final hidden states (B, T, C) of ``model`` as a constant, for the tying test."""
    with no_grad():
        x = model.wte(idx) + model.wpe(numpy.arange(idx.shape[1]))
        for block in model.h:
            x = block(x)
        return model.ln_f(x).data


def test_tied_gradient_is_the_sum_of_both_uses():
    model = tiny()
    rng = numpy.random.default_rng(3)
    idx = ids(rng, (2, 5))
    upstream = rng.standard_normal((2, 5, 7))
    model(idx).backward(upstream)
    total = backend.to_numpy(model.wte.weight.grad)
    # output use alone: dL/dW = G^T h (V, C) with h the final hidden states
    h = backend.to_numpy(final_hidden(model, idx)).reshape(-1, 8)
    output_part = upstream.reshape(-1, 7).T @ h
    embedding_part = total - output_part
    # embedding use only touches rows of tokens that occur in idx
    unused = sorted(set(range(7)) - set(idx.reshape(-1).tolist()))
    assert numpy.abs(embedding_part[unused]).max() < 1e-12
    assert numpy.abs(embedding_part[idx[0, 0]]).max() > 1e-6


def test_initialisation_follows_gpt2():
    config = GPTConfig(vocab_size=300, block_size=64, n_layer=4, n_head=4, n_embd=64)
    model = GPT(config, seed=1)
    state = model.state_dict()
    assert all(a.dtype == numpy.float32 for a in state.values())
    for name, value in state.items():
        if name.endswith(".bias"):
            assert not value.any(), name
        elif ".ln_" in name or name.startswith("ln_f"):
            assert (value == 1).all(), name
        else:
            std = 0.02 / math.sqrt(2 * 4) if name.endswith("c_proj.weight") else 0.02
            assert abs(value.mean()) < 0.1 * std, name
            assert abs(value.std() / std - 1) < 0.05, name
    again = GPT(config, seed=1).state_dict()
    other = GPT(config, seed=2).state_dict()
    assert all((again[k] == state[k]).all() for k in state)
    assert not (other["wte.weight"] == state["wte.weight"]).all()


# ---------------------------------------------------------------- forward API and errors

def test_forward_returns_logits_or_logits_and_loss():
    model = tiny()
    rng = numpy.random.default_rng(0)
    idx, targets = ids(rng, (3, 6)), ids(rng, (3, 6))
    logits = model(idx)
    assert logits.shape == (3, 6, 7) and logits.dtype == numpy.float64
    again, loss = model(idx, targets)
    assert (again.data == logits.data).all()
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-12)
    from minillm.autograd import Tensor
    assert (model(Tensor(idx)).data == logits.data).all()   # a Tensor of ids works too


@pytest.mark.parametrize("idx, error, words", [
    (numpy.array([[1.0, 2.0]]), TypeError, "token ids must be integers, got float64"),
    (numpy.array([[1, 7]]), ValueError, "token id 7 is outside the vocabulary [0, 7)"),
    (numpy.array([[-1, 2]]), ValueError, "token id -1 is outside the vocabulary [0, 7)"),
    (numpy.zeros((1, 7), dtype=numpy.int64), ValueError, "sequence length 7 exceeds block_size 6"),
    (numpy.array([1, 2, 3]), ValueError, "idx must be a 2-D array (batch, time) of token ids, got shape (3)"),
    (numpy.zeros((2, 0), dtype=numpy.int64), ValueError, "sequence length 0"),
])
def test_bad_idx_gives_a_clear_error(idx, error, words):
    with pytest.raises(error) as info:
        tiny()(idx)
    assert words in str(info.value)


def test_causal_a_token_changes_only_later_logits():
    model = tiny()
    rng = numpy.random.default_rng(1)
    idx = ids(rng, (2, 6))
    base = logits_np(model, idx)
    for t in range(6):
        changed = idx.copy()
        changed[:, t] = (changed[:, t] + 1) % 7
        out = logits_np(model, changed)
        assert numpy.array_equal(out[:, :t], base[:, :t])
        assert numpy.abs(out[:, t:] - base[:, t:]).max() > 1e-6


def test_dropout_only_in_training_mode():
    model = tiny(dropout=0.3)
    reference = tiny()                          # same seed, same weights, no dropout
    idx = ids(numpy.random.default_rng(2), (2, 6))
    model.eval()
    assert numpy.array_equal(logits_np(model, idx), logits_np(reference, idx))
    model.train()
    first, second = logits_np(model, idx), logits_np(model, idx)
    assert not numpy.allclose(first, second)             # fresh masks each call
    assert numpy.array_equal(first, logits_np(tiny(dropout=0.3), idx))  # same seed, same masks


# ---------------------------------------------------------------- gradients

def _directional_check(model, loss_fn, rng, eps=1e-6, rtol=1e-6):
    """For every parameter p and a random direction d: <dL/dp, d> = (L(p + eps d) - L(p - eps d)) / 2 eps."""
    model.zero_grad()
    loss_fn().backward()
    for name, p in model.named_parameters():
        direction = rng.standard_normal(p.shape)
        analytic = float((backend.to_numpy(p.grad) * direction).sum())
        original = p.data.copy()
        p.data += eps * backend.asarray(direction)
        with no_grad():
            plus = loss_fn().item()
        p.data[...] = original - eps * backend.asarray(direction)
        with no_grad():
            minus = loss_fn().item()
        p.data[...] = original
        numeric = (plus - minus) / (2 * eps)
        assert abs(analytic - numeric) <= 1e-8 + rtol * max(abs(analytic), abs(numeric)), \
            f"{name}: backward gives {analytic}, central differences {numeric}"


def test_whole_gpt_gradient_along_random_directions():
    model = tiny()
    rng = numpy.random.default_rng(4)
    idx = ids(rng, (2, 6))
    upstream = backend.asarray(rng.standard_normal((2, 6, 7)))
    _directional_check(model, lambda: (model(idx) * upstream).sum(), rng)   # random upstream on logits


def test_whole_gpt_cross_entropy_gradient_along_random_directions():
    model = tiny(bias=False, seed=5)
    rng = numpy.random.default_rng(5)
    idx, targets = ids(rng, (3, 5)), ids(rng, (3, 5))
    _directional_check(model, lambda: model(idx, targets)[1], rng)


def test_whole_gpt_gradient_element_by_element_on_small_parameters():
    from minillm import gradcheck
    model = tiny()
    rng = numpy.random.default_rng(6)
    idx = ids(rng, (2, 6))
    for name in ("wte.weight", "h.0.attn.c_attn.bias", "h.1.ln_2.weight", "ln_f.bias"):
        p = dict(model.named_parameters())[name]
        model.zero_grad()
        assert gradcheck(lambda _: model(idx), p, seed=7, rtol=1e-5)


# ---------------------------------------------------------------- KV cache

@pytest.mark.parametrize("config, chunks", [
    (dict(TINY), [3, 1, 1, 1]),
    (dict(vocab_size=11, block_size=9, n_layer=3, n_head=4, n_embd=16), [1] * 9),
    (dict(vocab_size=11, block_size=9, n_layer=1, n_head=1, n_embd=4, bias=False), [4, 2, 3]),
])
def test_kv_cache_logits_equal_the_full_forward(config, chunks):
    model = GPT(GPTConfig(**config, dtype="float64"), seed=3)
    rng = numpy.random.default_rng(8)
    idx = ids(rng, (2, sum(chunks)), config["vocab_size"])
    cache = KVCache(model.config.n_layer)
    with no_grad():
        full = logits_np(model, idx)
        pieces, start = [], 0
        for size in chunks:
            pieces.append(logits_np(model, idx[:, start:start + size], cache=cache))
            start += size
            assert cache.position == start
    assert numpy.abs(numpy.concatenate(pieces, axis=1) - full).max() < 1e-10


def test_kv_cache_errors():
    model = tiny()
    cache = KVCache(2)
    idx = numpy.array([[1, 2, 3, 4]])
    with pytest.raises(RuntimeError, match="no_grad"):
        model(idx, cache=cache)
    with no_grad():
        model(idx, cache=cache)
        with pytest.raises(ValueError, match="sequence length 7 after 4 cached tokens exceeds block_size 6"):
            model(idx[:, :3], cache=cache)
    assert cache.position == 4


def test_save_pretrained_then_from_pretrained_gives_the_same_model(tmp_path):
    model = GPT(GPTConfig(**TINY), seed=4)
    model.save_pretrained(tmp_path / "gpt")
    loaded = GPT.from_pretrained(tmp_path / "gpt")
    assert loaded.config == model.config
    idx = ids(numpy.random.default_rng(9), (2, 6))
    assert numpy.array_equal(logits_np(loaded, idx), logits_np(model, idx))


def test_generate_hook_continues_the_prompt():
    model = tiny()
    prompt = numpy.array([[1, 2, 3]])
    out = backend.to_numpy(model.generate(prompt, 3, temperature=0))
    assert out.shape == (1, 6) and numpy.array_equal(out[:, :3], prompt)
    with no_grad():
        first = logits_np(model, prompt)[0, -1].argmax()
    assert out[0, 3] == first                                       # greedy: the argmax of the last logits


# ---------------------------------------------------------------- learning

def test_tiny_gpt_overfits_a_short_text():
    text = "to be or not to be, that is the question:"
    vocab = sorted(set(text))
    data = numpy.array([[vocab.index(ch) for ch in text]])          # (1, 41)
    x, y = data[:, :-1], data[:, 1:]                                # teacher forcing: y is x shifted by one
    model = GPT(GPTConfig(vocab_size=len(vocab), block_size=40, n_layer=2, n_head=2, n_embd=32), seed=0)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(STEPS):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"loss {loss.item():.3f} after {STEPS} steps"
    predicted = backend.to_numpy(model(x).data).argmax(axis=-1)
    assert "".join(vocab[i] for i in predicted[0]) == text[1:]


STEPS = 150


def test_last_only_logits_equal_the_last_row_of_the_full_forward():
    import numpy
    from minillm import no_grad
    from minillm.models import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, dtype="float64"), seed=4)
    idx = numpy.random.default_rng(0).integers(0, 11, size=(3, 8))
    with no_grad():
        full, last = model(idx).numpy(), model(idx, last_only=True).numpy()
    assert last.shape == (3, 1, 11)
    numpy.testing.assert_allclose(last[:, 0], full[:, -1], rtol=0, atol=1e-12)
