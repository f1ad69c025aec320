"""The cleaning pipeline: the six steps in order, over a stream of documents.

``CleanConfig`` holds every threshold; ``Cleaner`` runs the steps of
``normalise.py``, ``dedup.py`` and ``quality.py`` one document at a time and
keeps the dedup memory and the ``Report``; ``clean_folder`` reads and writes
folders of text files.
"""
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from minillm.data.folder import read_folder
from minillm.data.dedup import MinHashLSH, drop_lines, line_key, text_key
from minillm.data.normalise import normalise, scrub_pii
from minillm.data.quality import quality_problem
from minillm.data.report import Report, snippet, text_bytes

DEFAULT_BOILERPLATE = (
    r"project gutenberg",                                        # e-book licence text
    r"^\W*(copyright\b|\(c\) ?\d{4}|all rights reserved|licensed under|spdx-license)",
    r"(enable javascript|accept (all )?cookies|privacy policy|terms of (use|service))",
    r"^[\W_]+$",                                                 # only punctuation: "*****", "-- --"
)


@dataclass
class CleanConfig:
    """Every threshold of the pipeline; ``None`` or ``False`` switches a step off."""
    scrub_pii: bool = True
    boilerplate_patterns: tuple = DEFAULT_BOILERPLATE   # regexes, case-insensitive, per line
    dedup_lines: bool = True
    line_dedup_min_chars: int = 40      # shorter lines ("Exit.", "ACT I.") are never line-deduped
    dedup_exact: bool = True
    near_dup_threshold: Optional[float] = 0.8   # Jaccard; None switches near-dedup off
    shingle_size: int = 5               # words per shingle
    num_perm: int = 128                 # minhash functions
    bands: Optional[int] = None         # LSH bands; None: chosen from the threshold
    seed: int = 0                       # seeds the minhash functions
    min_chars: int = 200
    max_chars: int = 5_000_000
    min_letter_share: float = 0.6       # letters / non-space characters
    max_repeated_line_share: float = 0.3  # characters in repeated lines / all characters
    examples_per_reason: int = 3

    def __post_init__(self):
        if self.near_dup_threshold is not None and not 0.0 < self.near_dup_threshold <= 1.0:
            raise ValueError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")
        for name in ("shingle_size", "num_perm", "min_chars", "max_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.bands is not None and (self.bands < 1 or self.num_perm % self.bands):
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")


class Cleaner:
    """Runs the six steps over documents one at a time; holds the dedup memory and the report."""

    def __init__(self, config=None):
        self.config = config or CleanConfig()
        self.report = Report(max_examples=self.config.examples_per_reason)
        patterns = self.config.boilerplate_patterns
        self.boilerplate = (re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
                            if patterns else None)
        self.seen_docs = set()     # 16-byte hashes of kept documents
        self.seen_lines = set()    # 8-byte hashes of kept lines (long enough to count)
        c = self.config
        self.lsh = (MinHashLSH(c.near_dup_threshold, c.shingle_size, c.num_perm, c.bands, c.seed)
                    if c.near_dup_threshold is not None else None)

    def _drop(self, name, text, reason, detail):
        self.report.add(reason, 1, text_bytes(text), f"{name}: {detail}", drops_doc=True)
        return None

    def edit(self, text, rep):
        """Steps 1-3, which change a document without looking at the others; tallies into ``rep``."""
        c = self.config
        new = normalise(text)
        if new != text:
            rep.add("normalise", 1, text_bytes(text) - text_bytes(new), "spacing")
        if c.scrub_pii:
            new = scrub_pii(new, rep)
        if self.boilerplate:
            new = drop_lines(new, self.boilerplate.search, "boilerplate_line", rep)
        return new

    def clean(self, name, text):
        """The cleaned text of one document, or None if it is dropped (and why, in the report)."""
        c, rep = self.config, self.report
        rep.docs_in += 1
        rep.bytes_in += text_bytes(text)
        edits = Report(max_examples=c.examples_per_reason)    # counted only if the document is kept
        before = self.edit(text, edits)
        after = before
        if c.dedup_lines:
            after = drop_lines(before, lambda line: len(line.strip()) >= c.line_dedup_min_chars
                               and line_key(line) in self.seen_lines, "duplicate_line", edits)
        # Dedup looks at both forms: `before` catches a copy whose lines were
        # just removed as duplicates; `after` is what a second pass will see,
        # so checking it now makes the second pass agree with this one.
        forms = (before,) if after == before else (before, after)
        doc_keys = [text_key(t, 16) for t in forms]
        if c.dedup_exact and any(k in self.seen_docs for k in doc_keys):
            return self._drop(name, text, "exact_duplicate", snippet(before, 30))
        signatures = [self.lsh.signature(t) for t in forms] if self.lsh else []
        for sig in signatures:
            hit = self.lsh.query(sig) if sig is not None else None
            if hit is not None:
                return self._drop(name, text, "near_duplicate", f"~ {hit[0]} (J≈{hit[1]:.2f})")
        if before.strip() and not after.strip():        # every line was a duplicate: not a length problem
            return self._drop(name, text, "all_lines_duplicate", snippet(before, 30))
        problem = quality_problem(after, c)
        if problem is not None:
            return self._drop(name, text, *problem)
        # Kept: remember it, so later copies of it are caught.
        self.seen_docs.update(doc_keys)
        for sig in signatures:
            if sig is not None:
                self.lsh.add(name, sig)
        if c.dedup_lines:
            self.seen_lines.update(line_key(line) for line in after.split("\n")
                                   if len(line.strip()) >= c.line_dedup_min_chars)
        rep.merge(edits, name)
        rep.docs_out += 1
        rep.bytes_out += text_bytes(after)
        return after

    def run(self, docs):
        """Yield (name, cleaned text) for each kept document; pulls one document at a time."""
        for name, text in docs:
            cleaned = self.clean(name, text)
            if cleaned is not None:
                yield name, cleaned


def clean_documents(docs, config=None):
    """Clean an iterable of (name, text): returns (iterator of kept (name, text), report).

    The report fills in as the iterator is consumed.
    """
    cleaner = Cleaner(config)
    return cleaner.run(docs), cleaner.report


def clean_folder(in_dir, out_dir, config=None, pattern="*.txt"):
    """Clean every ``pattern`` file under ``in_dir`` into ``out_dir`` (same names); return the report.

    Links, FIFOs, devices, folders and unreadable files are not read: they are
    listed in ``report.skipped`` (see ``folder.py``).
    """
    skipped = []
    cleaned, report = clean_documents(read_folder(in_dir, pattern, skipped), config)
    report.skipped = skipped                     # filled in as the folder is read
    for name, text in cleaned:
        target = Path(out_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return report
