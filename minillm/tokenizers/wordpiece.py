"""WordPiece: BERT's tokenizer, read from a ``vocab.txt`` (one token a line, id = line number).

Three steps, each as Hugging Face's ``BertTokenizerFast`` does them:

1. **Normalize** (``BertNormalizer``): drop control characters, NUL and U+FFFD,
   turn every whitespace character into a space; put spaces around each CJK
   ideograph (Chinese has no spaces, so every character becomes a word); for
   an uncased model strip accents (decompose, NFD, and drop the combining
   marks: "café" -> "cafe") and lower-case.
2. **Pre-tokenize** (``BertPreTokenizer``): split on whitespace, and make
   every punctuation character a word of its own ("don't!" -> don ' t !).
3. **WordPiece** each word, greedy longest-match-first: take the longest
   vocabulary entry that starts the word, then the longest ``##``-prefixed
   entry that continues it, and so on ("unaffable" -> un ##aff ##able). A
   word that cannot be covered this way, or is longer than 100 characters,
   becomes a single ``[UNK]``.

Special tokens written in the text ("To be, or not to [MASK]") are kept whole,
before any of the above. ``encode(text)`` gives the word pieces' ids;
``encode(text, add_special_tokens=True)`` wraps them as ``[CLS] ... [SEP]``,
what a BERT model is fed.

    tok = minillm.tokenizers.load("bert-base-uncased/")     # a folder with vocab.txt
    tok.encode("Héllo, world!")   # the ids of: hello , world !
"""
import json
import os
import unicodedata

from minillm import safe_io
from minillm.tokenizers.folder import FILE_READERS, TOKENIZER_JSON_READERS

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_VOCAB_BYTES = safe_io.MAX_JSON_BYTES       # bert-base's vocab.txt is 0.2 MB
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(c):
    return any(low <= ord(c) <= high for low, high in CJK_RANGES)


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_control(c):
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Cn", "Co")


def is_punctuation(c):
    """ASCII symbols count too ("$", "+", "^", "`" are not Unicode punctuation, but split as such)."""
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or \
        unicodedata.category(c).startswith("P")


def normalize(text, lowercase=True, strip_accents=None):
    """BertNormalizer: clean, space out CJK, strip accents (default: when lower-casing), lower-case."""
    out = []
    for c in text:
        if c == "\0" or c == "\ufffd" or is_control(c):
            continue
        out.append(" " if is_whitespace(c) else f" {c} " if is_cjk(c) else c)
    text = "".join(out)
    if lowercase if strip_accents is None else strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return text.lower() if lowercase else text


def pre_tokenize(text):
    """Split on whitespace; every punctuation character is a word of its own."""
    words, current = [], []
    for c in text:
        if c.isspace() or is_punctuation(c):
            if current:
                words.append("".join(current))
                current = []
            if not c.isspace():
                words.append(c)
        else:
            current.append(c)
    if current:
        words.append("".join(current))
    return words


