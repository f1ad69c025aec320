"""Scaling laws by hand: parameter counts, training compute, power-law fits, memory.

The course's claims, each as a function you can check:

* **Parameters.** A GPT-2 block of width C holds a fused qkv projection
  (C x 3C), an output projection (C x C) and an MLP (C x 4C, 4C x C): 12 C^2
  weights. So a model of ``n_layer`` blocks has about

      N ~= 12 * n_layer * d^2                      (``approx_parameter_count``)

  parameters, ignoring embeddings, biases and LayerNorms. GPT-3 (96 layers,
  width 12288) gives 12 * 96 * 12288^2 = 173,946,175,488, "175B".
  ``parameter_count(config)`` is the exact number for our GPT.
* **Compute.** Training costs about 6 FLOPs per parameter per token (2 for the
  forward multiply-adds, 4 for the backward): C ~= 6 * N * D
  (``training_flops``).
* **Power laws.** Loss falls as L(N) = (N_c / N)^alpha in the number of
  parameters (and likewise in data D). Taking logs makes it a straight line,
  log L = alpha log N_c - alpha log N, fitted by least squares
  (``fit_power_law``), with standard errors from the fit's covariance.
* **Memory.** Inference in 16-bit needs 2 bytes per parameter; full
  finetuning with AdamW needs weights (2) + gradients (2) + two float32 moments
  (8) = 12 bytes per parameter: 14 + 14 + 56 = 84 GB for 7B parameters
  (``training_memory``). LoRA keeps the frozen weights but needs gradients and
  moments only for its few trainable parameters. ``measured_training_bytes``
  adds up what minillm actually allocates.

GB here means 10^9 bytes, as in the course.
"""
import math
from dataclasses import dataclass

import numpy

GB = 10 ** 9

# ---------------------------------------------------------------- parameter counts


def _config_fields(config):
    """(V, T, n_layer, C, bias) from a GPTConfig, a dict or any object with those attributes."""
    get = config.get if isinstance(config, dict) else (lambda key, default=None: getattr(config, key, default))
    fields = {}
    for key in ("vocab_size", "block_size", "n_layer", "n_embd"):
        value = get(key)
        if value is None:
            raise ValueError(f"config has no {key!r}: expected a GPTConfig or a dict with "
                             "vocab_size, block_size, n_layer, n_embd (and optionally bias)")
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"config {key} must be a non-negative integer, got {value!r}")
        fields[key] = int(value)
    return (fields["vocab_size"], fields["block_size"], fields["n_layer"], fields["n_embd"],
            bool(get("bias", True)))


def parameter_breakdown(config):
    """The exact parameter count of our GPT, part by part (a dict of ints).

    With width C, vocabulary V, context T and b = 1 with biases (0 without):

        wte        V * C           (shared with lm_head: tied, counted once)
        wpe        T * C
        per layer  ln_1, ln_2      2 * (C + b C)
                   attn.c_attn     C * 3C + b 3C
                   attn.c_proj     C * C  + b C
                   mlp.c_fc        C * 4C + b 4C
                   mlp.c_proj      4C * C + b C
        ln_f       C + b C
    """
    V, T, n_layer, C, bias = _config_fields(config)
    b = 1 if bias else 0
    per_layer = {
        "ln_1": C + b * C, "attn.c_attn": C * 3 * C + b * 3 * C, "attn.c_proj": C * C + b * C,
        "ln_2": C + b * C, "mlp.c_fc": C * 4 * C + b * 4 * C, "mlp.c_proj": 4 * C * C + b * C,
    }
    layer = sum(per_layer.values())
    return {"wte": V * C, "wpe": T * C, "layers": n_layer * layer, "per_layer": layer,
            "ln_f": C + b * C, "lm_head": 0,
            "total": V * C + T * C + n_layer * layer + C + b * C}


def parameter_count(config):
    """The exact number of parameters of ``GPT(config)`` (lm_head tied to wte, counted once).

    With biases: V C + T C + n_layer (12 C^2 + 13 C) + 2 C.
    Without (``bias=False``): V C + T C + n_layer (12 C^2 + 2 C) + C.
    """
    return parameter_breakdown(config)["total"]


def non_embedding_parameter_count(config):
    """Parameters outside wte and wpe: what the scaling-law papers call N."""
    parts = parameter_breakdown(config)
    return parts["total"] - parts["wte"] - parts["wpe"]


def approx_parameter_count(n_layer, d_model):
    """The course's estimate N ~= 12 * n_layer * d_model^2 (no embeddings, biases or norms).

    >>> approx_parameter_count(96, 12288)    # GPT-3
    173946175488
    """
    return 12 * int(n_layer) * int(d_model) ** 2


