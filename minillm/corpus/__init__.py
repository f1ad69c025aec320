"""The shipped corpus: the complete works of Shakespeare, one plain-text file.

    text = load_corpus()             # shakespeare.txt beside this file (about 1.1 MB, ASCII)
    plays = split_plays(text)        # [(title, play text), ...]

Where the text comes from, how it was built and its sha256 are in
``PROVENANCE.md`` (``demos/build_corpus.py`` rebuilds it byte for byte).
Host-side code: plain Python.
"""
import os

CORPUS_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(CORPUS_DIR, "shakespeare.txt")


def load_corpus(path=None):
    """The text of ``path`` (UTF-8), or of the shipped Shakespeare corpus when ``path`` is None."""
    path = DEFAULT_CORPUS if path is None else os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus file {path} does not exist "
                                "(path=None reads the shipped Shakespeare corpus)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as error:          # a binary file, or another encoding
        raise ValueError(f"corpus file {path} is not UTF-8 text: byte {error.object[error.start]:#04x} "
                         f"at position {error.start} does not decode") from None
    if not text:
        raise ValueError(f"corpus file {path} is empty")
    return text


def split_plays(text):
    """[(title, play text)] of the shipped corpus, whose plays are joined by two blank lines.

    The title is the play's first line (e.g. "MACBETH"); see minillm/corpus/PROVENANCE.md.
    """
    plays = [p.strip("\n") for p in text.split("\n\n\n") if p.strip()]
    return [(p.split("\n", 1)[0].strip(), p) for p in plays]
