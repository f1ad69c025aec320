"""Reading files a stranger wrote: refuse what cannot be trusted, before it costs time or memory.

Learners load files they downloaded: Hugging Face folders, checkpoints,
tokenizer files, text corpora. Every loader in minillm reads them through
these helpers, so each of the following is a clean error that names the file
(a ``ValueError``; ``FileNotFoundError`` when there is nothing there):

    st    = regular_file(path, what)              a regular file: not a FIFO (reading one blocks
                                                  forever), a device (/dev/zero never ends), a folder
    path  = inside(directory, name, what)         a name read from a file, kept inside its folder
    data  = read_bytes(path, max_bytes, what)     the size is checked before a byte is read
    text  = read_text(path, max_bytes, what)      UTF-8; a bad byte is named with its offset
    obj   = read_json(path, max_bytes, what)      + parse_json(text, where): nesting, huge or
                                                  non-finite numbers, repeated keys
    arrays = read_npz(path)                       a zip of .npy arrays, every size checked before
                                                  anything is inflated or allocated
    check_layer_count(names, prefix, n, where)    a config's depth against the blocks present
    check_weights(arrays, where)                  float16/bfloat16/32/64 only, every value finite

Why one module: a check written once is a check every loader has (and every
converter added later inherits); a check copied into each loader is a check
some loader forgets. It sits at the bottom of the package (standard library and
NumPy only) because checkpoints, tokenizers, the data cleaner and ``hf/`` all
use it.

Two decisions, with their reasons:

- Symbolic links given as a path are followed, and ``inside`` checks a name
  lexically (no absolute path, no ``..``), not where its link points: the
  Hugging Face cache keeps ``snapshots/<rev>/model.safetensors`` as a link into
  ``blobs/``. What a link reaches must still be a regular file. (The data
  cleaner, which walks a folder itself, skips links altogether.)
- Non-finite weights are an error, not a warning: one NaN in a weight makes
  every output that touches it NaN, so the model would load and then print
  garbage far from the cause. The message names the tensor and the count.
"""
import json
import os
import stat
import zipfile

import numpy as np

MiB = 1 << 20
MAX_JSON_BYTES = 64 * MiB          # tokenizer.json of a 256k-token vocabulary is ~ 35 MB
MAX_INT_DIGITS = 64                # a 128-bit generator state has 39 digits; sizes and ids far fewer
MAX_NPZ_INFLATION = 8              # bytes in memory per byte on disk (minillm stores arrays uncompressed)
WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")   # bfloat16: ml_dtypes arrays in memory

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def kind_of(mode):
    """What a file of mode ``mode`` (``os.stat(...).st_mode``) is, in words: "a FIFO (named pipe)", ..."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


# ----------------------------------------------------------------- files

def regular_file(path, what="file"):
    """``os.stat(path)`` if ``path`` is a regular file (links followed); else an error saying what it is."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        link = " (a symbolic link to nothing)" if os.path.islink(path) else ""
        raise FileNotFoundError(f"{what} {path} does not exist{link}") from None
    except OSError as error:      # a link loop (ELOOP), a component that is a file (ENOTDIR), ...
        raise ValueError(f"{what} {path} cannot be opened: {error.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file")
    return st


def inside(directory, name, what="file"):
    """``directory/name`` for a ``name`` read from a file (a shard in an index), kept inside ``directory``.

    Refused: a non-string, an absolute path, any ``..`` that climbs out. The
    result still has to pass ``regular_file`` (the caller reads it).
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise ValueError(f"{what}: {name!r} is not a file name")
    normal = os.path.normpath(name)
    if os.path.isabs(name) or normal == ".." or normal.startswith(".." + os.sep):
        raise ValueError(f"{what}: {name!r} points outside the folder {directory}; "
                         "only names inside it are read")
    return os.path.join(os.fspath(directory), normal)


def _open_regular(path, max_bytes, what):
    """A binary file object for ``path``, a regular file of at most ``max_bytes`` bytes."""
    regular_file(path, what)
    # O_NONBLOCK: if the file was swapped for a FIFO since the stat, open returns instead of waiting
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        os.close(fd)
        raise ValueError(f"{what} {path} is {st.st_size:,} bytes, more than the {max_bytes:,} "
                         f"a {what} may have")
    return os.fdopen(fd, "rb")


def read_bytes(path, max_bytes, what="file"):
    """The bytes of the regular file ``path``, refused (before reading) if larger than ``max_bytes``."""
    path = os.fspath(path)
    with _open_regular(path, max_bytes, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:     # it grew after the check
        raise ValueError(f"{what} {path} is more than the {max_bytes:,} bytes a {what} may have")
    return data


def decode_utf8(data, where):
    """``data`` (bytes) as str, or a ValueError naming ``where`` and the first bad byte's offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where} is not UTF-8 text: byte {data[error.start]:#04x} at offset "
                         f"{error.start} does not decode") from None


