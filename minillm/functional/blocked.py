"""Cache blocking: a fused elementwise kernel run over an array in cache-sized pieces.

A fused op written with NumPy still makes several passes over its arrays
(x * x, then * x, then tanh, ...), and over a whole activation (the MLP's
12 x 64 x 512 float32 numbers are 1.5 MiB; at block 256 / batch 16, 25 MiB)
each pass streams the arrays from memory again. Running the same kernel on
consecutive pieces of ``BLOCK`` elements instead, every pass after the first
finds its piece in the core's own cache. The arithmetic is unchanged, number
for number: an elementwise kernel never looks outside its piece.

On CuPy one launch over the whole array is what is fast, so the kernel runs once.
"""
from minillm import backend
from minillm.backend import xp

BLOCK = 1 << 16   # elements per piece: 256 KiB of float32, so a kernel's few live pieces sit in L2


def blockwise(kernel, inputs, outputs, rows=None, extra=(), block=None):
    """Call ``kernel(*input_pieces, *output_pieces, *extra)`` on consecutive pieces; return ``outputs``.

    Every array of ``inputs`` and ``outputs`` is viewed as ``rows`` rows, (rows, -1),
    and cut into pieces of whole rows, about ``block`` elements of the largest array each. ``rows=None``
    (elementwise kernels) means one element a row. A kernel with row reductions
    (LayerNorm) passes its row count, so a row is never split; per-row results,
    (rows, 1), are outputs like any other. ``extra`` arrays go to every call
    whole (accumulators, e.g. a weight's gradient summed over the pieces).
    ``block`` defaults to ``BLOCK``, read at each call (tests shrink it to force many pieces).
    ``outputs`` must be C-contiguous (the kernel writes its pieces in place, with
    ``out=``); an input that is not is copied once first.
    """
    if not all(a.flags.c_contiguous for a in outputs):
        raise ValueError("blockwise: every output must be C-contiguous (it is written through views)")
    size = max(a.size for a in (*inputs, *outputs))                    # the largest array sets the pieces
    rows = outputs[0].size if rows is None else rows
    block = BLOCK if block is None else block
    per_piece = max(1, block * rows // max(size, 1))
    if backend.name == "cupy" or per_piece >= rows:
        kernel(*inputs, *outputs, *extra)
        return outputs
    views_in = [xp.ascontiguousarray(a).reshape(rows, -1) for a in inputs]   # views when already contiguous
    views_out = [a.reshape(rows, -1) for a in outputs]                       # views: outputs are contiguous
    for start in range(0, rows, per_piece):
        piece = slice(start, start + per_piece)
        kernel(*(a[piece] for a in views_in), *(a[piece] for a in views_out), *extra)
    return outputs
