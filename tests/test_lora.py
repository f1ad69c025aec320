"""LoRA: h = x W + b + (x A B) alpha / r with W frozen (minillm/lora.py).

What is proved here:
* a wrapped layer / model computes exactly the base output before training (B = 0);
* the formula, and gradients (central differences, float64) that reach A and B only;
* only A and B get gradients and optimizer state; frozen weights stay bit-identical;
* trainable count = r (N + d) per wrapped matrix (and equals scaling.lora_parameter_count);
* merge/unmerge: same logits (float64, 1e-10), W restored;
* the adapter file alone (kilobytes) loads onto a fresh base and reproduces the finetuned
  logits; clear errors when it does not fit.
"""
import os

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import GPT, GPTConfig, backend, scaling
from minillm.autograd import Tensor
from minillm.gradcheck import gradcheck
from minillm.lora import (LoRALinear, apply_lora, load_adapter, lora_layers, lora_state_dict, merge_lora,
                          save_adapter, unmerge_lora)
from minillm.nn import Linear
from minillm.optim import AdamW

TARGET_SETS = [("c_attn",), ("c_proj",), ("c_attn", "c_fc"), ("attn.c_proj", "mlp.c_proj", "c_fc")]


def tiny_config(dtype="float64", n_layer=2, n_embd=8):
    return GPTConfig(vocab_size=13, block_size=8, n_layer=n_layer, n_head=2, n_embd=n_embd, dtype=dtype)


def ids(seed=0, B=2, T=8, V=13):
    return numpy.random.default_rng(seed).integers(0, V, size=(B, T))


def randomize_B(model, seed=1):
    """Give every lora_B random values (as training would), so the LoRA path is not zero."""
    rng = numpy.random.default_rng(seed)
    for _, layer in lora_layers(model):
        layer.lora_B.data[...] = backend.asarray(rng.standard_normal(layer.lora_B.shape) * 0.3,
                                                 dtype=layer.lora_B.dtype)


def host(tensor):
    return backend.to_numpy(tensor.data if isinstance(tensor, Tensor) else tensor)


# ---------------------------------------------------------------- one layer

@settings(max_examples=15)
@given(N=st.integers(1, 6), d=st.integers(1, 6), r=st.integers(1, 4), lead=st.sampled_from([(3,), (2, 3), ()]),
       alpha=st.sampled_from([1.0, 8.0, 16.0]), bias=st.booleans())
def test_layer_starts_equal_to_the_base_and_follows_the_formula(N, d, r, lead, alpha, bias):
    base = Linear(N, d, bias=bias, rng=3, std=0.5, dtype="float64")
    if bias:
        base.bias.data[...] = backend.asarray(numpy.linspace(-1, 1, d))
    x = Tensor(backend.asarray(numpy.random.default_rng(4).standard_normal(lead + (N,))))
    before = host(base(x)).copy()
    layer = LoRALinear(base, rank=r, alpha=alpha, seed=5)
    assert layer.lora_A.shape == (N, r) and layer.lora_B.shape == (r, d)
    assert numpy.array_equal(host(layer(x)), before)                      # B = 0: exactly the base
    layer.lora_B.data[...] = backend.asarray(numpy.random.default_rng(6).standard_normal((r, d)))
    W, A, Bm = host(layer.weight), host(layer.lora_A), host(layer.lora_B)
    expected = host(x) @ W + (host(layer.bias) if bias else 0) + (host(x) @ A @ Bm) * (alpha / r)
    numpy.testing.assert_allclose(host(layer(x)), expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=8)
@given(N=st.integers(1, 4), d=st.integers(1, 4), r=st.integers(1, 3))
def test_gradients_of_A_B_and_x_match_central_differences_and_W_gets_none(N, d, r):
    layer = LoRALinear(Linear(N, d, rng=1, std=0.5, dtype="float64"), rank=r, alpha=4.0, seed=2)
    layer.lora_B.data[...] = backend.asarray(numpy.random.default_rng(3).standard_normal((r, d)))
    x = Tensor(backend.asarray(numpy.random.default_rng(4).standard_normal((3, N))), requires_grad=True)
    gradcheck(lambda x, A, B: layer(x), x, layer.lora_A, layer.lora_B)
    assert layer.weight.grad is None and layer.bias.grad is None
    assert not layer.weight.requires_grad and not layer.bias.requires_grad


