"""Llama against Hugging Face transformers, on tiny random-weight models built here (no download).

Both ways (transformers' save_pretrained -> minillm.hf.load, and minillm.hf.save
-> AutoModelForCausalLM), with grouped-query attention (4 query heads, 2
key/value heads), tied and untied output layers, Llama 3's rope scaling; one
training step (loss, every gradient, the AdamW update) in float64; greedy
generation token for token.
"""
import numpy
import pytest

torch = pytest.importorskip("torch", reason="the Hugging Face parity tests need torch")
transformers = pytest.importorskip("transformers", reason="the Hugging Face parity tests need transformers")

import minillm.hf  # noqa: E402
from minillm import Llama, LlamaConfig, backend, no_grad  # noqa: E402
from minillm.hf.llama import as_hf_layout  # noqa: E402
from minillm.optim import AdamW  # noqa: E402

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}


def hf_config(**overrides):
    settings = dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                    rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
                    pad_token_id=None)
    settings.update(overrides)
    return transformers.LlamaConfig(**settings)


def hf_model(seed=0, dtype=torch.float32, **overrides):
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(hf_config(**overrides)).to(dtype).eval()
    with torch.no_grad():  # RMSNorm weights start at 1; make them matter
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model


def float64_throughout(model):
    """transformers computes RoPE's angles and RMSNorm in float32 even in a float64 model (both
    forwards cast with .float()); recompute them in float64, same formulas, so that a float64
    comparison can be tight."""
    head_dim = model.config.head_dim
    theta = model.config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)

    def rotary(x, position_ids):
        angles = position_ids[..., None].double() * inv_freq          # (B, T, D/2)
        angles = torch.cat((angles, angles), dim=-1)                   # (B, T, D)
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    model.model.rotary_emb.forward = rotary

    def rms_norm(norm):
        return lambda x: norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
    for module in model.modules():
        if type(module).__name__ == "LlamaRMSNorm":
            module.forward = rms_norm(module)
    return model


def ids(shape, vocab=97, seed=1):
    return numpy.random.default_rng(seed).integers(0, vocab, shape)


def torch_logits(model, idx):
    with torch.no_grad():
        return model(torch.as_tensor(idx)).logits.double().numpy()


def minillm_logits(model, idx):
    with no_grad():
        return backend.to_numpy(model(idx).data).astype(numpy.float64)


@pytest.mark.parametrize("tied", [False, True])
def test_transformers_folder_loads_with_equal_logits(tmp_path, tied):
    reference = hf_model(tie_word_embeddings=tied)
    reference.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    assert isinstance(model, Llama) and model.config.n_kv_head == 2 and model.config.tie_word_embeddings == tied
    idx = ids((2, 13))
    expected = torch_logits(reference, idx)
    assert numpy.abs(minillm_logits(model, idx) - expected).max() < 2e-5 * numpy.abs(expected).max()


@pytest.mark.parametrize("tied", [False, True])
def test_minillm_save_loads_in_transformers_with_equal_logits(tmp_path, tied):
    config = LlamaConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32, n_kv_head=2,
                         n_hidden=48, norm_eps=1e-5, rope_theta=500.0, tie_word_embeddings=tied)
    model = Llama(config, seed=3)
    model.save_pretrained(tmp_path)
    reference = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(reference).__name__ == "LlamaForCausalLM"
    idx = ids((2, 11), seed=4)
    expected = torch_logits(reference, idx)
    assert numpy.abs(minillm_logits(model, idx) - expected).max() < 2e-5 * numpy.abs(expected).max()
    again = Llama.from_pretrained(tmp_path)                       # and back: the same numbers
    for (name, p), (name2, p2) in zip(model.named_parameters(), again.named_parameters()):
        assert name == name2 and numpy.array_equal(backend.to_numpy(p.data), backend.to_numpy(p2.data))


def test_llama3_rope_scaling_matches_and_matters(tmp_path):
    """theta = 100 and original context 64 put the 8 frequencies of head_dim 16 in all three bands."""
    reference = hf_model(head_dim=16, num_attention_heads=2, num_key_value_heads=1,
                         rope_parameters={"rope_theta": 100.0, **LLAMA3})
    reference.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    assert model.config.rope_scaling == LLAMA3 and model.config.rope_theta == 100.0
    idx = ids((1, 60), seed=5)
    expected = torch_logits(reference, idx)
    got = minillm_logits(model, idx)
    assert numpy.abs(got - expected).max() < 2e-5 * numpy.abs(expected).max()
    plain = Llama(LlamaConfig(**{**model.config.to_dict(), "rope_scaling": None}))
    plain.load_state_dict(model.state_dict())                    # the same weights, unscaled frequencies
    assert numpy.abs(minillm_logits(plain, idx) - expected).max() > 100 * numpy.abs(got - expected).max()


