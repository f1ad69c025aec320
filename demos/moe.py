"""Dense vs sparse: a Llama and Mixtral-style mixtures of experts, trained for equal time on Shakespeare.

    python demos/moe.py                                  # 4 runs x 60 s: about 5 minutes on 2 cores
    python demos/moe.py --seconds 15 --n-layer 2         # a quick look

Four runs on the same characters, each for ``--seconds`` of training:

    dense        Llama: one SwiGLU of width H per layer
    moe-active   Mixtral: E experts of width H/k, k per token: the SAME ACTIVE parameters per token
                 (and FLOPs) as dense, E/k times its feed-forward parameters in total
    moe-total    Mixtral: E experts of width H/E: the SAME TOTAL parameters as dense, fewer active
    moe-no-aux   moe-active without the load-balancing loss (router_aux_loss_coef = 0)

Equal time, not equal steps: the runs take one step each in turn (so the
noise of a shared machine falls on all alike), and after each step a run's
number of steps (the end of its learning-rate schedule) is re-estimated from
its mean speed so far, so that it stops after ``--seconds`` of its own
training time.
It prints and writes (``--out``) a table (total and active parameters, steps,
tokens/s, validation loss, the busiest expert's share of the routing), the PNG
``expert_load.png`` (each expert's share of the tokens, per layer, over
training, with and without the auxiliary loss), ``results.json``, and each
model's checkpoint ``<run>/ckpt.npz``.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import numpy

from minillm import Llama, LlamaConfig, Mixtral, MixtralConfig, backend, cli
from minillm.models.llama import default_hidden
from minillm.plotting import moving_average
from minillm.progress import Progress, format_duration
from minillm.batches import split_ids
from minillm.corpus import load_corpus
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig, Trainer

RUNS = ("dense", "moe-active", "moe-total", "moe-no-aux")
CALIBRATION_STEPS = 3


def run_names(text):
    """ "dense,moe-total" -> ["dense", "moe-total"]: a subset of RUNS."""
    names = list(cli.name_list(text))
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown run(s) {unknown}; choose from {', '.join(RUNS)}")
    return names


def build_parser():
    p = cli.ArgumentParser(description="Dense Llama vs sparse mixtures of experts at equal training time.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=cli.existing_file, default=None,
                   help="text file to train on (default: the shipped corpus)")
    p.add_argument("--out", default=os.path.join("out", "moe"), help="folder for the table, PNG and checkpoints")
    p.add_argument("--seconds", type=cli.positive_float, default=60.0, help="training time of each run")
    p.add_argument("--max-iters", type=cli.positive_int, default=None, help="cap on each run's steps (quick tests)")
    p.add_argument("--runs", type=run_names, default=",".join(RUNS), help=f"a subset of {', '.join(RUNS)}")
    p.add_argument("--experts", type=cli.positive_int, default=8, help="experts per layer E")
    p.add_argument("--top-k", type=cli.positive_int, default=2, help="experts per token k")
    p.add_argument("--aux-coef", type=cli.non_negative_float, default=0.02, help="weight of the load-balancing loss")
    p.add_model_flags(block_size=64, n_layer=4, n_head=4, n_embd=128)
    p.add_argument("--n-hidden", type=cli.positive_int, default=None, help="the dense SwiGLU width H (default 8C/3)")
    p.add_argument("--batch-size", type=cli.positive_int, default=12)
    p.add_argument("--lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--eval-iters", type=cli.positive_int, default=20, help="batches per validation estimate")
    p.add_argument("--seed", type=cli.non_negative_int, default=1337)
    return p


def check_flags(args):
    """What depends on several flags; the dense width H filled in."""
    if args.top_k > args.experts:
        raise ValueError(f"--top-k ({args.top_k}) must be between 1 and --experts ({args.experts})")
    args.n_hidden = args.n_hidden or default_hidden(args.n_embd)
    if args.n_hidden < args.experts:
        raise ValueError(f"--n-hidden ({args.n_hidden}) must be at least --experts ({args.experts}): "
                         "moe-total splits it among the experts")


def build(run, args, vocab_size):
    """The model of one run: a Llama or a Mixtral of the same shape except the feed-forward."""
    shape = dict(vocab_size=vocab_size, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                 n_embd=args.n_embd, norm_eps=1e-5)
    if run == "dense":
        return Llama(LlamaConfig(**shape, n_hidden=args.n_hidden), seed=args.seed)
    width = args.n_hidden // (args.experts if run == "moe-total" else args.top_k)
    coef = 0.0 if run == "moe-no-aux" else args.aux_coef
    return Mixtral(MixtralConfig(**shape, n_hidden=width, n_expert=args.experts, top_k=args.top_k,
                                 router_aux_loss_coef=coef), seed=args.seed)


def parameter_counts(model):
    """(total, active per token): a dense model uses all of its parameters for every token."""
    if isinstance(model, Mixtral):
        return model.config.parameter_counts()
    return model.num_parameters(), model.num_parameters()


class Run:
    """One model in training: its Trainer, the seconds it has trained, its routing record."""

    def __init__(self, name, model, train_ids, val_ids, args, tokenizer):
        self.name, self.model, self.args = name, model, args
        config = TrainConfig(iters=10**6, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                             warmup_iters=20, eval_iters=args.eval_iters, checkpoint_every=0, seed=args.seed)
        self.trainer = Trainer(model, train_ids, val_ids, config, tokenizer=tokenizer,
                               out_dir=os.path.join(args.out, name), extra={"run": name})
        self.seconds, self.loads, self.aux = 0.0, [], []

    @property
    def done(self):
        return self.trainer.step >= self.trainer.config.iters

    def step(self):
        """One optimizer step, timed; after the first few, the schedule is set to end at --seconds."""
        start = time.perf_counter()
        loss, _ = self.trainer.train_step()
        backend.synchronize()
        self.seconds += time.perf_counter() - start
        if isinstance(self.model, Mixtral):
            self.loads.append(self.model.expert_load())                     # (L, E) this step's routing
            self.aux.append(float(self.model.router_aux_loss().data))
        step = self.trainer.step
        if step >= CALIBRATION_STEPS:            # the steps that fit in --seconds at the mean speed so far
            iters = max(step + (self.seconds < self.args.seconds), round(self.args.seconds * step / self.seconds))
            iters = min(iters, self.args.max_iters or iters)
            self.trainer.config = dataclasses.replace(self.trainer.config, iters=iters)
        return loss

    def finish(self):
        """Validate, save the checkpoint; the run's row of the table."""
        _, val = self.trainer.evaluate()
        self.trainer.save_checkpoint()
        total, active = parameter_counts(self.model)
        steps, args = self.trainer.step, self.args
        load = numpy.array(self.loads)                                      # (steps, L, E)
        busiest = load[-20:].mean(axis=0).max() / args.top_k if len(load) else None   # over the last 20 steps
        aux = numpy.mean(self.aux[-20:]) if self.aux else None
        return dict(run=self.name, total_params=int(total), active_params=int(active), steps=steps,
                    seconds=round(self.seconds, 1),
                    tokens_per_s=round(steps * args.batch_size * args.block_size / self.seconds),
                    val_loss=round(val, 4), aux_loss=rounded(aux, 3), busiest_expert_share=rounded(busiest, 3))