def training_flops(n_params, n_tokens):
    """C ~= 6 N D: 2 FLOPs per parameter per token forward, 4 backward.

    >>> f"{training_flops(175e9, 300e9):.2e}"      # GPT-3: 175B parameters, 300B tokens
    '3.15e+23'
    """
    return 6.0 * float(n_params) * float(n_tokens)


# ---------------------------------------------------------------- power-law fit


@dataclass(frozen=True)
class PowerLawFit:
    """L(x) = (x_c / x)^alpha, fitted as log L = alpha log x_c - alpha log x.

    ``alpha_stderr`` and ``log_x_c_stderr`` are one standard error from the
    covariance of the least-squares line (residual variance RSS / (n - 2));
    ``x_c_stderr`` is the delta-method error x_c * log_x_c_stderr (x_c's
    real uncertainty is lopsided: quote log x_c where it is large).
    """
    alpha: float
    x_c: float
    alpha_stderr: float
    x_c_stderr: float
    log_x_c: float
    log_x_c_stderr: float
    r_squared: float
    n_points: int

    def predict(self, x):
        """L(x) = (x_c / x)^alpha for a number or an array of them."""
        x = numpy.asarray(x, dtype=numpy.float64)
        return numpy.exp(self.alpha * (self.log_x_c - numpy.log(x)))

    def __str__(self):
        return (f"L = (x_c / x)^alpha, alpha = {self.alpha:.4f} +/- {self.alpha_stderr:.4f}, "
                f"x_c = {self.x_c:.3g} (log x_c = {self.log_x_c:.3f} +/- {self.log_x_c_stderr:.3f}), "
                f"R^2 = {self.r_squared:.4f}, {self.n_points} points")


def fit_power_law(x, loss):
    """Least-squares fit of L = (x_c / x)^alpha on log-log axes.

    With u = log x and y = log L the model is the line y = a + b u, where
    b = -alpha and a = alpha log x_c, so alpha = -b and log x_c = -a / b.
    Ordinary least squares gives (a, b) and their covariance
    s^2 (X^T X)^-1 with s^2 = RSS / (n - 2); the error of log x_c follows from
    the gradient of g(a, b) = -a / b, which is (-1/b, a/b^2).

    x: the sizes (parameters N or tokens D), positive; loss: the losses, positive.
    Needs at least 3 points (two to draw the line, one more to measure the scatter).
    """
    x = numpy.asarray(x, dtype=numpy.float64).ravel()
    loss = numpy.asarray(loss, dtype=numpy.float64).ravel()
    if x.shape != loss.shape:
        raise ValueError(f"x has {x.size} values but loss has {loss.size}: expected one loss per size")
    if x.size < 3:
        raise ValueError(f"a power-law fit with uncertainties needs at least 3 points, got {x.size}")
    for label, values in (("x", x), ("loss", loss)):
        if not numpy.all(numpy.isfinite(values)) or numpy.any(values <= 0):
            raise ValueError(f"every {label} must be a positive finite number (we take logs), got {values}")
    u, y = numpy.log(x), numpy.log(loss)
    if numpy.ptp(u) == 0:
        raise ValueError("all x are equal: a slope cannot be fitted")
    X = numpy.stack([numpy.ones_like(u), u], axis=1)                 # (n, 2)
    coef, _, _, _ = numpy.linalg.lstsq(X, y, rcond=None)
    a, b = coef
    residuals = y - X @ coef
    dof = x.size - 2
    s2 = float(residuals @ residuals) / dof
    cov = s2 * numpy.linalg.inv(X.T @ X)                             # (2, 2) covariance of (a, b)
    alpha = -b
    if alpha == 0:
        raise ValueError("the fitted slope is exactly 0: the loss does not change with x")
    log_x_c = -a / b
    grad = numpy.array([-1.0 / b, a / b ** 2])                       # d(-a/b)/d(a, b)
    log_x_c_stderr = float(numpy.sqrt(grad @ cov @ grad))
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1.0 - float(residuals @ residuals) / total if total > 0 else 1.0
    x_c = math.exp(log_x_c) if log_x_c < 700 else math.inf
    return PowerLawFit(alpha=float(alpha), x_c=x_c, alpha_stderr=float(math.sqrt(cov[1, 1])),
                       x_c_stderr=x_c * log_x_c_stderr, log_x_c=float(log_x_c),
                       log_x_c_stderr=log_x_c_stderr, r_squared=r_squared, n_points=int(x.size))


# ---------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes for weights, gradients and optimizer state, and their total."""
    weights: int
    gradients: int
    optimizer_state: int

    @property
    def total(self):
        return self.weights + self.gradients + self.optimizer_state

    def in_gb(self):
        """The same figures in GB (10^9 bytes), as a dict."""
        return {"weights": self.weights / GB, "gradients": self.gradients / GB,
                "optimizer_state": self.optimizer_state / GB, "total": self.total / GB}


