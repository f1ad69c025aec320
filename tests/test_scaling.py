"""Tests for minillm.scaling: parameter counts, FLOPs, the power-law fit, memory accounting."""
import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import scaling
from minillm.scaling import GB

GPT3 = dict(vocab_size=50257, block_size=2048, n_layer=96, n_embd=12288, bias=True)


# ---------------------------------------------------------------- parameter counts

def test_gpt3_approximation_is_about_175_billion():
    n = scaling.approx_parameter_count(96, 12288)
    assert n == 12 * 96 * 12288 ** 2 == 173_946_175_488
    assert round(n / 1e9) == 174 and abs(n - 175e9) / 175e9 < 0.01   # "about 175B"


def test_gpt3_exact_count_is_close_to_the_approximation():
    exact = scaling.parameter_count(GPT3)
    # 96 (12 C^2 + 13 C) + V C + T C + 2 C, by hand
    C = 12288
    assert exact == 96 * (12 * C * C + 13 * C) + 50257 * C + 2048 * C + 2 * C
    assert 174e9 < exact < 175e9
    # the approximation misses embeddings, biases and norms: under 0.5 % here
    assert abs(exact - scaling.approx_parameter_count(96, C)) / exact < 0.005


def test_breakdown_adds_up_and_bias_false_drops_every_bias():
    with_bias = scaling.parameter_breakdown(dict(vocab_size=65, block_size=32, n_layer=3, n_embd=16))
    without = scaling.parameter_breakdown(dict(vocab_size=65, block_size=32, n_layer=3, n_embd=16,
                                               bias=False))
    C = 16
    assert with_bias["per_layer"] == 12 * C * C + 13 * C
    assert without["per_layer"] == 12 * C * C + 2 * C
    for parts in (with_bias, without):
        assert parts["total"] == parts["wte"] + parts["wpe"] + parts["layers"] + parts["ln_f"]
    # biases: per layer 3C + C + 4C + C (linears) + 2C (two LayerNorms); ln_f C
    assert with_bias["total"] - without["total"] == 3 * (11 * C) + C


def test_non_embedding_count_excludes_wte_and_wpe():
    config = dict(vocab_size=65, block_size=32, n_layer=2, n_embd=8)
    assert scaling.non_embedding_parameter_count(config) == 2 * (12 * 64 + 13 * 8) + 2 * 8


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="n_layer"):
        scaling.parameter_count(dict(vocab_size=65, block_size=32, n_embd=8))
    with pytest.raises(ValueError, match="n_embd must be a non-negative integer"):
        scaling.parameter_count(dict(vocab_size=65, block_size=32, n_layer=1, n_embd=2.5))


@settings(max_examples=12)
@given(vocab_size=st.integers(2, 40), block_size=st.integers(1, 16), n_layer=st.integers(1, 3),
       n_head=st.integers(1, 3), head_dim=st.integers(1, 4), bias=st.booleans())
def test_exact_count_equals_the_real_models_parameters(vocab_size, block_size, n_layer, n_head,
                                                        head_dim, bias):
    from minillm.models import GPT, GPTConfig
    config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                       n_head=n_head, n_embd=n_head * head_dim, bias=bias)
    model = GPT(config)
    real = sum(int(p.data.size) for p in model.parameters())
    assert scaling.parameter_count(config) == real
    names = [name for name, _ in model.named_parameters()]
    assert len(names) == len(set(names)) and not any(n.startswith("lm_head") for n in names)


def test_training_flops_is_six_n_d():
    assert scaling.training_flops(10, 7) == 420.0
    assert scaling.training_flops(175e9, 300e9) == pytest.approx(3.15e23)


# ---------------------------------------------------------------- power-law fit

def test_fit_recovers_an_exact_power_law():
    n = numpy.logspace(5, 9, 7)
    loss = (8.8e13 / n) ** 0.076
    fit = scaling.fit_power_law(n, loss)
    assert fit.alpha == pytest.approx(0.076, rel=1e-9)
    assert fit.log_x_c == pytest.approx(math.log(8.8e13), rel=1e-9)
    assert fit.alpha_stderr < 1e-9 and fit.r_squared == pytest.approx(1.0)
    numpy.testing.assert_allclose(fit.predict(n), loss, rtol=1e-9)


