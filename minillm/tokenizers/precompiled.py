"""SentencePiece's precompiled normaliser (T5's ``nmt_nfkc``), as a tokenizer.json "Precompiled" step.

The map is a byte blob: a little-endian uint32 size, a darts-clone double-array
trie of that many bytes, then NUL-terminated replacement strings. Each grapheme
cluster (shorter than 6 bytes) is looked up whole; otherwise each of its
characters; the first (shortest) trie match's value is the offset of its
replacement (the rules of the ``spm_precompiled`` crate that ``tokenizers`` uses).
"""
import struct

import regex


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
