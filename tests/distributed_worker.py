"""One rank of a tiny data-parallel training run, for tests/test_distributed.py.

    mpiexec -n 2 python tests/distributed_worker.py OUT [--stop-at K] [--resume] [--fail-rank R --fail-at S]

Trains the tiny GPT of ``make_trainer`` (the same one the test builds in its
own process for the one-process reference) with the checkpoint in OUT/ckpt.npz,
the replica check on after every step, then writes OUT/rank{r}.npz: this
rank's parameters, its loss history, how many checkpoints it wrote and how many
rows each forward pass saw. ``--skew-init`` seeds each rank's weights
differently, so that only the broadcast at the start makes the replicas equal.
``--fail-rank R --fail-at S`` makes rank R fail at step S: by raising an
exception (``--how raise``) or by dying at once (``--how kill``, SIGKILL).
"""
import argparse
import io
import os
import signal
import sys

import numpy

from minillm import GPT, GPTConfig, checkpoint, distributed
from minillm.train import TrainConfig, Trainer

IDS = (numpy.arange(700) * 7 + numpy.arange(700) // 50) % 13     # learnable: next = this + 7 (mod 13)
MODEL = dict(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
TRAIN = dict(iters=4, batch_size=4, grad_accum=2, eval_every=2, eval_iters=2, warmup_iters=1, lr=1e-2, seed=5)


def make_trainer(out_dir=None, world=None, ckpt=None, model_seed=11):
    """The run every test compares: fresh, or continued from ``ckpt`` (a loaded checkpoint)."""
    if ckpt is not None:
        return Trainer.from_checkpoint(ckpt, IDS[:600], IDS[600:], out_dir=out_dir, stream=io.StringIO(),
                                       world=world)
    model = GPT(GPTConfig(**MODEL), seed=model_seed)
    return Trainer(model, IDS[:600], IDS[600:], TrainConfig(**TRAIN), out_dir=out_dir, stream=io.StringIO(),
                   world=world)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--stop-at", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--fail-rank", type=int, default=None)
    p.add_argument("--fail-at", type=int, default=1)
    p.add_argument("--how", choices=("raise", "kill"), default="raise")
    p.add_argument("--skew-init", action="store_true", help="rank r initialises with seed 11 + r")
    args = p.parse_args()
    world = distributed.init(check_replicas=True)
    saves, real_save = [], checkpoint.save

    def counting_save(*a, **k):
        saves.append(1)
        return real_save(*a, **k)

    checkpoint.save = counting_save
    ckpt = checkpoint.load(os.path.join(args.out, "ckpt.npz")) if args.resume else None
    trainer = make_trainer(args.out, world, ckpt, model_seed=11 + world.rank * args.skew_init)
    rows, forward = [], trainer.model.forward

    def counting_forward(idx, *a, **k):
        rows.append(len(idx))
        return forward(idx, *a, **k)

    trainer.model.forward = counting_forward
    if args.fail_rank == world.rank:
        real_step = trainer.train_step

        def failing_step():
            if trainer.step + 1 == args.fail_at:
                if args.how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"injected failure on rank {world.rank} at step {args.fail_at}")
            return real_step()

        trainer.train_step = failing_step
    trainer.run(stop_at=args.stop_at)
    os.makedirs(args.out, exist_ok=True)
    numpy.savez(os.path.join(args.out, f"rank{world.rank}.npz"), saves=len(saves), size=world.size,
                rows=numpy.asarray(rows),
                losses=numpy.asarray(trainer.history["train_loss"]),
                evals=numpy.asarray(trainer.history["evals"]),
                **{f"param/{name}": p.numpy() for name, p in trainer.model.named_parameters()})
    return 0


if __name__ == "__main__":
    with distributed.failures_end_the_job():
        sys.exit(main())
