"""Optimizers (AdamW, SGD), gradient clipping and the learning-rate schedule.

An optimizer holds parameter groups, each a dict with its "params" and its
hyperparameters (as PyTorch). ``step()`` updates every parameter that has a
gradient and ``requires_grad``, in place, through ``backend.xp``; frozen
parameters (``requires_grad = False``) and those without a gradient are
skipped and hold no state.

Gradient accumulation: ``backward()`` adds into ``.grad``, so running k
micro-batches whose losses are each scaled by 1/k, then one ``step()``, gives
the gradient of the mean loss over the k micro-batches, i.e. the same update
as one batch k times larger (tests/test_optim.py checks it).

With several CPU threads (``functional.parallel``), ``step()`` shares the
parameters out: each thread updates its own run of them (about the same
number of elements each), with its own scratch array. Each parameter's
update is the same arithmetic whichever thread does it.

State dicts are flat ``{str: numpy array or number}`` dicts, saved as is into
a pickle-free ``.npz``. Per-parameter entries are keyed by the parameter's
name when the groups carry "names" (``param_groups_for_weight_decay`` does),
else by its position in the groups ("state.3.exp_avg").
"""
import math

from minillm import backend
from minillm.backend import xp
from minillm.functional import parallel


def _groups(params, defaults):
    """Normalise ``params`` (a list of parameters, of (name, parameter) pairs, or of
    group dicts) into a list of group dicts filled with ``defaults``."""
    params = list(params)
    if not params:
        raise ValueError("the optimizer got an empty parameter list")
    if not isinstance(params[0], dict):
        params = [{"params": params}]
    groups, seen = [], set()
    for i, group in enumerate(params):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"parameter group {i} must be a dict with a 'params' list")
        unknown = set(group) - set(defaults) - {"params", "names"}
        if unknown:
            raise ValueError(f"parameter group {i} has unknown options {sorted(unknown)}; "
                             f"expected some of {sorted(defaults)}")
        group = {**defaults, **group}
        items = list(group["params"])
        if items and isinstance(items[0], tuple):  # (name, parameter) pairs
            group["names"], items = [n for n, _ in items], [p for _, p in items]
        group["params"] = items
        if "names" in group and len(group["names"]) != len(items):
            raise ValueError(f"parameter group {i}: {len(group['names'])} names for {len(items)} parameters")
        for p in items:
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one place in the optimizer's groups")
            seen.add(id(p))
        groups.append(group)
    return groups


