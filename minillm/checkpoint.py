"""Safe checkpoints: one ``.npz`` file, written atomically, read without pickle.

    checkpoint.save("out/ckpt.npz", model, optimizer, step=500, tokenizer=tok.to_dict())
    ckpt = checkpoint.load("out/ckpt.npz")
    ckpt["model"]        # {"wte.weight": array, "h.0.ln_1.weight": array, ...}
    ckpt["config"]       # {"vocab_size": 65, "block_size": 64, ...}
    ckpt["step"]         # 500
    ckpt["optimizer"]    # the optimizer's state dict, or None
    ckpt["tokenizer"]    # every extra keyword comes back under its own name

The file is a NumPy ``.npz`` (a zip of ``.npy`` arrays). Arrays are entries
``model/<name>``, ``optimizer/<key>`` and ``extra/<key>``; everything else
(config, step, tokenizer, random-generator states, loss history) is one JSON
document stored as a unicode array under ``meta``. NumPy reads all of it with
``allow_pickle=False``, so loading a checkpoint can never run code, unlike a
pickle (``torch.save``, nanoGPT's ``ckpt.pt``).

Writing is atomic: the bytes go to a temporary file in the same folder, are
flushed to disk (``fsync``) and only then renamed over ``path``
(``os.replace``). A crash or ``kill -9`` during a save leaves the previous
checkpoint intact, never half a file.
"""
import dataclasses
import json
import os
import tempfile

import numpy

from minillm import backend, safe_io

FORMAT = "minillm-checkpoint-1"
RESERVED = ("model", "config", "step", "optimizer")


class CheckpointError(ValueError):
    """A file that is not a readable minillm checkpoint (truncated, corrupt or foreign)."""


# ------------------------------------------------------------------ saving

def _is_array(value):
    return isinstance(value, (numpy.ndarray, backend.xp.ndarray))


def _config_dict(model):
    config = getattr(model, "config", None)
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


def _jsonable(value, where):
    """``value`` with numpy scalars made Python numbers; an error naming ``where`` if not JSON."""
    if isinstance(value, numpy.generic):
        return value.item()
    if hasattr(value, "to_dict"):                      # a tokenizer
        return value.to_dict()
    try:
        json.dumps(value)
    except TypeError as error:
        raise TypeError(f"checkpoint entry {where!r} must be an array or JSON-serialisable "
                        f"(numbers, strings, lists, dicts): {error}") from None
    return value


def _split(prefix, mapping, arrays):
    """Put the array values of ``mapping`` into ``arrays``; return the rest (JSON) as a dict."""
    rest = {}
    for key, value in mapping.items():
        if _is_array(value):
            arrays[f"{prefix}/{key}"] = backend.to_numpy(value)
        else:
            rest[key] = _jsonable(value, f"{prefix}/{key}")
    return rest


def save(path, model, optimizer=None, step=0, **extra):
    """Write ``model`` (and ``optimizer``, ``step``, extras) to exactly ``path``, atomically.

    ``model``: a Module (its ``state_dict()`` and ``config`` are saved) or a
    plain {name: array} dict. ``optimizer``: an object with ``state_dict()``
    or None. Each extra is an array or a JSON-serialisable value (an object
    with ``to_dict()``, such as a tokenizer, is saved as that dict).
    """
    bad = sorted(set(extra) & set(RESERVED))
    if bad:
        raise ValueError(f"extra checkpoint entries may not be named {bad}: those names are reserved")
    state = model.state_dict() if hasattr(model, "state_dict") else dict(model)
    arrays = {f"model/{name}": backend.to_numpy(value) for name, value in state.items()}
    optim_state = None if optimizer is None else (
        optimizer.state_dict() if hasattr(optimizer, "state_dict") else dict(optimizer))
    meta = {
        "format": FORMAT,
        "step": int(step),
        "config": _jsonable(_config_dict(model), "config") if hasattr(model, "state_dict") else {},
        "optimizer": None if optim_state is None else _split("optimizer", optim_state, arrays),
        "extra": _split("extra", extra, arrays),
    }
    arrays["meta"] = numpy.array(json.dumps(meta))
    _write_atomically(os.fspath(path), arrays)


def _write_atomically(path, arrays):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)     # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(handle, "wb") as f:
            numpy.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:              # also KeyboardInterrupt: never leave the temp file behind
        if os.path.exists(temp):
            os.remove(temp)
        raise
    try:                               # make the rename itself durable
        directory = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


# ------------------------------------------------------------------ loading

