"""Generate text from a trained checkpoint.

    python demos/sample.py                                    # out/shakespeare/ckpt.npz, 500 tokens
    python demos/sample.py --prompt "ROMEO." --temperature 0.7 --top-k 20 --seed 1
    python demos/sample.py --temperature 0                    # greedy decoding
    python demos/sample.py --no-cache                         # recompute the whole context each step

The checkpoint carries its tokenizer and model config, so nothing else is
needed. Decoding is the course's loop: score the next token, turn the scores
into probabilities (temperature, then top-k, then top-p), draw one, append it,
repeat; with the KV cache (the default) each step feeds only the new token.
"""
import argparse
import os
import sys
import time

from minillm import backend, checkpoint
from minillm.models import GPT
from minillm.tokenizers import tokenizer_from_dict


def main(argv=None):
    p = argparse.ArgumentParser(description="Generate text from a minillm checkpoint.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", default=os.path.join("out", "shakespeare", "ckpt.npz"), help="checkpoint file")
    p.add_argument("--prompt", default="\n", help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=None, help="keep only the k most probable tokens")
    p.add_argument("--top-p", type=float, default=None, help="keep the smallest set with probability >= p")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not use the KV cache")
    args = p.parse_args(argv)

    try:
        ckpt = checkpoint.load(args.ckpt)
    except (FileNotFoundError, checkpoint.CheckpointError) as error:
        sys.exit(f"error: {error}")
    if not ckpt.get("tokenizer"):
        sys.exit(f"checkpoint {args.ckpt} holds no tokenizer: it was not written by the training demo")
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    model = GPT.from_checkpoint(ckpt)
    model.eval()
    prompt = tokenizer.encode(args.prompt)
    if not prompt:
        sys.exit("--prompt must contain at least one token")
    start = time.perf_counter()
    out = model.generate([prompt], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, use_cache=not args.no_cache)
    backend.synchronize()
    seconds = time.perf_counter() - start
    print(tokenizer.decode(backend.to_numpy(out)[0].tolist()))
    print(f"\n[{args.max_new_tokens} tokens in {seconds:.2f} s, {args.max_new_tokens / seconds:.0f} tokens/s, "
          f"{'no ' if args.no_cache else ''}KV cache, step {ckpt['step']} checkpoint]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
