"""Scaling laws on a laptop: loss falls as a power law in parameters N and in data D.

Two sweeps of small character-level GPTs on the shipped Shakespeare corpus:

* **L(N)**: models of growing width (n_embd 16 ... 96, 2 layers), each trained
  for the same number of iterations on the same batches; the loss is the
  validation cross-entropy at the end (every validation token scored once,
  ``minillm.evaluate``).
* **L(D)**: one model trained on D characters of the training split
  (D = 2k ... 64k), with early stopping: the loss is the best validation
  cross-entropy seen during training (small D overfits, so we keep the best).
  The D characters are chunks of 1024 spread evenly over all the plays, not
  the first D characters: those would all be Hamlet, whose speaker names
  ("Ber.", "Fran.") differ from the validation play's ("PROSPERO."), and the
  sweep would measure that shift instead of the amount of data.

Each sweep is fitted with L(x) = (x_c / x)^alpha on log-log axes
(``minillm.scaling.fit_power_law``), and the exponents are printed with their
standard errors; the points and the fitted lines go to a PNG. N counts the
non-embedding parameters, as Kaplan et al. (2020) do.

    python demos/scaling_laws.py                 # ~15 minutes on a 2-core CPU
    python demos/scaling_laws.py --quick         # ~1 minute: proves it runs
    MINILLM_BACKEND=cupy python demos/scaling_laws.py --preset gpu   # larger, on a GPU

Any preset value can be overridden: --sizes 32,64,128 --n-layer 4 --iters 3000
--data-sizes 16384,65536,262144 --data-n-embd 128 ... (see --help).

What to expect: tiny models trained briefly are far from the regime of the
papers (billions of tokens, loss near convergence), so the exponents are not
Kaplan's (alpha_N ~ 0.076, alpha_D ~ 0.095, for tokens of BPE text); the
straight lines on log-log axes are the point.
"""
import argparse
import json
import os
import sys
import time

import numpy

from minillm import backend, cli, scaling
from minillm.evaluate import evaluate_lm
from minillm.models import GPT, GPTConfig
from minillm.progress import Progress, format_duration
from minillm.batches import split_ids
from minillm.corpus import load_corpus
from minillm.tokenizers import CharTokenizer
from minillm.train import Trainer, TrainConfig, TrainingDiverged

PRESETS = {
    # the default: about 15 minutes on a 2-core CPU
    "cpu": dict(sizes=(16, 24, 32, 48, 64, 96), n_layer=2, head_dim=8, block_size=64, batch_size=16,
                iters=1500, lr=4e-3, data_sizes=(2048, 4096, 8192, 16384, 32768, 65536),
                data_n_embd=48, data_iters=800, eval_every=50, eval_tokens=8192),
    # a smoke test: tiny everything
    "quick": dict(sizes=(8, 16, 24, 32, 48), n_layer=1, head_dim=8, block_size=32, batch_size=8,
                  iters=100, lr=5e-3, data_sizes=(2048, 4096, 8192, 16384),
                  data_n_embd=16, data_iters=100, eval_every=25, eval_tokens=1024),
    # on a GPU (MINILLM_BACKEND=cupy): wider, deeper, longer
    "gpu": dict(sizes=(64, 96, 128, 192, 256, 384), n_layer=4, head_dim=32, block_size=128,
                batch_size=64, iters=3000, lr=1e-3,
                data_sizes=(16384, 32768, 65536, 131072, 262144, 524288, 933000),
                data_n_embd=256, data_iters=3000, eval_every=250, eval_tokens=65536),
}


