"""What every family's config dataclass shares: field checks whose errors name the
field, and the round trip to a plain dict (checkpoints) and JSON.

    @dataclasses.dataclass
    class GPTConfig(ModelConfig):
        n_layer: int
        ...
        def __post_init__(self):
            check_positive_ints(self, ("n_layer", ...))
"""
import dataclasses
import json
import numbers

DTYPES = ("float32", "float64")


def check_positive_ints(config, fields):
    """Each field must be an int >= 1 (bool is not an int here); stored as a plain int."""
    for field in fields:
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{field} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{field} must be positive, got {value}")
        setattr(config, field, int(value))


def check_positive_numbers(config, fields):
    """Each field must be a real number > 0; stored as a float."""
    for field in fields:
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{field} must be a number, got {value!r}")
        if not value > 0:
            raise ValueError(f"{field} must be positive, got {value}")
        setattr(config, field, float(value))


def check_bools(config, fields):
    for field in fields:
        value = getattr(config, field)
        if not isinstance(value, bool):
            raise TypeError(f"{field} must be True or False, got {value!r}")


def check_dropout(config, field="dropout"):
    """A probability in [0, 1), stored as a float."""
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{field} must be a number, got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{field} must be in [0, 1), got {value}")
    setattr(config, field, float(value))


def check_dtype(config):
    if str(config.dtype) not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {config.dtype!r}")
    config.dtype = str(config.dtype)


class ModelConfig:
    """Mixin for a config dataclass: ``to_dict`` / ``from_dict`` / ``to_json``."""

    def to_dict(self):
        """A JSON-able dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """The inverse of ``to_dict``; unknown or missing keys are errors naming them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        unknown = sorted(set(data) - fields)
        missing = sorted(required - set(data))
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {unknown}; expected some of {sorted(fields)}")
        if missing:
            raise ValueError(f"{cls.__name__}.from_dict: missing fields {missing}")
        return cls(**data)

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)
