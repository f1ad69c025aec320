"""BERT (minillm/models/bert.py): gradients of the whole model in float64, what padding
may and may not change, bidirectionality, the heads, and clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import Bert, BertConfig, Tensor, backend, gradcheck, no_grad


def tiny(**overrides):
    fields = dict(vocab_size=7, max_position_embeddings=6, n_layer=1, n_head=2, n_embd=4, n_inner=6,
                  dtype="float64", layer_norm_eps=1e-5)
    return Bert(BertConfig(**{**fields, **overrides}), seed=1)


IDX = np.array([[1, 4, 5, 2, 0], [1, 3, 6, 5, 2]])
MASK = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def test_every_parameter_gradient_matches_central_differences_with_padding():
    """The whole model (embeddings, post-LN layer, masked attention, erf GELU, tied MLM head,
    pooler, classifier) in float64 against central differences, random upstream gradient."""
    model = tiny(num_labels=3)
    params = list(model.parameters())
    for p in params:  # move LayerNorm weights and biases off 1 and 0
        p.data += np.random.default_rng(p.size).normal(0, 0.1, p.shape)
    gradcheck(lambda *_: model(IDX, MASK, IDX % 2), *params, seed=3)
    gradcheck(lambda *_: model.classify(IDX, MASK), *params, seed=4)


@settings(max_examples=10, deadline=None)
@given(B=st.integers(1, 2), T=st.integers(1, 4), n_head=st.sampled_from([1, 2]), data=st.data())
def test_a_padded_encoder_layer_passes_gradcheck_on_hypothesis_shapes(B, T, n_head, data):
    """One post-LN layer (masked bidirectional attention, erf GELU) w.r.t. its input, any
    padding pattern (a fully padded row included), random upstream gradient."""
    model = tiny(n_head=n_head)
    key_mask = np.array(data.draw(st.lists(st.lists(st.integers(0, 1), min_size=T, max_size=T),
                                           min_size=B, max_size=B)))                # (B, T)
    x = Tensor(np.random.default_rng(T).standard_normal((B, T, 4)), requires_grad=True)
    layer = model.encoder.layer[0]
    gradcheck(lambda x: layer(x, backend.asarray(key_mask)), x, seed=B * T)


def test_padded_positions_get_zero_gradient_and_do_not_change_real_outputs():
    model = tiny()
    x = Tensor(np.random.default_rng(0).standard_normal((2, 5, 4)), requires_grad=True)
    key_mask = backend.asarray(MASK)
    upstream = np.random.default_rng(1).standard_normal((2, 5, 4)) * MASK[:, :, None]   # real rows only
    model.encoder(x, key_mask).backward(backend.asarray(upstream))
    grad = host(x.grad)
    assert (grad[0, 4] == 0).all() and (grad[0, :4] != 0).any()              # the padded token: exactly 0
    with no_grad():
        base = host(model(IDX, MASK))
        other = host(model(np.where(MASK == 1, IDX, 6), MASK))               # another token at the padding
    np.testing.assert_array_equal(base[MASK == 1], other[MASK == 1])


def test_a_fully_padded_row_gives_finite_outputs():
    with no_grad():
        out = host(tiny()(IDX, np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])))
    assert np.isfinite(out).all()


def test_attention_is_bidirectional():
    """Unlike GPT, the first position's output changes when a later token does."""
    model = tiny()
    with no_grad():
        a = host(model(IDX[1:]))
        b = host(model(np.array([[1, 3, 6, 5, 4]])))
    assert not np.allclose(a[0, 0], b[0, 0])


def test_mlm_loss_counts_only_the_targets_given_and_head_is_tied():
    model = tiny()
    targets = np.full((2, 5), -100)
    targets[0, 2], targets[1, 1] = 5, 3
    logits, loss = model(IDX, MASK, targets=targets)
    z = host(logits)[[0, 1], [2, 1]]                                          # the two counted rows (2, V)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert float(loss.data) == pytest.approx(-(log_p[0, 5] + log_p[1, 3]) / 2, rel=1e-10)
    names = [n for n, _ in model.named_parameters()]
    assert "cls.predictions.bias" in names and not any("decoder" in n for n in names)


def test_pooler_reads_the_cls_position_and_classifier_needs_labels():
    model = tiny(num_labels=2)
    with no_grad():
        h = host(model.hidden_states(IDX, MASK))
        pooled = host(model.pooled(IDX, MASK))
        assert host(model.classify(IDX, MASK)).shape == (2, 2)
    w, b = host(model.pooler.dense.weight), host(model.pooler.dense.bias)
    np.testing.assert_allclose(pooled, np.tanh(h[:, 0] @ w + b), rtol=1e-12)
    with pytest.raises(ValueError, match="no classification head"):
        tiny().classify(IDX)


def test_config_round_trip_and_errors_name_the_field():
    config = BertConfig(vocab_size=10, max_position_embeddings=8, n_layer=1, n_head=2, n_embd=4)
    assert config.n_inner == 16 and config.attention_dropout == config.dropout == 0.0
    assert BertConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"n_embd \(6\) must be divisible by n_head \(4\)"):
        BertConfig(vocab_size=10, max_position_embeddings=8, n_layer=1, n_head=4, n_embd=6)
    with pytest.raises(ValueError, match="max_position_embeddings must be positive, got 0"):
        BertConfig(vocab_size=10, max_position_embeddings=0, n_layer=1, n_head=2, n_embd=4)
    with pytest.raises(ValueError, match="BertConfig.from_dict: unknown fields"):
        BertConfig.from_dict({**config.to_dict(), "block_size": 8})


def test_input_errors_name_the_problem():
    model = tiny()
    with pytest.raises(ValueError, match="sequence length 7 exceeds max_position_embeddings 6"):
        model(np.ones((1, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=r"token id 7 is outside the vocabulary \[0, 7\)"):
        model(np.array([[1, 7]]))
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        model(np.array([[1, -1]]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\); expected \(2, 5\)"):
        model(IDX, MASK[:, :4])
    with pytest.raises(TypeError, match="attention_mask must hold ints or bools .* got float64"):
        model(IDX, MASK.astype(float))
    with pytest.raises(ValueError, match=r"token type id 2 is outside the vocabulary \[0, 2\)"):
        model(IDX, MASK, np.full((2, 5), 2))
    with pytest.raises(TypeError, match="needs a BertConfig"):
        Bert({"vocab_size": 7})
