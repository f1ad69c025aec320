"""16-bit weights for inference: bytes, perplexity and speed against float32, measured.

    python demos/half_precision.py                                  # trains a small GPT first (~1 min)
    python demos/half_precision.py --ckpt out/shakespeare/ckpt.npz --repeats 5

One model, stored three ways (``minillm.half_precision.to_16bit``): float32,
float16, and bfloat16 (through ``ml_dtypes``, NumPy only). For each: the
parameter bytes as allocated, the held-out perplexity (``--eval-chars`` of the
validation split), the largest change of any logit against float32, and the
generation speed in ms per token (KV cache, ``--gen-tokens`` tokens). Timings
run interleaved (float32, float16, bfloat16, float32, ...) ``--repeats``
times and report medians, because the machine may be shared. On NumPy the
16-bit weights are upcast to float32 inside every product (there is no
half-precision BLAS), so they save memory, not time.
"""
import argparse
import statistics
import sys
import time

import numpy
from small_gpt import add_model_flags, load_or_train

from minillm import GPT, GPTConfig, backend, cli, no_grad
from minillm.evaluate import evaluate_lm
from minillm.half_precision import to_16bit
from minillm.memory import parameter_bytes


def build_parser():
    p = cli.ArgumentParser(description="16-bit weights: bytes, perplexity and speed against float32.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_flags(p)
    p.add_argument("--out", default=None, help="where the small GPT is saved when trained here")
    p.add_argument("--eval-chars", type=cli.positive_int, default=20000, help="held-out tokens scored")
    p.add_argument("--gen-tokens", type=cli.positive_int, default=100, help="tokens generated per timing")
    p.add_argument("--repeats", type=cli.positive_int, default=3, help="interleaved timing rounds (medians reported)")
    return p


def copy_as(model, dtype):
    """A copy of ``model`` with its parameters stored as ``dtype``."""
    twin = GPT(GPTConfig.from_dict(model.config.to_dict()))
    twin.load_state_dict(model.state_dict())
    return twin if dtype == "float32" else to_16bit(twin, dtype)


def generation_ms_per_token(model, prompt, n_tokens, seed):
    start = time.perf_counter()
    with no_grad():
        model.generate([prompt], n_tokens, seed=seed)
    backend.synchronize()
    return (time.perf_counter() - start) * 1000 / n_tokens


def main(argv=None):
    parser = build_parser()
    return parser.run(lambda args: measure(args, parser), argv)


def measure(args, parser):
    gpt = load_or_train(args, parser)
    dtypes = ["float32", "float16"]
    try:
        import ml_dtypes  # noqa: F401
        if backend.name == "numpy":
            dtypes.append("bfloat16")
    except ImportError:
        print("ml_dtypes is not installed: bfloat16 left out (pip install ml_dtypes)")
    models = {dtype: copy_as(gpt.model, dtype) for dtype in dtypes}
    ids = gpt.val_ids[:args.eval_chars + 1]
    n_chars = len(gpt.tokenizer.decode(ids[1:].tolist()))
    window = ids[None, :gpt.model.config.block_size]
    with no_grad():
        reference = backend.to_numpy(models["float32"](window).data).astype(numpy.float64)
    rows = {}
    for dtype, model in models.items():
        with no_grad():
            logits = backend.to_numpy(model(window).data).astype(numpy.float64)
        rows[dtype] = {"bytes": parameter_bytes(model), "n": model.num_parameters(),
                       "max_dlogit": float(numpy.abs(logits - reference).max()), "ms": [], "eval_s": []}
    prompt = gpt.tokenizer.encode("\n")
    for round_ in range(args.repeats):
        for dtype, model in models.items():                   # interleaved: A B C A B C ...
            start = time.perf_counter()
            rows[dtype]["ppl"] = evaluate_lm(model, ids, n_chars=n_chars)
            rows[dtype]["eval_s"].append(time.perf_counter() - start)
            rows[dtype]["ms"].append(generation_ms_per_token(model, prompt, args.gen_tokens, args.seed))
        print(f"timing round {round_ + 1}/{args.repeats} done", flush=True)
    base = rows["float32"]
    print(f"\nGPT: {gpt.source}; {ids.size - 1:,} held-out tokens; backend {backend.name}; "
          f"medians of {args.repeats} interleaved rounds\n")
    print("| weights | parameter bytes | bytes/parameter | perplexity | change | bits/char | "
          "max abs logit change | generation ms/token | scoring time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for dtype, r in rows.items():
        ppl = r["ppl"]["perplexity"]
        print(f"| {dtype} | {r['bytes']:,} | {r['bytes'] / r['n']:.0f} | {ppl:.5f} | "
              f"{ppl - base['ppl']['perplexity']:+.5f} | {r['ppl']['bits_per_char']:.5f} | {r['max_dlogit']:.2e} | "
              f"{statistics.median(r['ms']):.2f} | {statistics.median(r['eval_s']):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
