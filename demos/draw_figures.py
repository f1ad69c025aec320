"""Draw the explanatory figures of docs/ (matplotlib, no display needed).

    python demos/draw_figures.py                       # all of them, into docs/img
    python demos/draw_figures.py --only lr_schedule --out /tmp/figs

Every curve is computed by minillm itself (``optim.cosine_lr``,
``evaluate.window_plan``, ``data.MinHashLSH.choose_bands``), so a figure
follows the code when the code changes; the two diagrams (the transformer
block, the LoRA layer) are boxes and arrows that name the code's parameters.

    transformer_block.png    a GPT-2 block: pre-LayerNorm, attention, GELU MLP, residuals
    lr_schedule.png          warm-up + cosine decay of demos/train_shakespeare.py's defaults
    lora_block.png           h = x W + (x A B) alpha / r, W frozen
    kv_cache.png             prefill (a causal square) and one step (one row over the cache)
    lsh_s_curve.png          P(candidate) = 1 - (1 - J^r)^b for a few (b, r)
    perplexity_windows.png   which targets each sliding window scores
"""
import argparse
import os

from matplotlib.patches import Circle, FancyBboxPatch, Rectangle

from minillm import cli
from minillm.data import MinHashLSH
from minillm.evaluate import window_plan
from minillm.optim import cosine_lr


def new_figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global state
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def box(ax, x, y, text, width=2.6, height=0.55, color="#dbe9f6"):
    """A rounded box centred at (x, y)."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=color, edgecolor="black", linewidth=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def arrow(ax, start, end, text=None):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", linewidth=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, fontsize=8, va="center")


def plus(ax, x, y):
    ax.add_patch(Circle((x, y), 0.2, facecolor="white", edgecolor="black"))
    ax.text(x, y, "+", ha="center", va="center", fontsize=12)


def transformer_block(path):
    """x + attn(ln_1(x)), then + mlp(ln_2(.)); the names are GPT-2's parameter names."""
    figure = new_figure(5.2, 7.4)
    ax = figure.add_subplot()
    ax.set_xlim(0, 8)
    ax.set_ylim(-0.3, 11.2)
    ax.axis("off")
    box(ax, 3, 0.2, "ids (B, T)  →  wte[ids] + wpe[0..T−1]", width=4.6, color="#eeeeee")
    arrow(ax, (3, 0.5), (3, 1.2), "x (B, T, C)")
    ax.add_patch(Rectangle((0.5, 1.35), 6.9, 7.5, fill=False, linestyle="--"))
    ax.text(7.3, 8.6, "× n_layer\nh.{i}", ha="right", va="top", fontsize=9)
    box(ax, 3, 2.1, "ln_1: LayerNorm")
    box(ax, 3, 3.2, "attn: c_attn → q, k, v (C → 3C)\ncausal softmax(qkᵀ/√head_dim) v\nc_proj (C → C)",
        width=4.4, height=1.0, color="#f9e0c7")
    plus(ax, 3, 4.3)
    box(ax, 3, 5.3, "ln_2: LayerNorm")
    box(ax, 3, 6.6, "mlp: c_fc (C → 4C)\nGELU (tanh form)\nc_proj (4C → C)", width=3.6, height=1.0,
        color="#d8efd2")
    plus(ax, 3, 7.7)
    for (a, b) in [((3, 1.2), (3, 1.8)), ((3, 2.4), (3, 2.7)), ((3, 3.7), (3, 4.1)), ((3, 4.5), (3, 5.0)),
                   ((3, 5.6), (3, 6.1)), ((3, 7.1), (3, 7.5)), ((3, 7.9), (3, 9.2))]:
        arrow(ax, a, b)
    ax.plot([3, 6.4, 6.4, 3.2], [1.5, 1.5, 4.3, 4.3], color="black", linewidth=1)    # residual 1
    ax.plot([3, 6.4, 6.4, 3.2], [4.75, 4.75, 7.7, 7.7], color="black", linewidth=1)  # residual 2
    ax.text(6.5, 2.9, "residual", rotation=90, fontsize=8, va="center")
    ax.text(6.5, 6.2, "residual", rotation=90, fontsize=8, va="center")
    box(ax, 3, 9.5, "ln_f: LayerNorm")
    arrow(ax, (3, 9.8), (3, 10.3))
    box(ax, 3, 10.6, "lm_head = x wteᵀ (tied)  →  logits (B, T, V)", width=4.6, color="#eeeeee")
    figure.savefig(path, bbox_inches="tight")


def lr_schedule(path, lr=1e-3, min_lr=1e-4, warmup=100, iters=2000):
    steps = list(range(iters + 1))
    figure = new_figure(6, 3.2)
    ax = figure.add_subplot()
    ax.plot(steps, [cosine_lr(s, lr, min_lr, warmup, iters) for s in steps])
    ax.axvline(warmup, color="grey", linestyle=":")
    ax.text(warmup + 20, lr * 0.5, f"end of warm-up\n(step {warmup})", fontsize=8)
    ax.set(xlabel="iteration", ylabel="learning rate",
           title=f"optim.cosine_lr: warm-up to {lr:g}, cosine decay to {min_lr:g}")
    figure.savefig(path, bbox_inches="tight")


