"""Byte-level BPE from a Hugging Face ``tokenizer.json`` (Llama 3, SmolLM, Qwen2, GPT-2 re-saved).

``tokenizer.json`` is the ``tokenizers`` library's one file for a whole
pipeline. For a byte-level BPE it reads, in the order the text meets them:

    added_tokens     [{"id", "content", ...}]: special tokens, cut out of the text first and never split
    normalizer       none, or a Unicode normal form (``pretokenizers.normalizer``)
    pre_tokenizer    how the text is cut into chunks (``pretokenizers.pre_tokenizer``)
    model            {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a", "b"], ...],
                      "ignore_merges": a chunk that is itself a token is that token, unmerged (Llama 3)}
    post_processor   a template that adds special ids around the text, e.g. Llama 3's <|begin_of_text|>
    decoder          ByteLevel: the tokens' bytes joined, then UTF-8

Tokens are spelled in GPT-2's byte alphabet (a space is "Ġ"), so the merging
itself is ``BPETokenizer``'s: this class builds one over the regular tokens and
maps its compact ids to the file's ids, which may leave room for special
tokens anywhere (SmolLM's come first, from id 0; Llama 3's 256 follow id 128000).

``encode(text)`` gives the text's ids alone; ``encode(text, add_special_tokens=True)``
adds the post-processor's ids, as the ``tokenizers`` library does by default.
SentencePiece-style BPE (``byte_fallback``: Llama 2, TinyLlama, Mistral v0.1)
is a different algorithm and an error naming it.
"""
import json
import os

from minillm.tokenizers.bpe import BPETokenizer
from minillm.tokenizers.bytelevel import special_splitter, str_to_token
from minillm.tokenizers.folder import TOKENIZER_JSON_READERS
from minillm.tokenizers.gpt2_files import read_json_object
from minillm.tokenizers.pretokenizers import normalizer, pre_tokenizer


def _merge_pair(merge, rank, where):
    """A merge as written in the file ("a b", or ["a", "b"] in newer files) -> (a, b)."""
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if len(parts) != 2:
        raise ValueError(f"{where}: merge {rank} is {merge!r}; expected two tokens")
    return parts


def _template(spec, where):
    """The post-processor -> (ids before the text, ids after it)."""
    if spec is None or spec.get("type") == "ByteLevel":  # ByteLevel only trims offsets: no ids
        return [], []
    kind = spec.get("type")
    if kind == "Sequence":
        prefix, suffix = [], []
        for step in spec["processors"]:
            before, after = _template(step, where)
            prefix, suffix = before + prefix, suffix + after
        return prefix, suffix
    if kind == "TemplateProcessing":
        prefix, suffix, after_text = [], [], False
        for item in spec["single"]:
            if "Sequence" in item:
                after_text = True
            else:
                ids = spec["special_tokens"][item["SpecialToken"]["id"]]["ids"]
                (suffix if after_text else prefix).extend(ids)
        return prefix, suffix
    raise ValueError(f"{where}: post_processor type {kind!r} is not supported; minillm reads "
                     f"ByteLevel, TemplateProcessing and a Sequence of them")


