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

This file is the engine only. Every op, even those behind ``Tensor``'s operators
(``+ - * / ** @``, indexing, ``.T``, ``.reshape``, ``.sum``, ...), is a Function
in ``minillm.functional`` (arithmetic, matmul, shape, reduction), and those files
import this one to subclass ``Function``. So an operator method imports its
Function *inside the method*, at call time, when both modules are complete: the
engine's one upward reference, under a microsecond a call (a ``sys.modules``
lookup), and no patching of ``Tensor`` from outside (DeZero installs operators
onto its class at import time; here each operator reads where ``Tensor`` is).
"""
import contextlib
import weakref

from minillm import backend
from minillm.backend import xp
from minillm.shapes import shape_text

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
                    f"backward() on a tensor of shape {shape_text(self.shape)} needs an explicit "
                    "gradient of the same shape; reduce it to a scalar (e.g. .sum()) or call backward(grad)")
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad, like=self.data)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {shape_text(grad.shape)}, "
                                 f"the tensor has shape {shape_text(self.shape)}")
        _run_backward(self, grad)

    # -- operators: each builds one node of the graph (the Functions: minillm.functional;
    #    imported here, at call time, because they subclass Function defined below)
    def __add__(self, other):
        from minillm.functional.arithmetic import Add
        return Add.apply(self, other)

    def __radd__(self, other):
        from minillm.functional.arithmetic import Add
        return Add.apply(other, self)

    def __sub__(self, other):
        from minillm.functional.arithmetic import Sub
        return Sub.apply(self, other)

    def __rsub__(self, other):
        from minillm.functional.arithmetic import Sub
        return Sub.apply(other, self)

    def __mul__(self, other):
        from minillm.functional.arithmetic import Mul
        return Mul.apply(self, other)

    def __rmul__(self, other):
        from minillm.functional.arithmetic import Mul
        return Mul.apply(other, self)

    def __truediv__(self, other):
        from minillm.functional.arithmetic import Div
        return Div.apply(self, other)

    def __rtruediv__(self, other):
        from minillm.functional.arithmetic import Div
        return Div.apply(other, self)

    def __neg__(self):
        from minillm.functional.arithmetic import Neg
        return Neg.apply(self)

    def __pow__(self, exponent):
        from minillm.functional.arithmetic import power
        return power(self, exponent)

    def __matmul__(self, other):
        from minillm.functional.matmul import MatMul
        return MatMul.apply(self, other)

    def __rmatmul__(self, other):
        from minillm.functional.matmul import MatMul
        return MatMul.apply(other, self)

    def __getitem__(self, index):
        from minillm.functional.shape import GetItem
        return GetItem.apply(self, index=index)

    @property
    def T(self):
        """The transpose: all axes reversed (as NumPy's ``.T``)."""
        from minillm.functional.shape import Transpose
        return Transpose.apply(self, axes=None)

    def transpose(self, *axes):
        """Permute the axes: ``x.transpose(0, 2, 1)``; no argument reverses them."""
        from minillm.functional.shape import Transpose
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes or None)

    def reshape(self, *shape):
        from minillm.functional.shape import Reshape
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def sum(self, axis=None, keepdims=False):
        from minillm.functional.reduction import Sum
        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        from minillm.functional.reduction import Mean
        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        from minillm.functional.reduction import Max
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

    An op with several results (q, k and v out of one projection) returns a
    tuple of arrays from ``forward``; ``apply`` then returns a tuple of Tensors,
    and ``backward(self, *grads)`` receives one gradient per result, None for a
    result that no later op used. Its backward runs once, after every use of
    every result has sent its gradient.

    The engine keeps ``inputs``, ``needs_input_grad`` and ``_result_refs`` on
    the instance; an op names its own saved arrays otherwise.

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
        tensors = inputs
        if not all(isinstance(x, Tensor) for x in inputs):           # constants: wrap them
            like = next((x.data for x in inputs if isinstance(x, Tensor)), None)
            tensors = [x if isinstance(x, Tensor) else Tensor(_as_array(x, like)) for x in inputs]
        fn = cls()
        out = fn.forward(*[t.data for t in tensors], **options)
        if not (_grad_enabled and any(t.requires_grad for t in tensors)):
            return tuple(Tensor(o) for o in out) if type(out) is tuple else Tensor(out)
        fn.inputs = tensors
        fn.needs_input_grad = tuple(t.requires_grad for t in tensors)
        if type(out) is not tuple:
            result = Tensor(out, requires_grad=True, _creator=fn)
            fn._result_refs = (weakref.ref(result),)   # weak: a result unused later is freed as usual
            return result
        results = tuple(Tensor(o, requires_grad=True, _creator=fn) for o in out)
        fn._result_refs = tuple(weakref.ref(r) for r in results)
        return results


# ---------------------------------------------------------------- the engine

_FREED_MESSAGE = ("backward() through a graph that an earlier backward() already released; "
                  "compute the forward pass again (each graph is used once, then freed)")

def _topological_order(root):
    """The Functions that ``root`` depends on, and the leaves, each once: every
    Function after all the Functions that use its results (so its results'
    gradients are complete when it is reached), the leaves where their last use
    is. Iterative depth-first search: a chain of any depth never touches
    Python's recursion limit."""
    order, visited = [], set()
    stack = [(root._creator or root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if not isinstance(node, Tensor):                             # a Function: visit its inputs
            for parent in node.inputs:
                if parent.requires_grad:
                    child = parent._creator or parent
                    if id(child) not in visited:
                        stack.append((child, False))
    order.reverse()
    return order


def _accumulate(grads, tensor, grad):
    """grads[tensor] += grad, summed down to the tensor's shape and cast to its dtype."""
    if grad.shape != tensor.shape:
        grad = unbroadcast(grad, tensor.shape)
    if grad.dtype != tensor.dtype:
        grad = grad.astype(tensor.dtype)
    previous = grads.get(tensor)
    # never in place: ``previous`` may be the very array another input received
    grads[tensor] = grad if previous is None else previous + grad


def _run_backward(root, root_grad):
    """Apply the chain rule from ``root`` back to the leaves, then free the graph."""
    grads = {root: root_grad}  # dL/dt for the tensors still to be processed (Tensors hash by identity)
    for node in _topological_order(root):
        if isinstance(node, Tensor):   # a leaf: accumulate into .grad (own copy: grads may be shared views)
            grad = grads.pop(node, None)
            if grad is None:
                continue
            if node._freed:
                raise RuntimeError(_FREED_MESSAGE)
            grad = grad.astype(node.dtype, copy=True) if grad.dtype != node.dtype else grad.copy()
            if node.grad is None:
                node.grad = grad
            else:
                node.grad += grad
            continue
        fn = node
        outputs = [ref() for ref in fn._result_refs]
        output_grads = [None if t is None else grads.pop(t, None) for t in outputs]
        if all(g is None for g in output_grads):
            continue
        input_grads = fn.backward(*output_grads)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(fn.inputs, input_grads):
            if parent_grad is not None and parent.requires_grad:
                _accumulate(grads, parent, parent_grad)
        # release the graph: this node's saved arrays and its links to its inputs
        for t in outputs:
            if t is not None:
                t._creator, t._freed = None, True
        fn.__dict__.clear()
