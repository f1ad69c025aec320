"""Generate text from a trained checkpoint.

    python demos/sample.py                                    # out/shakespeare/ckpt.npz, 500 tokens
    python demos/sample.py --prompt "ROMEO." --temperature 0.7 --top-k 20 --seed 1
    python demos/sample.py --temperature 0                    # greedy decoding
    python demos/sample.py --no-cache                         # recompute the whole context each step
    python demos/sample.py --ckpt out/finetune_lora/base.npz --adapter out/finetune_lora/adapter_r8.npz

The checkpoint carries its tokenizer and model config, so nothing else is
needed. Decoding is the course's loop: score the next token, turn the scores
into probabilities (temperature, then top-k, then top-p), draw one, append it,
repeat; with the KV cache (the default) each step feeds only the new token.
``--adapter`` puts a LoRA adapter (written by demos/finetune_lora.py or
demos/sft.py) onto the checkpoint's model, its base, and folds it into the
weights (``merge_lora``), so generation costs what the base costs.
"""
import argparse
import os
import sys
import time

from minillm import backend, checkpoint, cli
from minillm.lora import load_adapter, merge_lora
from minillm.models import decoder_from_checkpoint
from minillm.tokenizers import tokenizer_from_dict


def build_parser():
    p = cli.ArgumentParser(description="Generate text from a minillm checkpoint.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", default=os.path.join("out", "shakespeare", "ckpt.npz"), help="checkpoint file")
    p.add_argument("--adapter", type=cli.existing_file, default=None,
                   help="a LoRA adapter file to put onto the checkpoint's model (its base)")
    p.add_argument("--prompt", default="\n", help="text to continue")
    p.add_argument("--drop-unknown", action="store_true",
                   help="remove prompt characters the checkpoint's tokenizer lacks (instead of an error)")
    p.add_argument("--max-new-tokens", type=cli.non_negative_int, default=500)
    p.add_argument("--temperature", type=cli.non_negative_float, default=0.8, help="0 means greedy")
    p.add_argument("--top-k", type=cli.positive_int, default=None, help="keep only the k most probable tokens")
    p.add_argument("--top-p", type=cli.probability, default=None,
                   help="keep the smallest set with probability >= p")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not use the KV cache")
    return p


def main(argv=None):
    return build_parser().run(generate, argv)


def load_model(args):
    """(model, tokenizer, checkpoint) from --ckpt, with --adapter merged in."""
    if not os.path.exists(args.ckpt):
        raise FileNotFoundError(f"checkpoint {args.ckpt} does not exist (python demos/train_shakespeare.py "
                                "writes out/shakespeare/ckpt.npz)")
    ckpt = checkpoint.load(args.ckpt)
    if isinstance(ckpt.get("adapter"), dict):
        raise ValueError(f"{args.ckpt} is a LoRA adapter, not a model: pass it as --adapter, "
                         "with the model it was trained on as --ckpt")
    if not ckpt.get("tokenizer"):
        raise ValueError(f"checkpoint {args.ckpt} holds no tokenizer: it was not written by a demo that trains")
    try:                                           # the tokenizer first: it is cheap to check
        tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {args.ckpt}: its tokenizer cannot be used: {error}") from None
    model = decoder_from_checkpoint(ckpt, where=f"checkpoint {args.ckpt}")   # its family; arrays checked first
    if args.adapter:
        load_adapter(args.adapter, model)
        merge_lora(model)                          # W' = W + (alpha / r) A B: no extra cost per token
    model.eval()
    return model, tokenizer, ckpt


def encode_prompt(tokenizer, text, drop_unknown):
    """The prompt's ids; characters the tokenizer cannot encode are an error or, with --drop-unknown, dropped."""
    try:
        return tokenizer.encode(text)
    except ValueError:
        pass

    def encodes(c):
        try:
            return bool(tokenizer.encode(c))
        except ValueError:
            return False

    unknown = sorted({c for c in text if not encodes(c)})
    if not drop_unknown:
        raise ValueError(f"--prompt has characters the checkpoint's tokenizer lacks: {unknown} "
                         "(--drop-unknown removes them)")
    cli.warn(f"--drop-unknown: removed {sum(text.count(c) for c in unknown)} prompt characters the tokenizer "
             f"lacks: {unknown}")
    return tokenizer.encode("".join(c for c in text if c not in unknown))


def warn_about_settings(args, prompt, config):
    """One line for each setting that does something other than it seems to."""
    ignored = [flag for flag, value in (("--top-k", args.top_k), ("--top-p", args.top_p)) if value is not None]
    if args.temperature == 0 and ignored:
        cli.warn(f"--temperature 0 is greedy decoding (the most probable token): {' and '.join(ignored)} "
                 f"change{'s' if len(ignored) == 1 else ''} nothing")
    elif args.top_k is not None and args.top_k >= config.vocab_size:
        cli.warn(f"--top-k {args.top_k} is not below the vocabulary size {config.vocab_size}: it keeps every token")
    if len(prompt) > config.block_size:
        cli.warn(f"--prompt has {len(prompt)} tokens, more than the model's context of {config.block_size}: "
                 f"it sees only the last {config.block_size}")


def generate(args):
    model, tokenizer, ckpt = load_model(args)
    prompt = encode_prompt(tokenizer, args.prompt, args.drop_unknown)
    if not prompt:
        raise ValueError("--prompt must contain at least one token")
    warn_about_settings(args, prompt, model.config)
    start = time.perf_counter()
    out = model.generate([prompt], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, use_cache=not args.no_cache)
    backend.synchronize()
    seconds = time.perf_counter() - start
    print(tokenizer.decode(backend.to_numpy(out)[0].tolist()))
    adapter = f", adapter {args.adapter}" if args.adapter else ""
    print(f"\n[{args.max_new_tokens} tokens in {seconds:.2f} s, {args.max_new_tokens / max(seconds, 1e-9):.0f} "
          f"tokens/s, {'no ' if args.no_cache else ''}KV cache, step {ckpt['step']} checkpoint{adapter}]",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
