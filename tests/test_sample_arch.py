"""demos/sample.py generates from a checkpoint of either family train_shakespeare.py --arch writes.

The training demo records the family in the checkpoint (``arch``); sample.py
rebuilt every checkpoint as a GPT, so a Llama checkpoint ended in "unknown
fields ['head_dim', ...]". It must build the recorded family and draw the
very tokens that family's own ``generate`` draws.
"""
import importlib.util
from pathlib import Path

import pytest

from minillm import checkpoint
from minillm.models import GPT, GPTConfig, Llama, LlamaConfig, Mixtral, MixtralConfig
from minillm.tokenizers import CharTokenizer

DEMOS = Path(__file__).resolve().parents[1] / "demos"
TEXT = "to be or not to be, that is the question"


def load_sample_demo():
    spec = importlib.util.spec_from_file_location("demo_sample", DEMOS / "sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch, family, config", [
    ("llama", Llama, LlamaConfig),
    ("mixtral", Mixtral, MixtralConfig),
    ("gpt2", GPT, GPTConfig),
])
def test_sample_builds_the_family_the_checkpoint_records(tmp_path, capsys, arch, family, config):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = family(config(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=3)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, step=7, tokenizer=tokenizer, arch=arch)
    expected = tokenizer.decode(model.generate([tokenizer.encode("to be")], 12, temperature=0)[0].tolist())
    status = load_sample_demo().main(["--ckpt", str(path), "--prompt", "to be", "--max-new-tokens", "12",
                                      "--temperature", "0"])
    assert status == 0
    assert capsys.readouterr().out.splitlines()[0] == expected


def test_an_unknown_family_is_a_one_line_error(tmp_path, capsys):
    tokenizer = CharTokenizer.from_text(TEXT)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, tokenizer=tokenizer, arch="mamba")
    with pytest.raises(SystemExit) as stop:
        load_sample_demo().main(["--ckpt", str(path)])
    assert stop.value.code == 2
    assert "holds a 'mamba' model; minillm's decoders are ['gpt2', 'llama', 'mixtral']" in capsys.readouterr().err
