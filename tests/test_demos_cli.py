"""The demos as a learner drives them: bad flags give one line naming the flag, never a traceback.

Each demo runs as a subprocess (``python demos/<name>.py ...``) with tiny
settings, so what is checked is what a learner sees: the exit status (2 for a
bad flag, argparse's convention), stderr holding exactly one line that names
the flag or the value, and no "Traceback" (unless MINILLM_DEBUG=1 asks for
one). Then the behaviours issue 18 asked for: ``--iters 0`` and ``--seconds
-1`` refused at once, one-line warnings for settings that silently do
something else, and a LoRA adapter from finetune_lora.py (and the model
sft.py trains) generating through sample.py.
"""
import os
import subprocess
import sys

import pytest

from minillm import checkpoint
from minillm import GPT, GPTConfig
from minillm.corpus import load_corpus
from minillm.tokenizers import CharTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
ENV.pop("MINILLM_DEBUG", None)
TINY_GPT = ["--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8"]


def run(demo, *flags, env=ENV, cwd=None):
    command = [sys.executable, os.path.join(REPO, "demos", f"{demo}.py"), *map(str, flags)]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny trained-by-nobody checkpoint, a small corpus, a text file, a binary file, an empty folder."""
    root = tmp_path_factory.mktemp("demo_inputs")
    text = load_corpus()[:4000]
    (root / "small.txt").write_text(text, encoding="utf-8")
    (root / "binary.dat").write_bytes(b"abc\xff\xfe\x00" * 10)
    (root / "empty").mkdir()
    tok = CharTokenizer.from_text(text)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8), seed=0)
    checkpoint.save(root / "ckpt.npz", model, tokenizer=tok)
    return root


BAD_INPUTS = [  # (demo, flags, what the one line must contain); {root} is the fixture folder
    ("sample", ["--top-p", "0"], "argument --top-p: expected a probability in (0, 1], got 0"),
    ("sample", ["--temperature", "-1"], "argument --temperature: expected a finite number >= 0, got -1"),
    ("sample", ["--top-k", "0"], "argument --top-k: expected a positive integer, got 0"),
    ("sample", ["--max-new-tokens", "-5"], "argument --max-new-tokens: expected an integer >= 0, got -5"),
    ("sample", ["--ckpt", "{root}/small.txt"], "--ckpt {root}/small.txt: checkpoint {root}/small.txt is not a "
                                               "minillm checkpoint: it is not an .npz archive"),
    ("sample", ["--ckpt", "{root}/none.npz"], "--ckpt {root}/none.npz: checkpoint {root}/none.npz does not exist"),
    ("sample", ["--prompt", "ROMEO \u00e9"], "--prompt has characters the checkpoint's tokenizer lacks: ['\u00e9'] "
                                             "(--drop-unknown removes them)"),
    ("sample", ["--adapter", "{root}/ckpt.npz"], "--adapter {root}/ckpt.npz: {root}/ckpt.npz is not a LoRA adapter"),
    ("train_shakespeare", ["--n-head", "3"], "--n-head 3, --n-embd 8: n_embd (8) must be divisible by n_head (3)"),
    ("train_shakespeare", ["--lr", "-1"], "argument --lr: expected a finite number > 0, got -1"),
    ("train_shakespeare", ["--block-size", "0"], "argument --block-size: expected a positive integer, got 0"),
    ("train_shakespeare", ["--iters", "0"], "argument --iters: expected a positive integer, got 0"),
    ("train_shakespeare", ["--data", "{root}/none.txt"], "argument --data: {root}/none.txt does not exist"),
    ("train_shakespeare", ["--data", "{root}/binary.dat"], "--data {root}/binary.dat: corpus file "
                                                           "{root}/binary.dat is not UTF-8 text: byte 0xff"),
    ("train_shakespeare", ["--block-size", "5000"], "--block-size 5000: the training split has 3600 tokens, "
                                                    "fewer than block_size + 1"),
    ("train_shakespeare", ["--resume", "--out", "{root}/empty"], "--resume: there is no checkpoint"),
    ("clean_corpus", ["{root}/none"], "argument IN_DIR: {root}/none does not exist"),
    ("clean_corpus", ["{root}/empty"], "IN_DIR {root}/empty holds no file matching --pattern '*.txt'"),
    ("clean_corpus", ["{root}", "--pattern", "*.md"], "holds no file matching --pattern '*.md': nothing to clean"),
    ("compare_tokenizers", ["--seconds", "-1"], "argument --seconds: expected a finite number > 0, got -1"),
    ("finetune_lora", ["--ranks", "2,0"], "argument --ranks: expected a positive integer, got 0"),
    ("sft", ["--lora-rank", "-1"], "argument --lora-rank: expected an integer >= 0, got -1"),
    ("classify", ["--ckpt", "{root}/none.npz"], "argument --ckpt: {root}/none.npz does not exist"),
    ("sampling_playground", ["--top-p", "2"], "argument --top-p: expected a probability in (0, 1], got 2"),
    ("conditional_generation", ["--ckpt", "{root}/small.txt"], "--ckpt {root}/small.txt: checkpoint"),
    ("scaling_laws", ["--sizes", "64,0,128"], "argument --sizes: expected a positive integer, got 0"),
]
DEFAULTS = {"sample": ["--ckpt", "{root}/ckpt.npz", "--max-new-tokens", "3"],
            "train_shakespeare": ["--data", "{root}/small.txt", "--out", "{root}/run", "--iters", "1",
                                  "--sample-tokens", "0", *TINY_GPT]}


@pytest.mark.parametrize("demo, flags, expected", BAD_INPUTS,
                         ids=[f"{d} {' '.join(f)}" for d, f, _ in BAD_INPUTS])
def test_bad_input_is_one_line_naming_the_flag(files, demo, flags, expected):
    fill = lambda items: [str(item).format(root=files) for item in items]
    done = run(demo, *fill(DEFAULTS.get(demo, [])), *fill(flags))     # later flags win
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{demo}.py: error: ")
    assert expected.format(root=files) in lines[0]


def test_debug_environment_variable_shows_the_traceback(files):
    done = run("sample", "--ckpt", files / "small.txt", env=dict(ENV, MINILLM_DEBUG="1"))
    assert done.returncode != 0 and "Traceback" in done.stderr and "CheckpointError" in done.stderr


def test_sample_warns_about_settings_that_do_something_else(files):
    ckpt = ["--ckpt", files / "ckpt.npz", "--max-new-tokens", "3"]
    done = run("sample", *ckpt, "--temperature", "0", "--top-k", "3", "--prompt", "ROMEO: " * 3)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: --temperature 0 is greedy decoding (the most probable token): --top-k "
                        "changes nothing",
                        "warning: --prompt has 21 tokens, more than the model's context of 8: "
                        "it sees only the last 8"]
    done = run("sample", *ckpt, "--top-k", "1000", "--prompt", "\u00e9ROMEO", "--drop-unknown")
    assert done.returncode == 0, done.stderr
    assert "warning: --top-k 1000 is not below the vocabulary size" in done.stderr
    assert "warning: --drop-unknown: removed 1 prompt characters the tokenizer lacks: ['\u00e9']" in done.stderr
    assert done.stdout.startswith("ROMEO")


def test_train_warns_when_iters_never_reach_the_decay(files):
    done = run("train_shakespeare", "--data", files / "small.txt", "--out", files / "warm", "--iters", "2",
               "--warmup-iters", "100", "--eval-iters", "1", "--batch-size", "2", "--sample-tokens", "0", *TINY_GPT)
    assert done.returncode == 0, done.stderr
    assert ("warning: --iters 2 is not above --warmup-iters 100: the learning rate warms up for the whole run "
            "and never decays") in done.stderr
    assert checkpoint.load(files / "warm" / "ckpt.npz")["step"] == 2


def test_finetuning_demos_save_what_they_trained_and_sample_loads_it(tmp_path):
    lora = run("finetune_lora", "--pretrain-iters", "2", "--iters", "2", "--eval-tokens", "200", "--ranks", "2",
               "--n-layer", "1", "--n-embd", "16", "--block-size", "16", "--out", tmp_path / "lora")
    assert lora.returncode == 0, lora.stderr
    base, adapter = tmp_path / "lora" / "base.npz", tmp_path / "lora" / "adapter_r2.npz"
    assert base.is_file() and adapter.is_file() and (tmp_path / "lora" / "full.npz").is_file()
    assert f"python demos/sample.py --ckpt {base} --adapter {adapter}" in lora.stdout
    done = run("sample", "--ckpt", base, "--adapter", adapter, "--prompt", "ROMEO", "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ROMEO") and f"adapter {adapter}]" in done.stderr
    done = run("sample", "--ckpt", adapter)                                  # the adapter is not a model
    assert done.returncode == 2 and "is a LoRA adapter, not a model: pass it as --adapter" in done.stderr

    sft = run("sft", "--pretrain-iters", "2", "--iters", "2", "--n-train", "20", "--n-test", "4",
              "--eval-every", "2", "--n-layer", "1", "--n-embd", "16", "--block-size", "32", "--lora-rank", "2",
              "--out", tmp_path / "sft")
    assert sft.returncode == 0, sft.stderr
    for name in ("sft.npz", "adapter.npz", "base.npz"):
        assert (tmp_path / "sft" / name).is_file(), name
    done = run("sample", "--ckpt", tmp_path / "sft" / "sft.npz", "--prompt", "Q: reverse 'abc'\nA: ",
               "--temperature", "0", "--max-new-tokens", "4")
    assert done.returncode == 0 and done.stdout.startswith("Q: reverse 'abc'\nA: "), done.stderr
    merged = done.stdout
    done = run("sample", "--ckpt", tmp_path / "sft" / "base.npz", "--adapter", tmp_path / "sft" / "adapter.npz",
               "--prompt", "Q: reverse 'abc'\nA: ", "--temperature", "0", "--max-new-tokens", "4")
    assert done.returncode == 0 and done.stdout == merged, done.stderr    # base + adapter = the saved model
