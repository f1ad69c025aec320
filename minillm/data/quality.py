"""Step 6 of cleaning: quality filters that keep or drop a whole document.

Length in characters, the share of letters among visible characters (tables
of numbers, markup and code score low), and the share of characters in lines
repeated within the document (menus, templates).
"""
import re


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
