"""The shipped corpus: its provenance, loading it, and cutting it into plays."""
import hashlib
import os
import re

import pytest

from minillm import corpus


def test_shipped_corpus_matches_its_provenance_note():
    with open(corpus.DEFAULT_CORPUS, "rb") as f:
        raw = f.read()
    with open(os.path.join(corpus.CORPUS_DIR, "PROVENANCE.md"), encoding="utf-8") as f:
        note = f.read()
    recorded = re.search(r"sha256\*\*: `([0-9a-f]{64})`", note).group(1)
    assert hashlib.sha256(raw).hexdigest() == recorded
    assert 900_000 < len(raw) < 1_200_000
    text = corpus.load_corpus()
    assert text.isascii() and "\r" not in text and "\t" not in text
    assert "\n\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")
    assert "HAMLET." in text and "To be, or not to be" in text   # speaker lines kept


def test_load_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist"):
        corpus.load_corpus(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        corpus.load_corpus(tmp_path / "empty.txt")
    (tmp_path / "a.txt").write_text("hello")
    assert corpus.load_corpus(tmp_path / "a.txt") == "hello"


def test_split_plays_cuts_at_two_blank_lines_and_titles_each_play():
    text = "MACBETH\nACT I.\nThunder.\n\n\nHAMLET\nACT I.\n\nElsinore."
    assert corpus.split_plays(text) == [("MACBETH", "MACBETH\nACT I.\nThunder."),
                                        ("HAMLET", "HAMLET\nACT I.\n\nElsinore.")]
    plays = corpus.split_plays(corpus.load_corpus())
    assert len(plays) >= 8 and "HAMLET" in " ".join(title for title, _ in plays)
