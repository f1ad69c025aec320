"""The training loop: exact resume (in-process and after SIGKILL), NaN stop, Ctrl-C, progress, plot."""
import io
import os
import signal
import subprocess
import sys
import time

import numpy
import pytest

from minillm import backend, checkpoint, corpus
from minillm import train as train_module
from minillm.models import GPT, GPTConfig
from minillm.plotting import plot_loss_curve
from minillm.progress import Progress, format_duration
from minillm.train import TrainConfig, Trainer, TrainingDiverged

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = (numpy.arange(700) * 7 + numpy.arange(700) // 50) % 13     # learnable: next = this + 7 (mod 13)
EXACT_ON_NUMPY = pytest.mark.skipif(
    backend.name != "numpy", reason="bit-identical resume is promised on NumPy only: CuPy's dropout "
    "generator state is not saved and its scatter-add sums in no fixed order")
MODEL = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1)


def make_trainer(out_dir=None, **overrides):
    settings = dict(iters=6, batch_size=3, eval_every=3, eval_iters=2, warmup_iters=2, seed=5)
    settings.update(overrides)
    model = GPT(GPTConfig(**MODEL), seed=11)
    return Trainer(model, IDS[:600], IDS[600:], TrainConfig(**settings), out_dir=out_dir, stream=io.StringIO())


