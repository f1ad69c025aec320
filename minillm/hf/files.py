"""The files of a Hugging Face model folder, for every family.

    config.json                      the architecture (a JSON object; "model_type" names the family)
    model.safetensors                every tensor, by name (safetensors: no pickle, no code);
                                     bfloat16 tensors are read as float32 (exactly)
    model.safetensors.index.json     for a large model: which shard file holds which tensor

This module reads and writes those files as plain dicts of NumPy arrays and
knows nothing about any family; a converter (``minillm/hf/gpt2.py``, ...)
turns them into a model and back.
"""
import json
import os

import numpy as np

from minillm.tokenizers.gpt2_files import read_json_object

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                      "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


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


def _header(path):
    """A safetensors file's JSON header: {name: {"dtype", "shape", "data_offsets"}, ...}, or None."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            return json.loads(f.read(size)), 8 + size
    except (OSError, ValueError, MemoryError, OverflowError):
        return None, 0


def bfloat16_to_float32(raw):
    """bfloat16 is the top half of a float32 (sign, 8 exponent bits, 7 mantissa bits): put the
    16 bits back on top of 16 zero bits. Exact; NumPy has no bfloat16 of its own."""
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _load_with_bfloat16(path, header, offset):
    """Read a safetensors file whose tensors include bfloat16 (most recent checkpoints) as float32.

    The format is 8 bytes (the header's length), the JSON header, then each
    tensor's raw little-endian bytes at its ``data_offsets``."""
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=offset)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        if info["dtype"] == "BF16":
            array = bfloat16_to_float32(data[start:stop])
        elif info["dtype"] in SAFETENSORS_DTYPES:
            array = data[start:stop].view(SAFETENSORS_DTYPES[info["dtype"]]).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which minillm does not read")
        tensors[name] = array.reshape(info["shape"])
    return tensors


def _load_safetensors(path):
    from safetensors.numpy import load_file
    header, offset = _header(path)
    if header is not None and any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values()):
        return _load_with_bfloat16(path, header, offset)
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
