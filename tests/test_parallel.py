"""minillm's own CPU threads (``minillm.functional.parallel``): cutting work into
parts must never change a number, and must run every part."""
import os
import threading

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import backend
from minillm.backend import xp
from minillm.functional import blocked, parallel


@pytest.fixture
def two_threads(monkeypatch):
    """Cut even the smallest products and arrays into two parts."""
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_THREADED", 0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 40), m=st.integers(1, 40), transposed=st.booleans(),
       seed=st.integers(0, 2**16))
def test_a_cut_product_equals_numpys_to_rounding(n, k, m, transposed, seed):
    """Rows (n >= 128) or columns (fewer rows) of the product on two threads, as one product gives them,
    to float32 rounding: the BLAS picks its inner kernel by the part's shape (found: 1 element of a
    130 x 2 @ 2 x 1 product 1 ulp off), so a dot product may be summed in another order."""
    rng = numpy.random.default_rng(seed)
    a = xp.asarray(rng.standard_normal((n, k), dtype=numpy.float32))
    b = xp.asarray(rng.standard_normal((m, k) if transposed else (k, m), dtype=numpy.float32))
    b = b.T if transposed else b                                     # a transposed view, as Linear's W^T
    saved = parallel.THREADS, parallel.MIN_THREADED
    parallel.THREADS, parallel.MIN_THREADED = 2, 0
    try:
        cut = parallel.matmul(a, b)
        into = parallel.matmul(a, b, out=xp.full((n, m), numpy.nan, dtype=numpy.float32))
    finally:
        parallel.THREADS, parallel.MIN_THREADED = saved
    whole = backend.to_numpy(xp.matmul(a, b))
    bound = 4 * numpy.finfo(numpy.float32).eps * k * backend.to_numpy(xp.abs(a) @ xp.abs(b))  # |error| of a sum
    assert numpy.all(numpy.abs(backend.to_numpy(cut) - whole) <= bound)
    numpy.testing.assert_array_equal(backend.to_numpy(into), backend.to_numpy(cut))


def test_parts_run_side_by_side_and_come_back_in_order(two_threads):
    names = parallel.run_parts([lambda i=i: (i, threading.current_thread().name) for i in range(3)])
    assert [i for i, _ in names] == [0, 1, 2]
    assert names[0][1] == threading.current_thread().name                 # the first part: the caller's
    assert all(name.startswith("minillm-worker") for _, name in names[1:])   # the rest: the pool's


def test_parts_started_inside_a_part_run_in_turn_instead_of_waiting_for_the_pool(two_threads):
    """A part that itself cuts work (a kernel calling parallel.matmul) must not deadlock the one worker."""
    def nested():
        return parallel.run_parts([lambda: "a", lambda: "b"])
    assert parallel.run_parts([lambda: ["main"], nested]) == [["main"], ["a", "b"]]


def test_a_failing_part_raises_in_the_caller(two_threads):
    def fails():
        raise ZeroDivisionError("part 2")
    with pytest.raises(ZeroDivisionError, match="part 2"):
        parallel.run_parts([lambda: 1, fails])


def test_blockwise_on_two_threads_returns_every_piece_in_order(two_threads, monkeypatch):
    """Partial row sums from pieces on two threads: the same pieces, in the same order, as on one."""
    monkeypatch.setattr(blocked, "BLOCK", 6)
    x = xp.asarray(numpy.arange(33.0).reshape(11, 3))

    def row_sums(piece, out):
        out[...] = piece.sum(axis=-1, keepdims=True)
        return piece[:, 0].tolist()                                  # which rows this piece had

    results = {}
    for threads in (1, 2):
        out = xp.empty((11, 1))
        pieces = blocked.blockwise(row_sums, (x,), (out,), rows=11, threads=threads)
        results[threads] = pieces, backend.to_numpy(out)
    assert results[1][0] == results[2][0] == [[0, 3], [6, 9], [12, 15], [18, 21], [24, 27], [30]] \
        or backend.name == "cupy"
    numpy.testing.assert_array_equal(results[1][1], results[2][1])
    numpy.testing.assert_array_equal(results[2][1][:, 0], numpy.arange(33.0).reshape(11, 3).sum(axis=1))


@pytest.mark.parametrize("settings_, expected", [
    ({"MINILLM_THREADS": "3", "OMP_NUM_THREADS": "1"}, 3),
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"OPENBLAS_NUM_THREADS": "2"}, 2),
    ({"MINILLM_THREADS": "zero", "OMP_NUM_THREADS": "0"}, None),   # not a count: the CPU count
])
def test_the_thread_count_follows_the_usual_settings(monkeypatch, settings_, expected):
    for variable in ("MINILLM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in settings_.items():
        monkeypatch.setenv(variable, value)
    assert parallel.thread_count() == (expected or os.cpu_count() or 1)


def test_the_blas_has_all_threads_for_small_products_and_one_while_ours_run():
    """Our threads and OpenBLAS's would fight for the cores: while minillm cuts work the BLAS
    has one thread; small products (nothing of ours running beside them) get all of them."""
    if parallel.THREADS == 1:
        pytest.skip("minillm runs on one thread here (one CPU, or OMP_NUM_THREADS=1): the BLAS is left alone")
    pytest.importorskip("threadpoolctl")

    def blas_threads():                 # the BLAS libraries loaded when minillm was (NumPy's among them)
        return {library.get_num_threads() for library in parallel._BLAS}

    small = xp.ones((64, 256), dtype=numpy.float32)
    parallel.matmul(small, xp.ones((256, 256), dtype=numpy.float32))        # 64K-element arrays
    assert blas_threads() == {parallel.THREADS}
    large = xp.ones((parallel.MIN_THREADED // 64, 64), dtype=numpy.float32)
    parallel.matmul(large, xp.ones((64, 8), dtype=numpy.float32))           # a 1M-element operand: cut
    assert blas_threads() == {1}