def assert_same_state(a, b):
    for (name, p), (name_b, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert name == name_b
        numpy.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    state_a, state_b = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        numpy.testing.assert_array_equal(state_a[key], state_b[key], err_msg=key)
    assert a.history == b.history


def test_training_lowers_the_loss():
    trainer = make_trainer(iters=30, eval_every=30, lr=1e-2, warmup_iters=3)
    history = trainer.run()
    assert [e[0] for e in history["evals"]] == [0, 30] and len(history["train_loss"]) == 30
    assert history["evals"][-1][1] < history["evals"][0][1] - 0.1         # train loss fell
    assert trainer.model.training                                         # eval() was undone


@EXACT_ON_NUMPY
def test_resume_into_fresh_objects_is_exact(tmp_path):
    """2N steps == N steps, save, load into a FRESH model/optimizer/generators, N more (dropout on)."""
    straight = make_trainer()
    straight.run()
    first = make_trainer(out_dir=tmp_path)
    first.run(stop_at=3)
    assert first.step == 3
    del first
    ckpt = checkpoint.load(tmp_path / "ckpt.npz")
    assert ckpt["step"] == 3 and ckpt["train_config"]["iters"] == 6
    resumed = Trainer.from_checkpoint(ckpt, IDS[:600], IDS[600:], out_dir=tmp_path, stream=io.StringIO())
    resumed.run()
    assert resumed.step == 6
    assert_same_state(straight, resumed)
    # a plain load into a model built by hand works too
    by_hand = make_trainer().load_state(ckpt)
    by_hand.run()
    assert_same_state(straight, by_hand)


def test_gradient_accumulation_matches_one_big_batch():
    """grad_accum=2 micro-batches of 3 give the gradient of one batch of 6 (the same windows)."""
    def first_gradient(batch_size, grad_accum):
        model = GPT(GPTConfig(**dict(MODEL, dropout=0.0)), seed=11)
        trainer = Trainer(model, IDS[:600], IDS[600:], TrainConfig(
            iters=1, batch_size=batch_size, grad_accum=grad_accum, grad_clip=0.0, eval_every=1,
            eval_iters=1, seed=5), stream=io.StringIO())
        seen, real_step = [], trainer.optimizer.step

        def recording_step():
            seen.append([backend.to_numpy(p.grad).copy() for p in model.parameters()])
            real_step()

        trainer.optimizer.step = recording_step
        loss, _ = trainer.train_step()
        return loss, seen[0]

    (loss_one, one), (loss_acc, accumulated) = first_gradient(6, 1), first_gradient(3, 2)
    assert loss_one == pytest.approx(loss_acc, rel=1e-5)
    for g, h in zip(one, accumulated):
        numpy.testing.assert_allclose(g, h, rtol=1e-4, atol=1e-7)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(out_dir=tmp_path)
    trainer.run(stop_at=2)
    good = checkpoint.load(tmp_path / "ckpt.npz")
    trainer.model.ln_f.weight.data[:] = numpy.nan                 # every logit becomes NaN
    before = {k: v.copy() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at iteration 3 .*last good checkpoint, "
                       r".*ckpt.npz \(iteration 2\), is kept"):
        trainer.run()
    assert trainer.step == 2                                       # no update happened
    for name, value in trainer.model.state_dict().items():
        numpy.testing.assert_array_equal(value, before[name])
    kept = checkpoint.load(tmp_path / "ckpt.npz")
    assert kept["step"] == 2
    for name, value in good["model"].items():
        numpy.testing.assert_array_equal(kept["model"][name], value)
        assert numpy.isfinite(value).all()


@EXACT_ON_NUMPY
def test_ctrl_c_mid_iteration_saves_the_last_complete_one(tmp_path, monkeypatch):
    """KeyboardInterrupt after iteration 3's batch was drawn: the checkpoint is iteration 2, with
    the generators as they were before iteration 3, so resuming is still exact."""
    straight = make_trainer()
    straight.run()
    calls = {"n": 0}
    real_get_batch = train_module.get_batch

    def interrupted_get_batch(ids, batch_size, block_size, rng):
        batch = real_get_batch(ids, batch_size, block_size, rng)
        calls["n"] += rng is first.batch_rng                      # training batches only, not eval
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return batch

    stream = io.StringIO()
    first = make_trainer(out_dir=tmp_path)
    first.stream = stream
    monkeypatch.setattr(train_module, "get_batch", interrupted_get_batch)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    monkeypatch.setattr(train_module, "get_batch", real_get_batch)
    assert "interrupted after iteration 2" in stream.getvalue()
    ckpt = checkpoint.load(tmp_path / "ckpt.npz")
    assert ckpt["step"] == 2
    resumed = Trainer.from_checkpoint(ckpt, IDS[:600], IDS[600:], stream=io.StringIO())
    resumed.run()
    assert_same_state(straight, resumed)


@EXACT_ON_NUMPY
def test_ctrl_c_during_the_update_is_held_until_it_is_complete(tmp_path, monkeypatch):
    straight = make_trainer()
    straight.run()
    first = make_trainer(out_dir=tmp_path)
    real_step = first.optimizer.step

    def step_with_sigint():
        if first.step == 3:
            signal.raise_signal(signal.SIGINT)        # to this (main) thread, in the middle of the update
        real_step()

    first.optimizer.step = step_with_sigint
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert first.step == 4                             # the update finished, then Ctrl-C took effect
    ckpt = checkpoint.load(tmp_path / "ckpt.npz")
    assert ckpt["step"] == 4
    resumed = Trainer.from_checkpoint(ckpt, IDS[:600], IDS[600:], stream=io.StringIO())
    resumed.run()
    assert_same_state(straight, resumed)


@EXACT_ON_NUMPY
def test_demo_killed_with_sigkill_resumes_to_the_same_parameters(tmp_path):
    """Run the real demo, SIGKILL it mid-run, --resume it; compare with an uninterrupted run."""
    data = tmp_path / "small.txt"
    data.write_text(corpus.load_corpus()[:20_000])
    flags = ["--data", str(data), "--iters", "150", "--eval-every", "50", "--eval-iters", "2",
             "--checkpoint-every", "3", "--batch-size", "4", "--block-size", "16", "--n-layer", "1",
             "--n-head", "2", "--n-embd", "16", "--dropout", "0.1", "--warmup-iters", "5",
             "--sample-tokens", "0", "--seed", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    demo = os.path.join(REPO, "demos", "train_shakespeare.py")

    def command(out, *extra):
        return [sys.executable, demo, *flags, "--out", str(out), *extra]

    subprocess.run(command(tmp_path / "straight"), env=env, check=True, capture_output=True, timeout=300)
    killed_ckpt = tmp_path / "killed" / "ckpt.npz"
    child = subprocess.Popen(command(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not killed_ckpt.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    interrupted_at = checkpoint.load(killed_ckpt)["step"]
    assert 0 < interrupted_at < 150, "the run must be killed mid-way"
    resumed = subprocess.run(command(tmp_path / "killed", "--resume"), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed_ckpt} at iteration {interrupted_at} of 150" in resumed.stdout
    a, b = checkpoint.load(tmp_path / "straight" / "ckpt.npz"), checkpoint.load(killed_ckpt)
    assert a["step"] == b["step"] == 150
    for name in a["model"]:
        numpy.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)
    assert a["history"]["train_loss"] == b["history"]["train_loss"]
    assert (tmp_path / "killed" / "loss.png").exists()


def test_train_config_errors_name_the_field():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr must be >= 0, got -1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="the validation split has 5 tokens, fewer than block_size"):
        Trainer(GPT(GPTConfig(**MODEL)), IDS, IDS[:5])


def test_learning_rate_schedule_endpoints():
    trainer = make_trainer(iters=100, warmup_iters=10, lr=1e-3, min_lr=1e-4)
    assert trainer.lr_at(10) == pytest.approx(1e-3)
    assert trainer.lr_at(100) == pytest.approx(1e-4)
    assert trainer.lr_at(0) == pytest.approx(1e-3 / 11)
    short = make_trainer(iters=4, warmup_iters=100)                # warmup longer than the run: cut
    assert short.lr_at(4) == pytest.approx(short.config.min_lr)


def test_progress_without_a_terminal_prints_plain_lines():
    stream = io.StringIO()
    progress = Progress(total=40, stream=stream, every=10)
    for step in range(1, 41):
        progress.update(step, 2.5, lr=1e-3, seconds=0.125)
    progress.message("step 40: val loss 2.4")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "iter 10/40 |  25% | loss 2.5000 | lr 1.00e-03 | 125.0 ms/iter | ETA 4s"
    assert len(lines) == 5 and lines[-1] == "step 40: val loss 2.4"


def test_progress_on_a_terminal_redraws_one_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(total=3, stream=stream, min_interval=0.0)
    for step in (1, 2, 3):
        progress.update(step, 1.0, seconds=1.0)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "ETA 0s" in text and "ETA 2s" in text


def test_format_duration():
    assert [format_duration(s) for s in (4.2, 85, 3725)] == ["4s", "1m25s", "1h02m05s"]


def test_loss_curve_is_a_png(tmp_path):
    history = {"train_loss": list(numpy.linspace(4, 2, 120)), "evals": [[0, 4.1, 4.2], [120, 2.0, 2.1]]}
    path = plot_loss_curve(history, str(tmp_path / "sub" / "loss.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
