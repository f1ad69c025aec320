"""The README's "What is inside" table and the tree agree.

A newcomer reads that table as the map of ``minillm/``: every module and
subpackage must be named there, and every path it names must exist. A new
file without a row fails here with the name to add.
"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def inside_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What is inside", 1)[1]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def tree_units():
    """'minillm/train.py', 'minillm/nn/', ...: each top-level module and subpackage."""
    for path in sorted((ROOT / "minillm").iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            yield f"minillm/{path.name}/"
        elif path.suffix == ".py":
            yield f"minillm/{path.name}"


def test_every_module_and_package_has_a_row():
    table = inside_table()
    missing = [unit for unit in tree_units() if f"`{unit}`" not in table]
    assert not missing, f"README.md 'What is inside' names no row for {missing}: add them to the table"


def test_every_path_in_the_table_exists():
    table = inside_table()
    named = re.findall(r"`(minillm/[\w/.]*)`", table)
    assert len(named) > 20                                     # the table was found and read
    absent = [path for path in named if not (ROOT / path).exists()]
    assert not absent, f"README.md 'What is inside' names paths that do not exist: {absent}"


def test_a_missing_row_is_caught():
    """The check can fail: drop one module's row and it is reported."""
    table = inside_table().replace("`minillm/ngram.py`", "")
    missing = [unit for unit in tree_units() if f"`{unit}`" not in table]
    assert missing == ["minillm/ngram.py"]
