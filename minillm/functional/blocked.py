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

On CuPy one launch over the whole array is what is fast, so the kernel runs once.
"""
from minillm import backend
from minillm.backend import xp

BLOCK = 1 << 16   # elements per piece: 256 KiB of float32, so a kernel's few live pieces sit in L2


def blockwise(kernel, inputs, outputs, rows=None, extra=(), block=None):
    """Call ``kernel(*input_pieces, *output_pieces, *extra)`` on consecutive pieces.

    Every array of ``inputs`` and ``outputs`` is viewed as ``rows`` rows, (rows, -1),
    and cut into pieces of whole rows, about ``block`` elements of the largest array
    each. ``rows=None`` (elementwise kernels) means one element a row. A kernel with
    row reductions (LayerNorm) passes its row count, so a row is never split;
    per-row results, (rows, 1), are outputs like any other. ``extra`` goes to every
    call whole (options, a weight). ``outputs`` must be C-contiguous (the kernel
    writes its pieces in place, with ``out=``); an input that is not is copied once
    first. ``block`` defaults to ``BLOCK``, read at each call (tests shrink it to
    force many pieces). Returns the list of the kernel's return values, one per
    piece, in order (a kernel that sums over its rows returns its partial sums).
    """
    if not all(a.flags.c_contiguous for a in outputs):
        raise ValueError("blockwise: every output must be C-contiguous (it is written through views)")
    size = max(a.size for a in (*inputs, *outputs))                    # the largest array sets the pieces
    rows = outputs[0].size if rows is None else rows
    block = BLOCK if block is None else block
    per_piece = max(1, block * rows // max(size, 1))
    if backend.name == "cupy" or per_piece >= rows:
        return [kernel(*inputs, *outputs, *extra)]
    views = [xp.ascontiguousarray(a).reshape(rows, -1) for a in inputs]   # views when already contiguous
    views += [a.reshape(rows, -1) for a in outputs]                      # views: outputs are contiguous
    return [kernel(*(a[start:start + per_piece] for a in views), *extra) for start in range(0, rows, per_piece)]
