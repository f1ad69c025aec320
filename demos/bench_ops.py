"""How close do minillm's fused ops come to what the hardware allows?

    python demos/bench_ops.py                     # GPT-sized shapes, on MINILLM_BACKEND
    python demos/bench_ops.py --quick             # small shapes, 3 repeats: to see that it runs
    MINILLM_BACKEND=cupy python demos/bench_ops.py --repeats 20

Every figure is a median over ``--repeats`` runs, and every op is measured
side by side with its own yardstick in the same run, interleaved (A B A B ...)
so that a busy machine or a warming GPU slows both alike:

Each op is its ``Function`` called directly (forward, then backward with a
random upstream gradient), so the figures are the op's own work, without the
engine's bookkeeping.

- the float32 matrix-product ceiling: GFLOP/s of one plain ``xp.matmul`` of two
  square matrices (``--matmul-size``);
- ``scaled_dot_product_attention`` and ``linear``, forward + backward, as a
  multiple of the raw ``xp.matmul`` calls they cannot avoid, at the same shapes
  (attention: Q K^T and P V forward, four products backward; linear: one
  forward, two backward). 1.0x would mean everything else is free;
- ``layer_norm`` and ``cross_entropy``, forward + backward, as a multiple of
  reading and writing their input once (``xp.copyto`` of the same size). They
  are memory-bound, so this says how many passes over the data they make.

``backend.synchronize()`` comes before every clock reading, so the timings are
right on CuPy, whose calls return before the GPU has finished.
"""
import argparse
import statistics
import time

import numpy

from minillm import backend
from minillm.backend import xp
from minillm.functional.attention import ScaledDotProductAttention
from minillm.functional.cross_entropy import CrossEntropy
from minillm.functional.layer_norm import LayerNorm
from minillm.functional.linear import Linear

FULL = {"batch": 12, "shapes": [(64, 128, 4), (256, 384, 6)], "vocabs": [65, 50257], "matmul": 2048}
QUICK = {"batch": 12, "shapes": [(64, 128, 4)], "vocabs": [65, 50257], "matmul": 1024}


def timed(fn):
    """Seconds that ``fn()`` takes, the device's queue included."""
    backend.synchronize()
    start = time.perf_counter()
    fn()
    backend.synchronize()
    return time.perf_counter() - start


