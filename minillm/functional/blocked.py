"""Cache blocking: a fused kernel run over an array in cache-sized pieces.

A fused op written with NumPy still makes several passes over its arrays
(x * x, then * x, then tanh, ...), and over a whole activation (the MLP's
12 x 64 x 512 float32 numbers are 1.5 MiB; at block 256 / batch 16, 25 MiB)
each pass streams the arrays from memory again. Running the same kernel on
consecutive pieces of ``BLOCK`` elements instead, every pass after the first
finds its piece in the core's own cache. The arithmetic is unchanged, number
for number: an elementwise kernel never looks outside its piece.

(Running the pieces on several threads, NumPy releasing the GIL inside each
ufunc, was measured too: on the shared 2-core machine, handing pieces to a
second thread cost more than it saved, up to 4x slower on small arrays, as
waking BLAS's second thread does; so the pieces run in turn, on one thread.)

With several threads (``parallel.THREADS``) the pieces are also shared out:
the rows are cut into one contiguous run of pieces per thread (the calling
thread takes the first). Each thread takes a long run rather than single
pieces in turn: handing out 64K-element pieces one at a time cost more in
GIL handoffs than it saved. Pieces are cut the same way whatever the thread
count, and the per-piece results come back in piece order, so the numbers are the same
whatever the thread count. Arrays under ``MIN_THREADED`` elements stay on one
thread: waking another costs more than it saves.

On CuPy one launch over the whole array is what is fast, so the kernel runs once.
"""
from minillm import backend
from minillm.backend import xp
from minillm.functional import parallel

BLOCK = 1 << 16          # elements per piece: 256 KiB of float32, so a kernel's few live pieces sit in L2
MIN_THREADED = 1 << 17   # arrays smaller (512 KiB of float32; at most two pieces) stay on the calling thread


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
    threads = 1 if size < MIN_THREADED else threads
    per_piece = max(1, block * rows // max(size, 1))
    if backend.name == "cupy" or (per_piece >= rows and threads == 1):
        return [kernel(*inputs, *outputs, *extra)]
    views = [xp.ascontiguousarray(a).reshape(rows, -1) for a in inputs]   # views when already contiguous
    views += [a.reshape(rows, -1) for a in outputs]                      # views: outputs are contiguous
    starts = list(range(0, rows, per_piece))
    runs = [starts[lo:hi] for lo, hi in parallel.split(len(starts), min(threads, len(starts)))]
    results = parallel.run_parts([lambda run=run: _run(kernel, views, extra, run, per_piece) for run in runs])
    return [value for run_values in results for value in run_values]