def test_fit_recovers_a_known_exponent_from_noisy_data_within_its_uncertainty():
    rng = numpy.random.default_rng(0)
    n = numpy.logspace(4, 7, 8)
    alpha, n_c = 0.35, 3e3
    loss = (n_c / n) ** alpha * numpy.exp(rng.normal(0.0, 0.03, n.size))   # 3 % multiplicative noise
    fit = scaling.fit_power_law(n, loss)
    assert abs(fit.alpha - alpha) < 3 * fit.alpha_stderr
    assert abs(fit.log_x_c - math.log(n_c)) < 3 * fit.log_x_c_stderr
    assert 0 < fit.alpha_stderr < 0.05
    # the same line and slope error as numpy.polyfit on log-log axes (covariance scaled by RSS / (n - 2))
    (slope, intercept), cov = numpy.polyfit(numpy.log(n), numpy.log(loss), 1, cov=True)
    assert fit.alpha == pytest.approx(-slope, rel=1e-10)
    assert fit.alpha_stderr == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-10)
    assert fit.log_x_c == pytest.approx(-intercept / slope, rel=1e-10)
    r = numpy.corrcoef(numpy.log(n), numpy.log(loss))[0, 1]
    assert fit.r_squared == pytest.approx(r ** 2, rel=1e-10)
    assert fit.x_c_stderr == pytest.approx(fit.x_c * fit.log_x_c_stderr)


def test_fit_standard_errors_have_the_right_size():
    """Over 400 synthetic sweeps (fixed seed), alpha lands within 2 standard errors
    about as often as Student's t with n - 2 = 6 degrees of freedom says (90.8 %).
    Errors that were too small (or too large) by a factor 1.5 would fail."""
    rng = numpy.random.default_rng(1)
    n = numpy.logspace(3, 6, 8)
    hits = []
    for _ in range(400):
        loss = (1e2 / n) ** 0.2 * numpy.exp(rng.normal(0.0, 0.05, n.size))
        fit = scaling.fit_power_law(n, loss)
        hits.append(abs(fit.alpha - 0.2) < 2 * fit.alpha_stderr)
    coverage = float(numpy.mean(hits))
    assert 0.86 <= coverage <= 0.96, coverage


def test_fit_errors():
    with pytest.raises(ValueError, match="at least 3 points"):
        scaling.fit_power_law([1, 2], [1, 0.5])
    with pytest.raises(ValueError, match="positive"):
        scaling.fit_power_law([1, 2, 3], [1, 0, 0.5])
    with pytest.raises(ValueError, match="one loss per size"):
        scaling.fit_power_law([1, 2, 3], [1, 0.5])
    with pytest.raises(ValueError, match="all x are equal"):
        scaling.fit_power_law([2, 2, 2], [1, 0.9, 0.8])


# ---------------------------------------------------------------- memory

def test_seven_billion_full_finetuning_is_84_gb_exactly():
    full = scaling.training_memory(7 * 10 ** 9)
    assert (full.weights, full.gradients, full.optimizer_state) == (14 * GB, 14 * GB, 56 * GB)
    assert full.total == 84 * GB
    assert full.in_gb() == {"weights": 14.0, "gradients": 14.0, "optimizer_state": 56.0, "total": 84.0}
    assert scaling.inference_bytes(7 * 10 ** 9) == 14 * GB


def test_lora_memory_keeps_frozen_weights_but_only_adapter_gradients_and_moments():
    n_base, n_adapter = 7 * 10 ** 9, 4 * 10 ** 6
    lora = scaling.training_memory(n_base + n_adapter, n_trainable=n_adapter)
    assert lora.weights == 2 * (n_base + n_adapter)
    assert lora.gradients == 2 * n_adapter and lora.optimizer_state == 8 * n_adapter
    with pytest.raises(ValueError, match="n_trainable"):
        scaling.training_memory(10, n_trainable=11)


