"""The Mixtral converter: Hugging Face ``model_type: mixtral`` folders <-> ``minillm.models.Mixtral``.

Llama's converter (minillm/hf/llama.py) does the shared part: config keys,
RoPE settings, names moved as they are and Linear weights transposed. Added here:

config.json   num_local_experts -> n_expert, num_experts_per_tok -> top_k,
              router_aux_loss_coef; a sliding window or router jitter noise
              (which minillm does not implement) is an error naming the key.

Tensors       The layout transformers 5.24's ``save_pretrained`` writes, and
              Mixtral's hub checkpoints use, one matrix per expert:

                  model.layers.{i}.block_sparse_moe.gate.weight           (E, C)   the router
                  model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight  (I, C)   gate projection
                  model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight  (I, C)   up projection
                  model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight  (C, I)   down projection

              These are minillm's own names (each transposed, as every Linear).
              In memory transformers 5 fuses the experts
              (``mlp.experts.gate_up_proj`` (E, 2I, C) = [w1; w3] per expert,
              ``mlp.experts.down_proj`` (E, C, I), ``mlp.gate.weight``) and
              converts on load and save; a folder written in that fused layout
              is read too (split per expert), and always written per expert.
"""
import re

import numpy as np

from minillm.hf import files, llama
from minillm.models.mixtral import Mixtral, MixtralConfig

MODEL_CLASS = Mixtral
MODEL_TYPE = "mixtral"

_EXPERT_FIELDS = (  # (MixtralConfig field, config.json key, default when absent)
    ("n_expert", "num_local_experts", 8),
    ("top_k", "num_experts_per_tok", 2),
    ("router_aux_loss_coef", "router_aux_loss_coef", 0.001),
)

_FUSED = re.compile(r"^model\.layers\.(\d+)\.mlp\.(experts\.gate_up_proj|experts\.down_proj|gate\.weight)$")


def config_from_hf(hf, path=files.CONFIG_NAME):
    """config.json dict -> ``MixtralConfig`` keyword arguments, or a ValueError naming the key."""
    config = llama.config_from_hf(hf, path, model_type=MODEL_TYPE)
    if hf.get("sliding_window") is not None:
        raise ValueError(f"{path}: sliding_window = {hf['sliding_window']!r} is not supported; minillm's "
                         f"attention sees the whole context (null)")
    if hf.get("router_jitter_noise", 0.0):
        raise ValueError(f"{path}: router_jitter_noise = {hf['router_jitter_noise']!r} is not supported "
                         f"(minillm's router adds no noise: 0.0)")
    config.update({field: hf.get(key, default) for field, key, default in _EXPERT_FIELDS})
    return config


def config_to_hf(config):
    """A ``MixtralConfig`` -> config.json dict, with the keys transformers 5 writes."""
    hf = llama.config_to_hf(config, MODEL_TYPE, "MixtralForCausalLM")
    del hf["pretraining_tp"], hf["mlp_bias"], hf["attention_bias"]
    hf.update({key: getattr(config, field) for field, key, _ in _EXPERT_FIELDS})
    hf.update({"sliding_window": None, "router_jitter_noise": 0.0, "output_router_logits": False})
    return hf


def split_fused_experts(tensors):
    """transformers' in-memory layout -> the per-expert checkpoint names (other tensors unchanged)."""
    out = {}
    for name, array in tensors.items():
        match = _FUSED.match(name)
        if match is None:
            out[name] = array
            continue
        prefix, what = f"model.layers.{match.group(1)}.block_sparse_moe", match.group(2)
        if what == "gate.weight":
            out[f"{prefix}.gate.weight"] = array
        elif what == "experts.down_proj":                                # (E, C, I)
            for e, w2 in enumerate(array):
                out[f"{prefix}.experts.{e}.w2.weight"] = w2
        else:                                                            # (E, 2I, C): gate rows, then up rows
            for e, gate_up in enumerate(array):
                w1, w3 = np.split(gate_up, 2, axis=0)
                out[f"{prefix}.experts.{e}.w1.weight"], out[f"{prefix}.experts.{e}.w3.weight"] = w1, w3
    return out


def load(directory, dtype="float32", cls=Mixtral):
    """A ``Mixtral`` (or subclass ``cls``) from a Hugging Face Mixtral folder."""
    hf, config_path = files.read_config(directory)
    config = llama.make_config({**config_from_hf(hf, config_path), "dtype": dtype}, config_path, MixtralConfig)
    tensors = split_fused_experts(files.read_tensors(directory))   # splits what the file holds, no more
    return files.model_from_state(cls, config, llama.state_from_hf(tensors, config, files.weights_path(directory), cls))


def save(model, directory):
    """Write ``model`` as config.json + model.safetensors that ``MixtralForCausalLM`` loads."""
    files.write_folder(directory, config_to_hf(model.config), llama.state_to_hf(model.state_dict()))
