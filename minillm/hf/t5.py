"""The T5 converter: Hugging Face T5 folders (T5 v1.0, v1.1, Flan-T5) <-> ``minillm.models.T5``.

Names. minillm's parameter names are ``T5ForConditionalGeneration``'s own
(``shared.weight``, ``encoder.block.{i}.layer.0.SelfAttention.q.weight``, ...,
``decoder.block.{i}.layer.1.EncDecAttention.k.weight``, ``lm_head.weight``).
Also found in files, and skipped: ``encoder.embed_tokens.weight`` and
``decoder.embed_tokens.weight`` (both are ``shared.weight``: they must be
equal) and ``decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight``
(in old checkpoints; cross-attention has no position bias, transformers ignores it too).

Layout: PyTorch's ``nn.Linear`` stores W as (out, in); minillm's ``Linear`` as
(in, out), so every projection (q, k, v, o, wi, wi_0, wi_1, wo, lm_head) is
transposed both ways. Embeddings (``shared``, ``relative_attention_bias``) are
(rows, width) in both.

The head. T5 v1.0 ties the output layer to ``shared`` and scales the decoder's
output by d_model^-0.5 first; v1.1 and Flan-T5 have an ``lm_head.weight`` of
their own and no scale (config.json: ``tie_word_embeddings: false``).
transformers 5 may also write ``scale_decoder_outputs`` (a tied head without the
scale); it is read when present. A tied head is written as tied only when it is
also scaled; otherwise ``lm_head.weight`` is written out, which every version reads.

Accepted: ``model_type`` "t5", ``feed_forward_proj`` "relu" or "gated-gelu";
anything else is a ``ValueError`` naming the key and value. Dropout is set to 0
on loading (as for GPT-2); the file's ``dropout_rate`` is not a weight.
"""
import numpy as np

from minillm import backend, safe_io
from minillm.hf import files
from minillm.models.t5 import FEED_FORWARDS, T5, T5Config

MODEL_CLASS = T5
MODEL_TYPE = "t5"
_PROJECTIONS = {"q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo", "lm_head"}
_TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)
_REQUIRED = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")


def _is_projection(name):
    """True for a Linear's weight (stored transposed by PyTorch)."""
    parts = name.split(".")
    return parts[-1] == "weight" and len(parts) >= 2 and parts[-2] in _PROJECTIONS


# --- config.json -------------------------------------------------------------

def config_from_hf(hf, path=files.CONFIG_NAME, has_lm_head=None):
    """T5 config.json dict -> ``T5Config`` keyword dict, or a ValueError naming what is unsupported.

    ``has_lm_head``: whether the weights hold an ``lm_head.weight`` of their own
    (None: trust ``tie_word_embeddings``)."""
    model_type = hf.get("model_type")
    if model_type != MODEL_TYPE:
        raise ValueError(f"{path} describes model_type {model_type!r}; this converter reads T5 ('t5') only")
    missing = [k for k in _REQUIRED if k not in hf]
    if missing:
        raise ValueError(f"{path} is missing the T5 key(s) {missing}")
    feed_forward = hf.get("feed_forward_proj", "relu")
    if feed_forward not in FEED_FORWARDS:
        raise ValueError(f"{path}: feed_forward_proj = {feed_forward!r} is not supported; minillm's T5 "
                         f"implements {FEED_FORWARDS}")
    if hf.get("is_encoder_decoder", True) is not True:
        raise ValueError(f"{path}: is_encoder_decoder = {hf['is_encoder_decoder']!r}; minillm's T5 is the "
                         f"encoder-decoder (T5ForConditionalGeneration)")
    eos = hf.get("eos_token_id", 1)
    if isinstance(eos, list):
        if len(eos) != 1:
            raise ValueError(f"{path}: eos_token_id = {eos!r}; minillm's T5 stops at one EOS id")
        eos = eos[0]
    tie = hf.get("tie_word_embeddings", True)
    scale = hf.get("scale_decoder_outputs", tie)
    if has_lm_head is not None:
        tie = tie and not has_lm_head
    pad = hf.get("pad_token_id", 0)
    config = {
        "vocab_size": hf["vocab_size"], "d_model": hf["d_model"], "d_kv": hf["d_kv"], "d_ff": hf["d_ff"],
        "num_layers": hf["num_layers"], "num_decoder_layers": hf.get("num_decoder_layers") or hf["num_layers"],
        "num_heads": hf["num_heads"],
        "relative_attention_num_buckets": hf.get("relative_attention_num_buckets", 32),
        "relative_attention_max_distance": hf.get("relative_attention_max_distance", 128),
        "feed_forward_proj": feed_forward, "tie_word_embeddings": tie, "scale_decoder_outputs": scale,
        "layer_norm_epsilon": hf.get("layer_norm_epsilon", 1e-6), "dropout_rate": 0.0,
        "n_positions": hf.get("n_positions", 512), "pad_token_id": pad, "eos_token_id": eos,
        "decoder_start_token_id": hf.get("decoder_start_token_id", pad),
    }
    try:
        T5Config(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return config


def config_to_hf(config):
    """``T5Config`` (or its dict) -> config.json dict with the keys transformers writes for T5."""
    c = config if isinstance(config, T5Config) else T5Config(**config)
    tied = c.tie_word_embeddings and c.scale_decoder_outputs   # see the module docstring
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": MODEL_TYPE,
        "vocab_size": c.vocab_size, "d_model": c.d_model, "d_kv": c.d_kv, "d_ff": c.d_ff,
        "num_layers": c.num_layers, "num_decoder_layers": c.num_decoder_layers, "num_heads": c.num_heads,
        "relative_attention_num_buckets": c.relative_attention_num_buckets,
        "relative_attention_max_distance": c.relative_attention_max_distance,
        "feed_forward_proj": c.feed_forward_proj,
        "dense_act_fn": "gelu_new" if c.feed_forward_proj == "gated-gelu" else "relu",
        "is_gated_act": c.feed_forward_proj == "gated-gelu",
        "tie_word_embeddings": tied, "scale_decoder_outputs": c.scale_decoder_outputs,
        "layer_norm_epsilon": c.layer_norm_epsilon, "dropout_rate": c.dropout_rate,
        "initializer_factor": 1.0, "is_encoder_decoder": True, "use_cache": True, "n_positions": c.n_positions,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id,
        "decoder_start_token_id": c.decoder_start_token_id, "torch_dtype": "float32",
    }


