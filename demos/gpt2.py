"""Run a real GPT-2 checkpoint through minillm: tokenizer, weights, samplers and KV cache.

    python demos/gpt2.py --model-dir gpt2/ --prompt "Hello, I'm a language model,"
    python demos/gpt2.py --model-dir gpt2/ --prompt "The meaning of life is" \\
        --max-new-tokens 40 --temperature 0.8 --top-k 40 --seed 1
    python demos/gpt2.py --model-dir gpt2/ --prompt "Once upon a time" --temperature 0   # greedy

Where the files come from. ``--model-dir`` is a folder holding the four files of
the Hugging Face hub repository ``gpt2`` (the 124M model; ``gpt2-medium``,
``gpt2-large`` and ``gpt2-xl`` have the same layout):

    config.json  model.safetensors  vocab.json  merges.txt

Download them yourself once, e.g. from https://huggingface.co/gpt2/tree/main
(or ``huggingface-cli download gpt2 config.json model.safetensors vocab.json
merges.txt --local-dir gpt2``). This demo never downloads anything; a folder
without one of the files is an error that names it.

The weights load with ``GPT.from_pretrained`` (``minillm/hf/gpt2.py``), the text is
encoded with ``BPETokenizer.from_gpt2`` (GPT-2's byte-level BPE), and the
continuation comes from ``model.generate``: temperature, top-k, top-p, and the
KV cache unless ``--no-cache``. Generation stops early at ``<|endoftext|>``.
An empty prompt starts from ``<|endoftext|>``, as GPT-2's unconditional samples do.
"""
import argparse
import os
import time

import numpy as np

from minillm import backend, cli
from minillm.models import GPT
from minillm.tokenizers import BPETokenizer

EOT = "<|endoftext|>"
FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")


def build_parser():
    p = cli.ArgumentParser(description="Generate text with a real GPT-2 checkpoint in minillm.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", required=True,
                   help="folder with config.json, model.safetensors, vocab.json, merges.txt (hub repo 'gpt2')")
    p.add_argument("--prompt", default="Hello, I'm a language model,")
    p.add_sampling_flags(max_new_tokens=50, temperature=1.0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    return p


def check_model_dir(directory):
    """Raise FileNotFoundError naming every missing file."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--model-dir {directory} is not a folder; it should hold "
                                f"{', '.join(FILES)} from the Hugging Face hub repository 'gpt2'")
    def present(name):
        if name == "model.safetensors":  # or a sharded checkpoint's index
            return any(os.path.isfile(os.path.join(directory, f)) for f in (name, name + ".index.json"))
        return os.path.isfile(os.path.join(directory, name))
    missing = [f for f in FILES if not present(f)]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}; download them from the "
                                f"Hugging Face hub repository 'gpt2' (this demo never downloads)")


def main(argv=None):
    return build_parser().run(generate, argv)


def generate(args):
    check_model_dir(args.model_dir)
    t0 = time.perf_counter()
    tok = BPETokenizer.from_gpt2(os.path.join(args.model_dir, "vocab.json"),
                                 os.path.join(args.model_dir, "merges.txt"))
    model = GPT.from_pretrained(args.model_dir, dtype=args.dtype)
    model.eval()
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}")
    cfg = model.config
    print(f"loaded {args.model_dir}: {model.num_parameters() / 1e6:.1f} M parameters, n_layer={cfg.n_layer}, "
          f"n_head={cfg.n_head}, n_embd={cfg.n_embd}, block_size={cfg.block_size}, "
          f"vocab {tok.vocab_size} ({time.perf_counter() - t0:.1f} s, backend {backend.name})")

    eot = tok.special_tokens.get(EOT)
    ids = tok.encode(args.prompt) if args.prompt else []
    if not ids:
        if eot is None:
            raise ValueError("--prompt is empty and there is no <|endoftext|> token to start from")
        ids = [eot]
    t0 = time.perf_counter()
    out = model.generate(np.array([ids]), args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                         use_cache=not args.no_cache, stop=eot)
    dt = time.perf_counter() - t0
    new = [int(i) for i in backend.to_numpy(out)[0, len(ids):]]
    if eot is not None and eot in new:
        new = new[:new.index(eot)]
    print("-" * 72)
    print(args.prompt + tok.decode(new))
    print("-" * 72)
    print(f"{len(new)} new tokens in {dt:.2f} s ({len(new) / max(dt, 1e-9):.1f} tokens/s, "
          f"{'no cache' if args.no_cache else 'KV cache'})")
    return args.prompt + tok.decode(new)


if __name__ == "__main__":
    main()
