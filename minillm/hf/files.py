"""The files of a Hugging Face model folder, for every family.

    config.json                      the architecture (a JSON object; "model_type" names the family)
    model.safetensors                every tensor, by name (safetensors: no pickle, no code);
                                     bfloat16 tensors are read as float32 (exactly)
    model.safetensors.index.json     for a large model: which shard file holds which tensor

This module reads and writes those files as plain dicts of NumPy arrays and
knows nothing about any family; a converter (``minillm/hf/gpt2.py``, ...)
turns them into a model and back. It reads through ``minillm.safe_io`` (regular
files only, shard names kept inside the folder, strict JSON), and gives every
converter the checks to run before it builds anything: ``strip_prefix``
(no weight twice), ``safe_io.check_layer_count`` (the config's depth against
the blocks the file holds) and ``check_tensors`` (names, shapes, dtypes, finite values),
and ``model_from_state``: the model built without a random init, then filled.
"""
import json
import os

import numpy as np

from minillm import safe_io

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARD_INDEX_NAME = "model.safetensors.index.json"
SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                      "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
MAX_CONFIG_BYTES = 1 << 20            # a config.json is a few kB
MAX_HEADER_BYTES = 100 << 20          # the safetensors library's own limit on a header


def read_config(directory):
    """(config.json as a dict, its path), or FileNotFoundError / ValueError naming the file."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {directory}")
    path = os.path.join(directory, CONFIG_NAME)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{CONFIG_NAME} not found in {directory}")
    return safe_io.read_json_object(path, "a JSON object", MAX_CONFIG_BYTES), path


def weights_path(directory):
    return os.path.join(os.fspath(directory), WEIGHTS_NAME)


def _header(path, size):
    """A safetensors file's JSON header: ({name: {"dtype", "shape", "data_offsets"}, ...}, offset of
    the data), or (None, 0) when it is not readable (the library's own checks then name what is wrong)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            return None, 0
        try:
            header = json.loads(f.read(n))
        except (ValueError, RecursionError):
            return None, 0
    return (header, 8 + n) if isinstance(header, dict) else (None, 0)


def bfloat16_to_float32(raw):
    """bfloat16 is the top half of a float32 (sign, 8 exponent bits, 7 mantissa bits): put the
    16 bits back on top of 16 zero bits. Exact; NumPy has no bfloat16 of its own."""
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _load_with_bfloat16(path, header, offset):
    """Read a safetensors file whose tensors include bfloat16 (most recent checkpoints) as float32.

    The format is 8 bytes (the header's length), the JSON header, then each
    tensor's raw little-endian bytes at its ``data_offsets``, checked here
    against the file's size and the tensor's shape before any view is taken."""
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=offset)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype != "BF16" and dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype}, which minillm does not read")
        try:
            start, stop = (int(o) for o in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name} has no valid shape and data_offsets") from None
        itemsize = 2 if dtype == "BF16" else np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
        if not 0 <= start <= stop <= data.size or stop - start != itemsize * int(np.prod(shape, dtype=object)):
            raise ValueError(f"{path}: tensor {name} ({dtype}, shape {shape}) does not fit its data_offsets "
                             f"[{start}, {stop}) in {data.size:,} bytes of data (truncated or corrupt?)")
        if dtype == "BF16":
            array = bfloat16_to_float32(data[start:stop])
        else:
            array = data[start:stop].view(SAFETENSORS_DTYPES[dtype]).copy()
        tensors[name] = array.reshape(shape)
    return tensors


def _load_safetensors(path, what):
    from safetensors.numpy import load_file
    size = safe_io.regular_file(path, what).st_size        # a FIFO would block the reader forever
    header, offset = _header(path, size)
    if header is not None and any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values()):
        return _load_with_bfloat16(path, header, offset)
    try:
        return load_file(path)
    except Exception as e:  # the Rust library raises its own SafetensorError type
        raise ValueError(f"{path} is not a readable safetensors file "
                         f"(truncated or corrupt?): {e}") from None


def _shard_names(index, directory):
    """The shard files an index's "weight_map" names, each kept inside ``directory``."""
    data = safe_io.read_json_object(index, 'a JSON object with a "weight_map"')
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f'{index}: "weight_map" must be a JSON object tensor name -> shard file name')
    return [safe_io.inside(directory, shard, index) for shard in sorted(set(weight_map.values()))]


def read_tensors(directory):
    """{tensor name: NumPy array} from model.safetensors, or from the shards its index lists.

    Each file must be a regular file (a FIFO would block forever); a shard name
    in the index may not leave the folder; a tensor in two shards is an error.
    """
    directory = os.fspath(directory)
    path = weights_path(directory)
    if os.path.lexists(path):
        return _load_safetensors(path, "weights file")
    index = os.path.join(directory, SHARD_INDEX_NAME)
    if os.path.lexists(index):  # large checkpoints are split into shards listed in an index
        tensors = {}
        for shard in _shard_names(index, directory):
            loaded = _load_safetensors(shard, f"shard named in {SHARD_INDEX_NAME}")
            twice = sorted(set(loaded) & set(tensors))
            if twice:
                raise ValueError(f"{shard}: tensor {twice[0]} is also in another shard of {directory}")
            tensors.update(loaded)
        return tensors
    hint = ""
    if os.path.isfile(os.path.join(directory, "pytorch_model.bin")):
        hint = " (pytorch_model.bin is a pickle, which minillm never loads; use the safetensors file)"
    raise FileNotFoundError(f"{WEIGHTS_NAME} not found in {directory}{hint}")


def strip_prefix(tensors, prefix, path):
    """``tensors`` with ``prefix`` taken off the names that have it; a name present both
    with and without the prefix is an error (which copy would be meant?)."""
    out = {}
    for name, array in tensors.items():
        short = name[len(prefix):] if name.startswith(prefix) else name
        if short in out:
            raise ValueError(f"{path}: tensor {short} is present both as {short!r} and as "
                             f"{prefix + short!r}; a file holds one copy of each weight")
        out[short] = array
    return out


def check_tensors(state, shapes, path, what):
    """``safe_io.check_arrays``: exactly the names of ``shapes``, each with its shape,
    float16/32/64 without NaN or Inf, or a ValueError naming ``path`` and the tensor."""
    safe_io.check_arrays(state, shapes, path, what)


def model_from_state(cls, config, state):
    """``cls(config)`` holding ``state`` (checked already against ``config``): built inside
    ``nn.skip_init()``, so no weight is drawn at random only to be overwritten."""
    from minillm.nn import skip_init
    with skip_init():
        model = cls(config)
    model.load_state_dict(state)
    return model


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
