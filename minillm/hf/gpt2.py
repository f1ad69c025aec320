"""The GPT-2 converter: Hugging Face GPT-2 folders <-> ``minillm.models.GPT``.

A converter is the two things a format needs to know about one family: how
config.json's keys map onto the model's config, and how the file's tensor
names map onto the model's parameter names. The files themselves (reading
config.json, model.safetensors and its shards; writing them) are
``minillm.hf.files``; ``minillm.hf.load`` / ``save`` pick this module through
the registry in ``minillm/hf/__init__.py``.

Names. minillm's parameter names are GPT-2's own: ``wte.weight``,
``wpe.weight``, ``h.{i}.ln_1.weight``, ``h.{i}.attn.c_attn.weight``, ...,
``ln_f.bias``. Hugging Face files may prefix them with ``transformer.`` (what
``GPT2LMHeadModel.save_pretrained`` writes) or not (the original ``gpt2`` hub
checkpoint); both are read. Also in the files, and skipped: ``lm_head.weight``
(tied to ``wte.weight``: it must be equal) and the attention buffers
``h.{i}.attn.bias`` / ``h.{i}.attn.masked_bias`` (the causal mask, not weights).

Layout: no transpose. GPT-2's projections are ``transformers.pytorch_utils.Conv1D``
modules, whose ``weight`` has shape ``(nx, nf)`` = (in_features, out_features)
and whose forward is ``y = x @ W + b`` (``torch.addmm(bias, x, weight)``).
That is minillm's ``Linear`` layout exactly (``h = x W + b``, W of shape
(in, out)), so ``c_attn.weight`` is (C, 3C), ``c_fc.weight`` (C, 4C) and
``mlp.c_proj.weight`` (4C, C) in both. (PyTorch's ``nn.Linear`` stores the
transpose, (out, in); "Conv1D is a transposed Linear" refers to that.) The
fused ``c_attn`` output is [q | k | v] along its last axis, heads side by side
within each, in both.

Only the GPT-2 architecture is accepted: ``model_type`` "gpt2", LayerNorm
epsilon 1e-5, the tanh GELU (``gelu_new``), MLP width 4·n_embd, tied output
embedding, scaled dot-product attention. Anything else is a ``ValueError``
that names the setting.
"""
import dataclasses

import numpy as np

from minillm import backend, safe_io
from minillm.hf import files
from minillm.models.gpt2 import GPT, GPTConfig, parameter_shapes

MODEL_CLASS = GPT
MODEL_TYPE = "gpt2"
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")  # two names for GPT-2's tanh-approximated GELU


def expected_shapes(config):
    """{parameter name: shape} for a GPT-2 with this config dict (ours: vocab_size, block_size, ...)."""
    return parameter_shapes(GPTConfig(**{k: config[k] for k in ("vocab_size", "block_size", "n_layer",
                                                                "n_head", "n_embd")}))


# --- config.json -------------------------------------------------------------

def config_from_hf(hf, path=files.CONFIG_NAME):
    """GPT-2 config.json dict -> minillm config dict, or a ValueError naming what is unsupported."""
    model_type = hf.get("model_type")
    archs = hf.get("architectures") or []
    if model_type != "gpt2" and not (model_type is None and any(a.startswith("GPT2") for a in archs)):
        raise ValueError(f"{path} describes model_type {model_type!r} (architectures {archs}); "
                         f"only GPT-2 (model_type 'gpt2') is supported")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in hf]
    if "n_positions" not in hf and "n_ctx" not in hf:
        missing.append("n_positions")
    if missing:
        raise ValueError(f"{path} is missing the GPT-2 key(s) {missing}")
    config = {
        "vocab_size": hf["vocab_size"],
        "block_size": hf.get("n_positions", hf.get("n_ctx")),
        "n_layer": hf["n_layer"],
        "n_head": hf["n_head"],
        "n_embd": hf["n_embd"],
        "bias": True,
        "dropout": 0.0,
    }
    for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {v!r}")
    if config["n_embd"] % config["n_head"]:
        raise ValueError(f"{path}: n_embd ({config['n_embd']}) must be divisible by n_head ({config['n_head']})")
    checks = [  # (key, value, default, is it supported?, what minillm does)
        ("layer_norm_epsilon", hf.get("layer_norm_epsilon", 1e-5), None,
         lambda v: isinstance(v, (int, float)) and abs(v - 1e-5) <= 1e-12, "1e-5"),
        ("activation_function", hf.get("activation_function", "gelu_new"), None,
         lambda v: v in GELU_TANH, "'gelu_new' (tanh GELU)"),
        ("n_inner", hf.get("n_inner"), None,
         lambda v: v is None or v == 4 * hf["n_embd"], f"None or 4*n_embd = {4 * hf['n_embd']}"),
        ("tie_word_embeddings", hf.get("tie_word_embeddings", True), None, lambda v: v is True, "true"),
        ("scale_attn_weights", hf.get("scale_attn_weights", True), None, lambda v: v is True, "true"),
        ("scale_attn_by_inverse_layer_idx", hf.get("scale_attn_by_inverse_layer_idx", False), None,
         lambda v: v is False, "false"),
        ("add_cross_attention", hf.get("add_cross_attention", False), None, lambda v: v is False, "false"),
    ]
    for key, value, _, ok, wanted in checks:
        if not ok(value):
            raise ValueError(f"{path}: {key} = {value!r} is not supported; minillm's GPT-2 needs {wanted}")
    return config


