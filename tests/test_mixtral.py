"""Mixtral (minillm/models/mixtral.py): config checks, parameter arithmetic, the training loss with the
load-balancing term, the KV cache, and a float64 gradient check through the whole model."""
import numpy
import pytest

from minillm import Mixtral, MixtralConfig, backend, no_grad
from minillm import functional as F
from minillm.kvcache import KVCache
from minillm.nn import SparseMoE

SMALL = dict(vocab_size=23, block_size=16, n_layer=2, n_head=4, n_embd=16, n_kv_head=2, n_hidden=12,
             n_expert=4, top_k=2)


def small(**overrides):
    return MixtralConfig(**{**SMALL, **overrides})


def ids(shape, seed=0):
    return numpy.random.default_rng(seed).integers(0, 23, shape)


def test_config_errors_name_the_field():
    for overrides, message in [(dict(n_expert=0), "n_expert must be positive"),
                               (dict(top_k=5), r"top_k \(5\) must not exceed n_expert \(4\)"),
                               (dict(router_aux_loss_coef=-1.0), "router_aux_loss_coef must be a number >= 0"),
                               (dict(mlp_bias=True), "mlp_bias must be False"),
                               (dict(qkv_bias=True), "qkv_bias must be False")]:
        with pytest.raises(ValueError, match=message):
            small(**overrides)


@pytest.mark.parametrize("tied", [False, True])
def test_parameter_counts_total_and_active(tied):
    config = small(tie_word_embeddings=tied)
    model = Mixtral(config)
    total, active = config.parameter_counts()
    assert total == model.num_parameters()
    expert = sum(p.size for p in model.moe_layers()[0].experts[0].parameters())
    assert total - active == config.n_layer * (config.n_expert - config.top_k) * expert
    assert all(isinstance(m, SparseMoE) for m in model.moe_layers())
    assert "model.layers.1.block_sparse_moe.experts.3.w2.weight" in dict(model.named_parameters())


def test_training_loss_adds_the_weighted_aux_loss():
    model = Mixtral(small(router_aux_loss_coef=0.5), seed=1)
    idx, targets = ids((2, 7)), ids((2, 7), seed=1)
    logits, loss = model(idx, targets)
    aux = float(model.router_aux_loss().data)
    assert 2.0 <= aux <= 4.0                                   # k balanced .. E collapsed
    assert float(loss.data) == pytest.approx(float(F.cross_entropy(logits, targets).data) + 0.5 * aux)
    loss.backward()
    router = model.moe_layers()[0].gate.weight.grad
    assert router is not None and numpy.abs(backend.to_numpy(router)).max() > 0
    assert Mixtral(small(router_aux_loss_coef=0.0)).auxiliary_loss() is None
    load = model.expert_load()
    assert load.shape == (2, 4) and numpy.allclose(load.sum(axis=1), 2.0)


def test_cached_logits_equal_recomputed_ones():
    model = Mixtral(small(dtype="float64"), seed=2)
    idx = ids((2, 12), seed=3)
    with no_grad():
        full = backend.to_numpy(model(idx).data)
        cache = KVCache(model.config.n_layer)
        steps = [backend.to_numpy(model(idx[:, :5], cache=cache).data)]
        for t in range(5, 12):
            steps.append(backend.to_numpy(model(idx[:, t:t + 1], cache=cache).data))
    numpy.testing.assert_allclose(numpy.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)


def test_whole_model_gradient_along_a_random_direction():
    """d loss / d theta . u for a random direction u over every parameter, against a central difference."""
    model = Mixtral(small(dtype="float64", n_layer=1, router_aux_loss_coef=0.1), seed=4)
    for moe in model.moe_layers():                           # spread the router logits: no routing flips
        moe.gate.weight.data *= 50.0
    idx, targets = ids((2, 6), seed=5), ids((2, 6), seed=6)
    params = model.parameters()
    rng = numpy.random.default_rng(7)
    direction = [backend.asarray(rng.standard_normal(p.shape)) for p in params]
    _, loss = model(idx, targets)
    loss.backward()
    analytic = sum(float((p.grad * u).sum()) for p, u in zip(params, direction) if p.grad is not None)

    def loss_at(step):
        for p, u in zip(params, direction):
            p.data += step * u
        with no_grad():
            value = float(model(idx, targets)[1].data)
        for p, u in zip(params, direction):
            p.data -= step * u
        return value
    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6)