def test_legacy_rope_keys_and_unsupported_settings(tmp_path):
    reference = hf_model()
    reference.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    import json
    hf = json.loads(config_path.read_text())
    del hf["rope_parameters"]                                     # the pre-transformers-5 spelling
    hf["rope_theta"], hf["rope_scaling"] = 100.0, {"type": "llama3", **{k: v for k, v in LLAMA3.items()
                                                                          if k != "rope_type"}}
    config_path.write_text(json.dumps(hf))
    assert minillm.hf.load(tmp_path).config.rope_scaling == LLAMA3
    for key, value, message in [("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, "rope_scaling type 'yarn'"),
                                ("hidden_act", "gelu", "hidden_act = 'gelu' is not supported"),
                                ("partial_rotary_factor", 0.5, "partial_rotary_factor = 0.5")]:
        config_path.write_text(json.dumps({**hf, key: value}))
        with pytest.raises(ValueError, match=message):
            minillm.hf.load(tmp_path)


def test_one_training_step_equals_pytorch_in_float64(tmp_path):
    reference = hf_model(dtype=torch.float64)
    reference.save_pretrained(tmp_path)
    float64_throughout(reference)
    model = minillm.hf.load(tmp_path, dtype="float64")
    idx, targets = ids((2, 9), seed=6), ids((2, 9), seed=7)

    logits = reference(torch.as_tensor(idx)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), torch.as_tensor(targets).reshape(-1))
    loss.backward()
    _, our_loss = model(idx, targets)
    our_loss.backward()
    assert abs(float(our_loss.data) - loss.item()) < 1e-12
    theirs = dict(reference.named_parameters())
    ours = dict(model.named_parameters())
    assert sorted(ours) == sorted(theirs)
    for name, p in ours.items():
        expected = as_hf_layout(name, theirs[name].grad.numpy())
        error = numpy.abs(backend.to_numpy(p.grad) - expected).max()
        assert error < 1e-10 * numpy.abs(expected).max(), (name, error)

    settings = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    torch.optim.AdamW(reference.parameters(), **settings).step()
    AdamW(model.parameters(), **settings).step()
    for name, p in ours.items():
        expected = as_hf_layout(name, theirs[name].detach().numpy())
        numpy.testing.assert_allclose(backend.to_numpy(p.data), expected, rtol=1e-12, atol=1e-12, err_msg=name)


def test_greedy_generation_equals_transformers_generate(tmp_path):
    reference = hf_model(dtype=torch.float64, seed=8)
    reference.save_pretrained(tmp_path)
    float64_throughout(reference)
    model = minillm.hf.load(tmp_path, dtype="float64")
    prompt = ids((2, 5), seed=9)
    with torch.no_grad():
        expected = reference.generate(torch.as_tensor(prompt), max_new_tokens=24, do_sample=False,
                                      attention_mask=torch.ones(prompt.shape, dtype=torch.long)).numpy()
    for use_cache in (True, False):
        got = backend.to_numpy(model.generate(prompt, 24, temperature=0, use_cache=use_cache))
        numpy.testing.assert_array_equal(got, expected)
    assert len(set(expected[0, 5:].tolist())) > 3                 # not a degenerate repeat of one token


def test_bfloat16_checkpoint_loads_exactly(tmp_path):
    """Recent checkpoints store bfloat16, which NumPy lacks: the reader widens it to float32 exactly."""
    reference = hf_model(tie_word_embeddings=True).to(torch.bfloat16)
    reference.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    for name, p in reference.named_parameters():
        expected = as_hf_layout(name, p.detach().float().numpy())
        numpy.testing.assert_array_equal(backend.to_numpy(dict(model.named_parameters())[name].data), expected)
    idx = ids((1, 9), seed=10)
    expected = torch_logits(reference.float(), idx)
    assert numpy.abs(minillm_logits(model, idx) - expected).max() < 2e-5 * numpy.abs(expected).max()


def test_qwen2_both_ways(tmp_path):
    """Qwen2 is a Llama with biases on q/k/v_proj (not o_proj): qkv_bias; random biases so they count."""
    torch.manual_seed(11)
    config = transformers.Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=True, rope_parameters={"rope_type": "default",
                                                                                 "rope_theta": 1000.0})
    reference = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    reference.save_pretrained(tmp_path / "theirs")
    model = minillm.hf.load(tmp_path / "theirs")
    assert model.config.qkv_bias and not model.config.attention_bias
    assert model.model.layers[0].self_attn.o_proj.bias is None
    idx = ids((2, 10), seed=12)
    expected = torch_logits(reference, idx)
    assert numpy.abs(minillm_logits(model, idx) - expected).max() < 2e-5 * numpy.abs(expected).max()

    for name, p in model.named_parameters():                    # and back: minillm writes model_type qwen2
        if name.endswith("bias"):
            p.data[...] = backend.asarray(numpy.random.default_rng(13).normal(0, 0.5, p.shape))
    model.save_pretrained(tmp_path / "ours")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert type(again).__name__ == "Qwen2ForCausalLM"
    expected = torch_logits(again, idx)
    assert numpy.abs(minillm_logits(model, idx) - expected).max() < 2e-5 * numpy.abs(expected).max()
