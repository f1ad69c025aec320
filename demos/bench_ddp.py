"""Data parallelism on this machine: 1 rank versus 2, and a model of larger clusters.

    python demos/bench_ddp.py                     # 1 and 2 ranks, 3 rounds each, interleaved
    python demos/bench_ddp.py --quick             # a smoke test
    python demos/bench_ddp.py --bandwidth 12.5 --latency-us 5   # the cluster model's link

It starts ``mpiexec -n 1`` and ``mpiexec -n 2`` runs of this file in turn (A B
A B ..., so that a noisy neighbour slows both alike), one thread per rank
(OMP/OpenBLAS/MKL_NUM_THREADS=1), each training the same GPT on the same
global batch (``--batch-size``: 2 ranks take half the rows each) with
``minillm.train.Trainer``. Each run reports its median step time and the time
its steps spent inside the gradient all-reduce (which includes waiting for the
slower rank). The table shows medians over the rounds:

    ranks | steps/s | tokens/s | all-reduce ms/step | share of the step | speed-up

Then the cluster model (``distributed.ring_allreduce_seconds``): a ring
all-reduce moves 2 (N - 1) / N of the gradient bytes through every link per
step; with a link bandwidth, a per-message latency and a per-rank step time
it gives the scaling efficiency at N = 8, 64, 512 (each rank keeping its own
batch, the all-reduce not overlapped with compute), for this bench's model and
for GPT-2 small (124M parameters) at an assumed step time (``--big-step-ms``).
The model applied to N = 2 with the link speed this machine showed stands
next to the N = 2 efficiency measured here.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy

from minillm.progress import format_duration

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GPT2_SMALL_PARAMS = 124_439_808
VOCAB = 65


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Data-parallel training speed: 1 vs 2 ranks, and a cluster model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts to time")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each rank count once a round)")
    p.add_argument("--iters", type=int, default=30, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (split over the ranks)")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--bandwidth", type=float, nargs="+", default=[1.25, 12.5],
                   help="link bandwidths for the cluster model, GB/s (10 GbE = 1.25, 100 Gb/s InfiniBand = 12.5)")
    p.add_argument("--latency-us", type=float, default=5.0, help="per-message latency of the modelled link")
    p.add_argument("--big-step-ms", type=float, default=250.0,
                   help="assumed compute time of one GPT-2 small step on one GPU, for the second model table")
    p.add_argument("--quick", action="store_true", help="1 round of 3 steps: a smoke test")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)   # one run, started by mpiexec
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.iters, args.warmup = 1, 3, 1
    for flag in ("rounds", "iters", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for n in args.ranks:
        if n < 1 or args.batch_size % n:
            p.error(f"--ranks {n}: every rank count must be >= 1 and divide --batch-size {args.batch_size}")
    return args


# ------------------------------------------------------------ one run (under mpiexec)

def worker(args):
    from minillm import GPT, GPTConfig, distributed
    from minillm.train import TrainConfig, Trainer

    world = distributed.init()
    ids = numpy.random.default_rng(0).integers(0, VOCAB, 100_000)        # speed does not care what it reads
    config = GPTConfig(vocab_size=VOCAB, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    trainer = Trainer(GPT(config, seed=0), ids[:90_000], ids[90_000:],
                      TrainConfig(iters=args.warmup + args.iters, batch_size=args.batch_size, warmup_iters=0),
                      world=world)
    for _ in range(args.warmup):
        trainer.train_step()
    comm_before, times = world.comm_seconds, []
    for _ in range(args.iters):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    nbytes = int(sum(p.data.nbytes for p in trainer.model.parameters()))
    alone = []                                 # the same all-reduce with nobody late: the link's own cost
    if world.size > 1:
        buffer = numpy.zeros(nbytes // 4, dtype=numpy.float32)
        for _ in range(10):
            world.comm.Barrier()
            start = time.perf_counter()
            world._allreduce_sum(buffer)
            alone.append(time.perf_counter() - start)
    if world.rank == 0:
        print(json.dumps({"ranks": world.size, "step_s": float(numpy.median(times)),
                          "comm_s": (world.comm_seconds - comm_before) / args.iters,
                          "alone_s": float(numpy.median(alone)) if alone else 0.0, "grad_bytes": nbytes}),
              flush=True)
    return 0


def launch(args, n):
    """One ``mpiexec -n n`` run of the worker; its JSON line."""
    flags = ["--worker", "--iters", str(args.iters), "--warmup", str(args.warmup), "--batch-size",
             str(args.batch_size), "--block-size", str(args.block_size), "--n-layer", str(args.n_layer),
             "--n-head", str(args.n_head), "--n-embd", str(args.n_embd)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    command = ["mpiexec", "-n", str(n), sys.executable, os.path.abspath(__file__)] + flags
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"mpiexec -n {n} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------ the report

def medians(runs):
    """{ranks: {"step_s", "comm_s", "alone_s": median over the rounds}}."""
    return {n: {key: float(numpy.median([r[key] for r in rs])) for key in ("step_s", "comm_s", "alone_s")}
            for n, rs in runs.items()}


def measured_table(args, summary):
    tokens = args.batch_size * args.block_size
    base = summary[args.ranks[0]]["step_s"]
    print(f"\nmeasured: global batch {args.batch_size} x {args.block_size} tokens, GPT {args.n_layer}x"
          f"{args.n_embd}, one thread per rank, medians of {args.rounds} interleaved round(s) of {args.iters} steps")
    print("| ranks | steps/s | tokens/s | all-reduce ms/step | share of the step | all-reduce alone ms | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.ranks:
        step, comm, alone = summary[n]["step_s"], summary[n]["comm_s"], summary[n]["alone_s"]
        print(f"| {n} | {1 / step:.2f} | {tokens / step:,.0f} | {1000 * comm:.2f} | {100 * comm / step:.1f} % | "
              f"{1000 * alone:.2f} | {base / step:.2f}x |")


def two_ranks_against_the_model(one, two, nbytes):
    """What N = 2 showed here, next to what the no-overlap model predicts from the measured all-reduce."""
    from minillm.distributed import scaling_efficiency

    link = nbytes / two["alone_s"] if two["alone_s"] > 0 else float("inf")   # N = 2: each rank sends nbytes
    measured = one["step_s"] / (2 * two["step_s"])          # 2 ranks' throughput over twice one rank's
    modelled = scaling_efficiency(one["step_s"] / 2, two["comm_s"])   # half the compute, plus the all-reduce
    print(f"\nN = 2 here: alone, the all-reduce moves {nbytes / 1e6:.1f} MB per rank in "
          f"{1000 * two['alone_s']:.2f} ms ({link / 1e9:.2f} GB/s through shared memory); inside training it took "
          f"{1000 * two['comm_s']:.2f} ms a step (waiting for the slower rank included). Measured efficiency "
          f"{100 * measured:.0f} % (same global batch); the model with the measured all-reduce and half of one "
          f"rank's step as compute: {100 * modelled:.0f} %.")


def cluster_table(title, nbytes, step_s, bandwidths, latency_s):
    from minillm.distributed import ring_allreduce_seconds, scaling_efficiency

    print(f"\n{title}: {nbytes / 1e6:.1f} MB of float32 gradients, {1000 * step_s:.1f} ms of compute per step "
          f"per rank, latency {1e6 * latency_s:.0f} us per message, no overlap")
    print("| link | N | all-reduce ms | efficiency |")
    print("| --- | ---: | ---: | ---: |")
    for gbs in bandwidths:
        for n in (8, 64, 512):
            comm = ring_allreduce_seconds(nbytes, n, gbs * 1e9, latency_s)
            print(f"| {gbs:g} GB/s | {n} | {1000 * comm:.1f} | {100 * scaling_efficiency(step_s, comm):.0f} % |")


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        from minillm import distributed

        with distributed.failures_end_the_job():                      # a crash on one rank ends them all
            return worker(args)
    if shutil.which("mpiexec") is None:
        print("error: mpiexec was not found: pip install -e \".[dist]\" (mpi4py and the MPICH wheel)",
              file=sys.stderr)
        return 2
    runs = {n: [] for n in args.ranks}
    start = time.perf_counter()
    total, done = args.rounds * len(args.ranks), 0
    for round_ in range(args.rounds):
        for n in args.ranks:                                          # interleaved: A B A B ...
            runs[n].append(launch(args, n))
            done += 1
            elapsed = time.perf_counter() - start
            print(f"round {round_ + 1}/{args.rounds}, {n} rank(s): {1000 * runs[n][-1]['step_s']:.1f} ms/step, "
                  f"all-reduce {1000 * runs[n][-1]['comm_s']:.2f} ms | {format_duration(elapsed)} so far, ETA "
                  f"{format_duration(elapsed / done * (total - done))}", flush=True)
    summary = medians(runs)
    measured_table(args, summary)
    first, nbytes = args.ranks[0], runs[args.ranks[0]][0]["grad_bytes"]
    if first == 1 and 2 in summary:
        two_ranks_against_the_model(summary[1], summary[2], nbytes)
    latency = args.latency_us * 1e-6
    cluster_table("cluster model, this bench's GPT", nbytes, summary[first]["step_s"], args.bandwidth, latency)
    cluster_table("cluster model, GPT-2 small (assumed step time)", 4 * GPT2_SMALL_PARAMS,
                  args.big_step_ms / 1000, args.bandwidth, latency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
