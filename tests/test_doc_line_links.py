"""training.md's table links lines of train.py and batches.py: they must still be those lines.

The page walks through one training iteration with links such as
``train.py#L191`` ("teacher forcing"). Code moves as work lands; a link that
points at the wrong line sends a learner to the wrong code without a word.
Each link's first and last line must hold what its row describes.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the row's first cell -> text on the first line linked, text on the last line linked
EXPECTED = {
    "corpus, 90/10 split, random windows shifted by one": ("def get_batch(", "return x, y"),
    "draw a batch": ("get_batch(self.train_ids", None),
    "teacher forcing: logits for every position": ("logits = model(x)", None),
    "cross-entropy against the next tokens": ("F.cross_entropy(logits, y)", None),
    "backpropagation (with gradient accumulation)": (".backward()", None),
    "data parallel: average the gradients over ranks": ("average_gradients(", None),
    "stop on NaN/inf, clip the gradient norm": ("if not math.isfinite(loss)", "the gradient norm is"),
    "AdamW step, free the graph": ("_interrupts_deferred()", "self._rng_snapshot = None"),
    "warm-up + cosine learning rate": ("def lr_at(", "cosine_lr("),
    "train/val loss estimate (`eval_mode`: dropout off, no graph)": ("def estimate_loss(", "return float("),
    "checkpoint, resume": ("def save_checkpoint(", "return self"),
}


def line_links():
    """(row, file, first, last) for each ``../minillm/X.py#La[-Lb]`` link in training.md's table."""
    for line in (ROOT / "docs" / "training.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or "#L" not in line:
            continue
        row = line.split("|")[1].strip()
        for path, first, last in re.findall(r"\(\.\./(minillm/[\w/]+\.py)#L(\d+)(?:-L(\d+))?\)", line):
            yield row, path, int(first), int(last or first)


LINKS = list(line_links())


def test_the_table_was_read():
    assert {row for row, *_ in LINKS} == set(EXPECTED)


@pytest.mark.parametrize("row, path, first, last", LINKS)
def test_each_line_link_points_at_its_code(row, path, first, last):
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    start, end = EXPECTED[row]
    assert last <= len(lines), f"training.md links {path}#L{first}-L{last} but the file has {len(lines)} lines"
    where = f"training.md's row {row!r} links {path}#L{first}"
    assert start in lines[first - 1], f"{where}, but that line is {lines[first - 1].strip()!r}: update the link"
    if end is not None:
        assert end in lines[last - 1], (f"{where}-L{last}, but its last line is {lines[last - 1].strip()!r}: "
                                        "update the link")


def quoted_code_lines():
    """The code lines training.md quotes from train.py (plain ``` blocks whose first line is code)."""
    blocks, block, language = [], None, None
    for line in (ROOT / "docs" / "training.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if block is None:
                block, language = [], line[3:].strip()
            else:
                if language == "":
                    blocks.append(block)
                block = None
        elif block is not None:
            block.append(line)
    for lines in blocks:
        if not lines or "=" not in lines[0] or "(" not in lines[0]:
            continue                                       # printed output or sample text, not code
        for line in lines:
            code = line.split("#")[0].strip()
            if code and code != "...":
                yield code


def test_the_code_the_page_quotes_is_in_train_py():
    source = [line.split("#")[0].strip() for line in
              (ROOT / "minillm" / "train.py").read_text(encoding="utf-8").splitlines()]
    quoted = list(quoted_code_lines())
    assert len(quoted) >= 8                                # sections 2, 3 and 4 were found
    missing = [code for code in quoted if code not in source]
    assert not missing, f"training.md quotes lines that train.py no longer has: {missing}"