def side_by_side(a, b, repeats):
    """Median seconds of ``a`` and of ``b``, measured interleaved after one warm-up of each."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(timed(a))
        times_b.append(timed(b))
    return statistics.median(times_a), statistics.median(times_b)


def random(rng, shape):
    return xp.asarray(rng.standard_normal(shape, dtype=numpy.float32))


def forward_backward(op, arrays, upstream, **options):
    """A closure running the Function ``op``'s forward on ``arrays``, then its backward.

    The Function is called directly, so the figure is the op's own work: the
    engine's bookkeeping (and its copy of each leaf's gradient) is left out.
    """
    def run():
        fn = op()
        out = fn.forward(*arrays, **options)
        fn.backward(xp.ones_like(out) if upstream is None else upstream)
    return run


def matmuls(*pairs):
    """A closure running the raw products ``xp.matmul(a, b)`` for each (a, b)."""
    def run():
        for a, b in pairs:
            xp.matmul(a, b)
    return run


def copy_of(array):
    """A closure that reads ``array`` and writes it once (the memory-bound yardstick)."""
    out = xp.empty_like(array)
    return lambda: xp.copyto(out, array)


def bench_attention(rng, batch, t, channels, heads, repeats):
    d = channels // heads
    q, k, v, g = (random(rng, (batch, heads, t, d)) for _ in range(4))        # (B, H, T, D)
    p = random(rng, (batch, heads, t, t))                                       # (B, H, T, T)
    kt, vt, pt, qt = (xp.swapaxes(a, -1, -2) for a in (k, v, p, q))
    raw = matmuls((q, kt), (p, v),                                              # forward: S = Q K^T, O = P V
                  (pt, g), (g, vt), (p, k), (pt, q))                            # backward: dV, dP, dQ, dK
    flops = 6 * 2 * batch * heads * t * t * d
    op = forward_backward(ScaledDotProductAttention, (q, k, v), g, causal=True, dropout_p=0.0, rng=None,
                          key_mask=None, scale=None)
    return side_by_side(op, raw, repeats), flops


def bench_linear(rng, batch, t, channels, repeats):
    x, w, b = random(rng, (batch, t, channels)), random(rng, (channels, 4 * channels)), random(rng, (4 * channels,))
    g = random(rng, (batch, t, 4 * channels))                                   # (B, T, 4C): the MLP's c_fc
    x2, g2 = x.reshape(-1, channels), g.reshape(-1, 4 * channels)
    raw = matmuls((x2, w), (g2, w.T), (x2.T, g2))                               # forward, dL/dx, dL/dW
    flops = 3 * 2 * batch * t * channels * 4 * channels
    return side_by_side(forward_backward(Linear, (x, w, b), g), raw, repeats), flops


def bench_layer_norm(rng, batch, t, channels, repeats):
    x, w, b, g = (random(rng, shape) for shape in
                  [(batch, t, channels), (channels,), (channels,), (batch, t, channels)])
    return side_by_side(forward_backward(LayerNorm, (x, w, b), g), copy_of(x), repeats)


def bench_cross_entropy(rng, batch, t, vocab, repeats):
    logits = random(rng, (batch, t, vocab))                                     # (B, T, V)
    targets = xp.asarray(rng.integers(0, vocab, (batch, t)))
    op = forward_backward(CrossEntropy, (logits,), None, targets=targets, ignore_index=-100)
    return side_by_side(op, copy_of(logits), repeats)


def device_text():
    if backend.name == "cupy":
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"CPU, NumPy {numpy.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and 3 repeats, to see that it runs")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per op (median reported)")
    parser.add_argument("--matmul-size", type=int, default=None, help="side of the square matmul ceiling")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    repeats = args.repeats or (3 if args.quick else 10)
    size = args.matmul_size or plan["matmul"]
    rng = numpy.random.default_rng(args.seed)
    batch = plan["batch"]

    print(f"backend: {backend.name} ({device_text()}), float32, median of {repeats} interleaved runs")
    a, b = random(rng, (size, size)), random(rng, (size, size))
    seconds = statistics.median(timed(matmuls((a, b))) for _ in range(repeats + 1))
    ceiling = 2 * size ** 3 / seconds / 1e9
    print(f"matmul ceiling: {size}x{size} @ {size}x{size} in {seconds * 1e3:.2f} ms = {ceiling:.1f} GFLOP/s\n")

    header = f"{'op (forward + backward)':<26}{'shape':<24}{'ms':>9}{'yardstick ms':>14}{'ratio':>8}  yardstick"
    print(header)
    print("-" * (len(header) + 14))

    def row(name, shape, times, yardstick, flops=None):
        (op, base) = times
        note = yardstick + (f", op at {flops / op / 1e9:.1f} GFLOP/s" if flops else "")
        print(f"{name:<26}{shape:<24}{op * 1e3:>9.3f}{base * 1e3:>14.3f}{op / base:>7.1f}x  {note}")

    for t, channels, heads in plan["shapes"]:
        times, flops = bench_attention(rng, batch, t, channels, heads, repeats)
        row("attention (causal)", f"B{batch} H{heads} T{t} D{channels // heads}", times, "its 6 matmuls", flops)
        times, flops = bench_linear(rng, batch, t, channels, repeats)
        row("linear C->4C", f"B{batch} T{t} C{channels}", times, "its 3 matmuls", flops)
        row("layer_norm", f"B{batch} T{t} C{channels}", bench_layer_norm(rng, batch, t, channels, repeats),
            "one copy of x")
        for vocab in plan["vocabs"]:
            row("cross_entropy", f"B{batch} T{t} V{vocab}", bench_cross_entropy(rng, batch, t, vocab, repeats),
                "one copy of the logits")


if __name__ == "__main__":
    main()
