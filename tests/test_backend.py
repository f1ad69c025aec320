"""The backend: choosing NumPy or CuPy, its helpers, and the layering rule.

The backend is chosen once per process, so choosing a different one is tested
in a subprocess with ``MINILLM_BACKEND`` set. The last test reads every module
of the package with ``ast`` and fails if array code imports NumPy or CuPy
directly instead of going through ``minillm.backend``.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy

from minillm import backend

PACKAGE = Path(backend.__file__).resolve().parent

# Host-side modules (text, files, plots, the training loop): they may use NumPy directly.
HOST_SIDE = {
    "backend.py", "data.py", "checkpoint.py", "train.py", "evaluate.py", "scaling.py",
    "batches.py", "memory.py", "plotting.py", "progress.py", "gradcheck.py",
    "finetune.py",  # like train.py: builds its batches on the host (added to the list; see report)
    "distributed.py",  # talks to MPI (host buffers) and cupy.cuda.nccl; packs gradients through backend.xp
    "ngram.py", "energy.py", "fairness.py",  # counting, meters and statistics on the host
    "mlm.py",  # BERT's masking: batches prepared on the host, like finetune.py
    "safe_io.py",  # reads files into host arrays (.npz members, weight checks), before any model exists
}
HOST_SIDE_PREFIXES = ("tokenizers", "hf", "data", "corpus")  # tokenizers*.py and these packages
ARRAY_LIBRARIES = {"numpy", "cupy", "cupyx"}


def _import_minillm(backend_name, prelude=""):
    """Run ``import minillm`` in a fresh interpreter with MINILLM_BACKEND set."""
    env = dict(os.environ, MINILLM_BACKEND=backend_name)
    code = f"{prelude}\nimport minillm\nprint(minillm.backend.name)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_unknown_backend_name_is_a_clear_error():
    done = _import_minillm("tensorflow")
    assert done.returncode != 0
    assert "ValueError: unknown MINILLM_BACKEND 'tensorflow'" in done.stderr
    assert "expected one of ('numpy', 'cupy')" in done.stderr


def test_backend_name_is_case_and_space_insensitive():
    done = _import_minillm(" NumPy ")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "numpy"


def test_cupy_missing_says_what_to_install():
    # sys.modules["cupy"] = None makes "import cupy" fail even where CuPy is installed.
    done = _import_minillm("cupy", prelude="import sys; sys.modules['cupy'] = None")
    assert done.returncode != 0
    assert "ImportError: MINILLM_BACKEND=cupy but CuPy is not installed" in done.stderr
    assert "pip install" in done.stderr and "unset MINILLM_BACKEND" in done.stderr


def test_cupy_without_a_gpu_is_a_clear_error():
    prelude = (
        "import sys, types\n"
        "def no_gpu():\n"
        "    raise OSError('CUDA driver not found')\n"
        "fake = types.ModuleType('cupy')\n"
        "fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_gpu))\n"
        "sys.modules['cupy'] = fake")
    done = _import_minillm("cupy", prelude=prelude)
    assert done.returncode != 0
    assert "RuntimeError: MINILLM_BACKEND=cupy but no usable GPU was found (CUDA driver not found)" in done.stderr


def test_cupy_with_zero_gpus_is_a_clear_error():
    prelude = (
        "import sys, types\n"
        "fake = types.ModuleType('cupy')\n"
        "fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 0))\n"
        "sys.modules['cupy'] = fake")
    done = _import_minillm("cupy", prelude=prelude)
    assert done.returncode != 0
    assert "no GPU is visible" in done.stderr


def test_to_numpy_returns_host_arrays():
    array = backend.xp.arange(6.0).reshape(2, 3)
    host = backend.to_numpy(array)
    assert type(host) is numpy.ndarray and host.shape == (2, 3)
    numpy.testing.assert_array_equal(host, numpy.arange(6.0).reshape(2, 3))
    assert type(backend.to_numpy([1, 2])) is numpy.ndarray
    assert backend.to_numpy(numpy.float32(2.5)) == 2.5


def test_dtype_predicates():
    xp = backend.xp
    assert backend.is_floating(xp.zeros(1, dtype=xp.float32))
    assert not backend.is_floating(xp.zeros(1, dtype=xp.int64))
    assert backend.is_integer(xp.zeros(1, dtype=xp.uint8))
    assert not backend.is_integer(xp.zeros(1, dtype=bool))


def test_scatter_add_adds_repeated_indices():
    xp = backend.xp
    target = xp.zeros(4)
    backend.scatter_add(target, xp.asarray([1, 3, 1, 1]), xp.asarray([1.0, 2.0, 3.0, 4.0]))
    numpy.testing.assert_array_equal(backend.to_numpy(target), [0.0, 8.0, 0.0, 2.0])


def test_rows_add_matches_a_loop_with_repeated_ids():
    xp = backend.xp
    rng = numpy.random.default_rng(0)
    ids = numpy.array([4, 0, 4, 4, 2, 0, 7])
    values = rng.standard_normal((len(ids), 3))
    start = rng.standard_normal((8, 3))
    expected = start.copy()
    for i, row in zip(ids, values):
        expected[i] += row
    target = xp.asarray(start.copy())
    out = backend.rows_add(target, xp.asarray(ids), xp.asarray(values))
    assert out is target
    numpy.testing.assert_allclose(backend.to_numpy(target), expected, rtol=1e-12)


def test_rows_add_with_no_ids_changes_nothing():
    xp = backend.xp
    target = xp.ones((3, 2))
    backend.rows_add(target, xp.zeros(0, dtype=xp.int64), xp.zeros((0, 2)))
    numpy.testing.assert_array_equal(backend.to_numpy(target), numpy.ones((3, 2)))


def test_host_rng_is_seeded_and_passes_generators_through():
    a, b = backend.host_rng(5), backend.host_rng(5)
    assert a.integers(1 << 30) == b.integers(1 << 30)
    assert backend.host_rng(a) is a


def test_random_normal_and_uniform_have_the_asked_dtype_and_are_reproducible():
    x = backend.random_normal(backend.host_rng(1), (3, 2), std=0.02)
    y = backend.random_normal(backend.host_rng(1), (3, 2), std=0.02)
    assert x.dtype == numpy.float32 and x.shape == (3, 2)
    numpy.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(y))
    u = backend.random_uniform(backend.device_rng(3), (1000,), dtype="float64")
    host = backend.to_numpy(u)
    assert u.dtype == numpy.float64 and 0.0 <= host.min() and host.max() < 1.0


def test_synchronize_and_memory_report_run():
    backend.synchronize()
    assert backend.memory_used_bytes() >= 0


# ---------------------------------------------------------------- the layering rule

def _imported_array_libraries(tree):
    """(line, module) for each import of numpy/cupy/cupyx in a parsed module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            names = [node.args[0].value]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in ARRAY_LIBRARIES]
    return found


