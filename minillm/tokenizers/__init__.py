"""Tokenizers: text <-> integer ids.

    from minillm.tokenizers import CharTokenizer, BPETokenizer, tokenizer_from_dict

- ``CharTokenizer``: one id per character (``char.py``).
- ``BPETokenizer``: byte-level byte-pair encoding as in GPT-2 (``bpe.py``),
  trained with ``bpe_train.py`` or read from GPT-2's ``vocab.json`` / ``merges.txt``.
- ``HFBPETokenizer``: the byte-level BPE of a Hugging Face ``tokenizer.json``
  (``tokenizer_json.py``; Llama 3, SmolLM, Qwen2), registered as the folder reader for "BPE".
- ``UnigramTokenizer``: SentencePiece's Unigram model from a tokenizer.json
  (``unigram.py``; T5, Flan-T5), registered as the folder reader for "Unigram".
- ``WordPieceTokenizer``: BERT's WordPiece from a ``vocab.txt`` (``wordpiece.py``).

``load(directory)`` (``folder.py``) reads the tokenizer of a Hugging Face model
folder: ``tokenizer.json``, ``vocab.json`` + ``merges.txt``, or ``vocab.txt``.

Every tokenizer has ``encode(str) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, ``to_dict()`` (JSON-ready, with a ``"type"`` key) and
``save(path)`` / ``load(path)``. Checkpoints store ``to_dict()``;
``tokenizer_from_dict`` turns it back into the right class.
"""
from minillm.tokenizers.bpe import BPETokenizer
from minillm.tokenizers.char import CharTokenizer
from minillm.tokenizers.folder import load
from minillm.tokenizers.tokenizer_json import HFBPETokenizer
from minillm.tokenizers.unigram import UnigramTokenizer
from minillm.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["CharTokenizer", "BPETokenizer", "tokenizer_from_dict", "load",
           "HFBPETokenizer", "UnigramTokenizer", "WordPieceTokenizer"]

_TYPES = {"char": CharTokenizer, "bpe": BPETokenizer, "tokenizer_json": HFBPETokenizer,
          "unigram": UnigramTokenizer, "wordpiece": WordPieceTokenizer}


def tokenizer_from_dict(d):
    """Rebuild a tokenizer from ``to_dict()`` output, dispatching on ``d["type"]``."""
    if not isinstance(d, dict):
        raise TypeError(f"tokenizer dict must be a dict, got {type(d).__name__}")
    kind = d.get("type")
    if kind not in _TYPES:
        raise ValueError(f"unknown tokenizer type {kind!r}; expected one of {sorted(_TYPES)}")
    return _TYPES[kind].from_dict(d)