def test_a_weight_unfrozen_by_hand_gets_its_gradient_again():
    layer = LoRALinear(Linear(4, 3, rng=1, std=0.5, dtype="float64"), rank=2, seed=2)
    layer.weight.requires_grad = True                                   # e.g. LoRA plus a trainable W
    x = Tensor(backend.asarray(numpy.random.default_rng(4).standard_normal((5, 4))), requires_grad=True)
    gradcheck(lambda x, W: layer(x), x, layer.weight)
    assert layer.weight.grad is not None and layer.bias.grad is None


def test_dropout_on_the_lora_path_is_seeded_and_off_in_eval_mode():
    def make():
        layer = LoRALinear(Linear(6, 5, rng=1, dtype="float64"), rank=2, dropout=0.5, seed=7)
        layer.lora_B.data[...] = 1.0
        return layer
    x = Tensor(backend.asarray(numpy.ones((4, 6))))
    a, b = make(), make()
    train_a, train_b = host(a(x)), host(b(x))
    assert numpy.array_equal(train_a, train_b)                            # same seed, same mask
    a.eval()
    no_drop = host(x) @ host(a.weight) + host(x) @ host(a.lora_A) @ host(a.lora_B) * a.scale
    numpy.testing.assert_allclose(host(a(x)), no_drop, rtol=1e-12)
    assert not numpy.allclose(train_a, no_drop)                           # dropout did act in training


def test_layer_errors_name_the_value():
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        LoRALinear(Linear(3, 3), rank=0)
    with pytest.raises(TypeError, match="wraps an nn.Linear"):
        LoRALinear(object())
    with pytest.raises(ValueError, match="dropout must be in"):
        LoRALinear(Linear(3, 3), dropout=1.0)


# ---------------------------------------------------------------- a whole GPT

@pytest.mark.parametrize("targets", TARGET_SETS)
def test_wrapped_gpt_equals_the_base_before_training_and_keeps_gpt2_names(targets):
    model = GPT(tiny_config())
    before = host(model(ids())).copy()
    names_before = list(model.state_dict())
    apply_lora(model, rank=2, alpha=4, targets=targets)
    assert numpy.array_equal(host(model(ids())), before)
    names = list(model.state_dict())
    assert [n for n in names if "lora" not in n] == names_before           # base names unchanged
    assert "h.0.attn.c_attn.weight" in names
    lora = [n for n in names if "lora" in n]
    assert lora and all(n.endswith((".lora_A", ".lora_B")) for n in lora)


@settings(max_examples=12)
@given(rank=st.integers(1, 6), targets=st.sampled_from(TARGET_SETS), n_layer=st.integers(1, 3),
       n_embd=st.sampled_from([4, 8, 12]))
def test_trainable_count_is_r_times_N_plus_d_per_wrapped_matrix(rank, targets, n_layer, n_embd):
    model = apply_lora(GPT(tiny_config("float32", n_layer, n_embd)), rank=rank, targets=targets)
    expected = sum(rank * (layer.in_features + layer.out_features) for _, layer in lora_layers(model))
    assert model.num_parameters(trainable_only=True) == expected
    assert expected == scaling.lora_parameter_count(model.config, rank, targets)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    assert model.num_parameters() == scaling.parameter_count(model.config) + expected


def test_only_A_and_B_get_gradients_and_optimizer_state_and_the_base_stays_bit_identical():
    model = apply_lora(GPT(tiny_config()), rank=2, targets=("c_attn", "c_fc"))
    frozen = {n: p.data.copy() for n, p in model.named_parameters() if not p.requires_grad}
    opt = AdamW(model.parameters(), lr=1e-2)                           # given everything: must skip frozen
    for step in range(3):
        x = ids(step)
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        got_grad = {n for n, p in model.named_parameters() if p.grad is not None}
        assert got_grad == {n for n, p in model.named_parameters() if p.requires_grad}
        opt.step()
        opt.zero_grad()
    assert all(numpy.array_equal(host(p.data), host(frozen[n]))
               for n, p in model.named_parameters() if n in frozen)
    assert set(opt.state) == {str(i) for i, p in enumerate(model.parameters()) if p.requires_grad}
    moved = [n for n, p in model.named_parameters() if n.endswith("lora_B") and numpy.abs(host(p)).max() > 0]
    assert len(moved) == 4                                                  # B left zero: it trained
    # the measured bytes agree with the formula: grads + 2 moments for the adapter alone
    x = ids(9)
    model(x[:, :-1], x[:, 1:])[1].backward()
    measured = scaling.measured_training_bytes(model, opt)
    n_train = model.num_parameters(trainable_only=True)
    assert measured.gradients == n_train * 8 and measured.optimizer_state == 2 * n_train * 8
    assert measured.weights == model.num_parameters() * 8


