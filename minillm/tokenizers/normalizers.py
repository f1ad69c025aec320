"""The text pipeline around a tokenizer.json model: normalizers and pre-tokenizers.

A ``tokenizers`` file runs, before its model (Unigram, BPE, ...):

    normalizer       text -> text        e.g. NFKC, lowercase, SentencePiece's ``Precompiled`` map
    pre_tokenizer    text -> [pieces]    e.g. Metaspace: spaces become "▁", one piece per word

``normalizer(spec)`` and ``pre_tokenizer(spec)`` turn the JSON entries into
plain functions. A type minillm does not implement is a ValueError naming it.

``Precompiled`` is SentencePiece's normalisation (T5's ``nmt_nfkc``) stored as
a byte blob: a little-endian uint32 size, a darts-clone double-array trie of
that many bytes, then NUL-terminated replacement strings. Each grapheme
cluster (shorter than 6 bytes) is looked up whole; otherwise each of its
characters; the first (shortest) trie match's value is the offset of its
replacement (the rules of the ``spm_precompiled`` crate that ``tokenizers`` uses).
"""
import base64
import struct
import unicodedata

import regex

METASPACE = "\u2581"   # "▁", SentencePiece's visible space


class Precompiled:
    """SentencePiece's precompiled character map (see the module docstring)."""

    def __init__(self, charsmap):
        if len(charsmap) < 4:
            raise ValueError("precompiled_charsmap is shorter than its 4-byte header")
        (trie_size,) = struct.unpack_from("<I", charsmap, 0)
        if 4 + trie_size > len(charsmap) or trie_size % 4:
            raise ValueError(f"precompiled_charsmap: trie size {trie_size} does not fit the {len(charsmap)} bytes")
        self.units = struct.unpack_from(f"<{trie_size // 4}I", charsmap, 4)
        self.normalized = charsmap[4 + trie_size:]

    def _first_match(self, key):
        """The value of the shortest key prefix in the trie, or None (darts-clone's common prefix search)."""
        units = self.units
        unit = units[0]
        node = (unit >> 10) << ((unit & (1 << 9)) >> 6)          # offset of the root
        for byte in key:
            if byte == 0:
                return None
            node ^= byte
            unit = units[node]
            if unit & ((1 << 31) | 0xFF) != byte:                # label
                return None
            node ^= (unit >> 10) << ((unit & (1 << 9)) >> 6)
            if (unit >> 8) & 1:                                  # has a leaf: a key ends here
                return units[node] & ((1 << 31) - 1)
        return None

    def transform(self, chunk):
        """The replacement of ``chunk`` (str), or None."""
        index = self._first_match(chunk.encode("utf-8"))
        if index is None:
            return None
        end = self.normalized.find(b"\0", index)
        return self.normalized[index:end if end >= 0 else len(self.normalized)].decode("utf-8")

    def __call__(self, text):
        out = []
        for grapheme in regex.findall(r"\X", text):
            if len(grapheme.encode("utf-8")) < 6:
                whole = self.transform(grapheme)
                if whole is not None:
                    out.append(whole)
                    continue
            for char in grapheme:
                replaced = self.transform(char)
                out.append(char if replaced is None else replaced)
        return "".join(out)


def _pattern(spec):
    """A Replace/Split "pattern": {"String": s} or {"Regex": r} -> a compiled regex."""
    if "String" in spec:
        return regex.compile(regex.escape(spec["String"]))
    return regex.compile(spec["Regex"])


def normalizer(spec):
    """tokenizer.json "normalizer" entry -> a function str -> str."""
    if spec is None:
        return lambda text: text
    kind = spec.get("type")
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return str.lower
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)

        def strip(text):
            text = text.lstrip() if left else text
            return text.rstrip() if right else text
        return strip
    if kind == "Replace":
        pattern, content = _pattern(spec["pattern"]), spec["content"]
        return lambda text: pattern.sub(lambda _: content, text)
    if kind == "Prepend":
        return lambda text: spec["prepend"] + text if text else text
    if kind == "Precompiled":
        charsmap = spec.get("precompiled_charsmap")
        if not charsmap:  # an empty map normalises nothing
            return lambda text: text
        return Precompiled(base64.b64decode(charsmap))
    if kind == "Sequence":
        steps = [normalizer(s) for s in spec["normalizers"]]

        def run(text):
            for step in steps:
                text = step(text)
            return text
        return run
    raise ValueError(f"tokenizer.json normalizer type {kind!r} is not supported; minillm reads NFC, NFD, NFKC, "
                     f"NFKD, Lowercase, Strip, Replace, Prepend, Precompiled and Sequence")


def metaspace_prepend(spec):
    """Metaspace's prepend scheme: "always", "first" or "never" (old files: add_prefix_space)."""
    if "prepend_scheme" in spec:
        return spec["prepend_scheme"]
    return "always" if spec.get("add_prefix_space", True) else "never"


def pre_tokenizer(spec):
    """tokenizer.json "pre_tokenizer" entry -> a function (text, first) -> list of pieces.

    ``first`` says whether the text starts the input (Metaspace's "first" scheme
    prepends "▁" to that segment only)."""
    if spec is None:
        return lambda text, first: [text] if text else []
    kind = spec.get("type")
    if kind == "Metaspace":
        replacement, scheme, split = spec.get("replacement", METASPACE), metaspace_prepend(spec), spec.get("split", True)

        def metaspace(text, first):
            text = text.replace(" ", replacement)
            if scheme == "always" or (scheme == "first" and first):
                if text and not text.startswith(replacement):
                    text = replacement + text
            if not split:
                return [text] if text else []
            return [piece for piece in regex.split(f"(?={regex.escape(replacement)})", text) if piece]
        return metaspace
    if kind == "WhitespaceSplit":
        return lambda text, first: text.split()
    if kind == "Sequence":
        steps = [pre_tokenizer(s) for s in spec["pretokenizers"]]

        def run(text, first):
            pieces = [text]
            for step in steps:
                pieces = [p for i, piece in enumerate(pieces) for p in step(piece, first and i == 0)]
            return pieces
        return run
    raise ValueError(f"tokenizer.json pre_tokenizer type {kind!r} is not supported; minillm reads Metaspace, "
                     f"WhitespaceSplit and Sequence")
