"""The BERT demos end to end with tiny settings (seconds): pretrain_mlm.py writes a model that
minillm.hf loads, fill_mask.py reads a BERT folder (and refuses others with exit status 2),
encoder_vs_decoder.py prints its table."""
import json

import numpy
import pytest

import minillm.hf
from minillm import Bert, BertConfig, GPT, GPTConfig
from minillm.tokenizers.wordpiece import SPECIAL_TOKENS
from tests.test_finetune import _demo as demo  # a demo file imported as a module


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_pretrain_mlm_runs_and_saves_a_loadable_model(tmp_path, capsys, tokenizer):
    demo("pretrain_mlm").main(["--tokenizer", tokenizer, "--vocab-size", "270", "--iters", "3", "--eval-every", "2",
                               "--eval-batches", "1", "--batch-size", "4", "--seq-len", "12", "--n-layer", "1",
                               "--n-embd", "16", "--n-head", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "fill-mask before training" in out and "fill-mask after training" in out and "accuracy" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == [0, 2, 3] and len(metrics["train_loss"]) == 3
    assert (tmp_path / "mlm_curves.png").is_file()
    model = minillm.hf.load(tmp_path / "model")
    assert isinstance(model, Bert) and model.config.max_position_embeddings == 12


@pytest.mark.parametrize("flags, message", [
    (["--seq-len", "2"], "--seq-len must be at least 3"),
    (["--n-head", "3"], "--n-head 3, --n-embd 128: n_embd (128) must be divisible by n_head (3)"),
    (["--iters", "0"], "argument --iters: expected a positive integer, got 0"),
    (["--prompt", "no mask"], "every --prompt needs a [MASK]"),
])
def test_pretrain_mlm_flag_errors_are_one_line_exit_2(capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        demo("pretrain_mlm").main(flags + ["--tokenizer", "char", "--iters", "1"] if "--iters" not in flags
                                  else flags)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def bert_folder(path):
    vocab = list(SPECIAL_TOKENS) + ["to", "be", "or", "not", ",", ".", "the", "##s"]
    Bert(BertConfig(vocab_size=len(vocab), max_position_embeddings=16, n_layer=1, n_head=2, n_embd=8)
         ).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return path


def test_fill_mask_reads_a_bert_folder(tmp_path, capsys):
    folder = bert_folder(tmp_path / "bert")
    demo("fill_mask").main(["--model-dir", str(folder), "--text", "To be, or not to [MASK].", "--top-k", "3"])
    out = capsys.readouterr().out
    assert "[MASK] at token 7:" in out and out.count(" 0.") >= 3


def test_fill_mask_refuses_other_folders_and_bad_flags(tmp_path, capsys):
    GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4)).save_pretrained(tmp_path / "gpt2")
    folder = bert_folder(tmp_path / "bert")
    for flags, message in (
            (["--model-dir", str(tmp_path / "gpt2")], "holds a GPT"),
            (["--model-dir", str(folder), "--text", "to " * 20 + "[MASK]"], "more than the model's "
                                                                            "max_position_embeddings 16"),
            (["--model-dir", str(tmp_path / "nowhere")], "does not exist"),
            (["--model-dir", str(folder), "--text", "no mask"], "every --text needs a [MASK]")):
        with pytest.raises(SystemExit) as e:
            demo("fill_mask").main(flags)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_encoder_vs_decoder_prints_its_table(tmp_path, capsys):
    demo("encoder_vs_decoder").main(["--pretrain-seconds", "0.3", "--finetune-seconds", "0.3", "--n-train", "8",
                                     "--n-test", "2", "--n-layer", "1", "--n-embd", "16", "--passage-len", "16",
                                     "--batch-size", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| decoder (GPT), last-token head |" in out and "| encoder (BERT), [CLS] head |" in out
    rows = json.loads((tmp_path / "encoder_vs_decoder.json").read_text())["rows"]
    assert len(rows) == 2 and all(0.0 <= numpy.float64(r[4]) <= 1.0 and r[2] >= 1 for r in rows)
