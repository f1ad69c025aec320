"""Pretraining data: clean a corpus before a model ever reads it.

A language model learns whatever its corpus says, so pretraining data is
filtered for quality and safety and deduplicated at several levels first.
This package is such a pipeline, one step per module:

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

    report.py      Report (counts and bytes per reason), text_bytes, snippet
    normalise.py   1-2: normalise, scrub_pii
    dedup.py       3-5: drop_lines (boilerplate, duplicate lines), MinHashLSH
    quality.py     6:   quality_problem
    pipeline.py    CleanConfig, Cleaner, clean_documents, clean_folder
    folder.py      read_folder: a folder's regular files; links, FIFOs, devices skipped and reported
"""
from minillm.data.report import Report
from minillm.data.normalise import normalise, scrub_pii
from minillm.data.dedup import MinHashLSH, drop_lines, line_key
from minillm.data.quality import quality_problem
from minillm.data.pipeline import (DEFAULT_BOILERPLATE, CleanConfig, Cleaner, clean_documents, clean_folder,
                                   read_folder)

__all__ = [
    "Report", "normalise", "scrub_pii", "MinHashLSH", "drop_lines", "line_key", "quality_problem",
    "DEFAULT_BOILERPLATE", "CleanConfig", "Cleaner", "clean_documents", "clean_folder", "read_folder",
]
