"""Hugging Face model folders (config.json + model.safetensors), for every family.

    model = minillm.hf.load(directory)       # the family named by config.json's "model_type"
    minillm.hf.save(model, directory)        # a folder that transformers' Auto classes load

    files       reading and writing the folder's files (no family knowledge)
    gpt2        the GPT-2 converter: config keys and tensor names
    llama       the Llama converter (RoPE settings both spellings, Linear weights transposed)
    mixtral     the Mixtral converter (Llama's, plus the experts: per-expert w1/w2/w3 and the router)
    t5          the T5 converter (v1.0, v1.1, Flan-T5)
    bert        the BERT converter (BertForMaskedLM, BertModel, BertForSequenceClassification folders)

A converter is a module with ``MODEL_CLASS``, ``load(directory, dtype)`` and
``save(model, directory)``. Adding a family is a file ``hf/<family>.py`` and
one line in ``CONVERTERS``. Converters are imported on first use, so
``import minillm.hf`` loads no model it is not asked for.
"""
import importlib

from minillm.hf import files

CONVERTERS = {  # config.json "model_type" -> the converter module
    "gpt2": "minillm.hf.gpt2",
    "llama": "minillm.hf.llama",
    "qwen2": "minillm.hf.llama",     # a Llama with q/k/v biases
    "mixtral": "minillm.hf.mixtral",
    "t5": "minillm.hf.t5",
    "bert": "minillm.hf.bert",
}


def converter(model_type):
    """The converter module for ``model_type``, or a ValueError naming the supported ones."""
    if model_type not in CONVERTERS:
        raise ValueError(f"model_type {model_type!r} is not supported; minillm reads "
                         f"{', '.join(repr(t) for t in CONVERTERS)}")
    return importlib.import_module(CONVERTERS[model_type])


def load(directory, dtype="float32"):
    """The model in a Hugging Face folder, of the family its config.json names."""
    config, path = files.read_config(directory)
    if not isinstance(config.get("model_type"), str):
        raise ValueError(f"{path} has no \"model_type\" string; expected one of {sorted(CONVERTERS)}")
    return converter(config["model_type"]).load(directory, dtype=dtype)


def save(model, directory):
    """Write ``model`` as config.json + model.safetensors, with its family's converter
    (the most specific one: a Mixtral is also a Llama)."""
    modules = [converter(model_type) for model_type in CONVERTERS]
    for cls in type(model).__mro__:
        for module in modules:
            if module.MODEL_CLASS is cls:
                return module.save(model, directory)
    raise TypeError(f"minillm.hf.save: no converter for a {type(model).__name__}; "
                    f"supported model types: {sorted(CONVERTERS)}")
