"""Shapes in words: how error messages print a shape, and the one shape rule
shared by several ops (a matrix product's inner axes must agree).

Every layer that checks a shape imports these two names from here, so a shape
reads the same in every message: ``(2, 3, 4)``, never ``(2,3,4)`` or
``torch.Size([2, 3, 4])``. Pure Python: it works on any tuple and any array.
"""


def shape_text(shape):
    """``(2, 3)`` for the shape ``(2, 3)``, ``(5)`` for ``(5,)`` (no trailing
    comma in a sentence) and ``()`` for a 0-d array."""
    return "(" + ", ".join(str(n) for n in shape) + ")"


def check_matmul_shapes(a, b):
    """Raise a ValueError naming both shapes unless ``a @ b`` is defined.

    ``a`` and ``b`` are arrays (anything with ``.ndim`` and ``.shape``) of at
    least one dimension; the last axis of ``a`` must equal the second-to-last
    axis of ``b`` (its only axis when ``b`` is 1-D).
    """
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs arrays of at least 1 dimension, got shapes "
                         f"{shape_text(a.shape)} and {shape_text(b.shape)}")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ValueError(
            f"matmul shapes {shape_text(a.shape)} and {shape_text(b.shape)} do not align: "
            f"the last axis of the first ({a.shape[-1]}) must equal the "
            f"{'only' if b.ndim == 1 else 'second-to-last'} axis of the second ({inner_b})")
