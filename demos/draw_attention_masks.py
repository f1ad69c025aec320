"""Draw the decoder's causal mask next to the encoder's padding mask (docs/img/encoder_masks.png).

    python demos/draw_attention_masks.py --out docs/img/encoder_masks.png

Row i is a query (the token being computed), column j a key (a token it may
read); a filled cell means "may attend". The masks are the ones minillm's
attention op applies: ``causal=True`` for GPT, ``key_mask`` (the
attention_mask) for BERT.
"""
import os

import numpy

from minillm import cli

TOKENS = ["[CLS]", "to", "be", "or", "not", "to", "[MASK]", "[SEP]", "[PAD]", "[PAD]"]


def masks(n_tokens, n_real):
    """(causal (T, T), bidirectional with padding (T, T)) as 0/1 arrays."""
    causal = numpy.tril(numpy.ones((n_tokens, n_tokens)))
    padding = numpy.zeros((n_tokens, n_tokens))
    padding[:, :n_real] = 1                                   # every query reads every real key
    return causal, padding


def draw(path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    causal, padding = masks(len(TOKENS), TOKENS.index("[PAD]"))
    figure = Figure(figsize=(10, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    titles = ("decoder (GPT): causal mask\nquery i reads keys 0 .. i",
              "encoder (BERT): bidirectional + padding mask\nevery query reads every real key")
    for k, (mask, title) in enumerate(zip((causal, padding), titles)):
        axes = figure.add_subplot(1, 2, k + 1)
        axes.imshow(mask, cmap="Blues", vmin=0, vmax=1.3)
        labels = TOKENS if k else [w for w in "The king is dead , long live the king .".split()]
        axes.set_xticks(range(len(labels)), labels, rotation=60, fontsize=8)
        axes.set_yticks(range(len(labels)), labels, fontsize=8)
        axes.set_xlabel("key (read)")
        axes.set_ylabel("query (computed)")
        axes.set_title(title, fontsize=10)
        axes.set_xticks(numpy.arange(-0.5, len(labels)), minor=True)
        axes.set_yticks(numpy.arange(-0.5, len(labels)), minor=True)
        axes.grid(which="minor", color="white", linewidth=1)
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    p = cli.ArgumentParser(description="Draw the causal and the padding attention masks side by side.")
    p.add_argument("--out", default=os.path.join("docs", "img", "encoder_masks.png"))
    p.run(write, argv)


def write(args):
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    draw(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
