"""Pretraining data: clean a corpus before a model ever reads it.

A language model learns whatever its corpus says, so pretraining data is
filtered for quality and safety and deduplicated at several levels first.
This module is such a pipeline, one step per section:

1. normalise     Unicode NFC, "\\n" line ends, no trailing spaces;
2. scrub PII     e-mail addresses, phone numbers, IP addresses -> <EMAIL>, <PHONE>, <IP>;
3. boilerplate   drop licence headers, "Project Gutenberg" lines, rows of punctuation;
4. line dedup    drop a line that an earlier kept document already had (hash set);
5. doc dedup     exact (hash of the normalised text) and near (MinHash + LSH, Jaccard);
6. quality       length, share of letters, share of characters in repeated lines.

Steps 1-4 edit a document, 5-6 keep or drop it, and every step is counted in a
:class:`Report`. The pipeline streams: it pulls one document, decides, yields
it, and pulls the next. What grows with the corpus is only the memory of what
was kept: per kept document a 16-byte hash (exact dedup) and ``num_perm``
64-bit minhashes plus ``bands`` bucket entries (near dedup), each twice when
line dedup changed the document; and one 8-byte hash per distinct kept line
of at least ``line_dedup_min_chars`` characters (line dedup).

Idempotence: the memory holds only kept documents, as they were written out,
so cleaning the cleaned corpus again meets the same memory at every document
and changes nothing (see ``Cleaner.clean`` for the one subtlety).
"""
import hashlib
import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

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


def _size(text):
    return len(text.encode("utf-8"))


# ----------------------------------------------------------------- the report
@dataclass
class Report:
    """What went in, what came out, and for each reason what was removed.

    ``removed[reason] = [count, bytes]``: for a dropped document, count is
    documents and bytes its whole input size; for an edit of a kept document
    (a line, a PII match) count is occurrences and bytes how much smaller the
    text became (a short e-mail replaced by ``<EMAIL>`` can make it grow:
    negative). Edits of a document that is then dropped are not counted: its
    bytes all go to the reason it was dropped. So
    ``bytes_in == bytes_out + sum of bytes`` and
    ``docs_in == docs_out + sum of the document counts``.
    """
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    removed: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    doc_reasons: set = field(default_factory=set)
    max_examples: int = 3

    def add(self, reason, count, nbytes, example=None, drops_doc=False):
        tally = self.removed.setdefault(reason, [0, 0])
        tally[0] += count
        tally[1] += nbytes
        if drops_doc:
            self.doc_reasons.add(reason)
        shown = self.examples.setdefault(reason, [])
        if example is not None and example not in shown and len(shown) < self.max_examples:
            shown.append(example)

    def merge(self, edits, name):
        """Add the edit tallies of one kept document, examples prefixed with its name."""
        for reason, (count, nbytes) in edits.removed.items():
            self.add(reason, count, nbytes)
            for example in edits.examples.get(reason, []):
                self.add(reason, 0, 0, f"{name}: {example}")

    def table(self):
        """The report as a fixed-width text table."""
        rows = [f"documents in {self.docs_in:>8}   bytes in {self.bytes_in:>12,}",
                f"documents out {self.docs_out:>7}   bytes out {self.bytes_out:>11,}",
                f"{'reason':<22}{'level':<6}{'count':>8}{'bytes':>13}  example",
                "-" * 78]
        for reason, (count, nbytes) in self.removed.items():
            level = "doc" if reason in self.doc_reasons else "edit"
            example = (self.examples.get(reason) or [""])[0]
            rows.append(f"{reason:<22}{level:<6}{count:>8}{nbytes:>13,}  {example}"[:150].rstrip())
        return "\n".join(rows)


def _snippet(text, width=50):
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[:width - 3] + "...")


