"""The array backend: NumPy on the CPU or CuPy on an NVIDIA GPU, chosen once.

Set ``MINILLM_BACKEND=numpy`` (the default) or ``MINILLM_BACKEND=cupy`` before
importing minillm. Every piece of array code in layers 2-7 (autograd,
functional, nn, optim, model, kvcache, sampling, lora) spells its arrays as
``backend.xp.<something>``, never ``numpy.<something>``: that one rule is what
lets the same source run on both libraries. The few operations whose spelling
differs between NumPy and CuPy live here and nowhere else.

Randomness is always drawn on the host with a seeded ``numpy.random.Generator``
and then moved to the device, so both backends see identical numbers for the
same seed (identical initial weights, identical dropout masks, identical
sampled tokens).
"""
import ctypes
import os
import sys

import numpy

SUPPORTED = ("numpy", "cupy")


def _choose(requested):
    """Import and return (name, module) for the requested backend name."""
    requested = requested.strip().lower()
    if requested not in SUPPORTED:
        raise ValueError(
            f"unknown MINILLM_BACKEND {requested!r}: expected one of {SUPPORTED} "
            "(unset it to use numpy)")
    if requested == "numpy":
        return "numpy", numpy
    try:
        import cupy
    except ImportError as error:
        raise ImportError(
            "MINILLM_BACKEND=cupy but CuPy is not installed: install the GPU extra "
            "(pip install -e \".[gpu]\", a CuPy wheel for your CUDA version, e.g. "
            "cupy-cuda12x) or unset MINILLM_BACKEND to use numpy") from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDA driver missing or broken
        raise RuntimeError(
            f"MINILLM_BACKEND=cupy but no usable GPU was found ({error}); "
            "unset MINILLM_BACKEND to use numpy") from error
    if count < 1:
        raise RuntimeError("MINILLM_BACKEND=cupy but no GPU is visible; "
                           "unset MINILLM_BACKEND to use numpy")
    return "cupy", cupy


name, xp = _choose(os.environ.get("MINILLM_BACKEND", "numpy"))


