"""WordPiece (minillm/tokenizers/wordpiece.py): the algorithm on hand-checked cases, then the
ids against Hugging Face's BertTokenizerFast on a few hundred texts (Shakespeare lines,
accents, punctuation, Chinese, control characters, [MASK] in the text), uncased and
cased, from a vocab.txt this test writes (no download)."""
import collections
import json

import numpy as np
import pytest

import minillm.tokenizers
from minillm.corpus import load_corpus
from minillm.tokenizers import WordPieceTokenizer, tokenizer_from_dict
from minillm.tokenizers.wordpiece import SPECIAL_TOKENS, normalize, pre_tokenize

TRICKY = [
    "Héllo, wörld! Ça va? naïve café résumé Ångström ÉCOLE", "don't stop—believing… «quoted» “smart”",
    "我爱北京天安门", "Shakespeare 写 的 戏剧 is 很好", "mixed中文and English，标点。", "tab\there\nnew\r\nline",
    "control\x00chars\x07here\ufeff and\u200bzero width", "To be, or not to [MASK].", "[CLS] already [SEP] there",
    "[mask] lower case is not special", "a" * 120 + " long word", "$100 + 5% = ^_^ `code` ~tilde~ #hash @at",
    "emoji 😀 and ☃ snowman", "ﬁ ligature and Ⅻ numeral", "ΑΒΓ Greek αβγ and Кириллица", "İstanbul ß straße",
    "unaffable unbelievable playing played player", "   leading and trailing spaces   ", "", "...!!!???",
    "e\u0301 combining acute", "x\u00a0nbsp\u2003em space\u3000ideographic space", "12,345.67 3:30pm 1990s",
]


def build_vocab(texts, lowercase=True):
    """Specials, single characters (and their ## forms), frequent words and word pieces."""
    words = collections.Counter(w for t in texts for w in pre_tokenize(normalize(t, lowercase)))
    chars = sorted({c for w in words for c in w} - {"😀"})               # the emoji stays [UNK]
    pieces = collections.Counter()
    for w, n in words.items():
        for k in (2, 3, 4):
            if len(w) > k + 1:
                pieces[w[:k]] += n
                pieces["##" + w[-k:]] += n
    vocab = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars if c not in "ÉÇ"]
    vocab += [w for w, _ in words.most_common(400)] + [p for p, _ in pieces.most_common(300)]
    vocab += ["un", "##aff", "##able", "##believ", "play", "##ing", "##ed", "##er"]
    return list(dict.fromkeys(vocab))


def corpus_texts(n=260, seed=0):
    lines = [line for line in load_corpus().splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    return [lines[i] for i in rng.choice(len(lines), n, replace=False)]


@pytest.fixture(scope="module")
def texts():
    return corpus_texts() + TRICKY


def write_folder(path, vocab, lowercase=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lowercase}))
    return path


def test_greedy_longest_match_first_and_unknown_words():
    tok = WordPieceTokenizer(list(SPECIAL_TOKENS) + ["un", "##aff", "##able", "##a", "a", "##ff", ",", "!"])
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]            # ##aff beats ##a + ##ff
    assert tok.tokenize("Unaffable, UNAFFABLE!") == ["un", "##aff", "##able", ",", "un", "##aff", "##able", "!"]
    assert tok.tokenize("unx affable") == ["[UNK]", "a", "##ff", "##able"]  # one unknown piece: the whole word
    assert tok.encode("a [MASK] a", add_special_tokens=True) == [2, 9, 4, 9, 3]
    assert tok.decode(tok.encode("unaffable a")) == "unaffable a"
    assert tok.decode([2, 5, 6, 3], skip_special_tokens=True) == "unaff"


def test_normalizer_and_pre_tokenizer_steps():
    assert normalize("Héllo\tWÖRLD") == "hello world"
    assert normalize("Héllo", lowercase=False) == "Héllo"
    assert normalize("北京x") == " 北  京 x"
    assert pre_tokenize("don't stop!") == ["don", "'", "t", "stop", "!"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_ids_equal_bert_tokenizer_fast_on_hundreds_of_texts(tmp_path, texts, lowercase):
    transformers = pytest.importorskip("transformers", reason="parity with BertTokenizerFast")
    vocab = build_vocab(texts, lowercase)
    folder = write_folder(tmp_path / "bert", vocab, lowercase)
    theirs = transformers.BertTokenizerFast.from_pretrained(folder)
    ours = minillm.tokenizers.load(folder)
    assert isinstance(ours, WordPieceTokenizer) and ours.lowercase == lowercase
    assert ours.vocab_size == len(theirs.get_vocab()) == len(vocab)
    unknown = 0
    for text in texts:
        expected = theirs(text)["input_ids"]
        assert ours.encode(text, add_special_tokens=True) == expected, text
        unknown += expected.count(ours.unk_id)
    assert len(texts) >= 280 and unknown > 0                                  # [UNK] is exercised too


def test_tokenizer_json_and_to_dict_round_trip(tmp_path, texts):
    transformers = pytest.importorskip("transformers", reason="writes a tokenizer.json")
    folder = write_folder(tmp_path / "bert", build_vocab(texts))
    transformers.BertTokenizerFast.from_pretrained(folder).save_pretrained(tmp_path / "json")
    assert not (tmp_path / "json" / "vocab.txt").exists()
    from_json = minillm.tokenizers.load(tmp_path / "json")
    from_txt = minillm.tokenizers.load(folder)
    again = tokenizer_from_dict(json.loads(json.dumps(from_txt.to_dict())))
    for text in texts[-len(TRICKY):]:
        assert from_json.encode(text) == from_txt.encode(text) == again.encode(text)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no unknown token '\\[UNK\\]'"):
        WordPieceTokenizer(["a", "b"])
    tok = WordPieceTokenizer(list(SPECIAL_TOKENS))
    with pytest.raises(ValueError, match=r"token id 5 is outside the vocabulary \[0, 5\)"):
        tok.decode([5])
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="missing the 'vocab' field"):
        tokenizer_from_dict({"type": "wordpiece"})
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}},
                                                         "normalizer": {"type": "NFC"}}))
    with pytest.raises(ValueError, match="normalizer type 'NFC' is not supported"):
        minillm.tokenizers.load(tmp_path)
