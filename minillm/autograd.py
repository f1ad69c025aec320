"""Reverse-mode automatic differentiation: ``Tensor``, ``Function``, ``backward``.

A ``Tensor`` wraps an array (``.data``) and, when it was computed from tensors
that require gradients, remembers the ``Function`` that made it. The Functions
form a directed acyclic graph from the inputs to the result. ``backward()``
visits that graph once, from the result back to the inputs, in reverse
topological order, and applies the chain rule at each node:

    dL/dx = sum over every use y = f(x, ...) of  (dL/dy) * (dy/dx)

Each Function defines ``forward`` (raw arrays in, raw array out) and, right
after it, ``backward`` (the gradient of the loss with respect to its output in,
the gradients with respect to its inputs out). The engine, not the ops, reduces
a gradient that NumPy broadcasting widened back to its input's shape
(``unbroadcast``).

The operators ``+ - * / ** @``, unary ``-``, indexing, ``.T``, ``.reshape``,
``.transpose`` and the reductions ``.sum``, ``.mean``, ``.max`` are defined in
this file, because ``Tensor`` needs them; every other op is in
``minillm.functional``.
"""
import contextlib

from minillm import backend
from minillm.backend import xp

# ---------------------------------------------------------------- grad mode

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block no graph is recorded (evaluation, generation, optimizer steps)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    """True unless we are inside ``no_grad()``."""
    return _grad_enabled


# ---------------------------------------------------------------- helpers

def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the adjoint of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along its size-1
    axes, so the gradient of the input is the sum over those axes.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    assert grad.shape == tuple(shape), f"cannot reduce gradient {grad.shape} to {shape}"
    return grad


def _as_array(value, like=None):
    """Turn a Tensor, array, list or Python scalar into a backend array.

    A Python scalar takes the dtype of a floating ``like`` so that ``x * 2``
    stays float32 (and of an integer ``like`` only when it is an int itself, so
    that ``ids * 0.5`` is not truncated to integers).
    """
    if isinstance(value, Tensor):
        return value.data
    if like is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        if backend.is_floating(like) or isinstance(value, int):
            return xp.asarray(value, dtype=like.dtype)
    return xp.asarray(value)


def _shape_text(shape):
    return "(" + ", ".join(str(n) for n in shape) + ")"


# ---------------------------------------------------------------- Tensor