def inference_bytes(n_params, bytes_per_param=2):
    """Weights only: 2 bytes per parameter in 16-bit (7B -> 14 GB), 4 in float32.

    >>> inference_bytes(7 * 10**9) / GB
    14.0
    """
    return int(n_params) * int(bytes_per_param)


def training_memory(n_params, n_trainable=None, weight_bytes=2, grad_bytes=2, moment_bytes=4,
                    n_moments=2):
    """The course's training-memory estimate (activations not included).

    weights:          every parameter, ``weight_bytes`` each (2 in 16-bit);
    gradients:        each *trainable* parameter, ``grad_bytes`` each;
    optimizer state:  each trainable parameter, ``n_moments`` moments of
                      ``moment_bytes`` (AdamW: m and v in float32, 8 bytes).

    ``n_trainable=None`` means full finetuning (all parameters train):
    12 bytes per parameter, 84 GB for 7B. For LoRA, ``n_params`` counts the
    frozen base plus the adapters and ``n_trainable`` the adapters only.

    >>> full = training_memory(7 * 10**9)
    >>> full.weights // GB, full.gradients // GB, full.optimizer_state // GB, full.total // GB
    (14, 14, 56, 84)
    """
    n_params = int(n_params)
    n_trainable = n_params if n_trainable is None else int(n_trainable)
    if not 0 <= n_trainable <= n_params:
        raise ValueError(f"n_trainable ({n_trainable}) must be between 0 and n_params ({n_params})")
    return MemoryEstimate(weights=n_params * weight_bytes, gradients=n_trainable * grad_bytes,
                          optimizer_state=n_trainable * n_moments * moment_bytes)


_LORA_SHAPES = {  # (in, out) of each linear layer of a block, as multiples of C
    "c_attn": (1, 3), "attn.c_proj": (1, 1), "c_fc": (1, 4), "mlp.c_proj": (4, 1),
}


def lora_parameter_count(config, rank, targets=("c_attn",)):
    """Trainable parameters of LoRA on our GPT: r (N + d) per wrapped N x d matrix.

    ``targets`` names linear layers of each block: "c_attn" (C x 3C),
    "attn.c_proj" (C x C), "c_fc" (C x 4C), "mlp.c_proj" (4C x C); "c_proj"
    means both projections.
    """
    _, _, n_layer, C, _ = _config_fields(config)
    if isinstance(targets, str):
        targets = (targets,)
    shapes = []
    for target in targets:
        if target == "c_proj":
            shapes += [_LORA_SHAPES["attn.c_proj"], _LORA_SHAPES["mlp.c_proj"]]
        elif target in _LORA_SHAPES:
            shapes.append(_LORA_SHAPES[target])
        elif target in ("attn.c_attn", "mlp.c_fc"):
            shapes.append(_LORA_SHAPES[target.split(".")[1]])
        else:
            raise ValueError(f"unknown LoRA target {target!r}: expected one of "
                             f"{sorted(_LORA_SHAPES) + ['c_proj']}")
    return n_layer * sum(int(rank) * (i * C + o * C) for i, o in shapes)


def _array_bytes(value, seen):
    """Bytes of every distinct array inside ``value`` (nested dicts, lists, tuples)."""
    if value is None:
        return 0
    if hasattr(value, "nbytes") and hasattr(value, "dtype") and hasattr(value, "shape"):
        if id(value) in seen:
            return 0
        seen.add(id(value))
        return int(value.nbytes)
    if hasattr(value, "data") and hasattr(getattr(value, "data"), "nbytes"):   # a Tensor
        return _array_bytes(value.data, seen)
    if isinstance(value, dict):
        return sum(_array_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_array_bytes(v, seen) for v in value)
    return 0


def measured_training_bytes(model, optimizer=None):
    """What minillm really allocates: the ``.nbytes`` of the arrays, not a formula.

    parameters:       every parameter's data (frozen ones included);
    gradients:        every ``.grad`` that exists (frozen parameters have none);
    optimizer_state:  every array the optimizer keeps (``optimizer.state``:
                      AdamW's m and v per trainable parameter).
    Call it after one ``backward()`` and ``step()`` so that gradients and
    state exist. Activations are not counted.
    """
    seen = set()
    params = list(model.parameters())
    weights = sum(_array_bytes(p.data, seen) for p in params)
    grads = sum(_array_bytes(p.grad, seen) for p in params)
    state = 0
    if optimizer is not None:
        state = _array_bytes(getattr(optimizer, "state", None), seen)
    return MemoryEstimate(weights=weights, gradients=grads, optimizer_state=state)
