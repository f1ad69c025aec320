"""16-bit weights for inference: 2 bytes per parameter instead of 4.

"Normally 16-bit floats are used for inference." A float32 has a 24-bit
significand; float16 keeps 11 bits (and exponents down to 2^-14, subnormals
to 2^-24), bfloat16 keeps 8 bits but float32's whole exponent range. Rounding
a weight w to the nearest 16-bit number changes it by at most

    |w16 - w| <= u |w|,   u = 2^-11 (float16), 2^-8 (bfloat16)        (unit roundoff)

(for float16 plus at most 2^-25 absolutely, where |w| < 2^-14 falls into the
subnormals). So a product with a weight matrix moves by at most
|x (W16 - W)| <= u (|x| |W|) elementwise: the relative error of the weights,
not more. Through a whole network the errors add up layer by layer; the test
and the docs measure them on real models.

What this module does: ``to_16bit(model, "float16")`` casts every parameter's
array in place. The parameter bytes halve (``memory.parameter_bytes``). The
arithmetic: on NumPy, which has no half-precision matrix product, the
embedding hands float32 rows onward (``backend.compute_dtype``) and each
product with a 16-bit weight upcasts that weight to float32 for the moment of
the product, so memory at rest halves and speed pays for the casts. On CuPy
the model computes in the 16-bit dtype itself (cuBLAS half precision).

float16 is the default: both backends have it. bfloat16 comes from the
``ml_dtypes`` package (NumPy only; CuPy has no bfloat16): the same 2 bytes,
wider range, coarser rounding. For inference only: training in 16-bit needs
loss scaling and float32 master weights, which minillm does not do.
"""
from minillm import backend
from minillm.backend import xp

HALF_DTYPES = ("float16", "bfloat16")
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


def half_dtype(name):
    """The array dtype for "float16" or "bfloat16" (the latter from ml_dtypes, NumPy only)."""
    if name not in HALF_DTYPES:
        raise ValueError(f"dtype must be one of {HALF_DTYPES}, got {name!r}")
    if name == "float16":
        return xp.float16
    if backend.name != "numpy":
        raise ValueError("bfloat16 weights need the NumPy backend (CuPy has no bfloat16); use float16")
    try:
        import ml_dtypes
    except ImportError as error:
        raise ImportError("bfloat16 weights need the ml_dtypes package: pip install ml_dtypes") from error
    return ml_dtypes.bfloat16


def to_16bit(model, dtype="float16"):
    """Store every parameter of ``model`` in 16 bits, in place; returns the model.

    For inference (under ``no_grad()``): gradients of 16-bit parameters are not supported.
    """
    target = half_dtype(dtype)
    for parameter in model.parameters():
        parameter.data = parameter.data.astype(target)
        parameter.grad = None
    return model


def to_float32(model):
    """Back to float32 storage, in place (the rounding to 16 bits is not undone)."""
    for parameter in model.parameters():
        parameter.data = parameter.data.astype(xp.float32)
    return model
