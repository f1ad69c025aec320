"""The files of a Hugging Face model folder, for every family.

    config.json                      the architecture (a JSON object; "model_type" names the family)
    model.safetensors                every tensor, by name (safetensors: no pickle, no code)
    model.safetensors.index.json     for a large model: which shard file holds which tensor

This module reads and writes those files as plain dicts of NumPy arrays and
knows nothing about any family; a converter (``minillm/hf/gpt2.py``, ...)
turns them into a model and back.
"""
import json
import os

from minillm.tokenizers.gpt2_files import read_json_object

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"


def read_config(directory):
    """(config.json as a dict, its path), or FileNotFoundError / ValueError naming the file."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {directory}")
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{CONFIG_NAME} not found in {directory}")
    return read_json_object(path, "a JSON object"), path


def weights_path(directory):
    return os.path.join(os.fspath(directory), WEIGHTS_NAME)


def _load_safetensors(path):
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except Exception as e:  # the Rust library raises its own SafetensorError type
        raise ValueError(f"{path} is not a readable safetensors file "
                         f"(truncated or corrupt?): {e}") from None


def read_tensors(directory):
    """{tensor name: NumPy array} from model.safetensors, or from the shards its index lists."""
    directory = os.fspath(directory)
    path = weights_path(directory)
    if os.path.isfile(path):
        return _load_safetensors(path)
    index = os.path.join(directory, SHARD_INDEX_NAME)
    if os.path.isfile(index):  # large checkpoints are split into shards listed in an index
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(_load_safetensors(os.path.join(directory, shard)))
        return tensors
    hint = ""
    if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
        hint = " (pytorch_model.bin is a pickle, which minillm never loads; use the safetensors file)"
    raise FileNotFoundError(f"{WEIGHTS_NAME} not found in {directory}{hint}")


def write_folder(directory, config, tensors):
    """Write ``config`` (a dict) as config.json and ``tensors`` (name -> contiguous NumPy
    array) as model.safetensors into ``directory``, created if needed."""
    from safetensors.numpy import save_file
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    # transformers checks the "format" metadata before loading a safetensors file
    save_file(tensors, weights_path(directory), metadata={"format": "pt"})


def check_tensors(state, shapes, path, what):
    """Raise a ValueError naming ``path`` unless ``state`` has exactly the names of ``shapes``
    ({name: shape}), each with its shape. ``what`` describes the model, e.g. "a GPT-2 with n_layer=2"."""
    missing = [n for n in shapes if n not in state]
    unexpected = [n for n in state if n not in shapes]
    if missing or unexpected:
        parts = ([f"missing tensors {missing[:6]}{' ...' if len(missing) > 6 else ''}"] if missing else []) + \
                ([f"unexpected tensors {unexpected[:6]}"] if unexpected else [])
        raise ValueError(f"{path} does not match {what}: " + "; ".join(parts))
    for n, shape in shapes.items():
        if tuple(state[n].shape) != tuple(shape):
            raise ValueError(f"{path}: tensor {n} has shape {tuple(state[n].shape)}, expected {tuple(shape)} "
                             f"from config.json")
