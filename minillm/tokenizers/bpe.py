"""Byte-level byte-pair encoding (BPE), as in GPT-2.

A token is a byte string. The vocabulary starts with the 256 single bytes and
grows by *merges*: the rule "(a, b) -> ab" with a rank (its position in the
list of learned merges). To encode a pre-tokenised chunk (see ``bytelevel``):

    ids = its UTF-8 bytes, one base token each
    repeat: among the adjacent pairs of ids, take the pair with the lowest
            rank; replace every occurrence (left to right) by the merged token;
    until no adjacent pair has a rank.

This is exactly the loop in GPT-2's ``encoder.py``. Applying merges lowest
rank first is the same as replaying them in the order they were learned,
because merging (a, b) only creates pairs that contain the new token ab, and
every merge involving ab was learned after ab existed.

Special tokens (e.g. ``<|endoftext|>``) are cut out of the text before
pre-tokenisation and mapped to their own ids, so they are never split.

``decode`` joins the tokens' bytes and decodes UTF-8 (bytes that do not form
valid UTF-8, e.g. half a character, become U+FFFD, as in GPT-2).
"""

import regex

from minillm.tokenizers.bpe_train import learn_merges, merge_pair
from minillm.tokenizers.saving import SavesAsJSON
from minillm.tokenizers.bytelevel import (
    GPT2_SPLIT_PATTERN, check_special_tokens, known_split_pattern, special_splitter, str_to_token,
    token_to_str)

_CACHE_LIMIT = 200_000  # words kept in the per-word encoding cache


