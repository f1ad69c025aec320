"""n-gram language models of order 1 ... 6 against a trained GPT, on the same held-out text.

    python demos/ngram_vs_gpt.py                                  # trains a small GPT first (~1 min)
    python demos/ngram_vs_gpt.py --ckpt out/shakespeare/ckpt.npz --max-order 8 --eval-chars 50000

The n-grams count the GPT's own training ids (same tokenizer, same 90 % split)
and are scored by ``minillm.evaluate`` with the GPT's windows (block_size and
stride), so every row of the table is the same measurement: perplexity per
token and bits per character of the first ``--eval-chars`` characters of the
validation text. Kneser-Ney and add-k (``--k``, 1 = Laplace) are both shown.
Writes ``--out/ngram_vs_gpt.png`` (perplexity against n, the GPT as a line)
and ``--out/samples.txt`` (a sample from each model, as in the lecture's first
sampling slide: random draws from the model's distribution).
"""
import argparse
import os
import sys
import time

from small_gpt import add_model_flags, load_or_train

from minillm import backend, cli
from minillm.evaluate import evaluate_lm
from minillm.ngram import NGramLM


def build_parser():
    p = cli.ArgumentParser(description="n-gram language models against a GPT, same text, same windows.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_flags(p)
    p.add_argument("--out", default=os.path.join("out", "ngram_vs_gpt"), help="folder for the PNG and samples")
    p.add_argument("--max-order", type=cli.positive_int, default=6, help="n-grams of order 1 ... this")
    p.add_argument("--eval-chars", type=cli.positive_int, default=20000, help="held-out tokens scored (from the validation split)")
    p.add_argument("--k", type=cli.positive_float, default=1.0, help="add-k's k (1: Laplace)")
    p.add_argument("--discount", type=cli.probability, default=0.75, help="Kneser-Ney's absolute discount d")
    p.add_argument("--sample-tokens", type=cli.non_negative_int, default=200, help="length of each model's sample")
    return p


def plot(rows, gpt_row, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    orders = [r["order"] for r in rows]
    axes.plot(orders, [r["kn"]["perplexity"] for r in rows], "o-", label="n-gram, Kneser-Ney")
    axes.plot(orders, [r["add_k"]["perplexity"] for r in rows], "s--", label=f"n-gram, add-k (k={rows[0]['k']:g})")
    axes.axhline(gpt_row["perplexity"], color="tab:red", label=f"GPT ({gpt_row['bits_per_char']:.3f} bits/char)")
    axes.set_yscale("log")
    axes.set_xlabel("n (the model sees the last n - 1 tokens)")
    axes.set_ylabel("held-out perplexity per token (log scale)")
    axes.set_title("n-gram language models against a GPT, same text and windows")
    axes.grid(True, alpha=0.3, which="both")
    axes.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def write_samples(gpt, kn, args):
    """A random sample of each n-gram and of the GPT, all from the prompt "\\n" and the same seed."""
    tok = gpt.tokenizer
    prompt = tok.encode("\n")
    samples = []
    for n in range(1, args.max_order + 1):
        text = tok.decode(kn.with_order(n).generate(prompt, args.sample_tokens, seed=args.seed))
        samples.append(f"--- {n}-gram (Kneser-Ney) ---{text}")
    out = gpt.model.generate([prompt], args.sample_tokens, seed=args.seed)
    samples.append(f"--- GPT ---{tok.decode(backend.to_numpy(out)[0].tolist())}")
    with open(os.path.join(args.out, "samples.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(samples) + "\n")
    print("\n" + "\n\n".join(samples))


def main(argv=None):
    parser = build_parser()
    return parser.run(lambda args: compare(args, parser), argv)


def compare(args, parser):
    gpt = load_or_train(args, parser)
    tok, cfg = gpt.tokenizer, gpt.model.config
    ids = gpt.val_ids[:args.eval_chars + 1]
    n_chars = len(tok.decode(ids[1:].tolist()))
    print(f"GPT: {gpt.source}; scoring {ids.size - 1:,} held-out tokens ({n_chars:,} characters) "
          f"in windows of {cfg.block_size}", flush=True)
    start = time.perf_counter()
    gpt_row = evaluate_lm(gpt.model, ids, n_chars=n_chars)
    gpt_seconds = time.perf_counter() - start

    start = time.perf_counter()
    options = dict(block_size=cfg.block_size)
    kn = NGramLM.fit(gpt.train_ids, args.max_order, cfg.vocab_size, discount=args.discount, **options)
    add_k = NGramLM.fit(gpt.train_ids, args.max_order, cfg.vocab_size, smoothing="add_k", k=args.k, **options)
    print(f"counted every n-gram up to n = {args.max_order} in {time.perf_counter() - start:.1f} s: "
          f"{kn.num_ngrams()}", flush=True)
    rows = []
    for n in range(1, args.max_order + 1):
        start = time.perf_counter()
        rows.append({"order": n, "k": args.k, "kn": evaluate_lm(kn.with_order(n), ids, n_chars=n_chars),
                     "add_k": evaluate_lm(add_k.with_order(n), ids, n_chars=n_chars),
                     "seconds": time.perf_counter() - start})
        print(f"  scored n = {n} ({rows[-1]['seconds']:.1f} s)", flush=True)

    print(f"\n| model | perplexity (KN) | bits/char (KN) | perplexity (add-{args.k:g}) | bits/char (add-{args.k:g}) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['order']}-gram | {r['kn']['perplexity']:.3f} | {r['kn']['bits_per_char']:.3f} | "
              f"{r['add_k']['perplexity']:.3f} | {r['add_k']['bits_per_char']:.3f} |")
    print(f"| GPT ({gpt.model.num_parameters():,} parameters, scored in {gpt_seconds:.1f} s) | "
          f"{gpt_row['perplexity']:.3f} | {gpt_row['bits_per_char']:.3f} | — | — |")
    png = plot(rows, gpt_row, os.path.join(args.out, "ngram_vs_gpt.png"))

    if args.sample_tokens:
        write_samples(gpt, kn, args)
    print(f"\nwrote {png}" + (f" and {os.path.join(args.out, 'samples.txt')}" if args.sample_tokens else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