def _is_host_side(relative):
    first = relative.parts[0]
    return str(relative) in HOST_SIDE or first.startswith(HOST_SIDE_PREFIXES)


def test_array_code_imports_numpy_only_through_the_backend():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) >= 10, f"expected the whole package under {PACKAGE}, found {len(modules)} modules"
    offenders = []
    for path in modules:
        relative = path.relative_to(PACKAGE)
        if _is_host_side(relative):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"minillm/{relative}:{line} imports {name}" for line, name in _imported_array_libraries(tree)]
    assert not offenders, ("array code must use `from minillm.backend import xp`, not NumPy/CuPy directly:\n"
                           + "\n".join(offenders))


def test_the_layering_check_can_fail():
    sources = ["import numpy as np", "from numpy.linalg import norm", "import cupyx.scatter_add",
               "__import__('numpy')", "importlib.import_module('cupy')"]
    for source in sources:
        assert _imported_array_libraries(ast.parse(source)), source
    assert not _imported_array_libraries(ast.parse("from minillm.backend import xp\nimport numbers"))
    assert _is_host_side(Path("tokenizers/bpe.py")) and _is_host_side(Path("data/dedup.py"))
    assert not _is_host_side(Path("functional/softmax.py")) and not _is_host_side(Path("models/gpt2.py"))



def test_freed_memory_is_kept_for_the_next_step_unless_turned_off():
    """On Linux/glibc the NumPy backend sets malloc to keep freed blocks (no page faults each
    step); MINILLM_KEEP_MEMORY=0 leaves the allocator alone."""
    if not sys.platform.startswith("linux"):
        assert backend.KEEPS_FREED_MEMORY is False
        return
    code = "import minillm; print(minillm.backend.KEEPS_FREED_MEMORY)"
    results = {}
    for setting in ("1", "0"):
        env = dict(os.environ, MINILLM_BACKEND="numpy", MINILLM_KEEP_MEMORY=setting)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        results[setting] = done.stdout.strip()
    assert results["0"] == "False"
    assert results["1"] == str(backend.KEEPS_FREED_MEMORY)


def test_a_keep_mask_drawn_in_chunks_is_the_one_line_mask(monkeypatch):
    """random_keep_mask draws MASK_CHUNK uniforms at a time: the same booleans as drawing them all."""
    monkeypatch.setattr(backend, "MASK_CHUNK", 7)                # many chunks and a ragged last one
    for shape, p in (((3, 5, 4), 0.3), ((50,), 0.0), ((2, 0, 3), 0.5)):
        chunked = backend.random_keep_mask(backend.device_rng(11), shape, p)
        whole = backend.random_uniform(backend.device_rng(11), shape) >= p
        assert chunked.shape == whole.shape and chunked.dtype == bool
        numpy.testing.assert_array_equal(backend.to_numpy(chunked), backend.to_numpy(whole))