class BPETokenizer(SavesAsJSON):
    """Byte-level BPE tokenizer.

    vocab: list, id -> token bytes (every single byte must be present); an entry
        may be None where a special token has that id (RoBERTa puts ``<s>`` at 0).
    merges: list of (id_a, id_b) in rank order; vocab[a] + vocab[b] must be in vocab.
    special_tokens: dict text -> id: the None entries of vocab, and ids after it.
    Together the ids are exactly 0 .. vocab_size - 1, each once.
    """

    def __init__(self, vocab, merges, special_tokens=None, pattern=GPT2_SPLIT_PATTERN):
        self.vocab = [None if t is None else bytes(t) for t in vocab]
        self.special_tokens = dict(special_tokens or {})
        check_special_tokens(self.special_tokens, "BPETokenizer")   # before they become a regex
        self.pattern = pattern
        self._split = regex.compile(pattern)
        self._special_split = special_splitter(self.special_tokens)
        # the id space: the vocab list, then the specials numbered after it
        n = len(self.vocab) + sum(isinstance(i, int) and i >= len(self.vocab) for i in self.special_tokens.values())
        # id -> bytes for decoding: specials decode to their text
        self._token_bytes = {i: t for i, t in enumerate(self.vocab) if t is not None}
        for text, i in self.special_tokens.items():
            if not isinstance(i, int) or not 0 <= i < n or i in self._token_bytes:
                raise ValueError(f"special token {text!r} has id {i}, which is taken or "
                                 f"outside [0, {n})")
            self._token_bytes[i] = text.encode("utf-8")
        if len(self._token_bytes) != n or max(self._token_bytes, default=-1) != n - 1:
            missing = sorted(set(range(n)) - set(self._token_bytes))[:3]
            raise ValueError(f"ids {missing} have neither a token nor a special token; the ids "
                             f"must be exactly 0..{n - 1}")
        self._special_ids = {i: text for text, i in self.special_tokens.items()}
        bytes_to_id = {}
        for i, t in enumerate(self.vocab):
            if t is None:
                continue
            if t in bytes_to_id:
                raise ValueError(f"token {t!r} appears twice in the vocabulary "
                                 f"(ids {bytes_to_id[t]} and {i})")
            bytes_to_id[t] = i
        missing = [b for b in range(256) if bytes([b]) not in bytes_to_id]
        if missing:
            raise ValueError(f"byte-level vocabulary lacks {len(missing)} single bytes, "
                             f"e.g. byte {missing[0]}")
        self._byte_ids = [bytes_to_id[bytes([b])] for b in range(256)]
        self.merges = []
        self._ranks = {}  # (id_a, id_b) -> (rank, merged id)
        for rank, (a, b) in enumerate(merges):
            a, b = int(a), int(b)
            inside = 0 <= a < len(self.vocab) and 0 <= b < len(self.vocab)
            if not inside or self.vocab[a] is None or self.vocab[b] is None:
                raise ValueError(f"merge {rank} ({a}, {b}) refers to an id outside the "
                                 f"vocabulary [0, {len(self.vocab)}) or to a special token")
            merged = bytes_to_id.get(self.vocab[a] + self.vocab[b])
            if merged is None:
                raise ValueError(f"merge {rank} {self.vocab[a]!r} + {self.vocab[b]!r}: the "
                                 f"merged token is not in the vocabulary")
            self.merges.append((a, b))
            self._ranks.setdefault((a, b), (rank, merged))
        self._cache = {}

    # --- construction ------------------------------------------------------

    @classmethod
    def train(cls, text, vocab_size, special_tokens=("<|endoftext|>",), verbose=False):
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` ids.

        vocab_size = 256 bytes + number of merges + number of special tokens.
        If the text runs out of adjacent pairs first, training stops early and
        the vocabulary is smaller than asked (``len(tok.merges)`` tells).
        See ``bpe_train.learn_merges`` for the algorithm.
        """
        special_tokens = list(special_tokens or ())
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens must be unique, got {special_tokens}")
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(f"vocab_size ({vocab_size}) must be at least 256 bytes + "
                             f"{len(special_tokens)} special tokens = {256 + len(special_tokens)}")
        merges = learn_merges(text, n_merges, special_tokens=special_tokens,
                              pattern=GPT2_SPLIT_PATTERN, verbose=verbose)
        vocab = [bytes([b]) for b in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
        specials = {s: len(vocab) + k for k, s in enumerate(special_tokens)}
        return cls(vocab, merges, specials)

    @classmethod
    def from_gpt2(cls, vocab_json_path, merges_txt_path):
        """Read GPT-2's published ``vocab.json`` and ``merges.txt``.

        vocab.json maps each token, spelled with ``bytes_to_unicode``, to its id;
        merges.txt lists one merge "a b" per line, lowest rank first, after a
        ``#version`` header. Vocabulary entries that are neither a single byte
        nor the result of a merge (GPT-2 has one: ``<|endoftext|>``) are
        special tokens, kept whole, at whatever ids the file gives them (a
        Hugging Face-trained byte-level BPE puts ``<|endoftext|>`` at 0, RoBERTa
        ``<s> <pad> </s> <unk>`` at 0-3). ``save_gpt2`` writes the same pair back.
        They must be written like one (``<...>`` or ``[...]``), so a ``merges.txt``
        that lost lines is an error, not ``ing`` made special.
        """
        from minillm.tokenizers.gpt2_files import read_gpt2_tokenizer
        vocab, merges, specials = read_gpt2_tokenizer(vocab_json_path, merges_txt_path)
        return cls(vocab, merges, specials)

    # --- encoding ----------------------------------------------------------

    @property
    def vocab_size(self):
        return len(self._token_bytes)

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)})")

    def _bpe(self, chunk):
        """One pre-tokenised chunk (str) -> tuple of ids, merging lowest rank first."""
        ids = [self._byte_ids[b] for b in chunk.encode("utf-8")]
        ranks = self._ranks
        while len(ids) > 1:
            best, best_rank = None, None
            for pair in zip(ids, ids[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r[0] < best_rank):
                    best, best_rank = pair, r[0]
            if best is None:
                break
            a, b = best
            ids = merge_pair(ids, a, b, ranks[best][1])  # every (a, b), left to right, no overlaps
        return tuple(ids)

    def encode_chunk(self, chunk):
        """One pre-tokenised chunk (str) -> tuple of ids, remembered for the next time it comes."""
        ids = self._cache.get(chunk)
        if ids is None:
            ids = self._bpe(chunk)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def _encode_ordinary(self, text, out):
        for chunk in self._split.findall(text):
            out.extend(self.encode_chunk(chunk))

    def encode(self, text, special=True):
        """str -> list[int]. With ``special=False`` special tokens are plain text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text is not encodable as UTF-8 at position {e.start}: "
                             f"{text[e.start:e.end]!r} ({e.reason})") from None
        out = []
        if not special or self._special_split is None:
            self._encode_ordinary(text, out)
            return out
        for k, piece in enumerate(self._special_split.split(text)):
            if k % 2 == 1:  # split() with a group puts the separators at odd positions
                out.append(self.special_tokens[piece])
            elif piece:
                self._encode_ordinary(piece, out)
        return out

    def decode_bytes(self, ids):
        """list[int] (or a 1-D integer array) -> the raw bytes those tokens stand for."""
        if hasattr(ids, "tolist") and getattr(getattr(ids, "dtype", None), "kind", "") in "iu":
            ids = ids.tolist()  # a NumPy integer array: plain ints, fast
        if isinstance(ids, list) and all(type(i) is int for i in ids):
            try:  # the fast path: one dict lookup per id (negative ids are missing keys)
                return b"".join(map(self._token_bytes.__getitem__, ids))
            except KeyError:
                pass  # fall through to the loop, which names the bad id
        parts = []
        n = self.vocab_size
        table = self._token_bytes
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"token ids must be integers, got {type(i).__name__}")
            t = table.get(int(i))
            if t is None:
                raise ValueError(f"token id {int(i)} is outside the vocabulary [0, {n})")
            parts.append(t)
        return b"".join(parts)

    def decode(self, ids):
        """list[int] -> str (invalid UTF-8 becomes U+FFFD, as in GPT-2)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_str(self, i):
        """Readable spelling of token ``i`` in GPT-2's alphabet ("Ġthe"), or a special's text."""
        if i in self._special_ids:
            return self._special_ids[i]
        return token_to_str(self.decode_bytes([i]))

    # --- serialisation -----------------------------------------------------

    def to_dict(self):
        """JSON-ready dict in GPT-2's spelling: tokens are ``bytes_to_unicode`` strings."""
        return {
            "type": "bpe",
            "vocab": [None if t is None else token_to_str(t) for t in self.vocab],  # None: a special's id
            "merges": [[a, b] for a, b in self.merges],
            "special_tokens": dict(self.special_tokens),
            "pattern": self.pattern,
        }

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != "bpe":
            got = d.get("type") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"expected a dict with type 'bpe', got {got!r}")
        for key in ("vocab", "merges"):
            if key not in d:
                raise ValueError(f"bpe tokenizer dict is missing the {key!r} field")
        vocab = []
        for i, s in enumerate(d["vocab"]):
            t = None if s is None else str_to_token(s)
            if t is None and s is not None:
                raise ValueError(f"vocab entry {i} ({s!r}) is not in GPT-2's byte alphabet")
            vocab.append(t)
        pattern = known_split_pattern(d.get("pattern", "gpt2"), "bpe tokenizer dict")  # never compiled from data
        return cls(vocab, [tuple(m) for m in d["merges"]], d.get("special_tokens", {}), pattern)

    def save_gpt2(self, directory):
        """Write ``vocab.json`` + ``merges.txt`` in GPT-2's format (readable by ``from_gpt2``)."""
        from minillm.tokenizers.gpt2_files import write_gpt2_tokenizer
        write_gpt2_tokenizer(directory, self.vocab, self.merges, self.special_tokens)