class Optimizer:
    """Shared bookkeeping: groups, ``zero_grad``, keys, and flat state dicts."""

    state_names = ()  # the per-parameter arrays a subclass keeps, e.g. ("exp_avg", "exp_avg_sq")

    def __init__(self, params, defaults):
        self.param_groups = _groups(params, defaults)
        for group in self.param_groups:
            self._check(group)
        self.state = {}      # key -> {"step": int, <state_names>: array}; only params ever updated
        self.step_count = 0  # calls of step()

    def _check(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {group['lr']}")
        if not group.get("weight_decay", 0.0) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']}")

    def _keyed(self):
        """Yield (key, group, parameter) for every parameter, in group order."""
        position = 0
        for group in self.param_groups:
            names = group.get("names")
            for j, p in enumerate(group["params"]):
                yield (names[j] if names else str(position)), group, p
                position += 1

    def _live(self):
        """(key, group, parameter) for the parameters this step updates."""
        return [(k, g, p) for k, g, p in self._keyed() if p.requires_grad and p.grad is not None]

    def zero_grad(self):
        """Drop every gradient (set to None: the next backward writes a fresh one)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        self.step_count += 1
        live = self._live()
        for key, group, p in live:
            if key not in self.state:
                self.state[key] = {"step": 0, **{n: xp.zeros_like(p.data) for n in self.state_names}}
            self.state[key]["step"] += 1
        parallel.run_parts([lambda run=run, slot=slot: self._update_all(run, slot)
                            for slot, run in enumerate(self._runs(live))])

    def _runs(self, live):
        """``live`` cut into one contiguous run per thread, of about equal element counts."""
        total = sum(p.size for _, _, p in live)
        threads = parallel.THREADS if total >= parallel.MIN_THREADED else 1   # small models: this thread
        runs, run, filled = [], [], 0
        for item in live:
            run.append(item)
            filled += item[2].size
            if filled * threads >= total * (len(runs) + 1) and len(runs) < threads - 1:
                runs.append(run)
                run = []
        if run or not runs:
            runs.append(run)
        return runs

    def _update_all(self, run, slot):
        for key, group, p in run:
            self._update(p.data, p.grad, self.state[key], group, slot)

    def _update(self, param, grad, state, group, slot):
        """Update ``param`` in place; ``slot`` names the thread's own scratch (see AdamW)."""
        raise NotImplementedError

    # -- saving and loading
    def state_dict(self):
        """A flat dict: "step_count", "groups.{i}.{option}", "state.{key}.{step|array}"."""
        out = {"step_count": self.step_count}
        for i, group in enumerate(self.param_groups):
            for option, value in group.items():
                if option not in ("params", "names"):
                    out[f"groups.{i}.{option}"] = value
        for key, state in self.state.items():
            for name, value in state.items():
                out[f"state.{key}.{name}"] = value if name == "step" else backend.to_numpy(value.copy())
        return out

    def load_state_dict(self, state):
        """Restore a ``state_dict()`` into this (freshly built, same-groups) optimizer exactly."""
        state = dict(state)
        if "step_count" not in state:
            raise KeyError("optimizer state dict has no 'step_count' entry")
        keys = {k: p for k, _, p in self._keyed()}
        new_state, groups = {}, [dict() for _ in self.param_groups]
        for entry, value in state.items():
            if entry == "step_count":
                continue
            kind, _, rest = entry.partition(".")
            if kind == "groups":
                index, _, option = rest.partition(".")
                if not index.isdigit() or int(index) >= len(groups) or option not in self.param_groups[int(index)]:
                    raise KeyError(f"optimizer state dict entry {entry!r} does not match this optimizer's groups")
                groups[int(index)][option] = value
            elif kind == "state":
                key, _, name = rest.rpartition(".")
                if key not in keys or name not in ("step",) + self.state_names:
                    raise KeyError(f"optimizer state dict entry {entry!r} names no parameter of this optimizer "
                                   f"(keys are parameter names or positions; stored name {name!r})")
                if name != "step" and tuple(value.shape) != keys[key].shape:
                    raise ValueError(f"optimizer state {entry!r}: expected shape {keys[key].shape}, "
                                     f"given {tuple(value.shape)}")
                new_state.setdefault(key, {})[name] = (int(value) if name == "step"
                                                       else xp.asarray(value, dtype=keys[key].dtype).copy())
            else:
                raise KeyError(f"unexpected optimizer state dict entry {entry!r}")
        for key, entries in new_state.items():
            absent = [n for n in ("step",) + self.state_names if n not in entries]
            if absent:
                raise KeyError(f"optimizer state for {key!r} lacks {absent}")
        for group, options in zip(self.param_groups, groups):
            for option, value in options.items():
                group[option] = value.item() if hasattr(value, "item") else value
        self.state, self.step_count = new_state, int(state["step_count"])


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's AdamW.

    For each parameter p with gradient g, at its step t:
        p <- p * (1 - lr * weight_decay)                 decay, not part of g
        m <- beta1 m + (1 - beta1) g                      first moment
        v <- beta2 v + (1 - beta2) g^2                    second moment
        p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    (the two (1 - beta^t) factors are the bias corrections of m and v, which start at 0).
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, {"lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps,
                                  "weight_decay": weight_decay})

    def _check(self, group):
        super()._check(group)
        for option in ("beta1", "beta2"):
            if not 0.0 <= group[option] < 1.0:
                raise ValueError(f"betas: {option} must be in [0, 1), got {group[option]}")
        if not group["eps"] >= 0:
            raise ValueError(f"eps must be >= 0, got {group['eps']}")

    def _scratch(self, param, slot):
        """A reused work array shaped like ``param``: one buffer per thread (``slot``), as large
        as the largest parameter, so a step allocates nothing."""
        buffers = self.__dict__.setdefault("_buffers", {})
        buffer = buffers.get(slot)
        if buffer is None or buffer.size < param.size or buffer.dtype != param.dtype:
            buffer = buffers[slot] = xp.empty(max(param.size, 0 if buffer is None else buffer.size), param.dtype)
        return buffer[:param.size].reshape(param.shape)

    def _update(self, param, grad, state, group, slot):
        lr, beta1, beta2, t = group["lr"], group["beta1"], group["beta2"], state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        scratch = self._scratch(param, slot)            # the one temporary of this update
        if group["weight_decay"]:
            param *= 1.0 - lr * group["weight_decay"]
        m *= beta1                                      # m = beta1 m + (1 - beta1) g
        xp.multiply(grad, 1.0 - beta1, out=scratch)
        m += scratch
        v *= beta2                                      # v = beta2 v + (1 - beta2) g^2
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - beta2
        v += scratch
        xp.sqrt(v, out=scratch)                         # denominator sqrt(v_hat) + eps
        scratch *= 1.0 / math.sqrt(1.0 - beta2 ** t)
        scratch += group["eps"]
        xp.divide(m, scratch, out=scratch)              # m / denominator
        scratch *= lr / (1.0 - beta1 ** t)              # times lr / (1 - beta1^t)
        param -= scratch


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and (L2) weight decay, as PyTorch's SGD:

        g <- g + weight_decay * p
        b <- momentum * b + g          (b = g at the first step)
        p <- p - lr * b                (p - lr * g without momentum)
    """

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.state_names = ("momentum_buffer",) if any(g["momentum"] for g in self.param_groups) else ()

    def _check(self, group):
        super()._check(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"momentum must be >= 0, got {group['momentum']}")

    def _update(self, param, grad, state, group, slot):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        if group["momentum"]:
            buffer = state["momentum_buffer"]
            if state["step"] == 1:
                buffer[...] = grad
            else:
                buffer *= group["momentum"]
                buffer += grad
            grad = buffer
        param -= group["lr"] * grad


def clip_grad_norm(parameters, max_norm):
    """Scale all gradients by min(1, max_norm / (||g|| + 1e-6)), in place, where ||g|| is
    the L2 norm of every gradient taken together. Returns ||g|| before clipping (a float)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    total = math.sqrt(float(sum(xp.vdot(g.reshape(-1), g.reshape(-1)) for g in grads)))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