def load(path):
    """Read a checkpoint written by ``save``: a dict with model, config, step, optimizer, extras.

    Never unpickles, and never allocates more than the file's size allows
    (``safe_io.read_npz`` checks each entry before reading it). A missing file
    raises ``FileNotFoundError``; a truncated, corrupt or foreign file, or one
    whose fields have the wrong types, raises ``CheckpointError`` (a
    ``ValueError``) that names the file and the field.
    """
    path = os.fspath(path)
    safe_io.regular_file(path, "checkpoint")          # a FIFO or a device is refused before it is opened
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith((b"PK", b"\x93NUMPY")):   # an .npz is a zip archive; numpy would try pickle
        found = f"it starts with {magic!r}" if magic else "it is empty"
        raise CheckpointError(f"checkpoint {path} is not a minillm checkpoint: it is not an .npz archive "
                              f"({found})")
    if magic.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"checkpoint {path} is not a minillm checkpoint: "
                              "it holds a single array (.npy), not an .npz archive")
    try:
        arrays = safe_io.read_npz(path, what="checkpoint")
    except ValueError as error:        # a bad zip, a bomb, a CRC mismatch, a lying header; names the file
        raise CheckpointError(str(error)) from None
    if "meta" not in arrays:
        names = list(arrays)
        raise CheckpointError(f"checkpoint {path} is not a minillm checkpoint: it has no "
                              f"'meta' entry (entries: {names[:5]}{'...' if len(names) > 5 else ''})")
    meta = _read_meta(arrays.pop("meta"), path)

    def part(prefix):
        return {name[len(prefix) + 1:]: value for name, value in arrays.items()
                if name.startswith(prefix + "/")}

    extras = {**meta["extra"], **part("extra")}
    reserved = sorted(set(extras) & set(RESERVED))
    if reserved:
        raise CheckpointError(f"checkpoint {path}: extra entries may not be named {reserved} "
                              "(those names are the checkpoint's own fields)")
    result = {
        "model": part("model"),
        "config": meta["config"],
        "step": meta["step"],
        "optimizer": None if meta["optimizer"] is None else {**meta["optimizer"], **part("optimizer")},
    }
    result.update(extras)
    return result


_META_FIELDS = {  # field -> (check, what it must be)
    "format": (lambda v: v == FORMAT, repr(FORMAT)),
    "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "config": (lambda v: isinstance(v, dict), "a JSON object"),
    "optimizer": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
    "extra": (lambda v: isinstance(v, dict), "a JSON object"),
}


def _read_meta(text, path):
    """The 'meta' entry as a dict, each field checked by type (CheckpointError naming the field)."""
    if not isinstance(text, numpy.ndarray) or text.dtype.kind != "U" or text.shape != ():
        raise CheckpointError(f"checkpoint {path} is not a minillm checkpoint: its 'meta' entry is "
                              "not a JSON text array")
    try:     # allow_nan: a loss history may hold NaN
        meta = safe_io.parse_json(str(text), f"checkpoint {path}: its 'meta' entry", allow_nan=True)
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint {path} is not a minillm checkpoint: format {found!r}, "
                              f"expected {FORMAT!r}")
    for field, (ok, wanted) in _META_FIELDS.items():
        if field not in meta:
            raise CheckpointError(f"checkpoint {path}: its meta has no {field!r} field")
        if not ok(meta[field]):
            raise CheckpointError(f"checkpoint {path}: meta field {field!r} must be {wanted}, "
                                  f"got {meta[field]!r:.60}")
    return meta


# ------------------------------------------------------------------ restoring

def rng_state(generator):
    """The state of a numpy ``Generator`` as a JSON-ready dict (its bit generator's state).

    CuPy's generators keep their state on the device (``bit_generator.state`` is
    a method there, not a dict): they raise TypeError, and callers store None.
    """
    state = generator.bit_generator.state
    if not isinstance(state, dict):
        raise TypeError(f"cannot save the state of a {type(generator).__module__} generator "
                        "(only NumPy generators expose theirs)")
    return state


def restore_rng(state):
    """A new numpy ``Generator`` in the state ``rng_state`` recorded."""
    bit_generator = getattr(numpy.random, state["bit_generator"])()
    bit_generator.state = state
    return numpy.random.Generator(bit_generator)


def restore(ckpt, optimizer_factory=None):
    """Rebuild (model, optimizer) from a loaded checkpoint: a fresh model of the family the
    checkpoint records (``models.decoder_from_checkpoint``) with its weights.

    ``optimizer_factory(model)`` builds a fresh optimizer with the same
    parameter groups as the saved one (e.g. ``lambda m: AdamW(
    param_groups_for_weight_decay(m, 0.1))``); its state is then loaded from
    ``ckpt["optimizer"]``. Without a factory the optimizer is None.
    """
    from minillm.models import decoder_from_checkpoint   # here, not at the top: checkpoint stays model-agnostic

    model = decoder_from_checkpoint(ckpt)
    optimizer = None
    if optimizer_factory is not None:
        optimizer = optimizer_factory(model)
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
    return model, optimizer
