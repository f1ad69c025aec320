"""The demos that reach Llama, with tiny settings: training with --arch llama (and resuming it
exactly), and demos/generate.py on a GPT-2 folder and on a Llama folder with a tokenizer.json."""
import importlib.util
import json
import os

import numpy
import pytest

import minillm.tokenizers
from minillm import GPT, GPTConfig, Llama, LlamaConfig, backend, checkpoint
from minillm.corpus import load_corpus
from minillm.tokenizers import BPETokenizer
from minillm.train import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "demos", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_llama_resumes_to_the_same_weights(tmp_path, capsys, monkeypatch):
    """A run paused at iteration 10 of 20 (Trainer.run's stop_at, as an interruption would) and
    resumed with --resume ends with the weights of a run that was never paused."""
    data = tmp_path / "small.txt"
    data.write_text(load_corpus()[:20_000])
    train = demo("train_shakespeare")
    flags = ["--data", str(data), "--arch", "llama", "--n-kv-head", "1", "--eval-every", "10", "--eval-iters",
             "2", "--batch-size", "4", "--block-size", "16", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
             "--warmup-iters", "2", "--sample-tokens", "5", "--seed", "3"]
    assert train.main(flags + ["--iters", "20", "--out", str(tmp_path / "straight")]) == 0
    with monkeypatch.context() as patch:
        run = Trainer.run
        patch.setattr(Trainer, "run", lambda self, stop_at=None: run(self, stop_at=10))
        assert train.main(flags + ["--iters", "20", "--out", str(tmp_path / "split")]) == 0
    assert checkpoint.load(tmp_path / "split" / "ckpt.npz")["step"] == 10
    assert train.main(["--resume", "--out", str(tmp_path / "split"), "--sample-tokens", "0"]) == 0
    out = capsys.readouterr().out
    assert "| llama |" in out and "KV cache 64 bytes/token" in out and "tokens/s" in out  # 2*1*1*8*4
    a, b = checkpoint.load(tmp_path / "straight" / "ckpt.npz"), checkpoint.load(tmp_path / "split" / "ckpt.npz")
    assert a["arch"] == b["arch"] == "llama" and a["step"] == b["step"] == 20
    assert "model.layers.0.self_attn.k_proj.weight" in a["model"]
    for name in a["model"]:
        numpy.testing.assert_array_equal(a["model"][name], b["model"][name], err_msg=name)


def test_n_kv_head_without_llama_is_a_named_error(tmp_path, capsys):
    data = tmp_path / "small.txt"
    data.write_text(load_corpus()[:5_000])
    with pytest.raises(SystemExit) as exit_info:
        demo("train_shakespeare").main(["--data", str(data), "--n-kv-head", "2", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "--n-kv-head needs --arch llama" in capsys.readouterr().err


def greedy_text(model, tokenizer, prompt_ids, n):
    out = backend.to_numpy(model.generate(numpy.array([prompt_ids]), n, temperature=0))[0]
    return tokenizer.decode(out[len(prompt_ids):].tolist())


def test_generate_runs_a_gpt2_folder(tmp_path, capsys):
    tokenizer = BPETokenizer.train(load_corpus()[:5_000], 300)
    tokenizer.save_gpt2(tmp_path)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16), seed=1)
    model.save_pretrained(tmp_path)
    assert demo("generate").main(["--model-dir", str(tmp_path), "--prompt", "To be", "--temperature", "0",
                                  "--max-new-tokens", "12"]) == 0
    captured = capsys.readouterr()
    expected = greedy_text(model, tokenizer, tokenizer.encode("To be"), 12)
    assert captured.out == "To be" + expected + "\n"
    assert "tokens/s" in captured.err and "GPT" in captured.err


def test_generate_runs_a_llama_folder_and_stops_at_eos(tmp_path, capsys):
    tokenizers = pytest.importorskip("tokenizers", reason="writing a tokenizer.json needs the tokenizers library")
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    reference = tokenizers.Tokenizer(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.decoder = decoders.ByteLevel()
    reference.train_from_iterator(load_corpus()[:20_000].split("\n"), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    reference.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    reference.save(str(tmp_path / "tokenizer.json"))
    model = Llama(LlamaConfig(vocab_size=300, block_size=64, n_layer=1, n_head=4, n_kv_head=2, n_embd=16), seed=2)
    model.save_pretrained(tmp_path)
    prompt = reference.encode("ROMEO:").ids
    assert prompt[0] == 0                                                 # the template's <s>
    loaded = minillm.tokenizers.load(tmp_path)
    expected = greedy_text(model, loaded, prompt, 10)
    run = demo("generate")
    assert run.main(["--model-dir", str(tmp_path), "--prompt", "ROMEO:", "--temperature", "0",
                     "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + expected + "\n"

    first = int(backend.to_numpy(model.generate(numpy.array([prompt]), 1, temperature=0))[0, -1])
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "eos_token_id": first}))
    assert run.main(["--model-dir", str(tmp_path), "--prompt", "ROMEO:", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == "ROMEO:\n"                         # the first token was the end


def test_generate_flag_errors(tmp_path, capsys):
    run = demo("generate")
    for flags, message in [(["--model-dir", str(tmp_path / "nope")], "argument --model-dir: "),
                           (["--model-dir", str(tmp_path)], "config.json not found in"),
                           (["--model-dir", str(tmp_path), "--top-p", "1.5"], "expected a probability in (0, 1]")]:
        with pytest.raises(SystemExit) as exit_info:
            run.main(flags)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