class WordPieceTokenizer:
    """BERT's WordPiece over a vocabulary list (the lines of vocab.txt)."""

    def __init__(self, vocab, lowercase=True, strip_accents=None, unk_token="[UNK]", prefix="##",
                 max_input_chars_per_word=100):
        self.vocab = list(vocab)
        self.stoi = {}
        for i, token in enumerate(self.vocab):
            self.stoi.setdefault(token, i)  # a repeated line keeps its first id, as transformers
        if unk_token not in self.stoi:
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        self.lowercase, self.strip_accents = bool(lowercase), strip_accents
        self.unk_token, self.prefix, self.max_chars = unk_token, prefix, int(max_input_chars_per_word)
        self.special_tokens = [t for t in SPECIAL_TOKENS if t in self.stoi]
        for name in ("pad", "unk", "cls", "sep", "mask"):
            setattr(self, f"{name}_id", self.stoi.get(f"[{name.upper()}]"))
        self.unk_id = self.stoi[unk_token]

    @classmethod
    def from_vocab_txt(cls, path, lowercase=None):
        """From a vocab.txt; ``lowercase`` None reads "do_lower_case" from a tokenizer_config.json
        next to it (default True: the uncased models)."""
        path = os.fspath(path)
        vocab = [line.rstrip("\r") for line in safe_io.read_text(path, MAX_VOCAB_BYTES, "vocab.txt").split("\n")]
        while vocab and vocab[-1] == "":
            vocab.pop()
        if lowercase is None:
            lowercase = _tokenizer_config(os.path.dirname(path)).get("do_lower_case", True)
        return cls(vocab, lowercase=lowercase)

    @property
    def vocab_size(self):
        return len(self.vocab)

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"

    def word_pieces(self, word):
        """Greedy longest-match-first: the pieces of one pre-tokenized word, or [unk_token]."""
        if len(word) > self.max_chars:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.stoi:
                    break
                end -= 1
            if end == start:           # no entry covers word[start]: the whole word is unknown
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        """text -> the list of token strings (special tokens written in the text kept whole)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        tokens = []
        for chunk, special in self._split_specials(text):
            if special:
                tokens.append(chunk)
                continue
            for word in pre_tokenize(normalize(chunk, self.lowercase, self.strip_accents)):
                tokens.extend(self.word_pieces(word))
        return tokens

    def _split_specials(self, text):
        """[(chunk, is_special)]: the text cut at each special token it contains."""
        chunks, start, i = [], 0, 0
        while i < len(text):
            match = next((t for t in self.special_tokens if text.startswith(t, i)), None)
            if match is None:
                i += 1
                continue
            chunks += [(text[start:i], False), (match, True)]
            i = start = i + len(match)
        return chunks + [(text[start:], False)]

    def encode(self, text, add_special_tokens=False):
        """str -> list[int]; ``add_special_tokens`` wraps it as [CLS] ... [SEP]."""
        ids = [self.stoi[t] for t in self.tokenize(text)]
        if add_special_tokens:
            if self.cls_id is None or self.sep_id is None:
                raise ValueError("add_special_tokens needs [CLS] and [SEP] in the vocabulary")
            ids = [self.cls_id] + ids + [self.sep_id]
        return ids

    def decode(self, ids, skip_special_tokens=False):
        """list[int] -> str: tokens joined by spaces, ``##`` continuations glued to the word before."""
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            if not (skip_special_tokens and self.vocab[i] in self.special_tokens):
                tokens.append(self.vocab[i])
        return " ".join(tokens).replace(" " + self.prefix, "")

    # --- serialisation ---------------------------------------------------

    def to_dict(self):
        return {"type": "wordpiece", "vocab": self.vocab, "lowercase": self.lowercase,
                "strip_accents": self.strip_accents, "unk_token": self.unk_token, "prefix": self.prefix,
                "max_input_chars_per_word": self.max_chars}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != "wordpiece":
            got = d.get("type") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"expected a dict with type 'wordpiece', got {got!r}")
        if "vocab" not in d:
            raise ValueError("wordpiece tokenizer dict is missing the 'vocab' field")
        d = {k: v for k, v in d.items() if k != "type"}
        return cls(d.pop("vocab"), **d)

    def save(self, path):
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path):
        return cls.from_dict(safe_io.read_json_object(path, "a WordPiece tokenizer (JSON object)"))


def _tokenizer_config(directory):
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.lexists(path):
        return {}
    return safe_io.read_json_object(path, "a JSON object")


def read_tokenizer_json(directory, path):
    """A tokenizer.json whose model is "WordPiece" with a BertNormalizer (or none)."""
    data = safe_io.read_json_object(path, "a JSON object with a 'model' entry")
    model, normalizer = data["model"], data.get("normalizer") or {"type": "BertNormalizer", "lowercase": False,
                                                                 "strip_accents": False}
    if normalizer.get("type") != "BertNormalizer":
        raise ValueError(f"{path}: normalizer type {normalizer.get('type')!r} is not supported; "
                         f"minillm's WordPiece reads 'BertNormalizer'")
    vocab = sorted(model["vocab"], key=model["vocab"].get)
    if [model["vocab"][t] for t in vocab] != list(range(len(vocab))):
        raise ValueError(f"{path}: the WordPiece vocabulary ids are not 0 .. {len(vocab) - 1}")
    return WordPieceTokenizer(vocab, lowercase=normalizer.get("lowercase", True),
                              strip_accents=normalizer.get("strip_accents"), unk_token=model.get("unk_token", "[UNK]"),
                              prefix=model.get("continuing_subword_prefix", "##"),
                              max_input_chars_per_word=model.get("max_input_chars_per_word", 100))


TOKENIZER_JSON_READERS["WordPiece"] = read_tokenizer_json
FILE_READERS["vocab.txt"] = lambda directory, path: WordPieceTokenizer.from_vocab_txt(path)
