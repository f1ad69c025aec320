"""Unigram tokenizer: Viterbi by hand, and ids equal to the ``tokenizers`` library's on a few
hundred texts, with a Unigram model the test trains itself (no download): plain, with byte
fallback, and with SentencePiece's precompiled NFKC map (T5's normalizer)."""
import base64
import json
import pathlib

import pytest

import minillm.tokenizers
from minillm.tokenizers import UnigramTokenizer, tokenizer_from_dict
from minillm.tokenizers.unigram import viterbi

CORPUS = pathlib.Path(minillm.tokenizers.__file__).parent.parent / "corpus" / "shakespeare.txt"
EXTRA = ["", " ", "  two  spaces  ", "tab\there", "Ünïcödé wörds, café", "日本語 text", "emoji 🙂 here",
         "to be</s>or not", "<pad>start", "end</s>", "ＦＵＬＬ ｗｉｄｔｈ", "ﬁne ligatures ①", "x\u00a0y", "A" * 40,
         "cafe\u0301 A\u030a n\u0303o", "\u1100\u1161\u11a8 ko"]     # combining marks, a Hangul jamo cluster


def test_viterbi_picks_the_most_probable_segmentation():
    ids = {"▁": 0, "a": 1, "b": 2, "ab": 3, "▁ab": 4, "abb": 5}
    scores = [-1.0, -2.0, -2.0, -2.5, -6.0, -3.0]
    # "▁abb": ▁ + abb = -4.0 beats ▁ab + b = -8.0 and ▁ + ab + b = -5.5
    assert viterbi("▁abb", ids, scores, 3, None, -20.0) == [("▁", 0), ("abb", 5)]
    # unknown characters: one edge each at min - 10, consecutive ones fused
    assert viterbi("axyb", ids, scores, 3, 9, -16.0) == [("a", 1), ("xy", 9), ("b", 2)]


@pytest.fixture(scope="module")
def texts():
    lines = [line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:3000], lines[3000:3300] + EXTRA     # train on the first 3000, compare on 300 others + EXTRA


@pytest.fixture(scope="module")
def trained(texts):
    tokenizers = pytest.importorskip("tokenizers", reason="parity with the tokenizers library")
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = tokenizers.Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts[0], trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return json.loads(tok.to_str())


def compare(tmp_path, data, held_out):
    from tokenizers import Tokenizer
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    ours = minillm.tokenizers.load(tmp_path)
    assert isinstance(ours, UnigramTokenizer)
    for text in held_out:
        expected = reference.encode(text).ids
        assert ours.encode(text) == expected, text
        assert ours.decode(expected) == reference.decode(expected), text
    return ours


def test_ids_equal_the_tokenizers_library(tmp_path, trained, texts):
    ours = compare(tmp_path, trained, texts[1])
    assert ours.unk_id in ours.encode("日本語") and ours.encode("to be")[-1] == 1   # unknowns, then </s>
    again = tokenizer_from_dict(json.loads(json.dumps(ours.to_dict())))
    assert all(again.encode(t) == ours.encode(t) for t in texts[1][:50])


def test_byte_fallback_equals_the_tokenizers_library(tmp_path, trained, texts):
    data = json.loads(json.dumps(trained))
    lowest = min(score for _, score in data["model"]["vocab"])
    data["model"]["vocab"] += [[f"<0x{b:02X}>", lowest - 1.0] for b in range(256)]
    data["model"]["byte_fallback"] = True
    data["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, data["decoder"]]}
    ours = compare(tmp_path, data, texts[1][-40:])
    assert ours.unk_id not in ours.encode("日本語 🙂") and ours.decode(ours.encode("日本語 🙂")) == "日本語 🙂"


@pytest.mark.parametrize("vocab, text", [
    # unknown "x": "▁" + <unk> + "ab" scores -1 + (min - 10) - 0.5 = -31.5 < "▁xa" + "b" = -30 (a penalty of 1 flips it)
    ([["<unk>", 0.0], ["▁", -1.0], ["a", -2.0], ["b", -10.0], ["ab", -0.5], ["▁xa", -20.0]], "xab"),
    # an exact tie, "▁" + "ab" = "▁a" + "b" = -4: the first path found (ending at "ab") is kept
    ([["<unk>", 0.0], ["▁", -1.0], ["a", -5.0], ["b", -2.0], ["ab", -3.0], ["▁a", -2.0]], "ab"),
])
def test_unknown_penalty_and_ties_as_the_tokenizers_library(tmp_path, vocab, text):
    pytest.importorskip("tokenizers", reason="parity with the tokenizers library")
    data = {"version": "1.0", "added_tokens": [], "normalizer": None, "post_processor": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": False}}
    compare(tmp_path, data, [text])


def _field(message, number):
    """The bytes of length-delimited field ``number`` in a protobuf message (enough to read a
    SentencePiece model's normalizer_spec.precompiled_charsmap without protobuf)."""
    i = 0
    while i < len(message):
        key, i = _varint(message, i)
        kind = key & 7
        if kind == 0:
            _, i = _varint(message, i)
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        else:
            length, i = _varint(message, i)
            if key >> 3 == number:
                return message[i:i + length]
            i += length
    raise KeyError(number)


def _varint(data, i):
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def test_sentencepiece_precompiled_normalizer_equals_the_tokenizers_library(tmp_path, trained, texts):
    spm = pytest.importorskip("sentencepiece", reason="builds a precompiled NFKC map")
    (tmp_path / "train.txt").write_text("\n".join(texts[0][:500]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "train.txt"), model_prefix=str(tmp_path / "spm"),
                                   vocab_size=200, model_type="unigram", normalization_rule_name="nmt_nfkc",
                                   minloglevel=2)
    model = (tmp_path / "spm.model").read_bytes()
    charsmap = _field(_field(model, 3), 2)                     # ModelProto.normalizer_spec.precompiled_charsmap
    assert len(charsmap) > 1000
    data = json.loads(json.dumps(trained))
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    ours = compare(tmp_path, data, texts[1])
    assert ours._normalize("ＦＵＬＬ ﬁ ①") == "FULL fi 1"


def test_unsupported_pipeline_is_an_error_naming_the_type(tmp_path, trained):
    data = json.loads(json.dumps(trained))
    data["normalizer"] = {"type": "BertNormalizer"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="normalizer type 'BertNormalizer' is not supported"):
        minillm.tokenizers.load(tmp_path)