# --- model.safetensors -------------------------------------------------------

def state_from_hf(tensors, path=files.WEIGHTS_NAME):
    """Hugging Face tensors -> minillm state (projections transposed); checks the tied copies."""
    state = {}
    for name, array in tensors.items():
        if name in _IGNORED:
            continue
        if name in _TIED_COPIES:
            if "shared.weight" in tensors and not np.array_equal(array, tensors["shared.weight"]):
                raise ValueError(f"{path}: {name} differs from shared.weight; T5's embeddings are one table")
            continue
        state[name] = array.T if _is_projection(name) and array.ndim == 2 else array
    if "shared.weight" not in state:
        copy = next((n for n in _TIED_COPIES if n in tensors), None)
        if copy is not None:
            state["shared.weight"] = tensors[copy]
    return state


def load(directory, dtype="float32", cls=T5):
    """A ``T5`` (or subclass ``cls``) from a Hugging Face T5 folder."""
    hf, config_path = files.read_config(directory)
    if hf.get("model_type") != MODEL_TYPE:
        config_from_hf(hf, config_path)   # raises, naming the folder's model_type
    weights = files.weights_path(directory)
    state = state_from_hf(files.read_tensors(directory), weights)
    head = state.get("lm_head.weight")
    untied_head = head is not None and not np.array_equal(head.T, state.get("shared.weight"))
    config = config_from_hf(hf, config_path, has_lm_head=untied_head)
    if config["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)
    for prefix, depth in (("encoder.block.", "num_layers"), ("decoder.block.", "num_decoder_layers")):
        safe_io.check_layer_count(state, prefix, config[depth], weights)    # before a list of names is built
    config = T5Config(**config, dtype=dtype)
    safe_io.check_arrays(state, cls.parameter_shapes(config), weights, f"a T5 with num_layers="
                         f"{config.num_layers}, feed_forward_proj={config.feed_forward_proj!r}")
    return files.model_from_state(cls, config, state)


def save(model, directory):
    """Write ``model`` (a T5) as config.json + model.safetensors that transformers loads."""
    config = model.config
    hf = config_to_hf(config)
    state = {n: backend.to_numpy(a) for n, a in model.state_dict().items()}
    if not hf["tie_word_embeddings"] and "lm_head.weight" not in state:
        state["lm_head.weight"] = state["shared.weight"].T   # a tied but unscaled head, written out
    tensors = {n: np.ascontiguousarray((a.T if _is_projection(n) else a).astype(np.float32, copy=False))
               for n, a in state.items()}
    files.write_folder(directory, hf, tensors)