def test_lora_parameter_count_is_rank_times_in_plus_out():
    config = dict(vocab_size=65, block_size=32, n_layer=2, n_embd=8)
    assert scaling.lora_parameter_count(config, rank=4) == 2 * 4 * (8 + 24)
    assert scaling.lora_parameter_count(config, 2, targets=("c_attn", "c_proj")) == \
        2 * 2 * ((8 + 24) + (8 + 8) + (32 + 8))
    with pytest.raises(ValueError, match="unknown LoRA target 'wte'"):
        scaling.lora_parameter_count(config, 2, targets=("wte",))


class _Param:
    def __init__(self, n, grad=True):
        self.data = numpy.zeros(n, dtype=numpy.float32)
        self.grad = numpy.zeros(n, dtype=numpy.float32) if grad else None


class _Model:
    def __init__(self, params):
        self._params = params

    def parameters(self):
        return list(self._params)


class _Optimizer:
    def __init__(self, params):
        self.state = {f"p{i}": {"m": numpy.zeros_like(p.data), "v": numpy.zeros_like(p.data), "t": 3}
                      for i, p in enumerate(params) if p.grad is not None}


def test_measured_bytes_sum_parameters_gradients_and_optimizer_state():
    params = [_Param(10), _Param(5, grad=False), _Param(7)]
    measured = scaling.measured_training_bytes(_Model(params), _Optimizer(params))
    assert measured.weights == 4 * 22
    assert measured.gradients == 4 * 17
    assert measured.optimizer_state == 2 * 4 * 17
    # float32 everywhere: 4 + 4 + 8 bytes per trainable parameter, 4 per frozen one
    assert measured.total == scaling.training_memory(22, 17, weight_bytes=4, grad_bytes=4).total


def test_measured_bytes_of_a_real_gpt_match_the_formula_for_full_and_frozen_training():
    import minillm.functional as F
    from minillm.models import GPT, GPTConfig
    from minillm.optim import AdamW

    def one_step(model):
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = AdamW(trainable, lr=1e-3)
        ids = numpy.random.default_rng(0).integers(0, 17, size=(2, 9))
        F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
        optimizer.step()
        return scaling.measured_training_bytes(model, optimizer), sum(p.size for p in trainable)

    config = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=2, n_embd=8)   # float32
    n = scaling.parameter_count(config)
    measured, n_trainable = one_step(GPT(config))
    assert n_trainable == n
    assert measured == scaling.training_memory(n, weight_bytes=4, grad_bytes=4)   # 4 + 4 + 8 bytes each
    frozen = GPT(config)
    for name, p in frozen.named_parameters():
        p.requires_grad = name.startswith("ln_f")                 # train only the final LayerNorm
    measured, n_trainable = one_step(frozen)
    assert n_trainable == 2 * 8
    assert measured == scaling.training_memory(n, n_trainable, weight_bytes=4, grad_bytes=4)


@settings(max_examples=6)
@given(rank=st.integers(1, 4),
       targets=st.sampled_from([("c_attn",), ("c_proj",), ("c_attn", "mlp.c_fc"), ("attn.c_proj", "mlp.c_proj")]))
def test_lora_count_and_measured_bytes_match_apply_lora(rank, targets):
    import minillm.functional as F
    from minillm.lora import apply_lora
    from minillm.models import GPT, GPTConfig
    from minillm.optim import AdamW

    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
    model = apply_lora(GPT(config), rank=rank, targets=targets)
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.size for p in trainable)
    assert n_trainable == scaling.lora_parameter_count(config, rank, targets)
    optimizer = AdamW(trainable, lr=1e-3)
    ids = numpy.random.default_rng(0).integers(0, 13, size=(2, 9))
    F.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).backward()
    optimizer.step()
    n_total = scaling.parameter_count(config) + n_trainable          # frozen base + adapters
    measured = scaling.measured_training_bytes(model, optimizer)
    assert measured == scaling.training_memory(n_total, n_trainable, weight_bytes=4, grad_bytes=4)
