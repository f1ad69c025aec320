"""How fast does minillm train, and how much memory does it take?

    python demos/bench_train.py                       # baby and big configs, on MINILLM_BACKEND
    python demos/bench_train.py --quick               # a few iterations each, to see that it runs
    MINILLM_BACKEND=cupy python demos/bench_train.py --config nanogpt

For each config it times full training iterations (batch drawing, forward,
cross-entropy, backward, gradient clipping, AdamW step) after a warm-up, with
``backend.synchronize()`` before every clock reading. If PyTorch is importable,
the same model and optimizer in PyTorch eager mode (with as many threads as minillm
uses, ``parallel.THREADS``) are timed in the same process, interleaved: ``--rounds`` rounds,
each ``--iters`` minillm steps then ``--iters`` PyTorch steps, so that a shared,
busy machine slows both sides of a round alike; the ratio reported is the
median of the rounds' ratios. It prints:

- ms per iteration (median of the rounds' medians) and tokens per second;
- model FLOP utilisation (MFU): the training FLOPs per second divided by the
  float32 matrix-product ceiling measured in the same run. Training FLOPs per
  token are 6 N (forward 2 N, backward 4 N, N the parameters without the
  position table, as nanoGPT counts) plus attention's 12 * n_layer * n_embd * T;
- the peak memory of one step (NumPy's buffers, as ``tracemalloc`` sees them)
  next to the analytic size: parameters, gradients, AdamW's two moments
  (4 copies of N floats) and the activations backward needs
  (``activation_bytes``).

PyTorch is never a dependency of minillm.
"""
import os
import resource
import sys
import time
import tracemalloc

import numpy

from minillm import backend, cli
from minillm.functional import parallel
from minillm.models import GPT, GPTConfig
from minillm.train import TrainConfig, Trainer

CONFIGS = {   # name: (block_size, batch_size, n_layer, n_head, n_embd, dropout)
    "baby": (64, 12, 4, 4, 128, 0.0),
    "big": (256, 16, 6, 6, 384, 0.0),
    "nanogpt": (256, 64, 6, 6, 384, 0.2),
}
VOCAB = 65     # tiny Shakespeare's characters


def peak_rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20   # KiB on Linux, bytes on macOS


def matmul_ceiling(seconds=1.0):
    """Best float32 GFLOP/s of square matrix products on the backend (2 n^3 FLOPs each), as
    minillm runs them: on the CPU, cut over its threads (``parallel.matmul``; the BLAS on one)."""
    best = 0.0
    sizes = (1024, 2048) if backend.name == "numpy" else (4096, 8192)
    rng = numpy.random.default_rng(0)
    for n in sizes:
        a = backend.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
        b = backend.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
        parallel.matmul(a, b)
        backend.synchronize()
        deadline = time.perf_counter() + seconds / len(sizes)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            parallel.matmul(a, b)
            backend.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_iter(n_params, config, batch_size):
    """6 N + 12 L C T FLOPs per token (nanoGPT's estimate), times the B * T tokens."""
    T = config.block_size
    per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * T
    return per_token * batch_size * T


def make_trainer(name):
    """A Trainer of a fresh GPT at config ``name`` on random token ids (also used by profile_train.py)."""
    block, batch, n_layer, n_head, n_embd, dropout = CONFIGS[name]
    config = GPTConfig(vocab_size=VOCAB, block_size=block, n_layer=n_layer, n_head=n_head,
                       n_embd=n_embd, dropout=dropout)
    ids = numpy.random.default_rng(0).integers(0, VOCAB, 200_000)
    return Trainer(GPT(config, seed=0), ids[:180_000], ids[180_000:], TrainConfig(
        iters=10**9, batch_size=batch, eval_iters=1, warmup_iters=10, seed=0))


def minillm_step(name):
    """(step function, info) for minillm's training step at config ``name``."""
    trainer = make_trainer(name)
    model, config, batch = trainer.model, trainer.model.config, trainer.config.batch_size
    n_all = model.num_parameters()
    return trainer.train_step, {"config": config, "batch": batch, "n_all": n_all,
                                "n_params": model.num_parameters(non_embedding=True),
                                "state_mib": 4 * n_all * 4 / 2**20,
                                "activation_mib": activation_bytes(config, batch) / 2**20}


def activation_bytes(config, batch):
    """float32 bytes of the activations a GPT-2 backward needs (the analytic size).

    Per token and block: ln_1's normalised input (C), q, k, v (3C), attention's
    output (C), ln_2's normalised input (C), the MLP's hidden pre-activation and
    post-activation (4C + 4C), plus the H * T attention weights; once per token:
    ln_f's normalised input (C) and the logits (V). Every linear layer reads an
    array already counted (a LayerNorm's output is recomputable from its
    normalised input; minillm keeps it too, which the measured peak shows).
    """
    T, C = config.block_size, config.n_embd
    per_token = config.n_layer * (15 * C + config.n_head * T) + C + config.vocab_size
    return 4 * per_token * batch * T