# ------------------------------------------------------- 1. normalise the text
def normalise(text):
    """NFC Unicode, "\\n" line ends, no byte-order marks (U+FEFF), no trailing spaces or blank end lines."""
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# ------------------------------------------------------------- 2. scrub PII
# Each pattern finds candidates; a check function rejects look-alikes
# (an IPv4 octet above 255, a phone with too few digits). Placeholders
# contain no digit, "@" or ":", so scrubbing scrubbed text changes nothing.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f.]*(?::[0-9A-Fa-f.]*){2,}(?![\w:])")
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}"    # North America: (555) 123-4567
    r"|\+\d{1,3}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,7})){2,6}"            # international: +44 20 7946 0958
    r")(?!\w)")


def _ipv6(match):
    core = match.group().rstrip(".")      # a sentence may end right after the address
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return None
    return "<IP>" + match.group()[len(core):] if core != "::" else None


def _ipv4(match):
    return "<IP>" if all(int(part) <= 255 for part in match.group().split(".")) else None


def _phone(match):
    return "<PHONE>" if 7 <= sum(c.isdigit() for c in match.group()) <= 15 else None


# (report reason, a quick test that every match passes so that most text can
#  skip the slower pattern, the pattern, the check)
_PII = (("pii_email", re.compile("@"), _EMAIL, lambda match: "<EMAIL>"),
        ("pii_ip", re.compile(":"), _IPV6, _ipv6),
        ("pii_ip", re.compile(r"\d\.\d"), _IPV4, _ipv4),
        ("pii_phone", re.compile(r"\d"), _PHONE, _phone))


def scrub_pii(text, report=None):
    """Replace e-mail addresses, IP addresses (v6, v4) and phone numbers by placeholders."""
    for reason, quick, pattern, check in _PII:
        if not quick.search(text):
            continue
        def replace(match):
            placeholder = check(match)
            if placeholder is None:
                return match.group()
            if report is not None:
                report.add(reason, 1, _size(match.group()) - _size(placeholder), placeholder)
            return placeholder
        text = pattern.sub(replace, text)
    return text


# ---------------------------------------- 3-4. boilerplate and duplicate lines
def _line_key(line):
    """8-byte hash of a line, ignoring case and spacing."""
    return hashlib.blake2b(" ".join(line.casefold().split()).encode(), digest_size=8).digest()


def drop_lines(text, is_bad, reason, report=None):
    """Remove the lines for which ``is_bad(line)`` holds; count them under ``reason``."""
    kept = []
    for line in text.split("\n"):
        if line.strip() and is_bad(line):
            if report is not None:
                report.add(reason, 1, 0, _snippet(line))
        else:
            kept.append(line)
    new = "\n".join(kept).strip("\n")
    if report is not None and new != text:
        report.removed.setdefault(reason, [0, 0])[1] += _size(text) - _size(new)
    return new


