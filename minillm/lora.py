"""LoRA: low-rank adaptation of a frozen linear layer (Hu et al., 2021).

A linear layer maps x (.., N) to h = x W + b with W of shape N x d. LoRA
freezes W and learns a low-rank correction instead:

    h = x W + b + (x A B) * (alpha / r)           A: N x r,  B: r x d,  r << min(N, d)

* ``A`` starts small and random (here N(0, 1/N), "kaiming-like": x A keeps
  the scale of x), ``B`` starts at zero, so A B = 0 and the wrapped model
  computes exactly what the base model computes before any training.
* Only A and B are trained: r (N + d) numbers per wrapped matrix instead of
  N d (for GPT-2's c_attn, 768 x 2304, rank 8: 24,576 instead of 1,769,472).
  Gradients and AdamW's two moments exist only for those, which is where
  LoRA saves memory (see ``minillm.scaling.training_memory``).
* ``alpha / r`` keeps the size of the update roughly independent of r, so a
  learning rate tuned for one rank works for another.
* After training, ``merge_lora`` folds the correction into W,
  W' = W + (alpha / r) A B, so inference costs nothing extra;
  ``unmerge_lora`` subtracts it again.

    model = apply_lora(model, rank=8, alpha=16, targets=("c_attn",))   # freezes the rest
    ... train: only the lora_A / lora_B parameters have requires_grad ...
    save_adapter("adapter.npz", model)          # kilobytes: A and B only
    base = GPT(config); base.load_state_dict(base_weights)
    load_adapter("adapter.npz", base)           # the finetuned model again

Names: a wrapped layer keeps the base layer's ``weight`` and ``bias`` (so
``h.0.attn.c_attn.weight`` keeps its GPT-2 name and a base state dict still
loads) and adds ``h.0.attn.c_attn.lora_A`` and ``h.0.attn.c_attn.lora_B``.
"""
import math

from minillm import backend, checkpoint, safe_io
from minillm import functional as F
from minillm.backend import xp
from minillm.nn import Linear, Module, Parameter

ADAPTER_FORMAT = "minillm-lora-adapter-1"


