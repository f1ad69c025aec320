"""Where does a training step's time go? A per-op profile of minillm's step.

    python demos/profile_train.py                   # baby config, 20 steps
    python demos/profile_train.py --config big --steps 5

Every ``Function`` subclass's ``forward`` and ``backward`` is wrapped with a
clock for the profiled steps (and unwrapped after); the optimizer step and
gradient clipping are timed around their calls. "engine + Python" is what is
left of the step: graph bookkeeping, ``unbroadcast``, gradient accumulation,
batch drawing, module calls. Figures are per step, in ms, summed over calls.
"""
import collections
import sys
import time

import numpy

from minillm import backend, cli, train
from minillm.autograd import Function

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_train import CONFIGS, make_trainer  # noqa: E402  (the same configs and trainer as the benchmark)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _timed(method, totals, key):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            backend.synchronize()
            totals[key] += time.perf_counter() - start
    return wrapper


def profile(name, steps, warmup):
    """{part: seconds per step} and the median step time, for config ``name``."""
    trainer = make_trainer(name)
    for _ in range(warmup):
        trainer.train_step()
    totals = collections.Counter()
    patched = []
    for cls in set(_subclasses(Function)):
        for method in ("forward", "backward"):
            if method in cls.__dict__:
                patched.append((cls, method, cls.__dict__[method]))
                setattr(cls, method, _timed(cls.__dict__[method], totals, f"{cls.__name__}.{method}"))
    opt_step = trainer.optimizer.step
    trainer.optimizer.step = _timed(opt_step, totals, "optimizer step")
    clip = train.clip_grad_norm
    train.clip_grad_norm = _timed(clip, totals, "clip_grad_norm")
    times = []
    try:
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step()
            backend.synchronize()
            times.append(time.perf_counter() - start)
    finally:
        for cls, method, original in patched:
            setattr(cls, method, original)
        trainer.optimizer.step = opt_step
        train.clip_grad_norm = clip
    per_step = {k: v / steps for k, v in totals.items()}
    per_step["engine + Python (the rest)"] = sum(times) / steps - sum(per_step.values())
    return per_step, float(numpy.median(times))


def main(argv=None):
    p = cli.ArgumentParser(description="Per-op profile of minillm's training step.")
    p.add_argument("--config", choices=sorted(CONFIGS), default="baby", help="model and batch (bench_train's)")
    p.add_argument("--steps", type=cli.positive_int, default=20, help="profiled steps")
    p.add_argument("--warmup", type=cli.non_negative_int, default=3, help="unprofiled steps first")
    args = p.parse_args(argv)
    parts, median = profile(args.config, args.steps, args.warmup)
    total = sum(parts.values())
    print(f"[{args.config}] {args.steps} steps, median {1000 * median:.1f} ms/step "
          f"(mean {1000 * total:.1f}); per step:")
    print("| part | ms/step | share |\n| --- | --- | --- |")
    for key, seconds in sorted(parts.items(), key=lambda kv: -kv[1]):
        if seconds * 1000 >= 0.05:
            print(f"| {key} | {1000 * seconds:.2f} | {100 * seconds / total:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
