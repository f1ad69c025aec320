"""Pieces: a fused kernel run over an array in pieces, shared out over the threads.

A fused op written with NumPy still makes several passes over its arrays
(x * x, then * x, then tanh, ...): a kernel is a few NumPy calls. Running it
on consecutive pieces of about ``BLOCK`` elements does two things:

- each thread (``parallel.THREADS``) takes one contiguous run of pieces (the
  calling thread the first), and NumPy releases the GIL inside each ufunc, so
  the runs go on side by side;
- a piece's arrays are small enough to stay in the core's cache between one
  pass and the next.

The piece size is a trade: every NumPy call costs a few microseconds however
small its piece, so pieces of 64K elements (256 KiB, meant to sit in L2) lost
to whole arrays on the 2-core machine (a LayerNorm forward at block 256 /
batch 16: 5.2 ms in pieces of 64K on one thread, 3.8 ms whole), while 256K
elements, on two threads, took 2.3 ms. Handing out single pieces to whichever
thread is free was slower still (GIL handoffs), hence one run per thread.

The arithmetic is unchanged, number for number: an elementwise kernel never
looks outside its piece, a row kernel (LayerNorm) gets whole rows, and
per-piece results (partial sums) come back in piece order. Pieces are cut by
size alone, never by the thread count, so results do not depend on it. An
array of one piece runs on the calling thread.

On CuPy one launch over the whole array is what is fast, so the kernel runs once.
"""
from minillm import backend
from minillm.backend import xp
from minillm.functional import parallel

BLOCK = 1 << 18   # elements per piece: 1 MiB of float32 (see above for the measurement)


def _run(kernel, views, extra, starts, per_piece):
    """The kernel on the pieces beginning at ``starts``, in order; their return values."""
    return [kernel(*(a[start:start + per_piece] for a in views), *extra) for start in starts]


def blockwise(kernel, inputs, outputs, rows=None, extra=(), block=None, threads=None):
    """Call ``kernel(*input_pieces, *output_pieces, *extra)`` on consecutive pieces.

    Every array of ``inputs`` and ``outputs`` is viewed as ``rows`` rows, (rows, -1),
    and cut into pieces of whole rows, about ``block`` elements of the largest array
    each. ``rows=None`` (elementwise kernels) means one element a row. A kernel with
    row reductions (LayerNorm) passes its row count, so a row is never split;
    per-row results, (rows, 1), are outputs like any other. ``extra`` goes to every
    call whole (options, a weight). ``outputs`` must be C-contiguous (the kernel
    writes its pieces in place, with ``out=``); an input that is not is copied once
    first. ``block`` defaults to ``BLOCK`` and ``threads`` to ``parallel.THREADS``, read
    at each call (tests shrink the block to force many pieces). Returns the list of
    the kernel's return values, one per piece, in piece order (a kernel that sums
    over its rows returns its partial sums), whichever thread ran the piece.
    """
    if not all(a.flags.c_contiguous for a in outputs):
        raise ValueError("blockwise: every output must be C-contiguous (it is written through views)")
    size = max(a.size for a in (*inputs, *outputs))                    # the largest array sets the pieces
    rows = outputs[0].size if rows is None else rows
    block = BLOCK if block is None else block
    threads = parallel.THREADS if threads is None else threads
    threads = threads if size >= parallel.MIN_THREADED else 1
    per_piece = max(1, block * rows // max(size, 1))
    if backend.name == "cupy" or per_piece >= rows:                   # one piece: one call, this thread,
        parallel.blas_threads(parallel.THREADS)                        # its products (attention's) on
        return [kernel(*inputs, *outputs, *extra)]                     # the BLAS's own threads
    starts = list(range(0, rows, per_piece))
    views = [xp.ascontiguousarray(a).reshape(rows, -1) for a in inputs]   # views when already contiguous
    views += [a.reshape(rows, -1) for a in outputs]                      # views: outputs are contiguous
    runs = [starts[lo:hi] for lo, hi in parallel.split(len(starts), min(threads, len(starts)))]
    results = parallel.run_parts([lambda run=run: _run(kernel, views, extra, run, per_piece) for run in runs])
    return [value for run_values in results for value in run_values]
