"""Pretrain a small GPT on Shakespeare, on a laptop CPU, in a few minutes.

    python demos/train_shakespeare.py                    # the defaults: about 3 minutes on 2 idle cores
    python demos/train_shakespeare.py --iters 200        # a quick look
    python demos/train_shakespeare.py --resume           # continue out/shakespeare/ckpt.npz
    python demos/train_shakespeare.py --arch llama       # a Llama (RoPE, RMSNorm, SwiGLU) instead of GPT-2
    python demos/train_shakespeare.py --arch mixtral     # a Llama with 8 experts, 2 per token (demos/moe.py compares)
    mpiexec -n 2 python demos/train_shakespeare.py       # data parallel: 2 ranks, 6 of the 12 rows each
    MINILLM_BACKEND=cupy python demos/train_shakespeare.py --block-size 256 --batch-size 64 \\
        --n-layer 6 --n-head 6 --n-embd 384 --dropout 0.2 --iters 5000   # nanoGPT's GPU config

It reads the text (``--data``, default: the corpus shipped with minillm),
builds a character (or BPE) tokenizer, splits the text 90/10 into training and
validation (a BPE learns its merges from the training 90 % only), and trains a GPT with ``minillm.train.Trainer``: progress on
stdout, train/val loss every ``--eval-every`` iterations, a checkpoint in
``--out/ckpt.npz`` (atomic, pickle-free). At the end it writes the loss curve
``--out/loss.png`` and prints a sample of generated text (also in
``--out/sample.txt``). Ctrl-C saves a checkpoint; ``--resume`` continues it and
stops at the same total number of iterations, with the same result as a run
that was never interrupted.

Under ``mpiexec -n N`` (the ``dist`` extra) it trains data-parallel:
``--batch-size`` is the global batch, each rank takes ``batch_size / N`` rows,
rank 0 alone prints and writes ``--out``; a checkpoint resumes under any N.
"""
import argparse
import os
import sys
import time

import numpy

from minillm import backend, checkpoint, cli, distributed
from minillm.energy import EnergyMeter, transformer_training_flops
from minillm.memory import kv_cache_bytes_per_token
from minillm.models import DECODERS, GPT, GPTConfig, Llama, LlamaConfig, Mixtral, MixtralConfig
from minillm.models.llama import default_hidden
from minillm.plotting import plot_loss_curve
from minillm.progress import format_duration
from minillm.batches import split_text
from minillm.corpus import load_corpus
from minillm.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from minillm.train import TrainConfig, Trainer, TrainingDiverged

DEFAULT_ITERS = 2000
ARCHS = DECODERS   # --arch -> model class; checkpoints record which ("arch"), minillm.models reads it back


def build_parser():
    p = cli.ArgumentParser(description="Pretrain a small GPT on Shakespeare.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=cli.existing_file, default=None,
                   help="text file to train on (default: the shipped corpus)")
    p.add_argument("--out", default=os.path.join("out", "shakespeare"),
                   help="folder for ckpt.npz, loss.png and sample.txt")
    p.add_argument("--iters", type=cli.positive_int, default=None,
                   help=f"total iterations (default {DEFAULT_ITERS}; a resumed run keeps its own total)")
    p.add_argument("--eval-every", type=cli.positive_int, default=250,
                   help="estimate train/val loss every N iterations")
    p.add_argument("--eval-iters", type=cli.positive_int, default=20, help="batches per loss estimate")
    p.add_argument("--checkpoint-every", type=cli.non_negative_int, default=None,
                   help="write ckpt.npz every N iterations (default: at each evaluation; 0: only at the end)")
    p.add_argument("--resume", action="store_true", help="continue from --out/ckpt.npz")
    p.add_argument("--seed", type=cli.non_negative_int, default=1337,
                   help="seeds the weights, dropout, batches and sample")
    p.add_argument("--batch-size", type=cli.positive_int, default=12)
    p.add_argument("--block-size", type=cli.positive_int, default=64, help="context length in tokens")
    p.add_argument("--n-layer", type=cli.positive_int, default=4)
    p.add_argument("--n-head", type=cli.positive_int, default=4)
    p.add_argument("--n-embd", type=cli.positive_int, default=128)
    p.add_argument("--arch", choices=sorted(ARCHS), default="gpt2",
                   help="gpt2: learned positions, LayerNorm, GELU; llama: RoPE, RMSNorm, SwiGLU (8C/3 wide); "
                        "mixtral: llama with --experts SwiGLU experts of width 8C/3 / --top-k, --top-k per token")
    p.add_argument("--n-kv-head", type=cli.positive_int, default=None,
                   help="key/value heads for --arch llama (default: --n-head; fewer is grouped-query attention)")
    p.add_argument("--experts", type=cli.positive_int, default=None, help="--arch mixtral: experts per layer (8)")
    p.add_argument("--top-k", type=cli.positive_int, default=None, help="--arch mixtral: experts per token (2)")
    p.add_argument("--aux-coef", type=cli.non_negative_float, default=None,
                   help="--arch mixtral: weight of the load-balancing loss (0.02)")
    p.add_argument("--dropout", type=cli.dropout_rate, default=0.0)
    p.add_argument("--lr", type=cli.positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=cli.non_negative_float, default=1e-4,
                   help="learning rate at the end of the cosine decay")
    p.add_argument("--warmup-iters", type=cli.non_negative_int, default=100)
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.1)
    p.add_argument("--grad-clip", type=cli.non_negative_float, default=1.0, help="clip the gradient norm (0: off)")
    p.add_argument("--tokenizer", choices=("char", "bpe"), default="char")
    p.add_argument("--vocab-size", type=cli.positive_int, default=512,
                   help="BPE vocabulary size (--tokenizer bpe only)")
    p.add_argument("--sample-tokens", type=cli.non_negative_int, default=500,
                   help="length of the sample printed at the end")
    return p


