"""Supervised instruction finetuning: teach a Shakespeare model a task it cannot do.

    python demos/sft.py                         # about 2 minutes on 2 CPU cores
    python demos/sft.py --task add --iters 1500 # 2-digit addition (needs more steps)
    python demos/sft.py --lora-rank 8 --lr 3e-3 --iters 1500    # a LoRA adapter instead (slower to learn)
    python demos/sft.py --ckpt out/shakespeare/ckpt.npz

The data is generated here, so the demo needs nothing but minillm:

    reverse:  "Q: reverse 'kfo'\\nA: " -> "ofk"       (3 to --max-len random letters)
    add:      "Q: 37+48\\nA: "          -> "85"

Each pair is written with the template "Q: {prompt}\\nA: " + response + "\\n"
and trained with teacher forcing, the loss on the response tokens only (the
prompt's targets are ignore_index = -100; ``--train-on-prompt`` counts them
too). Gradient accumulation (``--accum``) normalises by the total number of
response tokens (``minillm.finetune.sft_step``). The held-out prompts never
occur in training. Before and after, the model answers each held-out prompt
greedily and we count exact matches. The base is pretrained briefly here
(or ``--ckpt``); ``--lora-rank`` trains a LoRA adapter instead of every weight.
Writes ``--out/sft.png`` (loss and accuracy during training) and the trained
model, ``--out/sft.npz`` (LoRA folded into the weights), which
``python demos/sample.py --ckpt out/sft/sft.npz --prompt "Q: reverse 'abc'
A: " --temperature 0`` answers with; with ``--lora-rank`` also the adapter
alone (``--out/adapter.npz``) and the base it adapts (``--out/base.npz``).
"""
import argparse
import os
import time

import numpy

from minillm import checkpoint, cli
from minillm.finetune import (SFTDataset, exact_match, generate_response, load_pretrained, pretrain_base,
                              sft_step)
from minillm.lora import apply_lora, merge_lora, save_adapter
from minillm.models import GPT, GPTConfig
from minillm.optim import AdamW, cosine_lr, param_groups_for_weight_decay, set_lr
from minillm.progress import Progress
from minillm.batches import split_ids
from minillm.corpus import load_corpus
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def build_parser():
    p = cli.ArgumentParser(description="Instruction finetuning (SFT) on a generated task.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=cli.existing_file, default=None,
                   help="base checkpoint (default: pretrain one briefly here)")
    p.add_argument("--task", choices=("reverse", "add"), default="reverse")
    p.add_argument("--max-len", type=cli.positive_int, default=4,
                   help="longest string to reverse (3 letters at least)")
    p.add_argument("--out", default=os.path.join("out", "sft"))
    p.add_argument("--pretrain-iters", type=cli.positive_int, default=300,
                   help="pretraining steps when there is no --ckpt")
    p.add_argument("--iters", type=cli.positive_int, default=500, help="SFT optimizer steps")
    p.add_argument("--batch-size", type=cli.positive_int, default=32, help="pairs per micro-batch")
    p.add_argument("--accum", type=cli.positive_int, default=1, help="micro-batches per step")
    p.add_argument("--lr", type=cli.positive_float, default=5e-3)
    p.add_argument("--lora-rank", type=cli.non_negative_int, default=0,
                   help="0: full finetuning; r > 0: LoRA of rank r")
    p.add_argument("--lora-targets", type=cli.name_list, default="c_attn,c_proj,c_fc",
                   help="layers LoRA wraps, comma-separated")
    p.add_argument("--unfreeze", default="", help="with LoRA: parameters to train as well, by name prefix "
                   "(e.g. wpe, ln_f), comma-separated (PEFT's modules_to_save)")
    p.add_argument("--train-on-prompt", action="store_true", help="count the prompt tokens in the loss too")
    p.add_argument("--n-train", type=cli.positive_int, default=3000, help="training pairs")
    p.add_argument("--n-test", type=cli.positive_int, default=200, help="held-out pairs")
    p.add_argument("--eval-every", type=cli.positive_int, default=100)
    p.add_model_flags(block_size=64, n_layer=2, n_head=4, n_embd=64)
    p.add_argument("--seed", type=cli.non_negative_int, default=1337)
    return p


def make_pairs(task, n, rng, max_len):
    """n distinct (prompt, response) pairs of the task."""
    pairs = {}
    while len(pairs) < n:
        if task == "reverse":
            word = "".join(rng.choice(list(LETTERS), size=int(rng.integers(3, max_len + 1))))
            pairs[f"reverse '{word}'"] = word[::-1]
        else:
            a, b = (int(v) for v in rng.integers(10, 100, size=2))
            pairs[f"{a}+{b}"] = str(a + b)
    return list(pairs.items())


def build_base(args):
    if args.ckpt is not None:
        model, tok = load_pretrained(args.ckpt)
        if tok is None:
            raise ValueError(f"--ckpt {args.ckpt} has no tokenizer: use a checkpoint of demos/train_shakespeare.py")
        return model, tok
    corpus = load_corpus()
    tok = CharTokenizer.from_text(corpus)
    train_ids, val_ids = split_ids(tok.encode(corpus))
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    print(f"pretraining a {config.n_layer}-layer, {config.n_embd}-wide char model on Shakespeare for "
          f"{args.pretrain_iters} steps ...", flush=True)
    train_config = TrainConfig(iters=args.pretrain_iters, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_iters=20,
                               eval_every=max(args.pretrain_iters, 1), eval_iters=5, checkpoint_every=0,
                               seed=args.seed, log_every=100)
    return pretrain_base(train_ids, val_ids, config, train_config, seed=args.seed), tok