def config_to_hf(config, bos_token_id=None, eos_token_id=None):
    """minillm config dict -> GPT-2 config.json dict (the keys ``transformers`` writes for gpt2).

    bos/eos default to 50256 (``<|endoftext|>``) for GPT-2's 50257-token vocabulary
    and to null otherwise (a model with its own tokenizer has no such token).
    """
    missing = [k for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd") if k not in config]
    if missing:
        raise ValueError(f"config is missing {missing}")
    V = int(config["vocab_size"])
    if V == 50257:
        bos_token_id = 50256 if bos_token_id is None else bos_token_id
        eos_token_id = 50256 if eos_token_id is None else eos_token_id
    p = float(config.get("dropout", 0.0))
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": p,
        "bos_token_id": bos_token_id,
        "embd_pdrop": p,
        "eos_token_id": eos_token_id,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": int(config["block_size"]),
        "n_embd": int(config["n_embd"]),
        "n_head": int(config["n_head"]),
        "n_inner": None,
        "n_layer": int(config["n_layer"]),
        "n_positions": int(config["block_size"]),
        "reorder_and_upcast_attn": False,
        "resid_pdrop": p,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": V,
    }


# --- model.safetensors -------------------------------------------------------

def state_from_hf(tensors, config, path=files.WEIGHTS_NAME):
    """Hugging Face tensor names -> minillm names; checks names, shapes, dtypes and values against ``config``."""
    tensors = files.strip_prefix(tensors, "transformer.", path)
    safe_io.check_layer_count(tensors, "h.", config["n_layer"], path)   # before a name list of n_layer blocks
    state, lm_head = {}, None
    for short, array in tensors.items():
        if short == "lm_head.weight":
            lm_head = array
        elif short.endswith((".attn.bias", ".attn.masked_bias")) and ".c_" not in short:
            continue  # the causal-mask buffers, not parameters
        else:
            state[short] = array
    shapes = expected_shapes(config)
    files.check_tensors(state, shapes, path, f"a GPT-2 with n_layer={config['n_layer']}")
    if lm_head is not None:
        files.check_tensors({"lm_head.weight": lm_head}, {"lm_head.weight": shapes["wte.weight"]}, path,
                            "GPT-2's output layer (tied to wte.weight)")
        if not np.array_equal(lm_head, state["wte.weight"]):
            raise ValueError(f"{path}: lm_head.weight differs from wte.weight; minillm's GPT-2 ties them")
    return {n: state[n] for n in shapes}  # minillm's parameter order


def read_gpt2(directory):
    """Read a Hugging Face GPT-2 folder -> (config_dict, state_dict).

    config_dict has ``GPTConfig`` field names (vocab_size, block_size = n_positions,
    n_layer, n_head, n_embd, bias=True, dropout=0.0); state_dict maps minillm's
    parameter names to NumPy arrays in the file's dtype.
    """
    hf, config_path = files.read_config(directory)
    config = config_from_hf(hf, config_path)
    tensors = files.read_tensors(directory)
    return config, state_from_hf(tensors, config, files.weights_path(directory))


def write_gpt2(directory, config, state_dict, dtype="float32", bos_token_id=None, eos_token_id=None):
    """Write ``config.json`` + ``model.safetensors`` into ``directory`` (created if needed).

    ``config``: a minillm config dict (or ``GPTConfig``); ``state_dict``: minillm names ->
    arrays (NumPy or CuPy). Tensors are stored under the unprefixed names of the original
    ``gpt2`` hub checkpoint, contiguous, as ``dtype`` (float32; None keeps each array's
    dtype). A model without biases (``bias=False``) is written with zero biases, which
    computes the same function. ``lm_head.weight``, if given, must equal ``wte.weight``.
    """
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    has_bias = bool(config.get("bias", True))
    hf = config_to_hf(config, bos_token_id, eos_token_id)
    config = config_from_hf(hf)  # validates sizes, n_embd % n_head
    state = {n: backend.to_numpy(a) for n, a in state_dict.items()}
    if "lm_head.weight" in state:
        if "wte.weight" not in state or not np.array_equal(state["lm_head.weight"], state["wte.weight"]):
            raise ValueError("lm_head.weight differs from wte.weight; GPT-2's output layer is tied to wte")
        del state["lm_head.weight"]
    shapes = expected_shapes(config)
    if not has_bias:  # x W + 0 = x W, and LayerNorm with bias 0 is LayerNorm without bias
        for n, shape in shapes.items():
            if n.endswith(".bias") and n not in state:
                ref = state.get(n[:-len("bias")] + "weight")
                state[n] = np.zeros(shape, dtype=ref.dtype if ref is not None else np.float32)
    tensors = state_from_hf(state, config, "state_dict")
    out = {n: np.ascontiguousarray(a if dtype is None else a.astype(dtype, copy=False))
           for n, a in tensors.items()}
    files.write_folder(directory, hf, out)


def load(directory, dtype="float32", cls=GPT):
    """A ``GPT`` (or subclass ``cls``) from a Hugging Face GPT-2 folder."""
    config_dict, state = read_gpt2(directory)
    return files.model_from_state(cls, GPTConfig.from_dict({**config_dict, "dtype": dtype}), state)


def save(model, directory):
    """Write ``model`` (a GPT) as config.json + model.safetensors in the GPT-2 layout."""
    write_gpt2(directory, model.config.to_dict(), model.state_dict())
