"""The shipped corpus: the complete works of Shakespeare, one plain-text file.

    text = load_corpus()             # shakespeare.txt beside this file (about 1.1 MB, ASCII)
    plays = split_plays(text)        # [(title, play text), ...]

Where the text comes from, how it was built and its sha256 are in
``PROVENANCE.md`` (``demos/build_corpus.py`` rebuilds it byte for byte).
Host-side code: plain Python.
"""
import os

from minillm import safe_io

MAX_CORPUS_BYTES = 1 << 30      # 1 GiB: the whole text is held in memory as one str
CORPUS_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CORPUS = os.path.join(CORPUS_DIR, "shakespeare.txt")


def load_corpus(path=None, max_bytes=MAX_CORPUS_BYTES):
    """The text of ``path`` (UTF-8), or of the shipped Shakespeare corpus when ``path`` is None.

    ``path`` must be a regular file (a FIFO or ``/dev/zero`` is refused by
    name) of at most ``max_bytes`` bytes.
    """
    path = DEFAULT_CORPUS if path is None else os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"corpus file {path} does not exist "
                                "(path=None reads the shipped Shakespeare corpus)")
    text = safe_io.read_text(path, max_bytes, "corpus file")
    if not text:
        raise ValueError(f"corpus file {path} is empty")
    return text


def split_plays(text):
    """[(title, play text)] of the shipped corpus, whose plays are joined by two blank lines.

    The title is the play's first line (e.g. "MACBETH"); see minillm/corpus/PROVENANCE.md.
    """
    plays = [p.strip("\n") for p in text.split("\n\n\n") if p.strip()]
    return [(p.split("\n", 1)[0].strip(), p) for p in plays]
