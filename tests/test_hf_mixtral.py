"""Mixtral against Hugging Face transformers, on tiny random-weight models built here (no download).

Both ways (transformers' save_pretrained -> minillm.hf.load, and minillm.hf.save
-> AutoModelForCausalLM), 4 experts with 2 per token and grouped-query
attention; the fused expert layout transformers holds in memory read too;
greedy generation token for token; the load-balancing loss and the training
loss with ``output_router_logits=True``.
"""
import json

import numpy
import pytest

torch = pytest.importorskip("torch", reason="the Hugging Face parity tests need torch")
transformers = pytest.importorskip("transformers", reason="the Hugging Face parity tests need transformers")

import minillm.functional as F  # noqa: E402
import minillm.hf  # noqa: E402
from minillm import Mixtral, MixtralConfig, backend  # noqa: E402
from tests.test_hf_llama import ids, minillm_logits, torch_logits  # noqa: E402  (vocabulary 97 there too)

V = 97


def hf_model(seed=0, dtype=torch.float32, **overrides):
    settings = dict(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                    max_position_embeddings=128, rms_norm_eps=1e-5, router_aux_loss_coef=0.02,
                    bos_token_id=None, eos_token_id=None, pad_token_id=None,
                    experts_implementation="eager")     # the per-expert loop of modeling_mixtral.py (any dtype)
    settings.update(overrides)
    torch.manual_seed(seed)
    model = transformers.MixtralForCausalLM(transformers.MixtralConfig(**settings)).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):     # RMSNorm weights start at 1; make them matter
                p.uniform_(0.5, 1.5)
            if name.endswith("mlp.gate.weight"):  # decisive routing: no near-ties for float32 to flip
                p.normal_(0.0, 1.0)
    return model


def float64_pair(tmp_path, seed):
    """A float64 transformers Mixtral and the minillm model loaded from its save_pretrained folder."""
    reference = hf_model(dtype=torch.float64, seed=seed)
    reference.save_pretrained(tmp_path)
    return reference, minillm.hf.load(tmp_path, dtype="float64")


def assert_close(got, expected, rel=2e-5):
    assert numpy.abs(got - expected).max() < rel * numpy.abs(expected).max()


def test_transformers_folder_loads_with_equal_logits(tmp_path):
    reference = hf_model()
    reference.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    assert isinstance(model, Mixtral)
    assert (model.config.n_expert, model.config.top_k, model.config.n_kv_head) == (4, 2, 2)
    assert model.config.router_aux_loss_coef == 0.02
    idx = ids((2, 13))
    assert_close(minillm_logits(model, idx), torch_logits(reference, idx))


def test_minillm_save_loads_in_transformers_with_equal_logits(tmp_path):
    config = MixtralConfig(vocab_size=V, block_size=64, n_layer=2, n_head=4, n_embd=32, n_kv_head=2,
                           n_hidden=40, n_expert=4, top_k=2, norm_eps=1e-5, rope_theta=500.0)
    model = Mixtral(config, seed=3)
    for moe in model.moe_layers():                  # decisive routing, as above
        moe.gate.weight.data[...] = backend.asarray(numpy.random.default_rng(0).normal(0, 1, (32, 4)))
    minillm.hf.save(model, tmp_path)
    names = set(json.loads((tmp_path / "config.json").read_text()))
    assert {"num_local_experts", "num_experts_per_tok", "router_aux_loss_coef"} <= names
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reference).__name__ == "MixtralForCausalLM"
    idx = ids((2, 11), seed=4)
    assert_close(minillm_logits(model, idx), torch_logits(reference, idx))
    again = Mixtral.from_pretrained(tmp_path)       # and back: the same numbers
    for (name, p), (name2, p2) in zip(model.named_parameters(), again.named_parameters()):
        assert name == name2 and numpy.array_equal(backend.to_numpy(p.data), backend.to_numpy(p2.data))


def test_fused_in_memory_layout_is_read_too(tmp_path):
    from safetensors.numpy import save_file
    reference = hf_model(seed=5)
    reference.save_pretrained(tmp_path)             # for config.json; then overwrite the tensors, fused
    tensors = {name: p.detach().numpy().copy() for name, p in reference.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in tensors
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    idx = ids((1, 9), seed=6)
    assert_close(minillm_logits(minillm.hf.load(tmp_path), idx), torch_logits(reference, idx))


def test_aux_loss_and_training_loss_equal_transformers(tmp_path):
    reference, model = float64_pair(tmp_path, seed=7)
    idx = ids((2, 10), seed=8)
    with torch.no_grad():
        out = reference(torch.as_tensor(idx), labels=torch.as_tensor(idx), output_router_logits=True)
    logits = model(idx)                             # aux over all 2 x 10 tokens of both layers, as theirs
    aux = float(model.router_aux_loss().data)
    assert abs(aux - out.aux_loss.item()) < 1e-6 * out.aux_loss.item()
    loss = F.cross_entropy(logits[:, :-1], idx[:, 1:]) + model.auxiliary_loss()   # transformers shifts labels
    assert abs(float(loss.data) - out.loss.item()) < 1e-6 * out.loss.item()


def test_greedy_generation_equals_transformers_generate(tmp_path):
    reference, model = float64_pair(tmp_path, seed=9)
    prompt = ids((2, 5), seed=10)
    with torch.no_grad():
        expected = reference.generate(torch.as_tensor(prompt), max_new_tokens=20, do_sample=False,
                                      attention_mask=torch.ones(prompt.shape, dtype=torch.long)).numpy()
    for use_cache in (True, False):
        got = backend.to_numpy(model.generate(prompt, 20, temperature=0, use_cache=use_cache))
        numpy.testing.assert_array_equal(got, expected)
    assert len(set(expected[0, 5:].tolist())) > 3   # not a degenerate repeat of one token


def test_unsupported_settings_are_errors_naming_the_key(tmp_path):
    hf_model().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    hf = json.loads(path.read_text())
    for key, value, message in [("sliding_window", 16, "sliding_window = 16 is not supported"),
                                ("router_jitter_noise", 0.1, "router_jitter_noise = 0.1 is not supported"),
                                ("num_experts_per_tok", 5, r"top_k \(5\) must not exceed n_expert \(4\)")]:
        path.write_text(json.dumps({**hf, key: value}))
        with pytest.raises(ValueError, match=message):
            minillm.hf.load(tmp_path)
