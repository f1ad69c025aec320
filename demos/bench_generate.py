"""Generation speed with and without the KV cache, side by side.

For each generated length (default 64, 256, 1024 new tokens after a one-token
prompt, on a model with block_size 1024) we time ``model.generate`` with the
cache (prefill once, then one token per step) and without it (the whole window
recomputed at every step), interleaved A B A B ... so that both see the same
machine load, and report the medians, tokens per second and the speed-up.
Without the cache step t costs about t token-passes, so generating n tokens
costs O(n^2) token-passes against O(n) with it: the speed-up grows with n.

It also prints the cache's memory, ``KVCache.nbytes()``, next to the formula
2 * n_layer * T * n_embd * bytes-per-value (keys and values, every layer, every
position; batch 1).

    python demos/bench_generate.py --quick               # a smoke run, small model (~1 minute on 2 cores)
    python demos/bench_generate.py                       # 64/256/1024 tokens, 3 repeats
    MINILLM_BACKEND=cupy python demos/bench_generate.py --config shakespeare-char
    MINILLM_BACKEND=cupy python demos/bench_generate.py --config gpt2 --lengths 64,256

Configs: ``small`` (default: block 1024, 2 layers, 4 heads, width 64, vocab 256:
cheap enough for a CPU), ``shakespeare-char`` (nanoGPT's: block 256, 6 layers,
6 heads, width 384, vocab 65; past 256 tokens the window slides, see
``minillm.generation``) and ``gpt2`` (124M: block 1024, 12 layers, 12 heads,
width 768, vocab 50257). Any field can be overridden with --n-layer etc.
The weights are random (the timing does not depend on them).
"""
import argparse
import statistics
import sys
import time

import numpy

from minillm import backend, no_grad
from minillm.kvcache import KVCache
from minillm.models import GPT, GPTConfig

CONFIGS = {
    "small": dict(vocab_size=256, block_size=1024, n_layer=2, n_head=4, n_embd=64),
    "shakespeare-char": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384),
    "gpt2": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--n-layer", type=int)
    parser.add_argument("--n-head", type=int)
    parser.add_argument("--n-embd", type=int)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--lengths", default="64,256,1024", help="generated lengths, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per length and mode (median)")
    parser.add_argument("--prompt-len", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, lengths 64,256,1024 on a narrower model (n_embd 32, 1 layer)")
    args = parser.parse_args(argv)
    fields = dict(CONFIGS[args.config])
    if args.quick:
        args.repeats = 1
        if args.config == "small":
            fields.update(n_layer=1, n_head=2, n_embd=32)
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    args.model_config = GPTConfig(dtype=args.dtype, **fields)
    args.lengths = [int(x) for x in args.lengths.split(",") if x]
    return args


def timed_generate(model, prompt, new, use_cache, seed):
    """(seconds, output) of one model.generate call, the device synchronised around it."""
    backend.synchronize()
    start = time.perf_counter()
    out = model.generate(prompt, new, temperature=1.0, seed=seed, use_cache=use_cache)
    backend.synchronize()
    return time.perf_counter() - start, out


def cache_bytes(model, tokens):
    """KVCache.nbytes() after prefilling ``tokens`` (1, T), and the formula's bytes."""
    config = model.config
    cache = KVCache(config.n_layer)
    with no_grad():
        model.eval()
        model(tokens, cache=cache)
    T = tokens.shape[1]
    itemsize = numpy.dtype(config.dtype).itemsize
    return cache.nbytes(), 2 * config.n_layer * T * config.n_embd * itemsize


def mib(n):
    return f"{n / 2**20:8.2f} MiB"


def main(argv=None):
    args = parse_args(argv)
    config = args.model_config
    model = GPT(config, seed=args.seed)
    model.eval()
    rng = numpy.random.default_rng(args.seed)
    prompt = backend.asarray(rng.integers(0, config.vocab_size, (1, args.prompt_len)))
    print(f"backend: {backend.name}   config: {args.config}{' (--quick)' if args.quick else ''}")
    print(f"model: vocab {config.vocab_size}, block {config.block_size}, {config.n_layer} layers, "
          f"{config.n_head} heads, width {config.n_embd}, {config.dtype}, "
          f"{model.num_parameters():,} parameters; prompt {args.prompt_len} token(s), batch 1")
    print(f"timing: {args.repeats} run(s) per length and mode, interleaved cache / no cache, medians\n")

    timed_generate(model, prompt, 4, True, args.seed)             # warm-up (allocations, kernels)
    timed_generate(model, prompt, 4, False, args.seed)

    print(f"{'new tokens':>10} | {'cache tok/s':>11} | {'no cache tok/s':>14} | {'speed-up':>8} | "
          f"{'same tokens':>11} | {'KVCache.nbytes()':>16} | {'2*L*T*C*bytes':>13}")
    rows = []
    for new in args.lengths:
        times = {True: [], False: []}
        outputs = {}
        for _ in range(args.repeats):                            # A B A B ...
            for use_cache in (True, False):
                seconds, outputs[use_cache] = timed_generate(model, prompt, new, use_cache, args.seed)
                times[use_cache].append(seconds)
        with_cache, without = statistics.median(times[True]), statistics.median(times[False])
        same = bool((backend.to_numpy(outputs[True]) == backend.to_numpy(outputs[False])).all())
        window = outputs[True][:, :-1][:, -config.block_size:]    # every token fed (at most a full window)
        stored, formula = cache_bytes(model, window)
        rows.append((new, with_cache, without))
        print(f"{new:>10} | {new / with_cache:>11.1f} | {new / without:>14.1f} | {without / with_cache:>7.2f}x | "
              f"{'yes' if same else 'NO':>11} | {mib(stored):>16} | {mib(formula):>13}   (T = {window.shape[1]})")
        sys.stdout.flush()
    if any(new + args.prompt_len > config.block_size + 1 for new, _, _ in rows):
        print(f"\n(lengths past block_size {config.block_size} slide the window: see minillm/generation.py)")
    return rows


if __name__ == "__main__":
    main()
