"""Character-level tokenizer: one token per Unicode character.

The vocabulary is the sorted set of characters seen in the training text, so
token id i is the i-th smallest character (by code point). Sorting makes the
mapping depend only on *which* characters occur, never on their order.

    tok = CharTokenizer.from_text("hello")   # vocabulary: e h l o
    tok.encode("hole")  -> [1, 3, 2, 0]
    tok.decode([1, 0, 2, 2, 3]) -> "hello"

A character outside the vocabulary is an error that names it, unless the
tokenizer was built with ``unk=True``: then it maps to an explicit ``<unk>``
token (the last id), which decodes to the Unicode replacement character.
"""
import json
import os

from minillm import safe_io

UNK_TOKEN = "<unk>"
UNK_TEXT = "\ufffd"  # what <unk> decodes to: the Unicode replacement character


class CharTokenizer:
    """Maps each character of a fixed alphabet to an integer id and back."""

    def __init__(self, chars, unk=False):
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        self.chars = chars
        self.unk = bool(unk)
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.unk_id = len(chars) if self.unk else None

    @classmethod
    def from_text(cls, text, unk=False):
        """Build the vocabulary from the sorted unique characters of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return cls(sorted(set(text)), unk=unk)

    @property
    def vocab_size(self):
        """Number of ids: the characters, plus one for ``<unk>`` if enabled."""
        return len(self.chars) + (1 if self.unk else 0)

    def encode(self, text):
        """str -> list[int], one id per character."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        ids = []
        for c in text:
            i = stoi.get(c, self.unk_id)
            if i is None:
                raise ValueError(f"character {c!r} (U+{ord(c):04X}) is not in the vocabulary "
                                 f"of {len(self.chars)} characters; build the tokenizer with "
                                 f"unk=True to map unknown characters to {UNK_TOKEN}")
            ids.append(i)
        return ids

    def decode(self, ids):
        """list[int] (or a 1-D integer array) -> str."""
        out = []
        n = self.vocab_size
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"token ids must be integers, got {type(i).__name__}")
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {n})")
            out.append(UNK_TEXT if i == self.unk_id else self.chars[i])
        return "".join(out)

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk={self.unk})"

    # --- serialisation ---------------------------------------------------

    def to_dict(self):
        """A JSON-ready dict; ``tokenizer_from_dict`` rebuilds the tokenizer."""
        return {"type": "char", "chars": "".join(self.chars), "unk": self.unk}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != "char":
            got = d.get("type") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"expected a dict with type 'char', got {got!r}")
        if "chars" not in d:
            raise ValueError("char tokenizer dict is missing the 'chars' field")
        return cls(list(d["chars"]), unk=bool(d.get("unk", False)))

    def save(self, path):
        """Write the tokenizer as UTF-8 JSON to ``path``."""
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)  # \u escapes keep any str (even lone surrogates) safe

    @classmethod
    def load(cls, path):
        return cls.from_dict(safe_io.read_json_object(path, "a char tokenizer (JSON object)"))
