"""How fast does minillm train, and how much memory does it take?

    python demos/bench_train.py                       # baby and big configs, on MINILLM_BACKEND
    python demos/bench_train.py --quick               # a few iterations each, to see that it runs
    MINILLM_BACKEND=cupy python demos/bench_train.py --config nanogpt

For each config it times full training iterations (batch drawing, forward,
cross-entropy, backward, gradient clipping, AdamW step) after a warm-up, with
``backend.synchronize()`` before every clock reading, and prints:

- ms per iteration and tokens per second (B * T tokens per iteration);
- model FLOP utilisation (MFU): the training FLOPs per second divided by the
  float32 matrix-product ceiling measured in the same run. Training FLOPs per
  token are 6 N (forward 2 N, backward 4 N, N the parameters without the
  position table, as nanoGPT counts) plus attention's 12 * n_layer * n_embd * T;
- peak resident memory (``resource.getrusage``) next to the bytes that the
  parameters, their gradients and AdamW's two moments must take (4 copies of
  N floats), and the resident memory at a few iterations: the graph is freed
  every step, so it stays flat.

If PyTorch happens to be importable, the same model and optimizer are timed in
PyTorch eager mode side by side (PyTorch is never a dependency of minillm).
"""
import argparse
import os
import resource
import sys
import time

import numpy

from minillm import backend
from minillm.models import GPT, GPTConfig
from minillm.train import TrainConfig, Trainer

CONFIGS = {   # name: (block_size, batch_size, n_layer, n_head, n_embd, dropout)
    "baby": (64, 12, 4, 4, 128, 0.0),
    "big": (256, 16, 6, 6, 384, 0.0),
    "nanogpt": (256, 64, 6, 6, 384, 0.2),
}
VOCAB = 65     # tiny Shakespeare's characters


def rss_mib():
    """Current resident memory of this process in MiB (Linux /proc; else the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


def peak_rss_mib():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20   # KiB on Linux, bytes on macOS


def matmul_ceiling(seconds=1.0):
    """Best float32 GFLOP/s of square matrix products on the backend (2 n^3 FLOPs each)."""
    xp = backend.xp
    best = 0.0
    sizes = (1024, 2048) if backend.name == "numpy" else (4096, 8192)
    rng = numpy.random.default_rng(0)
    for n in sizes:
        a = backend.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
        b = backend.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
        xp.matmul(a, b)
        backend.synchronize()
        deadline = time.perf_counter() + seconds / len(sizes)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            xp.matmul(a, b)
            backend.synchronize()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_iter(n_params, config, batch_size):
    """6 N + 12 L C T FLOPs per token (nanoGPT's estimate), times the B * T tokens."""
    T = config.block_size
    per_token = 6 * n_params + 12 * config.n_layer * config.n_embd * T
    return per_token * batch_size * T


def bench_minillm(name, iters, warmup):
    block, batch, n_layer, n_head, n_embd, dropout = CONFIGS[name]
    config = GPTConfig(vocab_size=VOCAB, block_size=block, n_layer=n_layer, n_head=n_head,
                       n_embd=n_embd, dropout=dropout)
    model = GPT(config, seed=0)
    ids = numpy.random.default_rng(0).integers(0, VOCAB, 200_000)
    trainer = Trainer(model, ids[:180_000], ids[180_000:], TrainConfig(
        iters=10**9, batch_size=batch, eval_iters=1, warmup_iters=10, seed=0))
    for _ in range(warmup):
        trainer.train_step()
    backend.synchronize()
    rss, times = [], []
    marks = sorted({1, max(1, iters // 2), iters})
    for i in range(1, iters + 1):
        start = time.perf_counter()
        trainer.train_step()
        backend.synchronize()
        times.append(time.perf_counter() - start)
        if i in marks:
            rss.append((i, rss_mib(), backend.memory_used_bytes() / 2**20))
    n_all = model.num_parameters()
    return {"config": config, "batch": batch, "seconds": float(numpy.median(times)),
            "n_params": model.num_parameters(non_embedding=True), "n_all": n_all, "rss": rss,
            "state_mib": 4 * n_all * 4 / 2**20}


def bench_torch(name, iters, warmup):
    """The same GPT-2 model and AdamW in PyTorch eager mode; seconds per iteration, or None."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn
    from torch.nn import functional as TF

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

    def step():
        starts = torch.randint(0, len(ids) - block - 1, (batch,))
        window = torch.stack([ids[s:s + block + 1] for s in starts.tolist()]).to(device)
        logits = model(window[:, :-1])
        loss = TF.cross_entropy(logits.reshape(-1, VOCAB), window[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return float(numpy.median(times)), torch.get_num_threads()


def main(argv=None):
    p = argparse.ArgumentParser(description="Time minillm's training step and measure its memory.")
    p.add_argument("--config", choices=sorted(CONFIGS) + ["all"], action="append",
                   help="which config(s) to time (repeatable; default: baby and big)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 20 baby, 5 others)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p.add_argument("--quick", action="store_true", help="3 timed iterations, 1 warm-up: a smoke test")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch side-by-side timing")
    args = p.parse_args(argv)
    names = args.config or ["baby", "big"]
    names = sorted(CONFIGS) if "all" in names else names
    warmup = 1 if args.quick else args.warmup

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"backend {backend.name} | numpy {numpy.__version__} | OMP_NUM_THREADS {threads} | "
          f"{os.cpu_count()} CPUs")
    ceiling = matmul_ceiling(0.5 if args.quick else 2.0)
    print(f"float32 matmul ceiling: {ceiling:.1f} GFLOP/s")
    for name in names:
        iters = 3 if args.quick else (args.iters or (20 if name == "baby" else 5))
        r = bench_minillm(name, iters, warmup)
        cfg, seconds = r["config"], r["seconds"]
        tokens = r["batch"] * cfg.block_size
        flops = flops_per_iter(r["n_params"], cfg, r["batch"])
        print(f"\n[{name}] block {cfg.block_size}, batch {r['batch']}, {cfg.n_layer} layers, "
              f"{cfg.n_head} heads, width {cfg.n_embd}, dropout {cfg.dropout}: {r['n_all']:,} parameters")
        print(f"  minillm: {1000 * seconds:.1f} ms/iter | {tokens / seconds:,.0f} tokens/s | "
              f"{flops / seconds / 1e9:.1f} GFLOP/s | MFU {100 * flops / seconds / 1e9 / ceiling:.1f}% "
              f"(median of {iters})")
        print(f"  memory: peak RSS {peak_rss_mib():.0f} MiB; params + grads + AdamW m, v = "
              f"{r['state_mib']:.1f} MiB; RSS by iteration: " +
              ", ".join(f"#{i} {m:.0f} MiB" + (f" (device {d:.0f} MiB)" if backend.name == "cupy" else "")
                        for i, m, d in r["rss"]))
        if not args.no_torch:
            result = bench_torch(name, iters, warmup)
            if result is None:
                print("  pytorch: not installed (optional; pip install torch to compare)")
            else:
                torch_seconds, torch_threads = result
                print(f"  pytorch eager ({torch_threads} threads): {1000 * torch_seconds:.1f} ms/iter | "
                      f"{tokens / torch_seconds:,.0f} tokens/s | MFU "
                      f"{100 * flops / torch_seconds / 1e9 / ceiling:.1f}% | minillm / pytorch time "
                      f"= {seconds / torch_seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
