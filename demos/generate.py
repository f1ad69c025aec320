"""Continue a prompt with any supported Hugging Face checkpoint: GPT-2 or a Llama-family model.

    python demos/generate.py --model-dir SmolLM-135M/ --prompt "The capital of France is" --temperature 0
    python demos/generate.py --model-dir SmolLM-135M/ --prompt "Once upon a time" --top-p 0.9 --seed 1
    python demos/generate.py --model-dir Llama-3.2-1B/ --prompt "The theory of relativity" --top-k 40
    python demos/generate.py --model-dir gpt2/ --prompt "Hello, I'm a language model," --no-cache

``--model-dir`` is a folder you downloaded yourself (minillm never downloads):

    config.json                 the architecture; "model_type" picks the family (gpt2, llama)
    model.safetensors           the weights (or model-0000x-of-0000n.safetensors + the index)
    tokenizer.json              the tokenizer (GPT-2 folders: vocab.json + merges.txt instead)

e.g. the hub repository ``HuggingFaceTB/SmolLM-135M`` (those three files). The
model comes from ``minillm.hf.load``, the tokenizer from
``minillm.tokenizers.load``; the prompt gets the tokenizer's own special tokens
(Llama 3's <|begin_of_text|>); generation stops at config.json's
``eos_token_id``. Tokens are printed as they come, then the speed: the prefill
(the whole prompt in one pass) and the decoding (one token a step, with the KV
cache unless ``--no-cache``).
"""
import argparse
import json
import os
import sys
import time

import minillm.hf
import minillm.tokenizers
from minillm import backend, cli, generation
from minillm.nn import eval_mode
from minillm.tokenizers import HFBPETokenizer


def build_parser():
    p = cli.ArgumentParser(description="Continue a prompt with a Hugging Face checkpoint in minillm.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", type=cli.existing_dir, required=True,
                   help="folder with config.json, model.safetensors, tokenizer.json")
    p.add_argument("--prompt", default="Once upon a time")
    p.add_sampling_flags(max_new_tokens=40, temperature=0.8)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return p


def stop_ids(directory):
    """The end-of-sequence ids config.json (and generation_config.json, if there) name."""
    ids = set()
    for name in ("config.json", "generation_config.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                eos = json.load(f).get("eos_token_id")
            ids.update([eos] if isinstance(eos, int) else (eos or []))
    return ids


def printable(text):
    """The decoded text without a trailing half character (U+FFFD until its other bytes come)."""
    return text.rstrip("\ufffd")


def main(argv=None):
    return build_parser().run(generate, argv)


def generate(args):
    print(f"loading {args.model_dir} ...", file=sys.stderr, flush=True)
    model = minillm.hf.load(args.model_dir, dtype=args.dtype)
    tokenizer = minillm.tokenizers.load(args.model_dir)
    if isinstance(tokenizer, HFBPETokenizer):
        prompt = tokenizer.encode(args.prompt, add_special_tokens=True)
    else:
        prompt = tokenizer.encode(args.prompt)
    if not prompt:
        raise ValueError("--prompt gives no tokens (and the tokenizer adds none): give some text")
    stop = stop_ids(args.model_dir)
    idx = backend.xp.asarray([prompt], dtype=backend.xp.int64)             # (1, T)

    print(args.prompt, end="", flush=True)
    new, shown, times = [], "", [time.perf_counter()]
    with eval_mode(model):                                               # dropout off, no graph
        steps = generation.stream(model, idx, args.max_new_tokens, args.temperature, args.top_k, args.top_p,
                                  args.seed, use_cache=not args.no_cache)
        for _, token in steps:
            times.append(time.perf_counter())
            if int(token[0]) in stop:
                break
            new.append(int(token[0]))
            text = printable(tokenizer.decode(new))
            print(text[len(shown):], end="", flush=True)
            shown = text
        steps.close()
    print()
    prefill = f"{times[1] - times[0]:.2f} s" if len(times) > 1 else "no time (no token asked for)"
    steps_after = len(times) - 2
    speed = ""
    if steps_after > 0:
        speed = f", then {steps_after} tokens at {steps_after / (times[-1] - times[1]):.1f} tokens/s"
    print(f"[{type(model).__name__} {model.num_parameters():,} parameters, {backend.name}; "
          f"prompt of {len(prompt)} tokens in {prefill}{speed}; "
          f"{'no ' if args.no_cache else ''}KV cache]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