@settings(max_examples=8)
@given(rank=st.integers(1, 5), targets=st.sampled_from(TARGET_SETS), seed=st.integers(0, 3))
def test_merged_and_unmerged_give_the_same_logits_and_unmerge_restores_W(rank, targets, seed):
    model = apply_lora(GPT(tiny_config()), rank=rank, alpha=8, targets=targets, seed=seed)
    randomize_B(model, seed)
    weights = {n: host(p).copy() for n, p in model.named_parameters()}
    unmerged = host(model(ids(seed))).copy()
    merge_lora(model)
    assert all(layer.merged for _, layer in lora_layers(model))
    numpy.testing.assert_allclose(host(model(ids(seed))), unmerged, rtol=0, atol=1e-10)
    changed = [n for n, p in model.named_parameters() if not numpy.array_equal(host(p), weights[n])]
    assert changed and all(n.endswith(".weight") for n in changed)         # W now holds W + s A B
    unmerge_lora(model)
    for n, p in model.named_parameters():
        numpy.testing.assert_allclose(host(p), weights[n], rtol=0, atol=1e-10)
    numpy.testing.assert_allclose(host(model(ids(seed))), unmerged, rtol=0, atol=1e-12)


def test_merge_twice_and_unmerge_unmerged_are_errors():
    model = apply_lora(GPT(tiny_config()), rank=2)
    with pytest.raises(RuntimeError, match="not merged"):
        unmerge_lora(model)
    merge_lora(model)
    with pytest.raises(RuntimeError, match="already merged"):
        merge_lora(model)
    with pytest.raises(RuntimeError, match="unmerge_lora"):
        save_adapter("unused.npz", model)


def test_apply_lora_errors_name_the_problem():
    with pytest.raises(ValueError, match="no Linear layer matches targets \\['q_proj'\\]"):
        apply_lora(GPT(tiny_config()), targets=("q_proj",))
    model = apply_lora(GPT(tiny_config()), rank=2)
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(model)
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(GPT(tiny_config()))


# ---------------------------------------------------------------- adapter files

def finetuned(targets=("c_attn",), rank=2, steps=3):
    """(base state dict, a LoRA model trained a few steps from it)."""
    model = GPT(tiny_config(), seed=3)
    base_state = model.state_dict()
    apply_lora(model, rank=rank, alpha=4, targets=targets, seed=1)
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for step in range(steps):
        x = ids(step)
        model(x[:, :-1], x[:, 1:])[1].backward()
        opt.step()
        opt.zero_grad()
    return base_state, model


def test_adapter_file_alone_reproduces_the_finetuned_logits_on_a_fresh_base(tmp_path):
    base_state, model = finetuned(targets=("c_attn", "mlp.c_proj"))
    path = tmp_path / "adapter.npz"
    save_adapter(path, model)
    n_adapter = model.num_parameters(trainable_only=True)
    assert os.path.getsize(path) < n_adapter * 8 + 8000                    # A and B plus a little metadata
    assert not any(f.startswith(".") for f in os.listdir(tmp_path))        # no temp file left behind
    fresh = GPT(tiny_config(), seed=99)                                     # other init: the base file decides
    fresh.load_state_dict(base_state)
    load_adapter(path, fresh)
    numpy.testing.assert_array_equal(host(fresh(ids(7))), host(model(ids(7))))
    assert fresh.num_parameters(trainable_only=True) == n_adapter
    assert set(lora_state_dict(fresh)) == set(lora_state_dict(model))
    # the base state dict still loads into a wrapped model, missing only the LoRA entries
    result = fresh.load_state_dict(base_state, strict=False)
    assert result.unexpected == [] and all("lora" in n for n in result.missing)


def test_adapter_that_does_not_fit_is_a_clear_error(tmp_path):
    _, model = finetuned()
    path = tmp_path / "adapter.npz"
    save_adapter(path, model)
    with pytest.raises(ValueError, match="another base model.*n_embd: adapter 8 vs model 12"):
        load_adapter(path, GPT(tiny_config(n_embd=12)))
    with pytest.raises(ValueError, match="rank 2 .* has rank 3"):
        load_adapter(path, apply_lora(GPT(tiny_config()), rank=3, alpha=4))
    with pytest.raises(ValueError, match="in the model only \\['h.0.mlp.c_fc'"):
        load_adapter(path, apply_lora(GPT(tiny_config()), rank=2, alpha=4, targets=("c_attn", "c_fc")))
    from minillm import checkpoint
    checkpoint.save(tmp_path / "full.npz", model)
    with pytest.raises(ValueError, match="not a LoRA adapter file"):
        load_adapter(tmp_path / "full.npz", GPT(tiny_config()))
