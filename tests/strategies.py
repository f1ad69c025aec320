"""Hypothesis strategies shared by the tests: shapes, broadcastable shapes, arrays in an op's domain.

Gradient checks cost two forward passes per input element, so shapes stay small
(sides 1 to 4, at most ~24 elements per array by default). Every strategy returns
host NumPy data; tests move it to the backend with ``Tensor(...)``.
"""
import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOAT64 = numpy.float64


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Array shapes, 0-d included by default (``min_dims=0``)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@st.composite
def broadcastable_shapes(draw, num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    """``num_shapes`` shapes that broadcast together, some axes forced to size 1 on purpose.

    ``mutually_broadcastable_shapes`` rarely makes an axis 1 on one side and
    larger on the other, which is exactly the case whose gradient must be
    summed (unbroadcast), so we set random axes of each shape to 1 ourselves.
    Setting an axis to 1 never breaks broadcasting.
    """
    drawn = draw(hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side))
    result = []
    for shape in drawn.input_shapes:
        ones = draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
        result.append(tuple(1 if one else n for n, one in zip(shape, ones)))
    return tuple(result)


def floats(low=-2.0, high=2.0):
    """Finite float64 numbers in [low, high], no subnormals."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


def arrays(shape, low=-2.0, high=2.0, unique=False):
    """float64 arrays of ``shape`` (a shape or a strategy of shapes) with values in [low, high]."""
    return hnp.arrays(FLOAT64, shape, elements=floats(low, high), unique=unique)


def positive_arrays(shape, low=0.2, high=3.0):
    """Inside the domain of log, sqrt and of a denominator: values in [low, high]."""
    return arrays(shape, low, high)


@st.composite
def away_from_zero_arrays(draw, shape, low=0.1, high=2.0):
    """Values with |x| in [low, high], either sign: relu's kink at 0 is never within eps."""
    magnitude = draw(arrays(shape, low, high))
    signs = draw(hnp.arrays(numpy.bool_, magnitude.shape))
    return numpy.where(signs, magnitude, -magnitude)


@st.composite
def spread_arrays(draw, shape, gap=0.1):
    """Distinct values at least ``gap`` apart (for max: no ties, and a nudge of eps
    never changes which element is the largest)."""
    shape = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    size = int(numpy.prod(shape, dtype=int))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    values = rng.permutation(size) * gap + rng.uniform(-gap / 4, gap / 4, size) - size * gap / 2
    return values.reshape(shape)


@st.composite
def reduction_axes(draw, ndim):
    """An ``axis`` argument for an array of ``ndim`` dimensions: None, an int
    (negative ones too) or a tuple of distinct axes."""
    if ndim == 0:
        return draw(st.sampled_from([None, ()]))
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    return draw(st.one_of(st.none(), single, several))


def seeds():
    """Seeds for numpy Generators (random upstream gradients, dropout masks)."""
    return st.integers(0, 2**32 - 1)