def int_list(text):
    return tuple(cli.positive_int_list(text))


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="a set of defaults: cpu (~15 min, 2 cores), quick (~1 min), gpu")
    parser.add_argument("--quick", action="store_true", help="the same as --preset quick")
    parser.add_argument("--data", type=cli.existing_file, default=None,
                        help="a UTF-8 text file (default: the shipped corpus)")
    parser.add_argument("--out", default="out/scaling_laws.png",
                        help="the PNG to write (a .json with every number goes beside it)")
    parser.add_argument("--sizes", type=int_list, help="model widths n_embd, comma-separated")
    parser.add_argument("--n-layer", type=cli.positive_int)
    parser.add_argument("--head-dim", type=cli.positive_int, help="n_head = n_embd / head_dim")
    parser.add_argument("--block-size", type=cli.positive_int)
    parser.add_argument("--batch-size", type=cli.positive_int)
    parser.add_argument("--iters", type=cli.positive_int, help="iterations of each model in the L(N) sweep")
    parser.add_argument("--lr", type=cli.positive_float, help="peak learning rate, the same for every size "
                        "(cosine decay to lr/10)")
    parser.add_argument("--data-sizes", type=int_list, help="training characters D, comma-separated")
    parser.add_argument("--data-n-embd", type=cli.positive_int, help="the width of the L(D) sweep's model")
    parser.add_argument("--data-iters", type=cli.positive_int, help="iterations of each run in the L(D) sweep")
    parser.add_argument("--eval-every", type=cli.positive_int,
                        help="L(D) sweep: validate every this many iterations")
    parser.add_argument("--eval-tokens", type=cli.positive_int, help="validation tokens scored for each loss")
    parser.add_argument("--sweep", choices=("both", "N", "D"), default="both",
                        help="run both sweeps (default), only L(N) or only L(D)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    args = parser.parse_args(argv)
    preset = PRESETS["quick" if args.quick else args.preset]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("sizes", "data_sizes"):
        if len(getattr(args, name)) < 3:
            parser.error(f"--{name.replace('_', '-')} needs at least 3 values for a fit with an uncertainty")
    for width in args.sizes + (args.data_n_embd,):
        if width % args.head_dim:
            parser.error(f"n_embd {width} is not divisible by --head-dim {args.head_dim}")
    return args


def spread_sample(ids, n_tokens, chunk=1024):
    """``n_tokens`` ids taken as chunks of ``chunk`` at evenly spaced places of ``ids`` (deterministic)."""
    if n_tokens >= len(ids):
        return ids
    chunk = min(chunk, n_tokens)
    starts = numpy.linspace(0, len(ids) - chunk, n_tokens // chunk).astype(numpy.int64)   # (k,)
    return numpy.concatenate([ids[s:s + chunk] for s in starts])


def train_and_evaluate(args, n_embd, train_ids, val_ids, vocab_size, iters, label, eval_every=None):
    """Train one model; return its final and best validation loss (nats per char) and timings."""
    config = GPTConfig(vocab_size=vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=n_embd // args.head_dim, n_embd=n_embd)
    model = GPT(config, seed=args.seed)
    train_config = TrainConfig(iters=iters, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                               warmup_iters=min(50, iters // 10), eval_every=iters, seed=args.seed,
                               checkpoint_every=0)
    trainer = Trainer(model, train_ids, val_ids, train_config, stream=sys.stdout)
    progress = Progress(iters, every=max(1, iters // 4))
    progress.message(f"{label}: n_embd {n_embd}, {scaling.non_embedding_parameter_count(config):,} "
                     f"non-embedding parameters, {len(train_ids):,} training tokens")
    val_losses, start = [], time.perf_counter()
    for step in range(1, iters + 1):
        begin = time.perf_counter()
        try:
            loss, lr = trainer.train_step()
        except TrainingDiverged as error:          # one bad run should not sink the sweep
            progress.close()
            print(f"{label}: {error}\n  This point is left out of the fit.")
            return None
        backend.synchronize()
        progress.update(step, loss, lr, time.perf_counter() - begin)
        if step == iters or (eval_every and step % eval_every == 0):
            val_losses.append(evaluate_lm(model, val_ids, stride=args.block_size)["nats"])
    progress.close()
    seconds = time.perf_counter() - start
    tokens = iters * args.batch_size * args.block_size
    return {"n_embd": n_embd, "params": scaling.parameter_count(config),
            "non_embedding_params": scaling.non_embedding_parameter_count(config),
            "train_chars": int(len(train_ids)), "tokens_seen": tokens,
            "flops": scaling.training_flops(scaling.parameter_count(config), tokens),
            "final_val": val_losses[-1], "best_val": min(val_losses), "seconds": seconds}


def print_table(title, rows, x_key, loss_key):
    print(f"\n{title}")
    print(f"{x_key:>22} | {'params':>9} | {'tokens seen':>11} | {'6ND FLOPs':>9} | {'val loss':>8} | {'time':>6}")
    for r in rows:
        print(f"{r[x_key]:>22,} | {r['params']:>9,} | {r['tokens_seen']:>11,} | {r['flops']:>9.2e} | "
              f"{r[loss_key]:>8.4f} | {format_duration(r['seconds']):>6}")


def fit_and_report(name, xlabel, rows, x_key, loss_key, fits):
    """Fit L = (x_c / x)^alpha to the rows, print it, add it to ``fits``; None with < 3 rows."""
    if len(rows) < 3:
        print(f"L({name}): only {len(rows)} runs finished, too few for a fit with an uncertainty")
        return None
    x, loss = [r[x_key] for r in rows], [r[loss_key] for r in rows]
    fit = scaling.fit_power_law(x, loss)
    print(f"L({name}) = ({name}_c / {name})^alpha_{name}: alpha_{name} = {fit.alpha:.4f} ± {fit.alpha_stderr:.4f}, "
          f"{name}_c = {fit.x_c:.3g} (log {name}_c = {fit.log_x_c:.2f} ± {fit.log_x_c_stderr:.2f}), "
          f"R² = {fit.r_squared:.3f}")
    fits.append((xlabel, x, loss, fit))
    return fit


def plot(path, fits):
    """Log-log panels: measured losses (points) and fitted power laws (lines)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global state
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    figure = Figure(figsize=(5.5 * len(fits), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    for i, (xlabel, x, loss, fit) in enumerate(fits):
        axes = figure.add_subplot(1, len(fits), i + 1)
        axes.loglog(x, loss, "o", color="tab:blue", label="measured (validation)")
        grid = numpy.geomspace(min(x) / 1.3, max(x) * 1.3, 50)
        axes.loglog(grid, fit.predict(grid), "-", color="tab:red",
                    label=f"fit: alpha = {fit.alpha:.3f} ± {fit.alpha_stderr:.3f}")
        for formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
            formatter(FormatStrFormatter("%.2f"))      # losses span less than a decade
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel(xlabel)
        axes.set_ylabel("validation cross-entropy (nats per char)")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def main(argv=None):
    args = parse_args(argv)
    wall = time.perf_counter()
    text = load_corpus(args.data)
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_ids(tokenizer.encode(text))
    val_ids = val_ids[:args.eval_tokens + 1]                # every one scored once, each loss
    print(f"backend {backend.name}; corpus {len(text):,} chars, vocabulary {tokenizer.vocab_size}; "
          f"validation on {len(val_ids) - 1:,} chars")

    fits, results = [], {"args": vars(args)}
    if args.sweep in ("both", "N"):
        rows = [train_and_evaluate(args, width, train_ids, val_ids, tokenizer.vocab_size, args.iters,
                                   f"L(N) model {i + 1}/{len(args.sizes)}")
                for i, width in enumerate(args.sizes)]
        rows = [row for row in rows if row is not None]
        print_table("L(N): fixed data and iterations, growing width", rows, "non_embedding_params", "final_val")
        fit = fit_and_report("N", "non-embedding parameters N", rows, "non_embedding_params", "final_val", fits)
        results.update(model_sweep=rows, fit_N=fit and fit.__dict__)

    if args.sweep in ("both", "D"):
        sizes = [d for d in args.data_sizes if d <= len(train_ids)]
        rows = [train_and_evaluate(args, args.data_n_embd, spread_sample(train_ids, d), val_ids,
                                   tokenizer.vocab_size, args.data_iters, f"L(D) run {i + 1}/{len(sizes)}",
                                   args.eval_every)
                for i, d in enumerate(sizes)]
        rows = [row for row in rows if row is not None]
        print_table(f"L(D): n_embd {args.data_n_embd}, growing training text, early stopping",
                    rows, "train_chars", "best_val")
        fit = fit_and_report("D", "training characters D", rows, "train_chars", "best_val", fits)
        results.update(data_sweep=rows, fit_D=fit and fit.__dict__)

    if fits:
        plot(args.out, fits)
    results["seconds"] = time.perf_counter() - wall
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    if args.quick or args.preset == "quick":
        print("\n--quick: far too little training for these exponents to mean anything; "
              "it only proves that the pipeline runs. Run without --quick for the real sweep.")
    print(f"\nwrote {args.out if fits else 'no figure'} and {os.path.splitext(args.out)[0]}.json "
          f"in {format_duration(results['seconds'])}")
    return results


if __name__ == "__main__":
    main()