def read_text(path, max_bytes, what="file"):
    """The UTF-8 text of the regular file ``path`` (see ``read_bytes``)."""
    path = os.fspath(path)
    return decode_utf8(read_bytes(path, max_bytes, what), f"{what} {path}")


# ----------------------------------------------------------------- JSON

def _int(text):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"the integer {text[:12]}... has {len(text)} digits, "
                         "more than any size, id or generator state")
    return int(text)


def _float(text):
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"the number {text[:20]} is too large for a float")
    return value


def _constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {repeated!r} appears twice in one object")
    return result


def parse_json(text, where, allow_nan=False):
    """``json.loads(text)``, strict: every error is a ValueError that names ``where``.

    Refused: malformed JSON, nesting deeper than Python can follow, integers
    longer than 64 digits, a key given twice in one object (JSON keeps the last
    one silently), and unless ``allow_nan`` (a loss history may hold NaN) NaN,
    Infinity and numbers that overflow a float.
    """
    hooks = {} if allow_nan else {"parse_float": _float, "parse_constant": _constant}
    try:
        return json.loads(text, parse_int=_int, object_pairs_hook=_object, **hooks)
    except RecursionError:
        raise ValueError(f"{where} is not usable JSON: it is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None
    except ValueError as error:   # from the hooks above
        raise ValueError(f"{where} is not usable JSON: {error}") from None


def read_json(path, max_bytes=MAX_JSON_BYTES, what="JSON file"):
    """The JSON document in the regular file ``path`` (see ``read_text`` and ``parse_json``)."""
    path = os.fspath(path)
    return parse_json(read_text(path, max_bytes, what), f"{what} {path}")


def read_json_object(path, what, max_bytes=MAX_JSON_BYTES):
    """The JSON object (a dict) in ``path``; ``what`` describes it for the message ("a JSON object token -> id")."""
    path = os.fspath(path)
    data = read_json(path, max_bytes, "JSON file")
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold {what}, not a JSON {type(data).__name__}")
    return data


# ----------------------------------------------------------------- .npz archives

class _Refused(ValueError):
    """A member refused by a check below (its message already names the file)."""


def _read_npy(member, stream, where):
    """The array in one .npy member, its header checked against the member's size first."""
    name = member.filename
    try:
        version = np.lib.format.read_magic(stream)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(stream)
    except Exception as error:    # bad magic, a header that is not a dict literal, ...
        raise _Refused(f"{where}: entry {name} is not a .npy array ({error})") from None
    if dtype.hasobject:
        raise _Refused(f"{where}: entry {name} holds Python objects (a pickle), which minillm never loads")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if any(d < 0 for d in shape) or nbytes > member.file_size:
        raise _Refused(f"{where}: entry {name} claims a {shape} {dtype} array ({nbytes:,} bytes) "
                       f"but holds {member.file_size:,} bytes")
    array = np.empty(shape, dtype, order="F" if fortran else "C")   # now known to fit the member
    view = memoryview(array.reshape(-1, order="A").view(np.uint8)) if nbytes else memoryview(b"")
    filled = 0
    while filled < nbytes:
        got = stream.readinto(view[filled:])
        if not got:
            raise _Refused(f"{where}: entry {name} is truncated ({filled:,} of {nbytes:,} bytes)")
        filled += got
    return array


def read_npz(path, max_inflation=MAX_NPZ_INFLATION, what="archive"):
    """{name: array} from a NumPy ``.npz`` (a zip of ``.npy`` files), never unpickling.

    Checked before anything is inflated: every member's declared size (all
    together at most ``max_inflation`` times the file's size on disk, so a
    1.5 MB zip bomb cannot become 1.5 GB), no member named twice, each array's
    header (its shape times its item size must fit in its member). A ``.npy``
    member stops at its declared size, so the checks bound the memory used.
    """
    path = os.fspath(path)
    on_disk = regular_file(path, what).st_size
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"{what} {path} is corrupt or truncated: not a readable .npz (zip) archive "
                         f"({type(error).__name__}: {error})") from None
    with archive:
        members = archive.infolist()
        names = [m.filename for m in members]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{what} {path} names the entries {twice[:3]} more than once")
        inflated = sum(m.file_size for m in members)
        if inflated > max_inflation * on_disk + MiB:
            raise ValueError(f"{what} {path} would inflate to {inflated:,} bytes from {on_disk:,} on disk "
                             f"(more than {max_inflation}x): a zip bomb? minillm writes arrays uncompressed")
        arrays = {}
        for member in members:
            key = member.filename[:-len(".npy")] if member.filename.endswith(".npy") else member.filename
            try:
                with archive.open(member) as stream:
                    arrays[key] = _read_npy(member, stream, f"{what} {path}")
            except _Refused:
                raise
            except Exception as error:    # a CRC mismatch, a bad deflate stream, ...
                raise ValueError(f"{what} {path}: entry {member.filename} is corrupt or truncated: "
                                 f"{type(error).__name__}: {error}") from None
    return arrays