# ------------------------------------------------------ 5. near duplicates
class MinHashLSH:
    """Near-duplicate detection by MinHash signatures and LSH banding.

    A document is the set S of its word k-shingles (k consecutive words).
    Two documents are near duplicates when their Jaccard similarity
    J(A, B) = |A ∩ B| / |A ∪ B| is at least the threshold t.

    MinHash: for a random hash h, P[min h(A) = min h(B)] = J(A, B), because the
    smallest element of A ∪ B is equally likely to be any of its elements and
    the two minima agree exactly when it lies in A ∩ B. We use n seeded
    universal hashes h_i(x) = (a_i x + b_i) mod p, p = 2^31 - 1, a_i and b_i
    drawn uniformly below p, on shingle hashes x < p (a_i x + b_i < 2^63: no
    overflow in uint64; a small a_i would not scramble, so a_i spans all of
    [1, p)). The signature is (min h_1(S), ..., min h_n(S)), and the
    share of equal entries estimates J with standard error sqrt(J(1 - J) / n).

    LSH: cut the signature into b bands of r rows (n = b r). Two documents
    become candidates if some band is equal: P = 1 - (1 - J^r)^b, an S-curve
    in J. Only candidates are compared, so a query costs the size of its
    buckets, not of the whole corpus. The index grows by one signature and b
    bucket entries per added document.
    """
    _P = (1 << 31) - 1                  # a Mersenne prime

    def __init__(self, threshold, shingle_size=5, num_perm=128, bands=None, seed=0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, self._P, num_perm, dtype=np.uint64)   # (n,)
        self.b = rng.integers(0, self._P, num_perm, dtype=np.uint64)   # (n,)
        self.threshold, self.shingle_size = threshold, shingle_size
        self.bands = bands or self.choose_bands(threshold, num_perm)
        self.rows = num_perm // self.bands
        self.buckets = [{} for _ in range(self.bands)]   # band -> {band bytes: [doc number]}
        self.names, self.signatures = [], []

    @staticmethod
    def choose_bands(threshold, num_perm, recall=0.99):
        """Most rows per band (fewest false candidates) that still catch J = threshold with P >= recall."""
        for rows in sorted((r for r in range(1, num_perm + 1) if num_perm % r == 0), reverse=True):
            if 1.0 - (1.0 - threshold ** rows) ** (num_perm // rows) >= recall:
                return num_perm // rows
        return num_perm

    def shingles(self, text):
        """The set of word k-shingles of ``text`` (lower case, letters and digits only)."""
        words = re.findall(r"\w+", text.casefold())
        k = min(self.shingle_size, len(words))
        return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)} if words else set()

    def shingle_hashes(self, text):
        """Hashes (below p) of the k-shingles: a polynomial in the words' 64-bit hashes, mod 2^64.

        Hashing each distinct word once and combining is the same set as hashing
        each shingle string (up to rare collisions), and much faster in NumPy.
        """
        words = re.findall(r"\w+", text.casefold())
        table = {w: int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                 for w in set(words)}
        w = np.array([table[word] for word in words], dtype=np.uint64)           # (W,)
        k = min(self.shingle_size, w.size)
        h = np.zeros(w.size - k + 1 if w.size else 0, dtype=np.uint64)           # (W-k+1,)
        for j in range(k):
            h = h * np.uint64(0x9E3779B97F4A7C15) + w[j:j + h.size]              # wraps mod 2^64
        return np.unique((h >> np.uint64(32)) % np.uint64(self._P))             # (S,) distinct

    def signature(self, text):
        """(num_perm,) uint64 minhashes of the shingle set, or None for a text without words."""
        x = self.shingle_hashes(text)                                            # (S,)
        if x.size == 0:
            return None
        sig = np.full(self.a.shape, np.iinfo(np.uint64).max, dtype=np.uint64)     # (n,)
        for start in range(0, x.size, 4096):                                     # bounded memory
            chunk = x[None, start:start + 4096]                                  # (1, s)
            h = (self.a[:, None] * chunk + self.b[:, None]) % np.uint64(self._P)  # (n, s)
            sig = np.minimum(sig, h.min(axis=1))                                 # (n,)
        return sig

    def _bands(self, sig):
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def query(self, sig):
        """(name, estimated Jaccard) of the most similar indexed document at or above the threshold."""
        candidates = {d for band, key in zip(self.buckets, self._bands(sig)) for d in band.get(key, ())}
        best = max(((float(np.mean(self.signatures[d] == sig)), d) for d in candidates), default=None)
        if best is None or best[0] < self.threshold:
            return None
        return self.names[best[1]], best[0]

    def add(self, name, sig):
        for band, key in zip(self.buckets, self._bands(sig)):
            band.setdefault(key, []).append(len(self.names))
        self.names.append(name)
        self.signatures.append(sig)


# --------------------------------------------------------- 6. quality filters
def quality_problem(text, config):
    """The first quality filter ``text`` fails, as (reason, detail), or None."""
    n = len(text)
    if n < config.min_chars:
        return "too_short", f"{n} chars < {config.min_chars}"
    if n > config.max_chars:
        return "too_long", f"{n} chars > {config.max_chars}"
    visible = len(re.sub(r"\s+", "", text))
    letters = (n - len(re.sub(r"[^\W\d_]+", "", text))) / max(visible, 1)   # letters: \w minus digits, _
    if letters < config.min_letter_share:
        return "few_letters", f"letter share {letters:.2f} < {config.min_letter_share}"
    seen, repeated = set(), 0
    for line in text.split("\n"):
        if line.strip():
            repeated += len(line) if line in seen else 0
            seen.add(line)
    if repeated / n > config.max_repeated_line_share:
        return "repeated_lines", f"repeated-line share {repeated / n:.2f} > {config.max_repeated_line_share}"
    return None