def train_interleaved(runs):
    """One step of each unfinished run in turn (A B C D A B ...), so the machine's noise falls on all alike.
    The progress line counts the steps of all runs (the total is re-estimated as they go)."""
    for _ in range(CALIBRATION_STEPS):
        for run in runs:
            run.step()
    progress = Progress(sum(run.trainer.config.iters for run in runs), start=CALIBRATION_STEPS * len(runs))
    done = CALIBRATION_STEPS * len(runs)
    while not all(run.done for run in runs):
        for run in runs:
            if not run.done:
                start = time.perf_counter()
                loss = run.step()
                done += 1
                progress.total = sum(r.trainer.config.iters for r in runs)
                progress.update(done, loss, seconds=time.perf_counter() - start)
    progress.close()


def rounded(value, digits):
    return None if value is None else round(float(value), digits)


def dash(value):
    return "-" if value is None else value


def table(rows, experts):
    lines = ["| run | total params | active params / token | steps | tokens/s | val loss | aux loss | "
             f"busiest expert's share (ideal 1/{experts} = {1 / experts:.3f}) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['total_params']:,} | {r['active_params']:,} | {r['steps']} | "
                     f"{r['tokens_per_s']:,} | {r['val_loss']:.4f} | {dash(r['aux_loss'])} | "
                     f"{dash(r['busiest_expert_share'])} |")
    return "\n".join(lines)


def plot_expert_load(loads, path, top_k):
    """One row per run, one panel per layer: each expert's share of the routed tokens over training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = list(loads)
    n_layer = next(iter(loads.values())).shape[1]
    figure = Figure(figsize=(3.2 * n_layer, 2.8 * len(runs)), dpi=100)
    FigureCanvasAgg(figure)
    for i, run in enumerate(runs):
        share = loads[run] / top_k                                         # (steps, L, E), adds up to 1
        steps, _, experts = share.shape
        window = max(1, steps // 30)
        for layer in range(n_layer):
            axes = figure.add_subplot(len(runs), n_layer, i * n_layer + layer + 1)
            for e in range(experts):
                axes.plot(numpy.arange(1, steps + 1), moving_average(share[:, layer, e], window), linewidth=1)
            axes.axhline(1 / experts, color="black", linestyle="--", linewidth=0.8)
            axes.set_ylim(0, 1)
            axes.set_title(f"{run}, layer {layer}", fontsize=9)
            if layer == 0:
                axes.set_ylabel("share of tokens")
            if i == len(runs) - 1:
                axes.set_xlabel("step")
            axes.tick_params(labelsize=7)
    figure.suptitle(f"Expert load (each line one expert; dashed: perfect balance 1/{experts})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    return path


def compare(args):
    check_flags(args)
    text = load_corpus(os.path.abspath(args.data) if args.data else None)
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_ids(tokenizer.encode(text))
    os.makedirs(args.out, exist_ok=True)
    print(f"backend {backend.name} | {len(args.runs)} runs x {format_duration(args.seconds)} | layers "
          f"{args.n_layer}, width {args.n_embd}, dense SwiGLU {args.n_hidden}, {args.experts} experts, "
          f"top-{args.top_k}", flush=True)
    runs = []
    for name in args.runs:
        model = build(name, args, tokenizer.vocab_size)
        total, active = parameter_counts(model)
        print(f"{name}: {total:,} parameters, {active:,} active per token", flush=True)
        runs.append(Run(name, model, train_ids, val_ids, args, tokenizer))
    train_interleaved(runs)
    rows = [run.finish() for run in runs]
    loads = {run.name: numpy.array(run.loads) for run in runs if run.loads}
    text_table = table(rows, args.experts)
    print(text_table)
    with open(os.path.join(args.out, "moe_table.md"), "w", encoding="utf-8") as f:
        f.write(text_table + "\n")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    if loads:
        shown = {run: loads[run] for run in ("moe-active", "moe-no-aux") if run in loads} or loads
        print(f"expert load: {plot_expert_load(shown, os.path.join(args.out, 'expert_load.png'), args.top_k)}")
    return 0


def main(argv=None):
    return build_parser().run(compare, argv)


if __name__ == "__main__":
    sys.exit(main())