def _keep_freed_memory():
    """Let the C allocator keep freed memory for the next array, instead of giving it back.

    A training step allocates and frees the same large activations every step.
    glibc's malloc serves a block past its mmap threshold with a fresh mapping
    and unmaps it when freed, so the next step's array of the same size is
    brand-new memory again, and the kernel zero-fills each of its 4 KiB pages
    on first touch (a page fault each): a 25 MiB GELU output costs ~6,400
    faults, every step. With the threshold fixed at 32 MiB (glibc's largest)
    and trimming off, freed blocks stay in the heap and are reused, as
    PyTorch's caching allocator does on a GPU. Measured: the GELU forward at
    block 256 / batch 16 went from 15.6 ms to 10.0 ms. Only on Linux with
    glibc; elsewhere (or if ``MINILLM_KEEP_MEMORY=0``) nothing changes.
    """
    if os.environ.get("MINILLM_KEEP_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):                  # not glibc (musl, ...): leave it be
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3        # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


KEEPS_FREED_MEMORY = name == "numpy" and _keep_freed_memory()


def to_numpy(array):
    """Return ``array`` as a host ``numpy.ndarray`` (a no-op on the NumPy backend)."""
    if name == "cupy" and isinstance(array, xp.ndarray):
        return array.get()
    return numpy.asarray(array)


def asarray(data, dtype=None):
    """Move ``data`` (host array, list, scalar or device array) onto the backend."""
    return xp.asarray(data, dtype=dtype)


def is_floating(array):
    """True when ``array`` holds floating-point numbers."""
    return numpy.issubdtype(array.dtype, numpy.floating)


def is_integer(array):
    """True when ``array`` holds integers (signed or unsigned), not booleans."""
    return numpy.issubdtype(array.dtype, numpy.integer)


def scatter_add(target, indices, values):
    """In place: ``target[indices] += values``, adding repeated indices up.

    Plain ``target[indices] += values`` keeps only one contribution per
    repeated index; the embedding gradient needs them all. Both libraries
    spell this ``add.at`` (CuPy >= 13; ``cupyx.scatter_add`` is deprecated).
    """
    xp.add.at(target, indices, values)
    return target


def rows_add(target, ids, values):
    """In place: ``target[ids[i]] += values[i]`` for a 1-D int array ``ids``.

    The embedding gradient. On the CPU a sparse one-hot matrix product,
    ``bincount`` per column or ``add.at`` are all correct; ``add.at`` on rows is
    slow in NumPy, so we sort the ids and use ``add.reduceat`` over the runs of
    equal ids (one pass over the data). CuPy's atomic ``scatter_add`` is fast.
    """
    if name == "cupy":
        return scatter_add(target, ids, values)
    if ids.size == 0:
        return target
    order = numpy.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = numpy.flatnonzero(numpy.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    target[sorted_ids[starts]] += numpy.add.reduceat(values[order], starts, axis=0)
    return target


def erf(x):
    """The error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, elementwise.

    NumPy has no erf; SciPy's ``scipy.special.erf`` (a runtime dependency) and
    CuPy's ``cupyx.scipy.special.erf`` are the same ufunc on each library.
    """
    if name == "cupy":
        from cupyx.scipy.special import erf as library_erf
    else:
        from scipy.special import erf as library_erf
    return library_erf(x)


def host_rng(seed=None):
    """A seeded host random generator (``numpy.random.Generator``)."""
    if isinstance(seed, numpy.random.Generator):
        return seed
    return numpy.random.default_rng(seed)


def random_normal(rng, shape, std=1.0, dtype="float32"):
    """N(0, std^2) numbers drawn on the host from ``rng``, moved to the backend."""
    return xp.asarray((rng.standard_normal(shape) * std).astype(dtype))


def device_rng(seed=None):
    """A seeded generator for randomness drawn in bulk on the device (dropout masks).

    On NumPy this is a ``numpy.random.Generator``; on CuPy, CuPy's own generator,
    so that a dropout mask never crosses the PCIe bus. (Dropout masks are
    therefore seeded but not identical across backends; initial weights and
    sampled tokens are, because they are drawn on the host.)
    """
    if name == "cupy":
        return xp.random.default_rng(seed)
    return numpy.random.default_rng(seed)


def random_uniform(rng, shape, dtype="float32"):
    """U[0, 1) numbers of the given dtype from ``rng`` (host or device generator)."""
    dtype = numpy.dtype(dtype)
    if name == "cupy" and isinstance(rng, numpy.random.Generator):
        return xp.asarray(rng.random(shape, dtype=dtype))
    return rng.random(shape, dtype=dtype)


MASK_CHUNK = 1 << 20   # uniform numbers drawn at a time by ``random_keep_mask`` on the host


def random_keep_mask(rng, shape, p, dtype="float32"):
    """Booleans, True with probability 1 - p: ``random_uniform(rng, shape, dtype) >= p``.

    The same numbers from the same generator as that one line (a generator's
    stream does not depend on how many numbers are drawn at a time), but on the
    host they are drawn ``MASK_CHUNK`` at a time into one reused buffer, so a
    mask never needs the four-times-larger float32 array of uniforms (at the
    nanoGPT config, 96 MiB for each layer's attention mask)."""
    dtype = numpy.dtype(dtype)
    if not isinstance(rng, numpy.random.Generator):          # CuPy's generator: one launch
        return random_uniform(rng, shape, dtype) >= p
    keep = numpy.empty(shape, dtype=bool)
    flat = keep.reshape(-1)
    buffer = numpy.empty(min(MASK_CHUNK, flat.size), dtype=dtype)
    for start in range(0, flat.size, MASK_CHUNK):
        piece = buffer[:min(MASK_CHUNK, flat.size - start)]
        rng.random(out=piece, dtype=dtype)
        numpy.greater_equal(piece, p, out=flat[start:start + piece.size])
    return xp.asarray(keep)


def synchronize():
    """Wait until the device has finished its queued work (before reading a timer)."""
    if name == "cupy":
        xp.cuda.Device().synchronize()


def memory_used_bytes():
    """Bytes the backend's allocator holds on the device (0 on NumPy)."""
    if name == "cupy":
        return int(xp.get_default_memory_pool().used_bytes())
    return 0


def compute_dtype(dtype):
    """The dtype in which values stored as ``dtype`` are computed.

    16-bit floats (float16, ml_dtypes' bfloat16) are a storage format on NumPy,
    which has no half-precision matrix product (NumPy would run one in a slow
    generic loop): there they are computed in float32, each product upcasting
    its 16-bit operand. On CuPy they are computed as they are (cuBLAS half
    precision). Every other dtype computes as itself.
    """
    dtype = numpy.dtype(dtype)
    if name == "numpy" and dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16"):
        return numpy.dtype(numpy.float32)
    return dtype
