"""Sampling playground: one next-token distribution, five ways to decode it.

For a model and a prompt, take the logits of the next token and draw, as bars
over the most probable tokens, the distribution

    as it is (tau = 1), at a low temperature, at a high temperature,
    after top-k, after top-p                     (minillm.sampling.probabilities)

into one PNG (the course's running-example picture: low temperature and small
k or p sharpen the distribution, high temperature flattens it). Then print a
few continuations under each setting, to show quality against diversity.

    python demos/sampling_playground.py --ckpt out/shakespeare/ckpt.npz --prompt "ROMEO:"
    python demos/sampling_playground.py --untrained --out docs/decoding_playground.png   # random weights

Without ``--ckpt`` it uses out/shakespeare/ckpt.npz when that exists; with
``--untrained`` (or without either) the model is a small
untrained GPT on the characters of the shipped corpus, its weights drawn with
a large spread (--init-std) so that its distribution is not flat: the shapes
are real, the text is noise. A checkpoint is read with
``minillm.checkpoint.load`` and carries its tokenizer.
"""
import argparse
import math
import os
import sys

import numpy

from minillm import backend, cli, no_grad, sampling
from minillm.models import GPT, GPTConfig, decoder_from_checkpoint

DEFAULT_CKPT = os.path.join("out", "shakespeare", "ckpt.npz")


def build_parser():
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=cli.existing_file, default=None,
                   help=f"minillm checkpoint (default: {DEFAULT_CKPT} if it exists)")
    p.add_argument("--untrained", action="store_true",
                   help=f"the random-weight model even when {DEFAULT_CKPT} exists (the docs' figure)")
    p.add_argument("--prompt", default="ROMEO:\nBut soft, what light")
    p.add_argument("--out", default="sampling_playground.png", help="the PNG to write")
    p.add_argument("--low", type=cli.positive_float, default=0.5, help="the low temperature")
    p.add_argument("--high", type=cli.positive_float, default=1.5, help="the high temperature")
    p.add_argument("--top-k", type=cli.positive_int, default=5)
    p.add_argument("--top-p", type=cli.probability, default=0.9)
    p.add_argument("--bars", type=cli.positive_int, default=20, help="tokens drawn (the most probable at tau = 1)")
    p.add_argument("--samples", type=cli.non_negative_int, default=3, help="continuations per setting")
    p.add_argument("--max-new-tokens", type=cli.non_negative_int, default=60)
    p.add_argument("--seed", type=cli.non_negative_int, default=0)
    p.add_argument("--init-std", type=cli.positive_float, default=0.3, help="weight spread of the untrained model")
    return p


def load_model(args):
    """(model, tokenizer, description): from a checkpoint, or an untrained char-level GPT."""
    if args.untrained and args.ckpt:
        raise ValueError("--untrained and --ckpt exclude each other: drop one")
    path = None if args.untrained else args.ckpt or (DEFAULT_CKPT if os.path.exists(DEFAULT_CKPT) else None)
    if path is not None:
        from minillm import checkpoint
        from minillm.tokenizers import tokenizer_from_dict
        ckpt = checkpoint.load(path)
        if not ckpt.get("tokenizer"):
            raise ValueError(f"checkpoint {path} holds no tokenizer (write it with demos/train_shakespeare.py)")
        try:
            tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"checkpoint {path}: its tokenizer cannot be used: {error}") from None
        model = decoder_from_checkpoint(ckpt, where=f"checkpoint {path}")
        return model, tokenizer, f"checkpoint {path} (step {ckpt['step']})"
    from minillm.corpus import load_corpus
    from minillm.tokenizers import CharTokenizer
    tokenizer = CharTokenizer.from_text(load_corpus())
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config, seed=args.seed)
    rng = numpy.random.default_rng(args.seed)
    for p in model.parameters():
        p.data[...] = backend.asarray(rng.normal(0.0, args.init_std, p.data.shape).astype(p.data.dtype))
    return model, tokenizer, f"untrained char-level GPT, weights N(0, {args.init_std}^2) (no checkpoint)"


def settings(args):
    """(title, sampler keyword arguments) for each panel."""
    return [
        ("as it is (τ = 1)", dict(temperature=1.0)),
        (f"low temperature τ = {args.low:g}", dict(temperature=args.low)),
        (f"high temperature τ = {args.high:g}", dict(temperature=args.high)),
        (f"top-k, k = {args.top_k}", dict(temperature=1.0, top_k=args.top_k)),
        (f"top-p, p = {args.top_p:g}", dict(temperature=1.0, top_p=args.top_p)),
    ]


def label(tokenizer, token):
    text = tokenizer.decode([int(token)])
    return repr(text)[1:-1] or "∅"


def draw(path, panels, order, tokenizer, title):
    """Bar charts of each setting's probabilities over the tokens ``order``; writes ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 2.2 * len(panels) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(len(panels), 1, sharex=True)
    x = numpy.arange(len(order))
    as_is = panels[0][1][order]
    for axes, (name, probs) in zip(axes_list, panels):
        shown = probs[order]
        axes.bar(x, as_is, color="none", edgecolor="gray", linewidth=0.8, label="τ = 1, unfiltered")
        axes.bar(x, shown, width=0.6, color="tab:blue", label="this setting")
        kept = int((probs > 0).sum())
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        axes.set_title(f"{name}:  {kept} tokens kept, entropy {entropy:.2f} nats", fontsize=10, loc="left")
        axes.set_ylabel("P(next token)")
        axes.set_ylim(0, max(1e-3, float(probs.max()), float(as_is.max())) * 1.1)
    axes_list[0].legend(loc="upper right", fontsize=8)
    axes_list[-1].set_xticks(x, [label(tokenizer, t) for t in order], fontsize=9)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path)
    return path


def main(argv=None):
    return build_parser().run(playground, argv)


def playground(args):
    model, tokenizer, description = load_model(args)
    model.eval()
    try:
        prompt = tokenizer.encode(args.prompt)
    except ValueError as error:
        raise ValueError(f"--prompt: {error}") from None
    if not prompt:
        raise ValueError("--prompt must contain at least one token")
    prompt = prompt[-model.config.block_size:]
    with no_grad():
        logits = model(backend.asarray(numpy.array([prompt]))).data[0, -1]          # (V,)
    panels = []
    for name, kwargs in settings(args):
        panels.append((name, backend.to_numpy(sampling.probabilities(logits, **kwargs))))
    order = numpy.argsort(-panels[0][1], kind="stable")[:args.bars]
    title = f"next token after {args.prompt[-40:]!r} — {description}"
    print(f"model: {description}; backend {backend.name}")
    print(f"wrote {draw(args.out, panels, order, tokenizer, title)}\n")

    for (name, kwargs), (_, probs) in zip(settings(args), panels):
        top = ", ".join(f"{label(tokenizer, t)!s}:{probs[t]:.2f}" for t in numpy.argsort(-probs, kind="stable")[:5])
        print(f"== {name}   most probable: {top}")
        for i in range(args.samples):
            out = model.generate([prompt], args.max_new_tokens, seed=args.seed + i, **kwargs)
            text = tokenizer.decode(backend.to_numpy(out)[0, len(prompt):].tolist())
            print(f"   [{i}] {text!r}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