class HFBPETokenizer:
    """The byte-level BPE of a ``tokenizer.json`` (a parsed dict ``data``; ``where`` names it in errors)."""

    def __init__(self, data, where="tokenizer.json"):
        self.data = data
        model = data.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"{where}: model type {model.get('type')!r}; expected 'BPE'")
        if model.get("byte_fallback"):
            raise ValueError(f"{where}: byte_fallback = true is SentencePiece-style BPE (Llama 2, TinyLlama); "
                             f"minillm reads byte-level BPE only")
        for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
            if model.get(key) is not None:
                raise ValueError(f"{where}: model {key} = {model[key]!r} is not supported; expected null")
        decoder = data.get("decoder")
        if decoder is not None and decoder.get("type") != "ByteLevel":
            raise ValueError(f"{where}: decoder type {decoder.get('type')!r} is not supported; expected ByteLevel")
        self.normalize = normalizer(data.get("normalizer"), where)
        self.pre_tokenize = pre_tokenizer(data.get("pre_tokenizer"), where)
        self.prefix, self.suffix = _template(data.get("post_processor"), where)

        self.added_tokens = {}                                           # content -> id
        for token in data.get("added_tokens") or []:
            for flag in ("lstrip", "rstrip", "single_word"):
                if token.get(flag):
                    raise ValueError(f"{where}: added token {token['content']!r} has {flag} = true; "
                                     f"not supported")
            self.added_tokens[token["content"]] = token["id"]
        ids = {s: i for s, i in model["vocab"].items() if s not in self.added_tokens}   # the regular tokens
        vocab = [None] * (max(ids.values(), default=-1) + 1)            # None: an added token's id
        for spelling, i in ids.items():
            vocab[i] = str_to_token(spelling)
            if vocab[i] is None:
                raise ValueError(f"{where}: vocab token {spelling!r} (id {i}) is not in the byte-level alphabet")
        merges = []
        for rank, merge in enumerate(model.get("merges", [])):
            a, b = _merge_pair(merge, rank, where)
            if a not in ids or b not in ids:
                raise ValueError(f"{where}: merge {rank} ({a!r} {b!r}) uses a token not in the vocab")
            merges.append((ids[a], ids[b]))
        try:
            self.bpe = BPETokenizer(vocab, merges, self.added_tokens)    # the file's own ids
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        self.whole_tokens = ({token: i for i, token in enumerate(vocab) if token is not None}
                             if model.get("ignore_merges") else None)
        self.vocab_size = self.bpe.vocab_size
        self._added_split = special_splitter(self.added_tokens)

    def __repr__(self):
        return (f"HFBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.bpe.merges)}, "
                f"added_tokens={len(self.added_tokens)})")

    def token_to_id(self, token):
        """The id of an added token's text (e.g. "<|endoftext|>"), or None."""
        return self.added_tokens.get(token)

    def _encode_text(self, text, out):
        """Plain text (no added tokens) -> ids appended to ``out``."""
        for chunk in self.pre_tokenize([self.normalize(text)]):
            whole = self.whole_tokens.get(chunk.encode("utf-8")) if self.whole_tokens is not None else None
            if whole is not None:
                out.append(whole)
            else:
                out.extend(self.bpe.encode_chunk(chunk))

    def encode(self, text, add_special_tokens=False):
        """str -> list[int]: added tokens whole, the rest byte-level BPE; with
        ``add_special_tokens``, the post-processor's ids around it (e.g. a BOS)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out = list(self.prefix) if add_special_tokens else []
        pieces = self._added_split.split(text) if self._added_split is not None else [text]
        for k, piece in enumerate(pieces):
            if k % 2 == 1:                                               # split() puts the matches at odd places
                out.append(self.added_tokens[piece])
            elif piece:
                self._encode_text(piece, out)
        return out + (list(self.suffix) if add_special_tokens else [])

    def decode(self, ids):
        """ids -> str: the tokens' bytes joined (an added token: its text), invalid UTF-8 as U+FFFD."""
        return self.bpe.decode(ids)

    # --- serialisation: the tokenizer.json content itself ----------------------------

    def to_dict(self):
        return {"type": "tokenizer_json", "tokenizer": self.data}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != "tokenizer_json" or "tokenizer" not in d:
            raise ValueError("expected a dict with type 'tokenizer_json' and a 'tokenizer' entry")
        return cls(d["tokenizer"])

    def save(self, path):
        """Write the tokenizer.json content to ``path``."""
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(self.data, f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        return cls(read_json_object(path, "a JSON object with a 'model' entry"), path)


def read_tokenizer_json(directory, path):
    """The folder reader ``minillm.tokenizers.load`` calls for a tokenizer.json of type "BPE"."""
    return HFBPETokenizer.load(path)


TOKENIZER_JSON_READERS["BPE"] = read_tokenizer_json
