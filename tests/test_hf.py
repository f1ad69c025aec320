"""Tests for minillm.hf: Hugging Face folders (config.json + model.safetensors), the GPT-2 converter
and the family registry (``minillm.hf.load`` / ``save``)."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import minillm.hf
from minillm import backend
from minillm.hf import gpt2 as hf_gpt2

CONFIG = {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 4,
          "bias": True, "dropout": 0.0}


def random_state(config=CONFIG, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in hf_gpt2.expected_shapes(config).items()}


def test_expected_shapes_follow_conv1d_in_out_layout():
    s = hf_gpt2.expected_shapes(CONFIG)
    C = 4
    assert s["wte.weight"] == (11, C) and s["wpe.weight"] == (8, C)
    assert s["h.1.attn.c_attn.weight"] == (C, 3 * C)   # Conv1D (nx, nf) = (in, out)
    assert s["h.1.mlp.c_fc.weight"] == (C, 4 * C)
    assert s["h.1.mlp.c_proj.weight"] == (4 * C, C)
    assert len(s) == 2 + 12 * 2 + 2


def test_write_read_round_trip(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path / "m", CONFIG, state)
    config, back = hf_gpt2.read_gpt2(tmp_path / "m")
    assert config == CONFIG
    assert list(back) == list(state)
    for n in state:
        assert back[n].dtype == np.float32
        np.testing.assert_array_equal(back[n], state[n])


def test_written_config_has_gpt2_keys(tmp_path):
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert cfg["activation_function"] == "gelu_new" and cfg["layer_norm_epsilon"] == 1e-5
    assert (cfg["n_embd"], cfg["n_layer"], cfg["n_head"]) == (4, 2, 2)
    assert cfg["n_positions"] == cfg["n_ctx"] == 8 and cfg["vocab_size"] == 11
    assert cfg["tie_word_embeddings"] is True
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "bos_token_id", "eos_token_id"):
        assert key in cfg
    gpt2 = hf_gpt2.config_to_hf({**CONFIG, "vocab_size": 50257})
    assert gpt2["bos_token_id"] == gpt2["eos_token_id"] == 50256


def test_written_tensors_are_unprefixed_contiguous_float32(tmp_path):
    state = random_state()
    state["h.0.attn.c_attn.weight"] = np.asfortranarray(state["h.0.attn.c_attn.weight"].astype(np.float64))
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state)
    raw = load_file(tmp_path / "model.safetensors")
    assert set(raw) == set(state)
    assert all(a.dtype == np.float32 for a in raw.values())
    from safetensors import safe_open
    with safe_open(tmp_path / "model.safetensors", framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}


def test_write_keeps_float64_when_asked(tmp_path):
    state = {n: a.astype(np.float64) for n, a in random_state().items()}
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state, dtype=None)
    _, back = hf_gpt2.read_gpt2(tmp_path)
    assert back["wte.weight"].dtype == np.float64


def test_reads_transformers_prefixed_names_and_skips_buffers(tmp_path):
    """What GPT2LMHeadModel.save_pretrained writes: "transformer." prefix, maybe lm_head, mask buffers."""
    state = random_state()
    tensors = {"transformer." + n: a for n, a in state.items()}
    tensors["lm_head.weight"] = state["wte.weight"].copy()
    for i in range(2):
        tensors[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        tensors[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state)  # for config.json
    save_file(tensors, tmp_path / "model.safetensors")
    _, back = hf_gpt2.read_gpt2(tmp_path)
    assert list(back) == list(state)
    np.testing.assert_array_equal(back["h.1.mlp.c_proj.weight"], state["h.1.mlp.c_proj.weight"])


def test_untied_lm_head_is_an_error(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state)
    save_file({**state, "lm_head.weight": state["wte.weight"] + 1}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight differs from wte.weight"):
        hf_gpt2.read_gpt2(tmp_path)
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        hf_gpt2.write_gpt2(tmp_path / "x", CONFIG, {**state, "lm_head.weight": state["wte.weight"] * 2})


def test_tied_lm_head_in_state_dict_is_dropped(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path, CONFIG, {**state, "lm_head.weight": state["wte.weight"]})
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")


def test_bias_free_model_is_written_with_zero_biases(tmp_path):
    state = {n: a for n, a in random_state().items() if not n.endswith(".bias")}
    hf_gpt2.write_gpt2(tmp_path, {**CONFIG, "bias": False}, state)
    config, back = hf_gpt2.read_gpt2(tmp_path)
    assert config["bias"] is True
    assert np.all(back["h.0.attn.c_attn.bias"] == 0) and back["h.0.attn.c_attn.bias"].shape == (12,)
    np.testing.assert_array_equal(back["wte.weight"], state["wte.weight"])


# --- errors ---------------------------------------------------------------------

def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        hf_gpt2.read_gpt2(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        hf_gpt2.read_gpt2(tmp_path)
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        hf_gpt2.read_gpt2(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="never loads"):
        hf_gpt2.read_gpt2(tmp_path)


@pytest.mark.parametrize("cut", [4, 100, -10])
def test_truncated_safetensors(tmp_path, cut):
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"model\.safetensors is not a readable safetensors file"):
        hf_gpt2.read_gpt2(tmp_path)


def test_garbage_safetensors(tmp_path):
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        hf_gpt2.read_gpt2(tmp_path)


def test_wrong_shaped_tensor(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state)
    state["h.1.attn.c_attn.weight"] = state["h.1.attn.c_attn.weight"].T.copy()  # (out, in): a Linear's layout
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"tensor h\.1\.attn\.c_attn\.weight has shape \(12, 4\), "
                                         r"expected \(4, 12\)"):
        hf_gpt2.read_gpt2(tmp_path)
    with pytest.raises(ValueError, match=r"h\.1\.attn\.c_attn\.weight has shape \(12, 4\)"):
        hf_gpt2.write_gpt2(tmp_path / "y", CONFIG, state)


def test_missing_and_unexpected_tensors(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path, {**CONFIG, "n_layer": 1},
                  {n: a for n, a in state.items() if not n.startswith("h.1.")})
    save_file(state, tmp_path / "model.safetensors")  # a 2-layer file, a 1-layer config
    with pytest.raises(ValueError, match=r"n_layer=1: unexpected tensors \['h\.1\."):
        hf_gpt2.read_gpt2(tmp_path)
    del state["ln_f.bias"]
    with pytest.raises(ValueError, match=r"missing tensors \['ln_f\.bias'\]"):
        hf_gpt2.write_gpt2(tmp_path / "z", CONFIG, {n: a for n, a in state.items()})


def _write_config(tmp_path, **changes):
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
     r"model_type 'llama' \(architectures \['LlamaForCausalLM'\]\); only GPT-2"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon = 1e-06 is not supported"),
    ({"activation_function": "relu"}, "activation_function = 'relu' is not supported"),
    ({"n_inner": 7}, "n_inner = 7 is not supported"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings = False"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"n_head": 3}, r"n_embd \(4\) must be divisible by n_head \(3\)"),
    ({"n_layer": 0}, "n_layer must be a positive integer"),
])
def test_unsupported_config(tmp_path, changes, message):
    _write_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        hf_gpt2.read_gpt2(tmp_path)


def test_config_missing_key_and_bad_json(tmp_path):
    _write_config(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    del cfg["n_embd"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing the GPT-2 key\(s\) \['n_embd'\]"):
        hf_gpt2.read_gpt2(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        hf_gpt2.read_gpt2(tmp_path)


def test_gelu_pytorch_tanh_and_original_minimal_config(tmp_path):
    """The original gpt2 hub config has no n_inner/tie keys; gelu_pytorch_tanh is the same GELU."""
    hf_gpt2.write_gpt2(tmp_path, CONFIG, random_state())
    minimal = {"model_type": "gpt2", "vocab_size": 11, "n_positions": 8, "n_ctx": 8, "n_embd": 4,
               "n_layer": 2, "n_head": 2, "activation_function": "gelu_pytorch_tanh"}
    (tmp_path / "config.json").write_text(json.dumps(minimal))
    config, _ = hf_gpt2.read_gpt2(tmp_path)
    assert config == CONFIG


def test_sharded_checkpoint(tmp_path):
    state = random_state()
    hf_gpt2.write_gpt2(tmp_path, CONFIG, state)
    (tmp_path / "model.safetensors").unlink()
    names = list(state)
    save_file({n: state[n] for n in names[:10]}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({n: state[n] for n in names[10:]}, tmp_path / "model-00002-of-00002.safetensors")
    weight_map = {n: "model-0000%d-of-00002.safetensors" % (1 if k < 10 else 2) for k, n in enumerate(names)}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _, back = hf_gpt2.read_gpt2(tmp_path)
    np.testing.assert_array_equal(back["ln_f.weight"], state["ln_f.weight"])


# --- with the model: GPT.save_pretrained / GPT.from_pretrained -------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpt_save_load_pretrained_identical_logits(tmp_path, dtype):
    from minillm import no_grad
    from minillm.models import GPT, GPTConfig
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8, dtype=dtype)
    model = GPT(config, seed=3)
    rng = np.random.default_rng(0)
    for p in model.parameters():  # non-trivial biases and LayerNorm weights too
        p.data[...] = backend.asarray(rng.standard_normal(p.shape).astype(p.dtype) * 0.1)
    idx = rng.integers(0, 13, size=(2, 8))
    if dtype == "float32":
        model.save_pretrained(tmp_path / "gpt")
    else:  # save_pretrained stores float32, as transformers expects; keep float64 here
        hf_gpt2.write_gpt2(tmp_path / "gpt", config.to_dict(), model.state_dict(), dtype=None)
    assert (tmp_path / "gpt" / "config.json").exists()
    back = GPT.from_pretrained(tmp_path / "gpt", dtype=dtype)
    assert back.config.to_dict() == config.to_dict()
    with no_grad():
        a, b = model(idx).data, back(idx).data
    np.testing.assert_array_equal(backend.to_numpy(b), backend.to_numpy(a))


def test_gpt_without_bias_round_trips(tmp_path):
    from minillm import no_grad
    from minillm.models import GPT, GPTConfig
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False)
    model = GPT(config, seed=1)
    model.save_pretrained(tmp_path)
    back = GPT.from_pretrained(tmp_path)
    idx = np.arange(8).reshape(1, 8)
    with no_grad():
        np.testing.assert_array_equal(back(idx).numpy(), model(idx).numpy())


# --- demos/gpt2.py on a tiny stand-in for the real GPT-2 folder ------------------

def _load_demo():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "demos" / "gpt2.py"
    spec = importlib.util.spec_from_file_location("demo_gpt2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpt2_demo_runs_on_a_tiny_gpt2_folder(tmp_path, capsys):
    from minillm.models import GPT, GPTConfig
    from minillm.tokenizers import BPETokenizer
    tok = BPETokenizer.train("the cat sat on the mat. " * 20, vocab_size=256 + 20 + 1)
    GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8)).save_pretrained(tmp_path)
    tok.save_gpt2(tmp_path)
    demo = _load_demo()
    args = ["--model-dir", str(tmp_path), "--prompt", "the cat", "--max-new-tokens", "5", "--seed", "1"]
    text = demo.main(args)
    assert text.startswith("the cat") and "tokens/s" in capsys.readouterr().out
    assert demo.main(args + ["--no-cache"]) == text  # the KV cache changes nothing
    demo.main(["--model-dir", str(tmp_path), "--prompt", "", "--max-new-tokens", "3", "--temperature", "0"])


def test_gpt2_demo_names_missing_files(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MINILLM_DEBUG", raising=False)
    demo = _load_demo()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--model-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "lacks model.safetensors, vocab.json, merges.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.main(["--model-dir", str(tmp_path / "nope")])
    assert "is not a folder" in capsys.readouterr().err


# --- the registry: minillm.hf.load / save pick the family ------------------------

def test_hf_load_and_save_dispatch_on_model_type_and_class(tmp_path):
    from minillm import no_grad
    from minillm.models import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=2)
    minillm.hf.save(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    back = minillm.hf.load(tmp_path)
    assert type(back) is GPT and back.config == model.config
    idx = np.arange(8).reshape(1, 8)
    with no_grad():
        np.testing.assert_array_equal(back(idx).numpy(), model(idx).numpy())


def test_hf_load_names_an_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "falcon"}))
    with pytest.raises(ValueError, match=r"model_type 'falcon' is not supported; minillm reads 'gpt2'"):
        minillm.hf.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 2}))
    with pytest.raises(ValueError, match="has no \"model_type\""):
        minillm.hf.load(tmp_path)
    with pytest.raises(TypeError, match="no converter for a list"):
        minillm.hf.save([], tmp_path)