class Tensor:
    """An array with an optional gradient and a link to the Function that made it.

    ``Tensor(data, requires_grad=False)``: ``data`` is anything ``xp.asarray``
    accepts; its dtype is kept (float64 stays float64). ``.grad`` is filled by
    ``backward()`` for tensors that require gradients and were not computed by
    an op (leaves: parameters and inputs).
    """

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__
    _freed = False             # class default, for subclasses that skip __init__

    def __init__(self, data, requires_grad=False, _creator=None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = data if isinstance(data, xp.ndarray) else xp.asarray(data)
        if requires_grad and not backend.is_floating(self.data):
            raise TypeError(f"only floating-point tensors can require gradients, got {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._creator = _creator  # the Function that computed this tensor, None for a leaf
        self._freed = False       # True once backward() has released the graph behind it

    # -- what it looks like
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({backend.to_numpy(self.data)!r}{grad})"

    def item(self):
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def numpy(self):
        """The data as a host NumPy array."""
        return backend.to_numpy(self.data)

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    @property
    def is_leaf(self):
        """True for tensors made by the user (parameters, inputs), not by an op."""
        return self._creator is None and not self._freed

    # -- backpropagation
    def backward(self, grad=None):
        """Fill ``.grad`` of every leaf this tensor depends on with dL/dleaf.

        ``grad`` is dL/dself; it may be omitted only for a one-element tensor
        (then it is 1). The graph is released afterwards.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require gradients "
                               "(no input of its graph has requires_grad=True)")
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {_shape_text(self.shape)} needs an explicit "
                    "gradient of the same shape; reduce it to a scalar (e.g. .sum()) or call backward(grad)")
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, like=self.data)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {_shape_text(grad.shape)}, "
                                 f"the tensor has shape {_shape_text(self.shape)}")
        _run_backward(self, grad)

    # -- operators: each builds one node of the graph
    def __add__(self, other):
        return Add.apply(self, other)

    def __radd__(self, other):
        return Add.apply(other, self)

    def __sub__(self, other):
        return Sub.apply(self, other)

    def __rsub__(self, other):
        return Sub.apply(other, self)

    def __mul__(self, other):
        return Mul.apply(self, other)

    def __rmul__(self, other):
        return Mul.apply(other, self)

    def __truediv__(self, other):
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        return Div.apply(other, self)

    def __neg__(self):
        return Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float)):
            raise TypeError(f"x ** p needs a Python number p, got {type(exponent).__name__}")
        return Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        return MatMul.apply(other, self)

    def __getitem__(self, index):
        return GetItem.apply(self, index=index)

    @property
    def T(self):
        """The transpose: all axes reversed (as NumPy's ``.T``)."""
        return Transpose.apply(self, axes=None)

    def transpose(self, *axes):
        """Permute the axes: ``x.transpose(0, 2, 1)``; no argument reverses them."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes or None)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def sum(self, axis=None, keepdims=False):
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return Max.apply(self, axis=axis, keepdims=keepdims)


# ---------------------------------------------------------------- Function

class Function:
    """One differentiable operation, with its forward and backward side by side.

    Subclasses write ``forward(self, *arrays, **options)``, returning an array,
    and ``backward(self, grad)``, returning one gradient (or None) per array
    input. Whatever backward needs, forward saves on ``self`` with a one-line
    reason. ``backward`` must not modify ``grad`` in place: the same array may
    be handed to several inputs. ``self.needs_input_grad`` (one bool per
    input, set when the graph is recorded) lets a backward skip the gradients
    nobody needs, e.g. dL/dW of a frozen weight.

    ``Cls.apply(*inputs, **options)`` is how an op is called: positional inputs
    are Tensors (or arrays / Python numbers, which become constants), keyword
    options are non-differentiable settings (an axis, integer ids, a seed).
    """

    needs_input_grad = None  # set by apply(); None (a Function used directly): compute every gradient

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options):
        like = next((x.data for x in inputs if isinstance(x, Tensor)), None)
        tensors = [x if isinstance(x, Tensor) else Tensor(_as_array(x, like)) for x in inputs]
        fn = cls()
        out = fn.forward(*(t.data for t in tensors), **options)
        needs_grad = _grad_enabled and any(t.requires_grad for t in tensors)
        if not needs_grad:
            return Tensor(out)
        fn.inputs = tensors
        fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
        return Tensor(out, requires_grad=True, _creator=fn)


# ---------------------------------------------------------------- the engine

_FREED_MESSAGE = ("backward() through a graph that an earlier backward() already released; "
                  "compute the forward pass again (each graph is used once, then freed)")

def _topological_order(root):
    """Every tensor that ``root`` depends on and that needs a gradient, inputs
    before the results computed from them. Iterative depth-first search: a
    chain of any depth never touches Python's recursion limit."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, children_done = stack.pop()
        if children_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor._creator is not None:
            for parent in tensor._creator.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _run_backward(root, root_grad):
    """Apply the chain rule from ``root`` back to the leaves, then free the graph."""
    grads = {id(root): root_grad}  # dL/dt for the tensors still to be processed
    for tensor in reversed(_topological_order(root)):
        grad = grads.pop(id(tensor), None)
        if grad is None:
            continue
        if tensor._freed:
            raise RuntimeError(_FREED_MESSAGE)
        fn = tensor._creator
        if fn is None:  # a leaf: accumulate into .grad (own copy: grads may be shared views)
            grad = grad.astype(tensor.dtype, copy=True) if grad.dtype != tensor.dtype else grad.copy()
            if tensor.grad is None:
                tensor.grad = grad
            else:
                tensor.grad += grad
            continue
        input_grads = fn.backward(grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(fn.inputs, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = unbroadcast(parent_grad, parent.shape)
            if parent_grad.dtype != parent.dtype:
                parent_grad = parent_grad.astype(parent.dtype)
            previous = grads.get(id(parent))
            # never in place: ``previous`` may be the very array another input received
            grads[id(parent)] = parent_grad if previous is None else previous + parent_grad
        # release the graph: this node's saved arrays and its links to its inputs
        tensor._creator, tensor._freed = None, True
        fn.__dict__.clear()


# ---------------------------------------------------------------- operators

class Add(Function):
    """y = a + b (broadcasting).  dy/da = dy/db = 1."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """y = a - b.  dy/da = 1, dy/db = -1."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    """y = a * b.  dy/da = b, dy/db = a."""

    def forward(self, a, b):
        self.a, self.b = a, b  # each is the other's derivative
        return a * b

    def backward(self, grad):
        return grad * self.b, grad * self.a


class Div(Function):
    """y = a / b.  dy/da = 1 / b, dy/db = -a / b^2."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        grad_a = grad / self.b
        return grad_a, -grad_a * self.a / self.b


class Neg(Function):
    """y = -x."""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = x ** p for a constant p.  dy/dx = p * x ** (p - 1)."""

    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x ** exponent

    def backward(self, grad):
        p = self.exponent
        if p == 0:  # y = 1: no gradient (and no 0 * x ** -1 = NaN at x = 0)
            return xp.zeros_like(grad)
        return grad * (p * self.x ** (p - 1))


def _check_matmul_shapes(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs arrays of at least 1 dimension, got shapes "
                         f"{_shape_text(a.shape)} and {_shape_text(b.shape)}")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ValueError(
            f"matmul shapes {_shape_text(a.shape)} and {_shape_text(b.shape)} do not align: "
            f"the last axis of the first ({a.shape[-1]}) must equal the "
            f"{'only' if b.ndim == 1 else 'second-to-last'} axis of the second ({inner_b})")


class MatMul(Function):
    """y = a @ b (batched, broadcasting over leading axes).

    dL/da = dL/dy @ b^T and dL/db = a^T @ dL/dy, on the last two axes; a 1-D
    operand is treated as a row (a) or a column (b) vector.
    """

    def forward(self, a, b):
        _check_matmul_shapes(a, b)
        self.a, self.b = a, b  # each is needed for the other's gradient
        return xp.matmul(a, b)

    def backward(self, grad):
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a            # (..., n, k)
        b2 = b[:, None] if b.ndim == 1 else b            # (..., k, m)
        if b.ndim == 1:  # b first: for 1-D @ 1-D, grad is 0-d and has no axis -2 yet
            grad = xp.expand_dims(grad, -1)
        if a.ndim == 1:
            grad = xp.expand_dims(grad, -2)              # (..., n, m)
        grad_a = xp.matmul(grad, xp.swapaxes(b2, -1, -2))  # (..., n, k)
        grad_b = xp.matmul(xp.swapaxes(a2, -1, -2), grad)  # (..., k, m)
        return (unbroadcast(grad_a, a2.shape).reshape(a.shape),
                unbroadcast(grad_b, b2.shape).reshape(b.shape))


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


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim if ndim else a for a in axes)


def _expand_reduced(grad, shape, axis, keepdims):
    """Put back the axes a reduction removed, so ``grad`` broadcasts against ``shape``."""
    if not keepdims:
        for a in sorted(_normalize_axes(axis, len(shape))):
            grad = xp.expand_dims(grad, a)
    return grad


class Sum(Function):
    """y = x.sum(axis).  Every summed element gets the whole upstream gradient."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return xp.broadcast_to(grad, self.shape)


class Mean(Function):
    """y = x.mean(axis) = x.sum(axis) / n.  Each element gets grad / n."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = x.mean(axis=axis, keepdims=keepdims)
        self.count = x.size // max(1, out.size)  # how many elements each mean averaged
        return out

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        return xp.broadcast_to(grad / self.count, self.shape)


class Max(Function):
    """y = x.max(axis).  The gradient goes to the maximal element(s); ties share it equally."""

    def forward(self, x, axis, keepdims):
        self.shape, self.axis, self.keepdims = x.shape, axis, keepdims
        out = x.max(axis=axis, keepdims=True)
        self.is_max = x == out  # where the gradient goes
        return out if keepdims else xp.squeeze(out, axis=_normalize_axes(axis, x.ndim))

    def backward(self, grad):
        grad = _expand_reduced(grad, self.shape, self.axis, self.keepdims)
        share = self.is_max.astype(grad.dtype)
        share /= share.sum(axis=self.axis, keepdims=True)
        return grad * share
