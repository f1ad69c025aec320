"""NumPy and CuPy give the same numbers (float32 tolerances) on the same inputs.

Each backend runs ``tests/backend_parity_worker.py`` in its own process (the
backend is chosen once per process). Without CuPy or a GPU these tests are
skipped and say why; on a GPU machine they run whatever MINILLM_BACKEND the
suite itself uses.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

WORKER = Path(__file__).with_name("backend_parity_worker.py")


def _cupy_unavailable_reason():
    probe = ("import cupy, sys; n = cupy.cuda.runtime.getDeviceCount(); "
             "sys.exit(0 if n > 0 else 3)")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "probing CuPy timed out"
    if done.returncode == 0:
        return None
    if b"ModuleNotFoundError" in done.stderr:
        return "CuPy is not installed (pip install -e '.[gpu]' on a machine with an NVIDIA GPU)"
    return "CuPy is installed but no usable GPU is visible"


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory):
    reason = _cupy_unavailable_reason()
    if reason:
        pytest.skip(f"backend parity needs a GPU: {reason}")
    folder = tmp_path_factory.mktemp("parity")
    results = {}
    for name in ("numpy", "cupy"):
        path = folder / f"{name}.npz"
        env = dict(os.environ, MINILLM_BACKEND=name)
        subprocess.run([sys.executable, str(WORKER), str(path)], env=env, check=True, timeout=600)
        with numpy.load(path, allow_pickle=False) as data:
            results[name] = {key: data[key] for key in data.files}
    return results


def test_workers_ran_on_their_backends(both_backends):
    assert str(both_backends["numpy"]["backend"]) == "numpy"
    assert str(both_backends["cupy"]["backend"]) == "cupy"


def test_every_op_forward_and_backward_match(both_backends):
    a, b = both_backends["numpy"], both_backends["cupy"]
    keys = [k for k in a if k.startswith("op/")]
    assert len(keys) > 30 and set(keys) == {k for k in b if k.startswith("op/")}
    for key in keys:
        numpy.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_same_loss_curve(both_backends):
    numpy.testing.assert_allclose(both_backends["cupy"]["gpt/losses"], both_backends["numpy"]["gpt/losses"],
                                  rtol=1e-4, atol=1e-5)


def test_same_generated_tokens(both_backends):
    for key in ("gpt/greedy", "gpt/sampled"):
        numpy.testing.assert_array_equal(both_backends["cupy"][key], both_backends["numpy"][key], err_msg=key)