def main(argv=None):
    return build_parser().run(finetune, argv)


def save(model, tok, args):
    """Write the trained model (LoRA folded in) to --out/sft.npz; with LoRA also the adapter alone."""
    if args.lora_rank:
        path = save_adapter(os.path.join(args.out, "adapter.npz"), model)
        print(f"wrote {path} (the LoRA matrices only{'; not the --unfreeze weights' if args.unfreeze else ''})")
        merge_lora(model)
    plain = GPT(model.config)                                 # the same weights, without the LoRA wrappers
    state = model.state_dict()
    plain.load_state_dict({name: state[name] for name in plain.state_dict()})
    checkpoint.save(os.path.join(args.out, "sft.npz"), plain, tokenizer=tok, task=args.task)
    print(f"wrote {os.path.join(args.out, 'sft.npz')}")


def finetune(args):
    if args.task == "reverse" and args.max_len < 3:
        raise ValueError(f"--max-len {args.max_len}: the words to reverse have 3 letters at least")
    model, tok = build_base(args)
    os.makedirs(args.out, exist_ok=True)
    if args.lora_rank:
        checkpoint.save(os.path.join(args.out, "base.npz"), model, tokenizer=tok)
    rng = numpy.random.default_rng(args.seed)
    pairs = make_pairs(args.task, args.n_train + args.n_test, rng, args.max_len)
    train_pairs, test_pairs = pairs[:args.n_train], pairs[args.n_train:]      # distinct prompts: held out
    data = SFTDataset(train_pairs, tok, train_on_prompt=args.train_on_prompt, block_size=model.config.block_size)
    tests = SFTDataset(test_pairs, tok)
    max_new = max(len(r) for _, r in pairs) + 2
    if args.lora_rank:
        apply_lora(model, rank=args.lora_rank, alpha=2 * args.lora_rank, seed=args.seed,
                   targets=args.lora_targets)
        prefixes = tuple(t for t in args.unfreeze.split(",") if t)
        for name, p in model.named_parameters():
            if prefixes and name.startswith(prefixes):
                p.requires_grad = True
    method = f"LoRA r={args.lora_rank}" if args.lora_rank else "full finetuning"
    if args.lora_rank and args.unfreeze:
        method += f" + {args.unfreeze}"
    n_train, n_total = model.num_parameters(trainable_only=True), model.num_parameters()

    before = exact_match(model, tests, test_pairs, max_new)
    train_before = exact_match(model, data, train_pairs[:args.n_test], max_new)
    print(f"task {args.task!r}: {len(train_pairs)} training pairs, {len(test_pairs)} held-out; "
          f"e.g. {data.prompt_text(test_pairs[0][0])!r} -> {test_pairs[0][1]!r}")
    print(f"before SFT: held-out exact match {before:.1%}", flush=True)

    optimizer = AdamW(param_groups_for_weight_decay(model, 0.0), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    batch_rng = numpy.random.default_rng(args.seed + 1)
    losses, evals = [], [(0, before)]
    start = time.perf_counter()
    model.train()
    progress = Progress(args.iters)
    for step in range(args.iters):
        set_lr(optimizer, cosine_lr(step, args.lr, args.lr / 10, min(30, args.iters), args.iters))
        size = min(args.batch_size, len(data))
        micro = [data.batch(batch_rng.choice(len(data), size=size, replace=False)) for _ in range(args.accum)]
        loss, _ = sft_step(model, optimizer, micro, grad_clip=1.0)
        losses.append(loss)
        progress.update(step + 1, loss, optimizer.param_groups[0]["lr"])
        if (step + 1) % args.eval_every == 0 or step + 1 == args.iters:
            acc = exact_match(model, tests, test_pairs[:50], max_new)
            evals.append((step + 1, acc))
            progress.message(f"step {step + 1}: loss {numpy.mean(losses[-args.eval_every:]):.3f}, "
                             f"held-out exact match (first 50) {acc:.0%}")
    progress.close()
    seconds = time.perf_counter() - start
    after = exact_match(model, tests, test_pairs, max_new)
    train_after = exact_match(model, data, train_pairs[:args.n_test], max_new)

    print(f"\nSFT on {args.task!r} ({method}: {n_train:,} of {n_total:,} parameters trained, "
          f"{args.iters} steps of {args.batch_size * args.accum} pairs, {seconds:.0f} s; loss on "
          f"{'all' if args.train_on_prompt else 'response'} tokens)")
    print(f"{'':<22} {'before':>8} {'after':>8}")
    print(f"{'held-out exact match':<22} {before:>8.1%} {after:>8.1%}")
    print(f"{'training exact match':<22} {train_before:>8.1%} {train_after:>8.1%}")
    for prompt, response in test_pairs[:5]:
        answer = generate_response(model, tok, tests.prompt_text(prompt), max_new)
        print(f"  {tests.prompt_text(prompt)!r} -> {answer!r} (expected {response!r})")
    plot(losses, evals, os.path.join(args.out, "sft.png"), f"SFT: {args.task}, {method}")
    print(f"wrote {os.path.join(args.out, 'sft.png')}")
    save(model, tok, args)


def plot(losses, evals, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from minillm.plotting import moving_average

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(numpy.arange(1, len(losses) + 1), moving_average(losses, 20), color="tab:blue")
    axes.set_xlabel("SFT step")
    axes.set_ylabel("loss on response tokens (moving average of 20)", color="tab:blue")
    other = axes.twinx()
    steps, accs = zip(*evals)
    other.plot(steps, [100 * a for a in accs], "o-", color="tab:red")
    other.set_ylabel("held-out exact match (%)", color="tab:red")
    other.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