# ----------------------------------------------------------------- weights

def check_layer_count(names, prefix, n_layer, where, field="n_layer", kind="layer"):
    """Refuse a config with more layers than the file holds blocks ``{prefix}{i}.*``
    (or more of another numbered block: ``field="n_expert", kind="expert"``).

    Called before any list of names or any model is built from a config: a
    tiny config with n_layer = 10**9 fails here, in one pass over the file's
    names, instead of after building 10**9 x 12 names (or parameters). Every
    other size only enters shapes, which are compared without allocating.
    """
    found = {name[len(prefix):].split(".", 1)[0] for name in names if name.startswith(prefix)}
    count = sum(index.isdigit() for index in found)
    if n_layer > count:
        raise ValueError(f"{where} holds {count} {kind}(s) {prefix}0.. {prefix}{count - 1}, but its config "
                         f"says {field}={n_layer}: the config does not describe these weights")


def check_weights(arrays, where):
    """Refuse weights a model cannot use: a dtype other than float16, bfloat16 (ml_dtypes),
    float32, float64 (an int8 or bool tensor would be cast to float silently), or a NaN/Inf
    value. Errors name the tensor."""
    for name, array in arrays.items():
        dtype = getattr(array, "dtype", None)
        if str(dtype) not in WEIGHT_DTYPES:
            raise ValueError(f"{where}: tensor {name} has dtype {dtype}; weights must be one of {WEIGHT_DTYPES}")
        finite = np.isfinite(array)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            raise ValueError(f"{where}: tensor {name} has {bad} non-finite value(s) (NaN or Inf) "
                             f"of {finite.size}; a model with them computes NaN")


def check_arrays(state, shapes, where, what, optional=()):
    """Raise a ValueError naming ``where`` unless ``state`` has exactly the names of ``shapes``
    ({name: shape}, from a family's ``parameter_shapes``: tuples, no arrays), each with its
    shape, and weights ``check_weights`` accepts. ``what`` describes the model, e.g. "a GPT-2
    with n_layer=2". Run before the model is built: a config's vocab_size of 3 * 10**7 over a
    (65, C) table fails here instead of allocating the table first. Names starting with one
    of the ``optional`` prefixes may be absent (heads a folder may lack)."""
    missing = [n for n in shapes if n not in state and not n.startswith(tuple(optional))]
    unexpected = [n for n in state if n not in shapes]
    if missing or unexpected:
        parts = ([f"missing tensors {missing[:6]}{' ...' if len(missing) > 6 else ''}"] if missing else []) + \
                ([f"unexpected tensors {unexpected[:6]}"] if unexpected else [])
        raise ValueError(f"{where} does not match {what}: " + "; ".join(parts))
    for n, shape in shapes.items():
        if n in state and tuple(state[n].shape) != tuple(shape):
            raise ValueError(f"{where}: tensor {n} has shape {tuple(state[n].shape)}, expected {tuple(shape)} "
                             f"from its config")
    check_weights(state, where)
