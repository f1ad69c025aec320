"""The cleaning report: what went in, what came out, and why the rest was removed."""
from dataclasses import dataclass, field


def text_bytes(text):
    """The size of ``text`` in UTF-8 bytes (what the report counts)."""
    return len(text.encode("utf-8"))


def snippet(text, width=50):
    """A short one-line quotation of ``text`` for the report's examples."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[:width - 3] + "...")


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
    ``docs_in == docs_out + sum of the document counts``. Files that were
    not read at all (a link, a FIFO, a folder named ``*.txt``) are not
    documents: they are listed in ``skipped``.
    """
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    removed: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    doc_reasons: set = field(default_factory=set)
    max_examples: int = 3
    skipped: list = field(default_factory=list)   # (file name, why): files not read at all (data/folder.py)

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
        if self.skipped:
            rows.append(f"files skipped, not read: {len(self.skipped)}")
            rows += [f"  {name}: {why}"[:150] for name, why in self.skipped]
        return "\n".join(rows)