class LoRALinear(Module):
    """h = x W + b + dropout(x) A B * (alpha / r), W and b frozen (taken from ``base``).

    base     the ``nn.Linear`` to wrap; its weight (N, d) and bias (d,) are shared, not copied
    rank     r >= 1
    alpha    the scale numerator (scale = alpha / r)
    dropout  probability on the LoRA path's input only (the frozen path sees x itself)
    seed     seeds A's initial values (host generator) and the dropout masks
    """

    def __init__(self, base, rank=8, alpha=16.0, dropout=0.0, seed=0):
        super().__init__()
        if not isinstance(base, Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if isinstance(rank, bool) or int(rank) != rank or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        N, d = base.weight.shape
        self.in_features, self.out_features = N, d
        self.rank, self.alpha = int(rank), float(alpha)
        self.scale = self.alpha / self.rank
        self.dropout_p = float(dropout)
        self.weight = base.weight                          # (N, d) frozen, same Parameter object
        self.bias = base.bias                              # (d,) frozen, or None
        self.weight.requires_grad = False
        if self.bias is not None:
            self.bias.requires_grad = False
        dtype = str(base.weight.dtype)
        rng = backend.host_rng(seed)
        self.lora_A = Parameter(backend.random_normal(rng, (N, self.rank), 1.0 / math.sqrt(N), dtype))  # (N, r)
        self.lora_B = Parameter(xp.zeros((self.rank, d), dtype=dtype))                                  # (r, d)
        self.dropout_rng = backend.device_rng(seed) if self.dropout_p > 0 else None
        self.merged = False

    def delta_weight(self):
        """(alpha / r) A B, the (N, d) matrix that merging adds to W (a backend array)."""
        return (self.lora_A.data @ self.lora_B.data) * self.scale        # (N, d)

    def forward(self, x):
        h = F.linear(x, self.weight, self.bias)    # (..., d) frozen W: its backward skips dL/dW
        if self.merged:                                                   # W already holds W + s A B
            return h
        x_lora = F.dropout(x, self.dropout_p, training=self.training, rng=self.dropout_rng)
        low = F.linear(F.linear(x_lora, self.lora_A), self.lora_B)        # (..., r) -> (..., d)
        return h + low * self.scale                                       # (..., d)

    def merge(self):
        """W <- W + (alpha / r) A B in place; the forward pass is then one matmul."""
        if self.merged:
            raise RuntimeError("this LoRA layer is already merged (call unmerge first)")
        self.weight.data += self.delta_weight().astype(self.weight.dtype)
        self.merged = True

    def unmerge(self):
        """W <- W - (alpha / r) A B: the inverse of ``merge``, up to one rounding of each entry.

        We subtract rather than keep a copy of W (a copy would cost as much
        memory as the merge saves). In float64 the restored W differs from the
        original by at most a few ulps (|error| < 1e-15 |W + s A B|); tests
        check 1e-10. While merged, A and B take no part in the forward pass
        (and get no gradient).
        """
        if not self.merged:
            raise RuntimeError("this LoRA layer is not merged")
        self.weight.data -= self.delta_weight().astype(self.weight.dtype)
        self.merged = False

    def __repr__(self):
        return (f"LoRALinear({self.in_features}, {self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, merged={self.merged})")


# ---------------------------------------------------------------- whole models

def _matches(name, targets):
    """True when the dotted module name ends with one of ``targets`` at a dot boundary."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _normalise_targets(targets):
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be a non-empty list of module-name suffixes such as "
                         f"('c_attn',), got {targets!r}")
    return targets


def lora_layers(model):
    """[(dotted name, LoRALinear)] of ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def apply_lora(model, rank=8, alpha=16.0, targets=("c_attn",), dropout=0.0, seed=0):
    """Wrap every ``nn.Linear`` whose name ends with a target in a ``LoRALinear``, in place.

    Every other parameter of ``model`` is frozen (``requires_grad = False``),
    so only the lora_A / lora_B matrices train. ``targets`` are dotted-name
    suffixes: "c_attn" matches ``h.0.attn.c_attn``, "mlp.c_proj" only the
    MLP's output projection, "c_proj" both projections. Layer i's A (and its
    dropout masks) come from the integer seed ``seed * 65537 + i``. Returns ``model``.
    """
    targets = _normalise_targets(targets)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if lora_layers(model):
        raise ValueError("the model already has LoRA layers: apply_lora once per model")
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, Linear) and _matches(name, targets)]
    if not found:
        linears = [name for name, m in model.named_modules() if isinstance(m, Linear)]
        raise ValueError(f"no Linear layer matches targets {list(targets)}; the model's Linear layers are "
                         f"{linears[:8]}{' ...' if len(linears) > 8 else ''}")
    for p in model.parameters():
        p.requires_grad = False
    modules = dict(model.named_modules())
    for i, (name, linear) in enumerate(found):
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name]
        setattr(parent, child, LoRALinear(linear, rank, alpha, dropout, seed=seed * 65_537 + i))
    model.lora_config = {"rank": int(rank), "alpha": float(alpha), "targets": list(targets),
                         "dropout": float(dropout), "seed": seed}
    return model


def _require_lora(model):
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers: call apply_lora(model, ...) first")
    return layers


def merge_lora(model):
    """Fold (alpha / r) A B into W in every LoRA layer: inference at the base model's cost."""
    for _, layer in _require_lora(model):
        layer.merge()
    return model


def unmerge_lora(model):
    """Undo ``merge_lora``: W <- W - (alpha / r) A B in every LoRA layer."""
    for _, layer in _require_lora(model):
        layer.unmerge()
    return model


def lora_state_dict(model):
    """{name: host array} of the LoRA matrices only (``h.0.attn.c_attn.lora_A``, ...)."""
    _require_lora(model)
    return {name: backend.to_numpy(p.data.copy()) for name, p in model.named_parameters()
            if name.endswith(".lora_A") or name.endswith(".lora_B")}


