"""Tests for minillm.tokenizers: character and byte-level BPE tokenizers."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from minillm.tokenizers import CharTokenizer, tokenizer_from_dict


# --- CharTokenizer -----------------------------------------------------------

def test_char_vocab_is_sorted_unique_chars():
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == ["e", "h", "l", "o"]
    assert tok.vocab_size == 4
    assert tok.encode("hole") == [1, 3, 2, 0]
    assert tok.decode([1, 0, 2, 2, 3]) == "hello"


@given(st.text(min_size=1, max_size=50))
def test_char_round_trip(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_char_unknown_character_is_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="character 'é'.* not in the vocabulary"):
        tok.encode("abé")


def test_char_unk_token():
    tok = CharTokenizer.from_text("abc", unk=True)
    assert tok.vocab_size == 4
    assert tok.encode("aéb") == [0, 3, 1]
    assert tok.decode([0, 3, 1]) == "a\ufffdb"


def test_char_decode_errors():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"token id 3 is outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.0])


def test_char_decode_accepts_numpy_ints():
    import numpy as np
    tok = CharTokenizer.from_text("abc")
    assert tok.decode(np.array([2, 0], dtype=np.int64)) == "ca"


@given(st.text(min_size=1, max_size=30), st.booleans())
@settings(max_examples=20)
def test_char_dict_and_file_round_trip(text, unk):
    import tempfile, os
    tok = CharTokenizer.from_text(text, unk=unk)
    d = json.loads(json.dumps(tok.to_dict()))
    assert d["type"] == "char"
    for back in (CharTokenizer.from_dict(d), tokenizer_from_dict(d)):
        assert isinstance(back, CharTokenizer)
        assert back.chars == tok.chars and back.unk == tok.unk
        assert back.encode(text) == tok.encode(text)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tok.json")
        tok.save(path)
        assert CharTokenizer.load(path).encode(text) == tok.encode(text)


def test_tokenizer_from_dict_unknown_type():
    with pytest.raises(ValueError, match="unknown tokenizer type 'wordpiece'"):
        tokenizer_from_dict({"type": "wordpiece"})
