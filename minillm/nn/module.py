"""Modules: objects that own parameters and compute a forward pass from them.

A ``Module`` registers every ``Parameter`` and every sub-module assigned to
one of its attributes, in the order of assignment (plain insertion-ordered
dicts, never a set), so names and orders are stable:

    class Block(Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = LayerNorm(8)          # registered as "ln_1"
            self.attn = Linear(8, 24)         # "attn.weight", "attn.bias"

    dict(Block().named_parameters()).keys()
    # ['ln_1.weight', 'ln_1.bias', 'attn.weight', 'attn.bias']

Those dotted names are what ``state_dict()`` / ``load_state_dict()`` and the
optimizer's state use. A parameter shared by two modules (weight tying) is
listed once, under the first name that reaches it.

Freezing is one flag: ``p.requires_grad = False`` keeps ``p`` out of the graph
(no gradient is computed for it) and the optimizers skip it.

Random generators assigned to attributes (a dropout's mask stream) are
registered the same way, so ``generators()`` lists every stream a model draws
from (a training checkpoint saves and restores their states), whatever the
attributes are called. ``eval_mode(model)`` runs a block with dropout off and
no graph, and gives the model its previous mode back.

The layers built on it are in ``layers.py`` (Linear, Embedding, LayerNorm,
Dropout) and the blocks every model family is assembled from in
``attention.py`` and ``mlp.py``.
"""
import contextlib
from collections import namedtuple

from minillm import backend
from minillm.autograd import Tensor, no_grad
from minillm.backend import xp
from minillm.shapes import shape_text

LoadResult = namedtuple("LoadResult", ["missing", "unexpected"])


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return f"Parameter(shape={shape_text(self.shape)}, dtype={self.dtype}, requires_grad={self.requires_grad})"


class Module:
    """Base class: registers parameters and sub-modules; ``module(x)`` calls ``forward(x)``."""

    def __init__(self):
        object.__setattr__(self, "_members", {})     # name -> Parameter or Module, in assignment order
        object.__setattr__(self, "_generators", {})  # name -> random generator (e.g. dropout masks)
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_members" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            self._members[name] = value  # a replacement keeps its place in the order
        else:
            self._members.pop(name, None)
        if _is_generator(value):
            self._generators[name] = value
        else:
            self._generators.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._members.pop(name, None)
        self._generators.pop(name, None)
        object.__delattr__(self, name)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- walking the tree
    def _walk(self, prefix, seen):
        """Yield (dotted name, member) depth-first in assignment order, each object once."""
        for name, member in self._members.items():
            if id(member) in seen:
                continue
            seen.add(id(member))
            full = f"{prefix}.{name}" if prefix else name
            yield full, member
            if isinstance(member, Module):
                yield from member._walk(full, seen)

    def named_modules(self):
        """Yield (dotted name, module) for this module ("" for itself) and every descendant."""
        yield "", self
        for name, member in self._walk("", {id(self)}):
            if isinstance(member, Module):
                yield name, member

    def modules(self):
        return [module for _, module in self.named_modules()]

    def named_parameters(self):
        """Yield (dotted name, parameter), each parameter once (a tied one under its first name)."""
        for name, member in self._walk("", {id(self)}):
            if isinstance(member, Parameter):
                yield name, member

    def parameters(self):
        """Every parameter once, in a stable order (the order of ``named_parameters``)."""
        return [p for _, p in self.named_parameters()]

    def generators(self):
        """Every random generator this module and its descendants draw from, each once,
        in module order (a generator shared by many dropouts is listed once)."""
        found, seen = [], set()
        for module in self.modules():
            for generator in module._generators.values():
                if id(generator) not in seen:
                    seen.add(id(generator))
                    found.append(generator)
        return found

    def num_parameters(self, trainable_only=False):
        """The number of scalars in the parameters (each tied parameter counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def zero_grad(self):
        """Forget every parameter's gradient (the next backward starts from zero)."""
        for p in self.parameters():
            p.grad = None

    # -- modes
    def train(self, mode=True):
        """Training mode (dropout active) for this module and all its descendants."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Evaluation mode: dropout is the identity."""
        return self.train(False)

    # -- saving and loading
    def state_dict(self):
        """{dotted name: host numpy copy of the parameter}, in ``named_parameters`` order.

        Copies, so a state dict is a snapshot that later training does not change.
        """
        return {name: backend.to_numpy(p.data.copy()) for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy ``state`` (name -> array, host or device) into the parameters, in place.

        Every entry must have the parameter's shape. With ``strict`` (the
        default) the names must match exactly; otherwise missing and unexpected
        names are allowed and returned. Values are cast to each parameter's
        dtype. Nothing is changed unless every check passes.
        Returns ``LoadResult(missing, unexpected)``.
        """
        params = dict(self.named_parameters())
        missing = [name for name in params if name not in state]
        unexpected = [name for name in state if name not in params]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing entries {missing}")
            if unexpected:
                parts.append(f"unexpected entries {unexpected}")
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(parts))
        wrong = [f"{name}: expected shape {shape_text(params[name].shape)}, given {shape_text(state[name].shape)}"
                 for name in params if name in state and tuple(state[name].shape) != params[name].shape]
        if wrong:
            raise ValueError(f"load_state_dict into {type(self).__name__}: mis-shaped entries: " + "; ".join(wrong))
        for name, p in params.items():
            if name in state:
                p.data[...] = xp.asarray(state[name], dtype=p.dtype)
        return LoadResult(missing, unexpected)


def _is_generator(value):
    """A NumPy or CuPy ``random.Generator`` (both carry a ``bit_generator``)."""
    return hasattr(value, "bit_generator") and hasattr(value, "random")


@contextlib.contextmanager
def eval_mode(model):
    """Within the block: dropout off (``model.eval()``) and no graph (``no_grad()``);
    afterwards the model is back in the mode it had. A model without modes (a
    plain callable) only runs without a graph."""
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        with no_grad():
            yield model
    finally:
        if was_training is not None:
            model.train(was_training)


class ModuleList(Module):
    """A list of modules registered under the names "0", "1", ... (GPT-2's ``h.0``, ``h.1``)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        setattr(self, str(len(self._members)), module)
        return self

    def __getitem__(self, index):
        return list(self._members.values())[index]

    def __len__(self):
        return len(self._members)

    def __iter__(self):
        return iter(self._members.values())
