"""The Llama converter: Hugging Face ``model_type: llama`` folders <-> ``minillm.models.Llama``.

Names: identical. minillm's parameters carry ``LlamaForCausalLM``'s own names
(``model.embed_tokens.weight``, ``model.layers.{i}.self_attn.q_proj.weight``,
..., ``model.norm.weight``, ``lm_head.weight``), so a tensor moves by name.

Layout: every Linear weight is transposed. PyTorch's ``nn.Linear`` stores
(out_features, in_features) and computes x W^T; minillm's Linear stores
(in, out) and computes x W. So every 2-D tensor except the embedding table
(V, C), which is a lookup table in both, is transposed on the way in and on
the way out (``lm_head.weight`` too: (V, C) there, (C, V) here).

Also in some files, and skipped: ``...rotary_emb.inv_freq`` (a buffer older
checkpoints saved; minillm recomputes the frequencies) and, when the
embeddings are tied, ``lm_head.weight`` (it must equal the embedding).

config.json: transformers 5 writes RoPE as ``"rope_parameters": {"rope_type",
"rope_theta", ...}``; hub checkpoints written before it carry ``"rope_theta"``
and ``"rope_scaling"``. Both are read; ``save`` writes the first. The RoPE
types minillm computes are plain (``"default"``) and ``"llama3"``; any other
(``"linear"``, ``"dynamic"``, ``"yarn"``, ...) is an error naming it, as are an
activation other than SiLU and a partial rotary factor.

Qwen2 (``model_type: qwen2``, ``Qwen2ForCausalLM``) is this architecture with
biases on q/k/v_proj (``qkv_bias``): the same converter reads and writes it;
its sliding-window attention, off in the released models, is an error if on.
"""
import numpy as np

from minillm import backend
from minillm.hf import files
from minillm.models.llama import Llama, LlamaConfig

MODEL_CLASS = Llama
MODEL_TYPE = "llama"
QWEN2 = "qwen2"                      # Llama with biases on q/k/v_proj
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)

_FIELDS = (  # (minillm LlamaConfig field, config.json key, default when the key is absent; None: required)
    ("vocab_size", "vocab_size", None),
    ("block_size", "max_position_embeddings", 2048),
    ("n_layer", "num_hidden_layers", None),
    ("n_head", "num_attention_heads", None),
    ("n_embd", "hidden_size", None),
    ("n_kv_head", "num_key_value_heads", "n_head"),
    ("n_hidden", "intermediate_size", None),
    ("head_dim", "head_dim", "n_embd / n_head"),
    ("norm_eps", "rms_norm_eps", 1e-6),
    ("tie_word_embeddings", "tie_word_embeddings", False),
    ("attention_bias", "attention_bias", False),
    ("mlp_bias", "mlp_bias", False),
    ("dropout", "attention_dropout", 0.0),
)


def as_hf_layout(name, array):
    """minillm <-> Hugging Face: transpose the Linear weights (2-D, not the embedding table).
    Its own inverse, so it serves both directions."""
    if array.ndim == 2 and not name.endswith("embed_tokens.weight"):
        return array.T
    return array


# --- config.json -------------------------------------------------------------

def rope_from_hf(hf, path=files.CONFIG_NAME):
    """(rope_theta, rope_scaling or None) from either spelling of config.json's RoPE settings."""
    rope = dict(hf.get("rope_scaling") or {})           # before transformers 5
    rope.update(hf.get("rope_parameters") or {})        # transformers 5
    theta = rope.pop("rope_theta", hf.get("rope_theta", 10000.0))
    partial = rope.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise ValueError(f"{path}: partial_rotary_factor = {partial!r} is not supported; minillm rotates "
                         f"the whole head (1.0)")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type == "llama3":
        rope.setdefault("original_max_position_embeddings", hf.get("max_position_embeddings"))
    return theta, (rope if rope_type != "default" else None)


