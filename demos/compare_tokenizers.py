"""Char-level versus BPE GPT: the same model size, the same training time, compared by bits per character.

    python demos/compare_tokenizers.py --seconds 60                         # CPU, a quick look
    MINILLM_BACKEND=cupy python demos/compare_tokenizers.py --seconds 120   # GPU

Perplexity is not comparable across tokenizers (a BPE token carries ~2.5
characters, a char token one), bits per character is (docs/tokenization.md).
This script splits the shipped corpus by characters (first 90 % train, last
10 % validation), trains a BPE tokenizer on the training text only, and trains
two GPTs of the same shape (``--n-layer``, ``--n-head``, ``--n-embd``,
``--block-size`` in tokens; only the vocabulary differs) for the same wall-clock
time each, with AdamW, gradient clipping and a warmup + cosine learning rate
laid over the time budget. Each is then scored on the first ``--eval-chars``
characters of the validation text with ``minillm.evaluate.evaluate_lm``:
nats and perplexity per token, and bits per character (total nats / ln 2 /
characters spelled by the scored targets).
"""
import argparse
import time

import numpy as np

from minillm import backend, cli
from minillm import functional as F
from minillm.evaluate import evaluate_lm
from minillm.models import GPT, GPTConfig
from minillm.optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_weight_decay, set_lr
from minillm.progress import format_duration
from minillm.batches import get_batch
from minillm.corpus import load_corpus
from minillm.tokenizers import BPETokenizer, CharTokenizer


def build_parser():
    p = cli.ArgumentParser(description=__doc__.split("\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seconds", type=cli.positive_float, default=60.0, help="training time for each model")
    p.add_argument("--vocab-size", type=cli.positive_int, default=512, help="BPE vocabulary size")
    p.add_argument("--block-size", type=cli.positive_int, default=128,
                   help="context length in tokens (both models)")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--n-layer", type=cli.positive_int, default=4)
    p.add_argument("--n-head", type=cli.positive_int, default=4)
    p.add_argument("--n-embd", type=cli.positive_int, default=128)
    p.add_argument("--lr", type=cli.positive_float, default=2e-3)
    p.add_argument("--min-lr", type=cli.non_negative_float, default=2e-4)
    p.add_argument("--eval-chars", type=cli.positive_int, default=100_000, help="validation characters to score")
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    return p


def train_for(model, train_ids, args, name):
    """Train until ``args.seconds`` have passed; returns the number of steps. A line each tenth of the time."""
    opt = AdamW(param_groups_for_weight_decay(model, 0.1), lr=args.lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(args.seed)
    start, step, shown = time.perf_counter(), 0, 0
    while True:
        elapsed = time.perf_counter() - start
        frac = elapsed / args.seconds
        if step and int(10 * frac) > shown:
            shown = int(10 * frac)
            print(f"  {name}: {min(elapsed, args.seconds):.0f} s of {args.seconds:.0f} s, step {step}, "
                  f"loss {float(loss.data):.3f}, ETA {format_duration(args.seconds - elapsed)}", flush=True)
        if frac >= 1.0:
            return step
        set_lr(opt, cosine_lr(int(1000 * frac), args.lr, args.min_lr, 50, 1000))  # schedule over time
        x, y = get_batch(train_ids, args.batch_size, args.block_size, rng)
        loss = F.cross_entropy(model(backend.asarray(x)), backend.asarray(y))  # (B, T, V) vs (B, T)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        step += 1


def run(name, tokenizer, train_text, val_text, args):
    train_ids = np.array(tokenizer.encode(train_text), dtype=np.int64)
    val_ids = np.array(tokenizer.encode(val_text), dtype=np.int64)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    model = GPT(config, seed=args.seed)
    steps = train_for(model, train_ids, args, name)
    model.eval()
    print(f"  {name}: scoring {len(val_ids):,} validation tokens ...", flush=True)
    n_chars = len(tokenizer.decode(val_ids[1:].tolist()))  # characters the scored targets spell
    r = evaluate_lm(model, val_ids, n_chars=n_chars, batch_size=32)
    tokens_seen = steps * args.batch_size * args.block_size
    row = (f"{name:<5} vocab {tokenizer.vocab_size:>4}  params {model.num_parameters() / 1e6:5.2f} M  "
           f"steps {steps:>5}  train chars seen {tokens_seen * len(train_text) / len(train_ids) / 1e6:6.1f} M  "
           f"val nats/token {r['nats']:.3f}  ppl/token {r['perplexity']:7.2f}  "
           f"chars/token {n_chars / r['tokens']:.2f}  bits/char {r['bits_per_char']:.3f}")
    print(row, flush=True)
    return r


def main(argv=None):
    return build_parser().run(compare, argv)


def compare(args):
    text = load_corpus()
    cut = int(len(text) * 0.9)
    train_text, val_text = text[:cut], text[cut:cut + args.eval_chars]
    print(f"backend {backend.name}; {args.seconds:.0f} s of training each; model {args.n_layer}x{args.n_embd}, "
          f"{args.n_head} heads, context {args.block_size} tokens, batch {args.batch_size}", flush=True)
    t = time.perf_counter()
    print(f"training a BPE tokenizer with {args.vocab_size} ids on {len(train_text):,} characters ...", flush=True)
    bpe = BPETokenizer.train(train_text, args.vocab_size)
    print(f"BPE with {bpe.vocab_size} ids trained on the training text in {time.perf_counter() - t:.1f} s")
    char = CharTokenizer.from_text(text)
    run("char", char, train_text, val_text, args)
    run("bpe", bpe, train_text, val_text, args)


if __name__ == "__main__":
    main()
