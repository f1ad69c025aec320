"""Threads: minillm shares its CPU work out itself, and runs the BLAS on one thread.

NumPy's ufuncs (x * x, tanh, exp, ...) run on one core. Its BLAS (OpenBLAS)
runs matrix products on all of them, and between two products its worker
threads keep spinning, waiting for the next one. So a second thread of our
own, doing elementwise work on the other core, finds that core taken: on the
2-core machine, handing half of a GELU to a second thread right after a
matrix product was slower than doing it all on one.

So on the CPU minillm owns the threads. It sets the BLAS to one thread (with
threadpoolctl, at import) and keeps a pool of ``THREADS - 1`` worker threads
plus the calling thread; then it cuts both kinds of work into one part per
thread:

- a matrix product ``a @ b`` is cut along the rows of ``a`` (or, when ``a``
  has few rows, the columns of ``b``): each thread multiplies its rows by the
  whole of ``b`` on a one-thread BLAS, into its rows of the result;
- an elementwise kernel is cut into runs of pieces (``blocked.blockwise``).

Small work is not cut: under ``MIN_THREADED`` elements a product runs on the
BLAS's own threads, lent back to it (``blas_threads``) until our threads next
run, and elementwise work stays on the calling thread. Nothing of ours needs
the other core then, and handing a small part to a Python thread (about
0.1 ms) costs more than it saves.

NumPy releases the GIL inside a ufunc and inside the BLAS, so the parts run
side by side. Measured on the 2-core machine (see docs/performance.md): the
MLP's 4096 x 384 @ 384 x 1536 product took 16.1 ms on OpenBLAS's two threads
and 16.7 ms cut into two halves on our two threads; a GELU forward over the
4096 x 1536 activation 15.1 ms on one thread and 7.5 ms on two; and the three
in a row 59.2 ms (OpenBLAS threads) against 48.3 ms (ours).

An elementwise piece never looks outside itself, so cutting it changes no
number. A row of ``a @ b`` is the same dot products wherever it is cut, but
the BLAS picks its inner kernel by the shape of the part it is given, so a
dot product may be summed in another order: a part can differ from the
whole product in the last bit (tests/test_parallel.py bounds it). The cut
depends only on the shapes and ``THREADS``, so a run repeats exactly.

``THREADS`` follows the usual settings: ``MINILLM_THREADS``, else
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``, else the CPU count. With one
thread (the setting for a busy machine: ``OMP_NUM_THREADS=1``) there is no
pool and nothing is cut. On CuPy none of this applies: the GPU runs each op
as one launch.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from minillm import backend
from minillm.backend import xp

MIN_THREADED = 1 << 20           # arrays under 1 M elements: the work on them stays on the calling thread


def thread_count():
    """MINILLM_THREADS, else the BLAS's OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, else the CPU count."""
    for variable in ("MINILLM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def _blas_libraries():
    """threadpoolctl's handles on the BLAS libraries loaded (NumPy's OpenBLAS); [] without threadpoolctl."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    return threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers


def _set_blas_threads(count):
    for library in _BLAS:
        library.set_num_threads(count)                           # a plain C call, well under a microsecond


THREADS = thread_count() if backend.name == "numpy" else 1
_BLAS = _blas_libraries() if THREADS > 1 else []
if THREADS > 1 and not _BLAS:
    THREADS = 1                  # no threadpoolctl, or no BLAS it knows: leave the BLAS its own threads
_set_blas_threads(1)             # one thread until small work lends it THREADS (``blas_threads``)
_blas_now = 1

_POOL_NAME = "minillm-worker"
_pools = {}                      # process id -> executor; a forked child (MPI, multiprocessing) makes its own
_pools_lock = threading.Lock()


def _pool():
    with _pools_lock:
        pid = os.getpid()
        if pid not in _pools:
            _pools[pid] = ThreadPoolExecutor(THREADS - 1, thread_name_prefix=_POOL_NAME)
        return _pools[pid]


def run_parts(parts):
    """Call each zero-argument function of ``parts``, the first on this thread and the
    rest on the pool, side by side; return their results in order. Called from one of
    the pool's own threads (work inside a part), the parts run in turn on that thread:
    waiting there for the pool could wait for itself."""
    if len(parts) == 1 or threading.current_thread().name.startswith(_POOL_NAME):
        return [part() for part in parts]
    blas_threads(1)                                      # the cores are ours now
    others = [_pool().submit(part) for part in parts[1:]]
    results = [parts[0]()]
    results += [future.result() for future in others]   # re-raises a part's exception here
    return results


def split(n, parts):
    """``parts`` contiguous (start, stop) ranges covering range(n), as even as can be."""
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def blas_threads(count):
    """Give the BLAS ``count`` threads: all ``THREADS`` for small work (small products and
    attention pieces, where handing a part to a Python thread costs more than it saves),
    one before our own threads run. Changed only when it differs: the BLAS's threads keep
    spinning between small products instead of being put to sleep and woken each time."""
    global _blas_now
    if count != _blas_now and _BLAS:
        _set_blas_threads(count)
        _blas_now = count


def matmul(a, b, out=None):
    """``a @ b`` for 2-D ``a`` (n, k) and ``b`` (k, m), cut into one part per thread.

    When one of the three arrays has ``MIN_THREADED`` elements or more, the rows of
    ``a`` (and of the result) are shared out when there are at least 64 per thread,
    otherwise the columns of ``b``. A smaller product runs on the BLAS's own threads
    (``blas_threads``): the elementwise work around it is on one thread too, so
    nothing of ours needs the other cores while the BLAS's threads spin. ``out``: an
    (n, m) C-contiguous array to write into (made when None). The same numbers as
    ``xp.matmul(a, b)`` up to the last bit (see the module docstring)."""
    n, m = a.shape[0], b.shape[1]
    if out is None:
        out = xp.empty((n, m), xp.result_type(a, b))
    if THREADS == 1 or max(a.size, b.size, out.size) < MIN_THREADED:
        blas_threads(THREADS)
        return xp.matmul(a, b, out=out)
    threads = THREADS
    if n >= 64 * threads:
        parts = [lambda lo=lo, hi=hi: xp.matmul(a[lo:hi], b, out=out[lo:hi]) for lo, hi in split(n, threads)]
    else:
        parts = [lambda lo=lo, hi=hi: xp.matmul(a, b[:, lo:hi], out=out[:, lo:hi]) for lo, hi in split(m, threads)]
    run_parts(parts)
    return out