def config_from_hf(hf, path=files.CONFIG_NAME, model_type=MODEL_TYPE):
    """config.json dict -> ``LlamaConfig`` keyword arguments, or a ValueError naming the key.

    ``model_type``: the family this file must describe (a family built on Llama passes its own)."""
    expected = (model_type, QWEN2) if model_type == MODEL_TYPE else (model_type,)
    if hf.get("model_type") not in expected:
        raise ValueError(f"{path} describes model_type {hf.get('model_type')!r}; expected {model_type!r}")
    if hf.get("use_sliding_window"):
        raise ValueError(f"{path}: use_sliding_window = true is not supported; minillm attends to every "
                         f"earlier token")
    missing = [key for _, key, default in _FIELDS if default is None and key not in hf]
    if missing:
        raise ValueError(f"{path} is missing the key(s) {missing}")
    if hf.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{path}: hidden_act = {hf['hidden_act']!r} is not supported; minillm's {model_type} "
                         f"needs 'silu' (SwiGLU)")
    config = {field: hf[key] for field, key, _ in _FIELDS if hf.get(key) is not None}
    config["rope_theta"], config["rope_scaling"] = rope_from_hf(hf, path)
    config["dropout"] = float(config.get("dropout", 0.0))
    if hf["model_type"] == QWEN2:
        config["qkv_bias"] = True
    return config


def make_config(config, path=files.CONFIG_NAME, config_class=LlamaConfig):
    """``config_class(**config)`` with the file named in any error."""
    try:
        return config_class(**config)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{path}: {e}") from None


def config_to_hf(config, model_type=MODEL_TYPE, architecture="LlamaForCausalLM"):
    """A ``LlamaConfig`` -> config.json dict, with the keys transformers 5 writes."""
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        rope.update(config.rope_scaling)
    hf = {key: getattr(config, field) for field, key, _ in _FIELDS}
    if config.qkv_bias:
        if config.attention_bias or model_type != MODEL_TYPE:
            raise ValueError("qkv_bias (Qwen2) goes with attention_bias = False in a plain Llama")
        model_type, architecture = QWEN2, "Qwen2ForCausalLM"
        hf["use_sliding_window"] = False
    hf.update({
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_act": "silu",
        "rope_parameters": rope,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": None,
        "eos_token_id": None,
        "dtype": "float32",
    })
    return hf


# --- model.safetensors -------------------------------------------------------

def state_from_hf(tensors, config, path=files.WEIGHTS_NAME, cls=Llama):
    """Hugging Face tensors -> minillm state dict for a ``cls`` with ``config``; every name and
    shape checked against ``cls.parameter_shapes(config)`` (``check_state``), before any model exists."""
    state = {name: as_hf_layout(name, array) for name, array in tensors.items()
             if not name.endswith(SKIPPED_SUFFIXES)}
    if config.tie_word_embeddings and "lm_head.weight" in state:
        lm_head = state.pop("lm_head.weight")
        embed = state.get("model.embed_tokens.weight")
        if embed is not None and not np.array_equal(lm_head.T, embed):
            raise ValueError(f"{path}: lm_head.weight differs from model.embed_tokens.weight, but "
                             f"config.json says tie_word_embeddings = true")
    cls.check_state(config, state, path)
    return state


def state_to_hf(state):
    """minillm state dict -> contiguous float32 NumPy tensors under Hugging Face's names and layout."""
    return {name: np.ascontiguousarray(as_hf_layout(name, backend.to_numpy(array)), dtype=np.float32)
            for name, array in state.items()}


def load(directory, dtype="float32", cls=Llama):
    """A ``Llama`` (or subclass ``cls``) from a Hugging Face Llama-family folder: the tensors are
    checked against the config first, then the model is built without a random init and filled."""
    hf, config_path = files.read_config(directory)
    config = make_config({**config_from_hf(hf, config_path), "dtype": dtype}, config_path)
    state = state_from_hf(files.read_tensors(directory), config, files.weights_path(directory), cls)
    return files.model_from_state(cls, config, state)


def save(model, directory):
    """Write ``model`` as config.json + model.safetensors that ``LlamaForCausalLM`` loads."""
    files.write_folder(directory, config_to_hf(model.config), state_to_hf(model.state_dict()))