# ---------------------------------------------------------------- adapter files

def save_adapter(path, model):
    """Write the adapter alone (A and B of every LoRA layer) to ``path`` (.npz, atomic, no pickle).

    The file is a minillm checkpoint (``checkpoint.save``) whose "model" holds
    only the LoRA matrices, plus an ``adapter`` entry: format, rank, alpha,
    targets, dropout and the base model's config, so ``load_adapter`` can
    check that the base fits. Its size is r (N + d) numbers per wrapped layer.
    """
    layers = _require_lora(model)
    if any(layer.merged for _, layer in layers):
        raise RuntimeError("the model's LoRA layers are merged: unmerge_lora(model) before saving the adapter")
    config = getattr(model, "config", None)
    meta = {"format": ADAPTER_FORMAT, **getattr(model, "lora_config", {}),
            "rank": layers[0][1].rank, "alpha": layers[0][1].alpha,
            "layers": [name for name, _ in layers],
            "base_config": config.to_dict() if hasattr(config, "to_dict") else None}
    checkpoint.save(path, lora_state_dict(model), adapter=meta)
    return path


def load_adapter(path, model):
    """Put the adapter saved at ``path`` onto ``model`` (a base model, or one already wrapped).

    A base model is wrapped first with the adapter's rank, alpha and targets.
    Errors (ValueError) name what does not fit: another base config, another
    rank, layers missing on either side, mis-shaped matrices. Returns ``model``.
    """
    ckpt = checkpoint.load(path)
    meta = ckpt.get("adapter")
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path} is not a LoRA adapter file (no {ADAPTER_FORMAT!r} entry); "
                         "a full checkpoint loads with checkpoint.load / checkpoint.restore")
    config = getattr(model, "config", None)
    base = meta.get("base_config")
    if base is not None and hasattr(config, "to_dict"):
        mine = config.to_dict()
        differ = {k: (base.get(k), mine.get(k)) for k in sorted(set(base) | set(mine))
                  if k != "dtype" and k != "dropout" and base.get(k) != mine.get(k)}
        if differ:
            text = ", ".join(f"{k}: adapter {a!r} vs model {b!r}" for k, (a, b) in differ.items())
            raise ValueError(f"adapter {path} was trained on another base model ({text})")
    if not lora_layers(model):
        apply_lora(model, rank=meta["rank"], alpha=meta["alpha"], targets=meta["targets"],
                   dropout=meta.get("dropout", 0.0), seed=meta.get("seed", 0))
    layers = dict(lora_layers(model))
    for name, layer in layers.items():
        if layer.rank != meta["rank"] or layer.alpha != meta["alpha"]:
            raise ValueError(f"adapter {path} has rank {meta['rank']} and alpha {meta['alpha']:g}, but the "
                             f"model's layer {name} has rank {layer.rank} and alpha {layer.alpha:g}")
        if layer.merged:
            raise RuntimeError(f"LoRA layer {name} is merged: unmerge_lora(model) before loading an adapter")
    saved = sorted(set(meta["layers"]))
    if saved != sorted(layers):
        missing = sorted(set(saved) - set(layers))
        extra = sorted(set(layers) - set(saved))
        raise ValueError(f"adapter {path} does not fit the model's LoRA layers: in the adapter only "
                         f"{missing}, in the model only {extra}")
    params = dict(model.named_parameters())
    state = ckpt["model"]
    foreign = sorted(set(state) - set(params))
    if foreign:
        raise ValueError(f"adapter {path} holds entries the model does not have: {foreign[:5]}")
    safe_io.check_weights(state, f"adapter {path}")
    for name, value in state.items():
        if tuple(value.shape) != params[name].shape:
            raise ValueError(f"adapter entry {name}: shape {tuple(value.shape)}, the model expects "
                             f"{params[name].shape}")
    for name, value in state.items():
        params[name].data[...] = xp.asarray(value, dtype=params[name].dtype)
    return model
