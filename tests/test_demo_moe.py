"""demos/moe.py runs end to end with tiny settings (seconds) and rejects bad flags with a one-line error;
train_shakespeare.py --arch mixtral trains and resumes."""
import json

import pytest

from tests.test_llama_demos import demo as demo_named

TINY = ["--seconds", "0.2", "--max-iters", "5", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
        "--batch-size", "2", "--block-size", "8", "--eval-iters", "1", "--experts", "4"]


def demo():
    return demo_named("moe")


def test_moe_demo_runs_and_writes_table_png_and_checkpoints(tmp_path, capsys):
    assert demo().main(TINY + ["--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["run"] for r in rows] == ["dense", "moe-active", "moe-total", "moe-no-aux"]
    dense, active, total, _ = rows
    # dense SwiGLU 48 wide; moe-active: 4 experts of 24, 2 a token; moe-total: 4 experts of 12
    assert active["active_params"] - dense["active_params"] == 16 * 4 == total["total_params"] - dense["total_params"]
    assert active["total_params"] > dense["total_params"] > total["active_params"]      # (the router: 16 x 4)
    assert all(r["steps"] <= 5 for r in rows)
    assert (tmp_path / "expert_load.png").is_file() and (tmp_path / "moe_table.md").is_file()
    assert all((tmp_path / r["run"] / "ckpt.npz").is_file() for r in rows)
    assert "| moe-no-aux |" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--top-k", "5"], "error: --top-k (5) must be between 1 and --experts (4)"),
    (["--runs", "sparse"], "argument --runs: unknown run(s) ['sparse']"),
    (["--seconds", "0"], "argument --seconds: expected a finite number > 0, got 0")])
def test_moe_demo_flag_errors(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        demo().main(["--experts", "4", "--out", str(tmp_path)] + flags)
    err = capsys.readouterr().err
    assert error.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_train_shakespeare_arch_mixtral_trains_and_resumes(tmp_path, capsys):
    """--arch mixtral trains with the aux loss, records the arch, and --resume rebuilds a Mixtral."""
    from minillm import checkpoint
    from minillm.corpus import load_corpus
    data = tmp_path / "small.txt"
    data.write_text(load_corpus()[:20_000])
    train = demo_named("train_shakespeare")
    flags = ["--data", str(data), "--arch", "mixtral", "--experts", "4", "--top-k", "2", "--aux-coef", "0.1",
             "--eval-every", "3", "--eval-iters", "1", "--batch-size", "2", "--block-size", "8", "--n-layer", "1",
             "--n-head", "2", "--n-embd", "16", "--warmup-iters", "1", "--sample-tokens", "4", "--out", str(tmp_path)]
    assert train.main(flags + ["--iters", "3"]) == 0
    assert train.main(["--resume", "--iters", "5", "--out", str(tmp_path), "--sample-tokens", "0"]) == 0
    ckpt = checkpoint.load(tmp_path / "ckpt.npz")
    assert ckpt["arch"] == "mixtral" and ckpt["step"] == 5 and ckpt["config"]["n_expert"] == 4
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in ckpt["model"]
    assert "| mixtral |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:
        train.main(["--data", str(data), "--experts", "4", "--out", str(tmp_path / "gpt")])
    assert error.value.code == 2 and "--experts need --arch mixtral" in capsys.readouterr().err
