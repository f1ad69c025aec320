"""The benchmark demos still run against the ops they time.

``demos/bench_ops.py`` calls each op's ``Function.forward`` directly, so a
change of an op's keyword arguments breaks it without breaking any other
test (it did: attention gained ``key_mask`` and ``scale``). Each benchmark
runs here once on tiny shapes; the timings themselves are not checked.
"""
import importlib.util
from pathlib import Path

import numpy

DEMOS = Path(__file__).resolve().parents[1] / "demos"


def load(name):
    spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_ops_times_every_op_on_tiny_shapes():
    bench = load("bench_ops")
    rng = numpy.random.default_rng(0)
    (op, yardstick), flops = bench.bench_attention(rng, batch=2, t=8, channels=16, heads=2, repeats=1)
    assert op > 0 and yardstick > 0 and flops == 6 * 2 * 2 * 2 * 8 * 8 * 8
    (op, yardstick), flops = bench.bench_linear(rng, batch=2, t=8, channels=16, repeats=1)
    assert op > 0 and yardstick > 0 and flops > 0
    assert min(bench.bench_layer_norm(rng, batch=2, t=8, channels=16, repeats=1)) > 0
    assert min(bench.bench_cross_entropy(rng, batch=2, t=8, vocab=11, repeats=1)) > 0


def test_bench_generate_runs_and_both_paths_agree(capsys):
    bench = load("bench_generate")
    bench.main(["--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
                "--lengths", "4,20", "--repeats", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("4 |", "20 |"))]
    assert len(rows) == 2 and all("yes" in row for row in rows), out     # cache and no cache: same tokens


def test_bench_train_runs_a_tiny_config(capsys, monkeypatch):
    bench = load("bench_train")
    monkeypatch.setitem(bench.CONFIGS, "tiny", (8, 2, 1, 2, 16, 0.0))   # block, batch, layers, heads, width, dropout
    assert bench.main(["--config", "tiny", "--quick", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "[tiny]" in out and "ms/iter" in out and "peak RSS" in out, out
