"""Shape ops: indexing, reshape, transpose, concatenation, splitting. They move numbers
around without changing them, so each backward moves the gradient back to
where each number came from (``Tensor[...]``, ``.reshape``, ``.T`` and
``.transpose`` call the Functions of this file)."""
from minillm import backend
from minillm.autograd import Function, Tensor
from minillm.backend import xp


def _index_to_arrays(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_advanced(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in parts)


class GetItem(Function):
    """y = x[index] (slices, integers, None, Ellipsis and integer arrays).

    The gradient goes back to the positions that were read; an integer array
    may read one position several times, so those gradients are added up
    (scatter-add) instead of assigned.
    """

    def forward(self, x, index):
        self.index = _index_to_arrays(index)
        self.shape = x.shape  # the gradient has the input's shape
        return x[self.index]

    def backward(self, grad):
        grad_x = xp.zeros(self.shape, dtype=grad.dtype)
        if _is_advanced(self.index):
            backend.scatter_add(grad_x, self.index, grad)
        else:
            grad_x[self.index] = grad
        return grad_x


class Reshape(Function):
    """y = x.reshape(shape); the gradient is reshaped back."""

    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    """y = x.transpose(axes); the gradient is permuted by the inverse permutation."""

    def forward(self, x, axes):
        self.axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, grad):
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        return grad.transpose(inverse)


def reshape(x, shape):
    return Reshape.apply(x, shape=tuple(shape))


def transpose(x, axes=None):
    """Permute the axes (all reversed when ``axes`` is None)."""
    return Transpose.apply(x, axes=None if axes is None else tuple(axes))


permute = transpose


def getitem(x, index):
    return GetItem.apply(x, index=index)


class Concat(Function):
    """y = concatenate(xs, axis).  The gradient is cut back into the same pieces."""

    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = [0]
        for array in arrays:
            self.bounds.append(self.bounds[-1] + array.shape[axis])
        return xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        axis = self.axis % grad.ndim
        pieces = []
        for start, stop in zip(self.bounds[:-1], self.bounds[1:]):
            index = (slice(None),) * axis + (slice(start, stop),)
            pieces.append(grad[index])
        return tuple(pieces)


def concat(tensors, axis=0):
    """Join tensors along an existing axis."""
    if len(tensors) == 0:
        raise ValueError("concat needs at least one tensor")
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis."""
    expanded = []
    for t in tensors:
        t = t if isinstance(t, Tensor) else Tensor(t)
        new_shape = list(t.shape)
        new_shape.insert(axis % (t.ndim + 1), 1)
        expanded.append(reshape(t, new_shape))
    return concat(expanded, axis=axis)


class Split(Function):
    """y_1, ..., y_n = consecutive pieces of x along ``axis``, as views (no copy).

    One op with n results: backward joins the pieces' gradients along ``axis``
    in one pass (zeros for a piece no later op used), instead of n full-size
    scattered gradients added up."""

    def forward(self, x, sizes, axis):
        self.axis, self.sizes, self.shape, self.dtype = axis, sizes, x.shape, x.dtype
        lead, start, pieces = (slice(None),) * axis, 0, []
        for size in sizes:
            pieces.append(x[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def backward(self, *grads):
        shape = list(self.shape)
        pieces = []
        for grad, size in zip(grads, self.sizes):
            shape[self.axis] = size
            pieces.append(xp.zeros(tuple(shape), self.dtype) if grad is None else grad)
        return xp.concatenate(pieces, axis=self.axis)


class SplitFusedHeads(Function):
    """(B, T, P * H * D) -> P tensors (B, H, T, D): a fused projection's [q | k | v],
    each cut into H heads, as views of x (no copy).

    Backward writes each part's gradient straight into its place in one
    (B, T, P, H, D) array (zeros for a part no later op used): one pass, where
    indexing the parts would build P full-size gradients and add them up."""

    def forward(self, x, n_parts, n_head):
        B, T, C = x.shape
        self.shape, self.dtype = x.shape, x.dtype
        self.split_shape = (B, T, n_parts, n_head, C // (n_parts * n_head))
        parts = x.reshape(self.split_shape).transpose(2, 0, 3, 1, 4)      # (P, B, H, T, D), a view
        return tuple(parts[i] for i in range(n_parts))

    def backward(self, *grads):
        grad_x = xp.empty(self.split_shape, self.dtype)                    # (B, T, P, H, D)
        parts = grad_x.transpose(2, 0, 3, 1, 4)                            # (P, B, H, T, D), a view of it
        for i, grad in enumerate(grads):
            parts[i] = 0 if grad is None else grad
        return grad_x.reshape(self.shape)                                  # (B, T, C)


def split_fused_heads(x, n_parts, n_head):
    """(B, T, n_parts * n_head * D) -> a list of n_parts tensors (B, n_head, T, D)."""
    if x.ndim != 3 or x.shape[-1] % (n_parts * n_head):
        raise ValueError(f"split_fused_heads: x has shape {tuple(x.shape)}; expected (B, T, C) with C divisible "
                         f"by n_parts * n_head = {n_parts * n_head}")
    return list(SplitFusedHeads.apply(x, n_parts=n_parts, n_head=n_head))


def split(x, sections, axis=-1):
    """Cut ``x`` along ``axis`` into ``sections`` equal parts (an int) or at the
    given sizes (a list of ints). Returns a list of tensors."""
    length = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0 or length % sections:
            raise ValueError(f"split: axis {axis} of length {length} cannot be cut into {sections} equal parts")
        sizes = [length // sections] * sections
    else:
        sizes = list(sections)
        if sum(sizes) != length:
            raise ValueError(f"split: sizes {sizes} add up to {sum(sizes)}, not the axis length {length}")
    return list(Split.apply(x, sizes=sizes, axis=axis % x.ndim))