# ------------------------------------------------------------ the pipeline
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
        self.report.add(reason, 1, _size(text), f"{name}: {detail}", drops_doc=True)
        return None

    def edit(self, text, rep):
        """Steps 1-3, which change a document without looking at the others; tallies into ``rep``."""
        c = self.config
        new = normalise(text)
        if new != text:
            rep.add("normalise", 1, _size(text) - _size(new), "spacing")
        if c.scrub_pii:
            new = scrub_pii(new, rep)
        if self.boilerplate:
            new = drop_lines(new, self.boilerplate.search, "boilerplate_line", rep)
        return new

    def clean(self, name, text):
        """The cleaned text of one document, or None if it is dropped (and why, in the report)."""
        c, rep = self.config, self.report
        rep.docs_in += 1
        rep.bytes_in += _size(text)
        edits = Report(max_examples=c.examples_per_reason)    # counted only if the document is kept
        before = self.edit(text, edits)
        after = before
        if c.dedup_lines:
            after = drop_lines(before, lambda line: len(line.strip()) >= c.line_dedup_min_chars
                               and _line_key(line) in self.seen_lines, "duplicate_line", edits)
        # Dedup looks at both forms: `before` catches a copy whose lines were
        # just removed as duplicates; `after` is what a second pass will see,
        # so checking it now makes the second pass agree with this one.
        forms = (before,) if after == before else (before, after)
        doc_keys = [hashlib.blake2b(" ".join(t.casefold().split()).encode(), digest_size=16).digest()
                    for t in forms]
        if c.dedup_exact and any(k in self.seen_docs for k in doc_keys):
            return self._drop(name, text, "exact_duplicate", _snippet(before, 30))
        signatures = [self.lsh.signature(t) for t in forms] if self.lsh else []
        for sig in signatures:
            hit = self.lsh.query(sig) if sig is not None else None
            if hit is not None:
                return self._drop(name, text, "near_duplicate", f"~ {hit[0]} (J≈{hit[1]:.2f})")
        if before.strip() and not after.strip():        # every line was a duplicate: not a length problem
            return self._drop(name, text, "all_lines_duplicate", _snippet(before, 30))
        problem = quality_problem(after, c)
        if problem is not None:
            return self._drop(name, text, *problem)
        # Kept: remember it, so later copies of it are caught.
        self.seen_docs.update(doc_keys)
        for sig in signatures:
            if sig is not None:
                self.lsh.add(name, sig)
        if c.dedup_lines:
            self.seen_lines.update(_line_key(line) for line in after.split("\n")
                                   if len(line.strip()) >= c.line_dedup_min_chars)
        rep.merge(edits, name)
        rep.docs_out += 1
        rep.bytes_out += _size(after)
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


def read_folder(in_dir, pattern="*.txt"):
    """Yield (relative name, text) for each matching file under ``in_dir``, in sorted order.

    Files are read one at a time as UTF-8 (undecodable bytes become U+FFFD).
    """
    root = Path(in_dir)
    if not root.is_dir():
        raise ValueError(f"input folder {str(in_dir)!r} does not exist or is not a folder")
    for path in sorted(root.rglob(pattern)):
        yield path.relative_to(root).as_posix(), path.read_text(encoding="utf-8", errors="replace")


def clean_folder(in_dir, out_dir, config=None, pattern="*.txt"):
    """Clean every ``pattern`` file under ``in_dir`` into ``out_dir`` (same names); return the report."""
    cleaned, report = clean_documents(read_folder(in_dir, pattern), config)
    for name, text in cleaned:
        target = Path(out_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return report
