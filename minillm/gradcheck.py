"""Check a backward pass against central finite differences, element by element.

For a function y = f(x1, ..., xn) we pick a random upstream gradient G (same
shape as y) and the scalar L = sum(G * y). Backpropagating G gives dL/dxi
analytically; numerically,

    dL/dx[j] ~ (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)       error O(eps^2)

A random G (never all ones, as ``y.sum()`` would give) is what catches a
backward that forgets the upstream gradient, e.g. softmax's.
Run it in float64: float32 has too few digits for differences at eps = 1e-6.
"""
import numpy

from minillm import backend
from minillm.autograd import Tensor, no_grad


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def gradcheck(fn, *inputs, eps=1e-6, rtol=1e-6, atol=1e-8, seed=0, upstream=None):
    """Compare the backward of ``fn(*inputs)`` with central differences.

    ``inputs`` are Tensors; those with ``requires_grad=True`` are checked,
    every element of each. ``upstream`` (optional) is dL/dy; by default a
    seeded random normal array. Returns True, or raises AssertionError naming
    the input, the element and both values where they disagree by more than
    ``atol + rtol * max(|analytic|, |numeric|)``.
    """
    inputs = [_as_tensor(x) for x in inputs]
    checked = [i for i, x in enumerate(inputs) if x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64")
        inputs[i].grad = None

    out = fn(*inputs)
    rng = numpy.random.default_rng(seed)
    if upstream is None:
        upstream = rng.standard_normal(out.shape)
    upstream = backend.asarray(upstream, dtype=out.dtype)
    out.backward(upstream)

    def loss():
        with no_grad():
            return float((fn(*inputs).data * upstream).sum())

    for i in checked:
        x = inputs[i]
        analytic = x.grad if x.grad is not None else backend.xp.zeros_like(x.data)
        analytic = backend.to_numpy(analytic)
        for element in numpy.ndindex(*x.shape):  # nudge x in place, one element at a time
            original = float(x.data[element])
            x.data[element] = original + eps
            plus = loss()
            x.data[element] = original - eps
            minus = loss()
            x.data[element] = original
            numeric = (plus - minus) / (2 * eps)
            got = float(analytic[element])
            if abs(got - numeric) > atol + rtol * max(abs(got), abs(numeric)):
                raise AssertionError(
                    f"gradcheck: input {i} (shape {tuple(x.shape)}), element {element}: "
                    f"backward gives {got!r}, central differences give {numeric!r}")
    return True