def traced_peak_mib(step):
    """Peak bytes NumPy allocates during one ``step()`` (tracemalloc sees NumPy's buffers), in MiB."""
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def torch_step(name, threads):
    """The same GPT-2 model and AdamW in PyTorch eager mode: a step function, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn
    from torch.nn import functional as TF

    torch.set_num_threads(threads)
    block, batch, n_layer, n_head, n_embd, dropout = CONFIGS[name]
    device = "cuda" if backend.name == "cupy" else "cpu"

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
            self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
            self.c_fc, self.mlp_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
            y = TF.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0,
                                                is_causal=True)
            x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))
            return x + self.drop(self.mlp_proj(TF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, n_embd), nn.Embedding(block, n_embd)
            self.h = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f, self.drop = nn.LayerNorm(n_embd), nn.Dropout(dropout)

        def forward(self, idx):
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device)))
            for blk in self.h:
                x = blk(x)
            return self.ln_f(x) @ self.wte.weight.T

    torch.manual_seed(0)
    model = TorchGPT().to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99), foreach=False)
    ids = torch.randint(0, VOCAB, (200_000,))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        starts = torch.randint(0, len(ids) - block - 1, (batch,))
        window = torch.stack([ids[s:s + block + 1] for s in starts.tolist()]).to(device)
        logits = model(window[:, :-1])
        loss = TF.cross_entropy(logits.reshape(-1, VOCAB), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
    return step


def timed_steps(step, count):
    """Seconds of each of ``count`` calls of ``step`` (the device's queue included)."""
    times = []
    for _ in range(count):
        backend.synchronize()
        start = time.perf_counter()
        step()
        backend.synchronize()
        times.append(time.perf_counter() - start)
    return times


def interleaved(steps, rounds, per_round, warmup):
    """Time the step functions in turns, A B A B ...: ``rounds`` rounds of ``per_round`` steps each.

    Returns, per function, the list of its per-round medians; a busy machine slows
    both sides of a round alike, so the per-round ratios are what to compare."""
    for step in steps:
        timed_steps(step, warmup)
    medians = [[] for _ in steps]
    for _ in range(rounds):
        for i, step in enumerate(steps):
            medians[i].append(float(numpy.median(timed_steps(step, per_round))))
    return medians


def cpu_threads():
    """The CPU threads minillm's step uses (``parallel.THREADS``: MINILLM_THREADS, else
    OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, else the CPU count); PyTorch gets as many."""
    if backend.name == "numpy":
        return parallel.THREADS
    return parallel.thread_count()


def main(argv=None):
    p = cli.ArgumentParser(description="Time minillm's training step and measure its memory.")
    p.add_argument("--config", choices=sorted(CONFIGS) + ["all"], action="append",
                   help="which config(s) to time (repeatable; default: baby and big)")
    p.add_argument("--rounds", type=cli.positive_int, default=5,
                   help="interleaved minillm/PyTorch rounds (median over them)")
    p.add_argument("--iters", type=cli.positive_int, default=None,
                   help="timed iterations per round and side (default 5 baby, 2 big, 1 nanogpt)")
    p.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed iterations first")
    p.add_argument("--quick", action="store_true", help="2 rounds of 1 iteration, 1 warm-up: a smoke test")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch side-by-side timing")
    args = p.parse_args(argv)
    names = args.config or ["baby", "big"]
    names = sorted(CONFIGS) if "all" in names else names
    warmup, rounds = (1, 2) if args.quick else (args.warmup, args.rounds)

    threads = cpu_threads()
    print(f"backend {backend.name} | numpy {numpy.__version__} | OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')} | {os.cpu_count()} CPUs | PyTorch threads {threads}")
    ceiling = matmul_ceiling(0.5 if args.quick else 2.0)
    print(f"float32 matmul ceiling: {ceiling:.1f} GFLOP/s")
    for name in names:
        iters = 1 if args.quick else (args.iters or {"baby": 5, "big": 2}.get(name, 1))
        step, r = minillm_step(name)
        other = None if args.no_torch else torch_step(name, threads)
        steps = [step] + ([other] if other is not None else [])
        medians = interleaved(steps, rounds, iters, warmup)
        cfg, seconds = r["config"], float(numpy.median(medians[0]))
        tokens = r["batch"] * cfg.block_size
        flops = flops_per_iter(r["n_params"], cfg, r["batch"])
        print(f"\n[{name}] block {cfg.block_size}, batch {r['batch']}, {cfg.n_layer} layers, "
              f"{cfg.n_head} heads, width {cfg.n_embd}, dropout {cfg.dropout}: {r['n_all']:,} parameters; "
              f"{rounds} interleaved rounds of {iters} iterations")
        print(f"  minillm: {1000 * seconds:.1f} ms/iter | {tokens / seconds:,.0f} tokens/s | "
              f"{flops / seconds / 1e9:.1f} GFLOP/s | MFU {100 * flops / seconds / 1e9 / ceiling:.1f}%")
        if other is None:
            print("  pytorch: " + ("skipped (--no-torch)" if args.no_torch else
                                   "not installed (optional; pip install torch to compare)"))
        else:
            torch_seconds = float(numpy.median(medians[1]))
            ratios = [a / b for a, b in zip(*medians)]
            print(f"  pytorch eager ({threads} threads): {1000 * torch_seconds:.1f} ms/iter | "
                  f"{tokens / torch_seconds:,.0f} tokens/s | MFU {100 * flops / torch_seconds / 1e9 / ceiling:.1f}%")
            print(f"  minillm / pytorch time: median of the rounds' ratios {numpy.median(ratios):.2f} "
                  f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
        peak = traced_peak_mib(step) if backend.name == "numpy" else backend.memory_used_bytes() / 2**20
        analytic = r["state_mib"] + r["activation_mib"]
        print(f"  memory: peak of one step {peak:.1f} MiB (NumPy's buffers, tracemalloc) against the analytic "
              f"{analytic:.1f} MiB (params + grads + AdamW m, v {r['state_mib']:.1f} + activations "
              f"{r['activation_mib']:.1f}): {peak / analytic:.2f}x; peak RSS of the process {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
