"""Shape ops: they move numbers around without changing them, so their
backward moves the gradient back to where each number came from."""
from minillm.autograd import Function, Tensor, Transpose, Reshape, GetItem
from minillm.backend import xp


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
    axis = axis % x.ndim
    pieces, start = [], 0
    for size in sizes:
        pieces.append(getitem(x, (slice(None),) * axis + (slice(start, start + size),)))
        start += size
    return pieces