def cosine_lr(step, max_lr, min_lr, warmup_iters, decay_iters):
    """nanoGPT's schedule: linear warmup, then cosine decay from max_lr to min_lr.

        step < warmup_iters:  max_lr * (step + 1) / (warmup_iters + 1)
        step <= decay_iters:  min_lr + (max_lr - min_lr) * (1 + cos(pi * r)) / 2,
                              r = (step - warmup_iters) / (decay_iters - warmup_iters)
        step > decay_iters:   min_lr

    Endpoints: step 0 gives max_lr / (warmup_iters + 1) (never 0, so the first
    step moves), step warmup_iters gives max_lr, step decay_iters gives min_lr.
    """
    if not 0 <= warmup_iters <= decay_iters:
        raise ValueError(f"need 0 <= warmup_iters <= decay_iters, got warmup_iters={warmup_iters}, "
                         f"decay_iters={decay_iters}")
    if step < warmup_iters:
        return max_lr * (step + 1) / (warmup_iters + 1)
    if step >= decay_iters:
        return min_lr
    ratio = (step - warmup_iters) / (decay_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)


def set_lr(optimizer, lr):
    """Set the learning rate of every group of ``optimizer``."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def param_groups_for_weight_decay(model, weight_decay):
    """Two named groups of the trainable parameters: weights with >= 2 axes (matrices,
    embeddings) decay; biases and LayerNorm weights (1 axis) do not (as nanoGPT)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append((name, p))
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