def build_tokenizer(kind, text, vocab_size):
    """Characters: the whole text's alphabet. BPE: merges learned from the training split only."""
    if kind == "char":
        return CharTokenizer.from_text(text)
    train_text, _ = split_text(text)
    print(f"training a BPE tokenizer with {vocab_size} ids on the training split ...", flush=True)
    return BPETokenizer.train(train_text, vocab_size)


def encode_split(tokenizer, text):
    """(train_ids, val_ids): the 90/10 character split, each part encoded on its own."""
    return tuple(numpy.asarray(tokenizer.encode(part), dtype=numpy.int64) for part in split_text(text))


def build_model(args, vocab_size):
    """The model the flags describe: GPT-2 or Llama of the same depth, width and heads."""
    shape = dict(vocab_size=vocab_size, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                 n_embd=args.n_embd, dropout=args.dropout)
    moe = {"--experts": args.experts, "--top-k": args.top_k, "--aux-coef": args.aux_coef}
    if args.arch == "mixtral":               # experts as wide as Llama's MLP / k: the same active parameters
        top_k = args.top_k or 2
        return Mixtral(MixtralConfig(**shape, n_kv_head=args.n_kv_head, n_expert=args.experts or 8, top_k=top_k,
                                     n_hidden=max(1, default_hidden(args.n_embd) // top_k),
                                     router_aux_loss_coef=0.02 if args.aux_coef is None else args.aux_coef),
                       seed=args.seed)
    given = [flag for flag, value in moe.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} need --arch mixtral")
    if args.arch == "llama":
        return Llama(LlamaConfig(**shape, n_kv_head=args.n_kv_head), seed=args.seed)
    if args.n_kv_head is not None:
        raise ValueError("--n-kv-head needs --arch llama or mixtral (GPT-2 has as many key/value heads as heads)")
    return GPT(GPTConfig(**shape), seed=args.seed)


def new_run(args, world):
    """A fresh tokenizer, model and trainer from the flags."""
    data = os.path.abspath(args.data) if args.data else None
    text = load_corpus(data)
    tokenizer = build_tokenizer(args.tokenizer, text, args.vocab_size)
    train_ids, val_ids = encode_split(tokenizer, text)
    train_config = TrainConfig(
        iters=DEFAULT_ITERS if args.iters is None else args.iters, batch_size=args.batch_size, lr=args.lr,
        min_lr=args.min_lr,
        warmup_iters=args.warmup_iters, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_every=args.eval_every, eval_iters=args.eval_iters, checkpoint_every=args.checkpoint_every,
        seed=args.seed)
    model = build_model(args, tokenizer.vocab_size)
    return Trainer(model, train_ids, val_ids, train_config, tokenizer=tokenizer, out_dir=args.out,
                   extra={"data": data, "arch": args.arch}, world=world), tokenizer


def resumed_run(args, world):
    """Tokenizer, model, optimizer and generators exactly as the checkpoint left them."""
    path = os.path.join(args.out, "ckpt.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--resume: there is no checkpoint {path} to continue "
                                "(drop --resume to start a new run)")
    ckpt = checkpoint.load(path)
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    data = args.data or ckpt.get("data")
    train_ids, val_ids = encode_split(tokenizer, load_corpus(data))
    try:
        arch = ckpt.get("arch", "gpt2")
        trainer = Trainer.from_checkpoint(ckpt, train_ids, val_ids, iters=args.iters, tokenizer=tokenizer,
                                          out_dir=args.out, extra={"data": data, "arch": arch}, world=world,
                                          model_class=ARCHS[arch])
    except ValueError as error:                  # e.g. its batch size does not split over these ranks
        raise ValueError(f"--resume: {error}") from None
    print(f"resuming {path} at iteration {trainer.step} of {trainer.config.iters} "
          "(model and training settings come from the checkpoint)")
    return trainer, tokenizer


def main(argv=None):
    return build_parser().run(train, argv, failures=(TrainingDiverged,))


def train(args):
    world = distributed.init()
    if world.rank != 0:
        sys.stdout = open(os.devnull, "w")       # rank 0 alone prints (errors still reach stderr)
    if not args.resume and args.batch_size % world.size:     # every rank sees it: all stop, one says why
        if world.rank == 0:
            print(f"error: --batch-size {args.batch_size} does not split over {world.size} ranks: use a "
                  f"multiple of {world.size} (it is the global batch; each rank takes batch_size / N rows)",
                  file=sys.stderr)
        return 2
    trainer, tokenizer = resumed_run(args, world) if args.resume else new_run(args, world)
    model, cfg = trainer.model, trainer.model.config
    if world.rank == 0 and trainer.config.warmup_iters >= trainer.config.decay_iters:
        cli.warn(f"--iters {trainer.config.iters} is not above --warmup-iters {trainer.config.warmup_iters}: "
                 "the learning rate warms up for the whole run and never decays")
    arch = trainer.extra["arch"]
    print(f"backend {backend.name} | {arch} | {model.num_parameters():,} parameters | vocabulary {cfg.vocab_size} | "
          f"layers {cfg.n_layer}, heads {cfg.n_head}, width {cfg.n_embd}, context {cfg.block_size} | "
          f"KV cache {kv_cache_bytes_per_token(cfg, 'float32'):,} bytes/token | "
          f"{len(trainer.train_ids):,} training tokens, {len(trainer.val_ids):,} validation tokens"
          + (f" | {world.size} ranks ({world.name}), {trainer.config.batch_size // world.size} rows each"
             if world.size > 1 else ""), flush=True)
    start, first_step = time.perf_counter(), trainer.step
    try:
        with EnergyMeter() as meter:
            history = trainer.run()
    except KeyboardInterrupt:
        print(f"continue this run with --resume --out {args.out}", file=sys.stderr)
        return 130
    if world.rank != 0:
        return 0                                 # rank 0 alone plots, samples and writes --out
    seconds = time.perf_counter() - start
    step, train_loss, val_loss = history["evals"][-1]
    curve = plot_loss_curve(history, os.path.join(args.out, "loss.png"),
                            title=f"{arch} {cfg.n_layer}x{cfg.n_embd} on Shakespeare ({cfg.vocab_size} tokens)")
    tokens = (trainer.step - first_step) * trainer.config.batch_size * cfg.block_size
    print(f"done: {step} iterations, final train loss {train_loss:.4f}, val loss {val_loss:.4f} "
          f"({format_duration(seconds)} this session, {tokens / seconds:,.0f} tokens/s); "
          f"checkpoint {trainer.ckpt_path}, loss curve {curve}")
    n_working = model.num_parameters(non_embedding=True)
    if isinstance(model, Mixtral):               # a token works with top_k of the n_expert experts
        total, active = cfg.parameter_counts()
        n_working -= total - active
    flops = transformer_training_flops(n_working, tokens, cfg.n_layer, cfg.block_size, cfg.n_embd)
    print(f"{meter.report(flops)} (training steps only, evaluations not counted"
          + (f"; FLOPs of all {world.size} ranks, RAPL and wall time of rank 0's machine" if world.size > 1 else "")
          + ")")
    if args.sample_tokens > 0:
        prompt = tokenizer.encode("\n")
        out = model.generate([prompt], args.sample_tokens, temperature=0.8, seed=args.seed)
        text = tokenizer.decode(backend.to_numpy(out)[0].tolist())
        with open(os.path.join(args.out, "sample.txt"), "w", encoding="utf-8") as f:
            f.write(text)
        print("-" * 30 + " sample (temperature 0.8) " + "-" * 30 + text + "\n" + "-" * 86)
    return 0


if __name__ == "__main__":
    with distributed.failures_end_the_job():     # one rank's exception ends every rank (MPI_Abort)
        sys.exit(main())