def lora_block(path):
    figure = new_figure(6.4, 3.4)
    ax = figure.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5)
    ax.axis("off")
    box(ax, 1, 2.5, "x\n(…, N)", width=1.2, height=0.9, color="#eeeeee")
    box(ax, 4.2, 3.8, "W  (N × d)\nfrozen", width=2.4, height=0.9, color="#dddddd")
    box(ax, 3.3, 1.2, "A  (N × r)\nN(0, 1/N)", width=1.9, height=0.9, color="#f9e0c7")
    box(ax, 5.6, 1.2, "B  (r × d)\nstarts at 0", width=1.9, height=0.9, color="#f9e0c7")
    plus(ax, 7.6, 2.5)
    box(ax, 9.2, 2.5, "h\n(…, d)", width=1.2, height=0.9, color="#eeeeee")
    arrow(ax, (1.6, 2.7), (3.0, 3.7))
    arrow(ax, (1.6, 2.3), (2.35, 1.4))
    arrow(ax, (4.25, 1.2), (4.65, 1.2), "")
    arrow(ax, (5.4, 3.8), (7.5, 2.7), "x W + b")
    arrow(ax, (6.55, 1.2), (7.5, 2.3), "· α / r")
    arrow(ax, (7.8, 2.5), (8.6, 2.5))
    ax.text(4.45, 0.35, "trainable: r (N + d) numbers instead of N d", ha="center", fontsize=8)
    figure.savefig(path, bbox_inches="tight")


def kv_cache(path, prompt=5, steps=3):
    """Query x key grids: the prefill fills a causal square, each step adds one row over the cache."""
    import numpy
    figure = new_figure(8, 3.4)
    total = prompt + steps
    for i, (title, rows) in enumerate([(f"prefill: {prompt} prompt tokens at once", range(prompt)),
                                       (f"step: 1 new token, {prompt} cached", range(prompt, prompt + 1))]):
        ax = figure.add_subplot(1, 2, i + 1)
        grid = numpy.full((total, total), numpy.nan)
        for q in rows:
            grid[q, :q + 1] = 1.0                      # query q sees keys 0 .. q
        if i == 1:
            grid[:prompt, :prompt] = numpy.where(numpy.tri(prompt) > 0, 0.35, numpy.nan)   # done earlier
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=1.2)
        ax.set(title=title, xlabel="key position (K, V kept in the cache)", ylabel="query position")
        ax.set_xticks(range(total))
        ax.set_yticks(range(total))
        ax.title.set_fontsize(9)
        if i == 1:
            ax.add_patch(Rectangle((-0.5, prompt - 0.5), prompt, 1, fill=False, edgecolor="red", linewidth=2))
            ax.text(total - 0.6, prompt + 1.4, "red: read from the cache", color="red", fontsize=8, ha="right")
    figure.savefig(path, bbox_inches="tight")


def lsh_s_curve(path, n=128, threshold=0.8):
    jaccard = [j / 200 for j in range(201)]
    figure = new_figure(6, 3.6)
    ax = figure.add_subplot()
    chosen = MinHashLSH.choose_bands(threshold, n)
    for bands in sorted({chosen, 8, 64, 128}):
        rows = n // bands
        label = f"b = {bands}, r = {rows}" + ("  (choose_bands(0.8, 128))" if bands == chosen else "")
        ax.plot(jaccard, [1 - (1 - j ** rows) ** bands for j in jaccard], label=label,
                linewidth=2.5 if bands == chosen else 1.2)
    ax.axvline(threshold, color="grey", linestyle=":")
    ax.set(xlabel="Jaccard similarity J of two documents", ylabel="P(they become candidates)",
           title=f"LSH banding of {n} minhashes: 1 − (1 − J^r)^b")
    ax.legend(fontsize=8)
    figure.savefig(path, bbox_inches="tight")


def perplexity_windows(path, n_ids=20, block_size=8):
    figure = new_figure(7, 4.2)
    for i, stride in enumerate([block_size, block_size // 2]):
        ax = figure.add_subplot(2, 1, i + 1)
        plan = window_plan(n_ids, block_size, stride)
        for k, (start, first) in enumerate(plan):
            end = min(start + block_size, n_ids - 1)              # the last token has no target
            ax.barh(k, end - start, left=start, color="#dddddd", edgecolor="black", height=0.6)
            ax.barh(k, end - start - first, left=start + first + 1, color="#4a90d9", height=0.35)
        ax.set_xlim(0, n_ids)
        ax.set_ylim(len(plan) - 0.5, -0.5)
        ax.set_xticks(range(n_ids + 1))
        ax.set_yticks(range(len(plan)))
        ax.set_ylabel("window")
        ax.set_title(f"stride {stride} (block_size {block_size}): grey = inputs fed, blue = targets scored",
                     fontsize=9)
    ax.set_xlabel("token position (a blue cell at j scores target ids[j])")
    figure.tight_layout()
    figure.savefig(path)


FIGURES = {"transformer_block": transformer_block, "lr_schedule": lr_schedule, "lora_block": lora_block,
           "kv_cache": kv_cache, "lsh_s_curve": lsh_s_curve, "perplexity_windows": perplexity_windows}


def build_parser():
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=os.path.join("docs", "img"), help="the folder to write the PNGs into")
    p.add_argument("--only", choices=sorted(FIGURES), action="append", help="draw only this one (repeatable)")
    return p


def draw(args):
    os.makedirs(args.out, exist_ok=True)
    for name in args.only or FIGURES:
        path = os.path.join(args.out, f"{name}.png")
        FIGURES[name](path)
        print(f"wrote {path}")


def main(argv=None):
    return build_parser().run(draw, argv)


if __name__ == "__main__":
    main()
