"""Draw the three architectures' attention masks side by side (docs/img/attention_masks.png).

    python demos/attention_masks.py --out docs/img/attention_masks.png

Each panel is a (query, key) grid, dark where the query may attend to the key:
* decoder-only (GPT): causal, token i sees tokens 0 .. i;
* encoder-only (BERT): every token sees every real token; padding keys are never seen;
* encoder-decoder (T5): the source's tokens see each other (bidirectional, padding
  masked); the target's tokens see the earlier target tokens (causal) and, through
  cross-attention, every real source token. The source never sees the target.
"""
import os

import numpy as np

from minillm import cli

SOURCE, PADDING, TARGET = 6, 2, 5


def masks():
    """{title: (visibility matrix (queries, keys) of 0/1, query labels, key labels)}."""
    n = SOURCE + PADDING
    causal = np.tril(np.ones((n, n)))
    real = np.r_[np.ones(SOURCE), np.zeros(PADDING)]
    bidirectional = np.ones((n, n)) * real[None, :]
    both = np.zeros((n + TARGET, n + TARGET))
    both[:n, :n] = bidirectional                                    # encoder self-attention
    both[n:, :n] = real[None, :]                                    # cross-attention
    both[n:, n:] = np.tril(np.ones((TARGET, TARGET)))               # decoder self-attention
    src = [f"x{i}" for i in range(SOURCE)] + ["pad"] * PADDING
    tgt = [f"y{i}" for i in range(TARGET)]
    tokens = [f"t{i}" for i in range(n)]
    return {"decoder-only (GPT): causal": (causal, tokens, tokens),
            "encoder-only (BERT): bidirectional, padding masked": (bidirectional, src, src),
            "encoder-decoder (T5): encoder | cross | causal decoder": (both, src + tgt, src + tgt)}


def draw(path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(15, 5.2))
    FigureCanvasAgg(figure)
    for k, (title, (matrix, rows, cols)) in enumerate(masks().items()):
        axes = figure.add_subplot(1, 3, k + 1)
        axes.imshow(matrix, cmap="Blues", vmin=0, vmax=1.3)
        axes.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        axes.set_yticks(range(len(rows)), rows, fontsize=7)
        axes.set_xlabel("key (attended to)")
        axes.set_ylabel("query (attending)")
        axes.set_title(title, fontsize=9)
        if len(rows) > SOURCE + PADDING:
            edge = SOURCE + PADDING - 0.5
            axes.axhline(edge, color="black", linewidth=1)
            axes.axvline(edge, color="black", linewidth=1)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "img",
                                                      "attention_masks.png"))
    return parser.run(lambda args: print(f"wrote {draw(args.out)}"), argv)


if __name__ == "__main__":
    main()
