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
    with pytest.raises(ValueError, match="unknown tokenizer type 'morse'"):
        tokenizer_from_dict({"type": "morse"})


# --- byte-level BPE ------------------------------------------------------------

from collections import Counter  # noqa: E402

from minillm.tokenizers import BPETokenizer  # noqa: E402
from minillm.tokenizers.bytelevel import BYTE_ENCODER, pretokenize  # noqa: E402
from minillm.tokenizers.bpe_train import count_words, learn_merges  # noqa: E402

SMALL_CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
                "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die "
                "than to famish?\n\nAll:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you "
                "know Caius Marcius is chief enemy to the people.\n") * 3

# Unicode beyond ASCII: emoji (4-byte UTF-8, ZWJ sequences), combining marks,
# control characters, CJK, right-to-left, the empty string.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
TRICKY = ["", " ", "\n\n", "héllo wörld", "e\u0301\u0302", "👩‍👩‍👧 family", "\x00\x01\x7f",
          "日本語のテキスト", "שלום עולם", "  leading and trailing  ", "it's we'll they're",
          "3.14159 and 2,718", "tab\tsep\r\nline", "\ufeffbom"]


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(SMALL_CORPUS, vocab_size=256 + 60 + 1)


def test_pretokenize_matches_gpt2_split():
    assert pretokenize("Hello, world! I'm  3.14  ok\n\n") == [
        "Hello", ",", " world", "!", " I", "'m", " ", " 3", ".", "14", " ", " ok", "\n\n"]


def test_byte_table_is_gpt2s():
    assert len(set(BYTE_ENCODER.values())) == 256
    assert BYTE_ENCODER[ord(" ")] == "Ġ" and BYTE_ENCODER[ord("\n")] == "Ċ"
    assert BYTE_ENCODER[ord("a")] == "a" and BYTE_ENCODER[0] == "\u0100"


def test_train_vocab_size_and_layout(trained):
    assert trained.vocab_size == 256 + 60 + 1
    assert len(trained.merges) == 60
    assert trained.special_tokens == {"<|endoftext|>": 316}
    for k, (a, b) in enumerate(trained.merges):  # merge k creates id 256 + k from earlier ids
        assert a < 256 + k and b < 256 + k
        assert trained.vocab[256 + k] == trained.vocab[a] + trained.vocab[b]


def test_train_stops_when_pairs_run_out():
    tok = BPETokenizer.train("abab ab", vocab_size=1000, special_tokens=())
    # words "abab" and " ab": merge a+b (count 3); then (ab, ab) and (' ', ab) tie at 1 and
    # the smaller pair of ids wins: (32, 256) before (256, 256); then every word is one token
    assert [tok.vocab[256 + k] for k in range(len(tok.merges))] == [b"ab", b" ab", b"abab"]
    assert tok.vocab_size == 259
    assert tok.encode("abab ab") == [258, 257]


def test_train_rejects_too_small_vocab():
    with pytest.raises(ValueError, match=r"vocab_size \(200\) must be at least 256"):
        BPETokenizer.train("abc", vocab_size=200)


def _naive_merges(text, n_merges, special_tokens=()):
    """Reference: recount every pair over all words before each merge."""
    words = {w: c for w, c in count_words(text, special_tokens).items()}
    seqs = {w: list(w.encode("utf-8")) for w in words}
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, c in words.items():
            for p in zip(seqs[w], seqs[w][1:]):
                counts[p] += c
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i < len(s) - 1 and (s[i], s[i + 1]) == pair:
                    out.append(256 + k)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


@given(st.text(alphabet="ab c\n", max_size=60), st.integers(0, 30))
@settings(max_examples=60)
def test_incremental_training_equals_naive_recount(text, n_merges):
    assert learn_merges(text, n_merges) == _naive_merges(text, n_merges)


def test_incremental_training_equals_naive_on_real_text():
    assert learn_merges(SMALL_CORPUS, 40) == _naive_merges(SMALL_CORPUS, 40)


def test_vocab_size_is_what_was_asked_or_all_pairs_merged():
    for size in (256, 257, 300, 400, 5000):
        tok = BPETokenizer.train(SMALL_CORPUS, vocab_size=size, special_tokens=())
        if tok.vocab_size < size:  # ran out of pairs: every word is now a single token
            assert all(len(tok.encode(w)) == 1 for w in count_words(SMALL_CORPUS))
        else:
            assert tok.vocab_size == size


def _replay_merges(tok, text):
    """Reference encoding: apply every merge in the order learned, chunk by chunk."""
    out = []
    for chunk in pretokenize(text):
        ids = list(chunk.encode("utf-8"))
        for k, (a, b) in enumerate(tok.merges):
            new, i = [], 0
            while i < len(ids):
                if i < len(ids) - 1 and ids[i] == a and ids[i + 1] == b:
                    new.append(256 + k)
                    i += 2
                else:
                    new.append(ids[i])
                    i += 1
            ids = new
        out.extend(ids)
    return out


@given(st.text(alphabet="First Citizen:\n,.?abyou", max_size=80))
@settings(max_examples=40)
def test_lowest_rank_first_equals_replaying_merges(trained, text):
    assert trained.encode(text) == _replay_merges(trained, text)


@given(ANY_TEXT)
def test_bpe_round_trip_any_unicode(trained, text):
    ids = trained.encode(text)
    assert all(0 <= i < trained.vocab_size for i in ids)
    assert trained.decode(ids) == text


@pytest.mark.parametrize("text", TRICKY)
def test_bpe_round_trip_tricky(trained, text):
    assert trained.decode(trained.encode(text)) == text


@given(ANY_TEXT)
@settings(max_examples=20)
def test_bpe_encoding_is_deterministic(trained, text):
    fresh = BPETokenizer.from_dict(trained.to_dict())  # empty cache
    assert trained.encode(text) == trained.encode(text) == fresh.encode(text)


@given(st.lists(ANY_TEXT, min_size=1, max_size=4))
@settings(max_examples=30)
def test_special_tokens_never_split(trained, parts):
    eot = trained.special_tokens["<|endoftext|>"]
    text = "<|endoftext|>".join(parts)
    ids = trained.encode(text)
    assert ids.count(eot) == text.count("<|endoftext|>")
    assert trained.decode(ids) == text
    plain = trained.encode(text, special=False)  # as ordinary text: split into bytes/merges
    assert eot not in plain and trained.decode(plain) == text


def test_special_token_adjacent_to_text(trained):
    eot = trained.special_tokens["<|endoftext|>"]
    ids = trained.encode("all<|endoftext|><|endoftext|>speak")
    assert ids[len(trained.encode("all")):][:2] == [eot, eot]


def test_bpe_decode_errors(trained):
    with pytest.raises(ValueError, match=r"token id 317 is outside the vocabulary \[0, 317\)"):
        trained.decode([317])
    with pytest.raises(ValueError, match="token id -1"):
        trained.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        trained.decode(["a"])


def test_bpe_decode_accepts_numpy_ids_and_rejects_non_integers(trained):
    import numpy as np
    ids = trained.encode("Speak, speak.")
    assert trained.decode(np.array(ids, dtype=np.int32)) == "Speak, speak."
    assert trained.decode([np.int64(i) for i in ids]) == "Speak, speak."
    for bad in ([True], np.array([1.0]), [1.0]):
        with pytest.raises(TypeError, match="token ids must be integers"):
            trained.decode(bad)
    with pytest.raises(ValueError, match="token id -2 is outside"):
        trained.decode(np.array([5, -2]))


def test_bpe_partial_utf8_decodes_to_replacement(trained):
    ids = trained.encode("é")  # two bytes, two tokens in this small vocabulary
    assert len(ids) == 2 and trained.decode(ids[:1]) == "\ufffd"


def test_bpe_rejects_non_utf8_text(trained):
    with pytest.raises(ValueError, match="not encodable as UTF-8"):
        trained.encode("a\ud800b")


def test_bpe_serialisation_round_trip(trained, tmp_path):
    d = json.loads(json.dumps(trained.to_dict()))
    assert d["type"] == "bpe"
    text = SMALL_CORPUS[:200] + "<|endoftext|>é👍"
    for back in (BPETokenizer.from_dict(d), tokenizer_from_dict(d)):
        assert back.merges == trained.merges and back.vocab == trained.vocab
        assert back.encode(text) == trained.encode(text)
    trained.save(tmp_path / "bpe.json")
    assert BPETokenizer.load(tmp_path / "bpe.json").encode(text) == trained.encode(text)
    trained.save_gpt2(tmp_path / "gpt2")
    again = BPETokenizer.from_gpt2(tmp_path / "gpt2" / "vocab.json", tmp_path / "gpt2" / "merges.txt")
    assert again.special_tokens == trained.special_tokens
    assert again.encode(text) == trained.encode(text)


# --- GPT-2's files: a hand-made vocab.json / merges.txt --------------------------------

HAND_MERGES = ["Ġ t", "l l", "h e", "e ll", "Ġt he", "he ll", "a a"]


@pytest.fixture
def hand_gpt2(tmp_path):
    """The 256 byte tokens in GPT-2's order (by the printable character's code point,
    so "!" = 0 and "Ġ" = 220 as in the real GPT-2), 7 merges, then <|endoftext|>."""
    chars = sorted(BYTE_ENCODER.values())
    vocab = {c: i for i, c in enumerate(chars)}
    for k, m in enumerate(HAND_MERGES):
        vocab[m.replace(" ", "")] = 256 + k
    vocab["<|endoftext|>"] = 256 + len(HAND_MERGES)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(HAND_MERGES) + "\n",
                                         encoding="utf-8")
    return tmp_path


def test_from_gpt2_hand_made_pair(hand_gpt2):
    tok = BPETokenizer.from_gpt2(hand_gpt2 / "vocab.json", hand_gpt2 / "merges.txt")
    assert tok.vocab_size == 264 and tok.special_tokens == {"<|endoftext|>": 263}
    # byte ids as in the real GPT-2: "!" 0, "a" 64, "o" 78, "t" 83, "y" 88, "Ċ" 198, "Ġ" 220
    assert tok.encode("!ao yt\n") == [0, 64, 78, 220, 88, 83, 198]
    # Derived by hand, merging the lowest-ranked adjacent pair each time:
    # "hello":  h e l l o -> (l l, rank 1) h e ll o -> (h e, 2) he ll o -> (he ll, 5) hell o
    assert tok.encode("hello") == [261, 78]
    # " yell":  Ġ y e l l -> (l l, 1) Ġ y e ll -> (e ll, 3) Ġ y ell
    assert tok.encode(" yell") == [220, 88, 259]
    # " the":   Ġ t h e -> (Ġ t, 0) Ġt h e -> (h e, 2) Ġt he -> (Ġt he, 4) Ġthe
    assert tok.encode(" the") == [260]
    # "the" (no space): t h e -> (h e, 2) t he; "Ġt he" does not apply
    assert tok.encode("the") == [83, 258]
    # "aaa": every (a a) left to right without overlap -> aa a
    assert tok.encode("aaa") == [262, 64]
    assert tok.encode("hello yell the the<|endoftext|>!") == [
        261, 78, 220, 88, 259, 260, 260, 263, 0]
    assert tok.decode([261, 78, 263, 220, 88, 259]) == "hello<|endoftext|> yell"
    assert tok.token_str(260) == "Ġthe" and tok.token_str(263) == "<|endoftext|>"


def test_from_gpt2_missing_file(hand_gpt2):
    with pytest.raises(FileNotFoundError, match="merges.txt not found"):
        BPETokenizer.from_gpt2(hand_gpt2 / "vocab.json", hand_gpt2 / "nope.txt")


def test_from_gpt2_merge_with_unknown_token(hand_gpt2):
    (hand_gpt2 / "merges.txt").write_text("#version: 0.2\nx yz\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merge 0 \('x' 'yz'\) uses token 'yz'"):
        BPETokenizer.from_gpt2(hand_gpt2 / "vocab.json", hand_gpt2 / "merges.txt")


def test_from_gpt2_malformed_merge_line(hand_gpt2):
    (hand_gpt2 / "merges.txt").write_text("#version: 0.2\nĠ t h\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected two tokens"):
        BPETokenizer.from_gpt2(hand_gpt2 / "vocab.json", hand_gpt2 / "merges.txt")


def test_from_gpt2_missing_byte(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks 255 single bytes"):
        BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")


@given(ANY_TEXT)
@settings(max_examples=20)
def test_from_gpt2_round_trip(tmp_path_factory, text):
    d = tmp_path_factory.getbasetemp()
    if not (d / "vocab.json").exists():
        chars = sorted(BYTE_ENCODER.values())
        vocab = {c: i for i, c in enumerate(chars)}
        for k, m in enumerate(HAND_MERGES):
            vocab[m.replace(" ", "")] = 256 + k
        (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(HAND_MERGES), encoding="utf-8")
    tok = BPETokenizer.from_gpt2(d / "vocab.json", d / "merges.txt")
    assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------- minillm.tokenizers.load(directory)

def test_load_reads_a_gpt2_folder_and_names_what_it_cannot_read(tmp_path):
    import minillm.tokenizers as tokenizers
    tok = tokenizers.BPETokenizer.train("hello world, hello there " * 20, 300)
    tok.save_gpt2(tmp_path)
    loaded = tokenizers.load(tmp_path)
    assert loaded.encode("hello there") == tok.encode("hello there")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        tokenizers.load(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "tokenizer.json").write_text(json.dumps({"model": {"type": "Nonesuch"}}))
    with pytest.raises(ValueError, match="'Nonesuch' is not supported"):
        tokenizers.load(odd)


# --- special tokens anywhere in vocab.json (RoBERTa: first; HF-trained BPE: <|endoftext|> = 0) ---

ROBERTA_FIRST = ["<s>", "<pad>", "</s>", "<unk>"]


def _write_pair(directory, specials_first, specials_last=()):
    """The hand-made pair above with ``specials_first`` at ids 0.., every other id shifted."""
    shift = len(specials_first)
    vocab = {s: i for i, s in enumerate(specials_first)}
    for i, c in enumerate(sorted(BYTE_ENCODER.values())):
        vocab[c] = shift + i
    for k, m in enumerate(HAND_MERGES):
        vocab[m.replace(" ", "")] = shift + 256 + k
    for k, s in enumerate(specials_last):
        vocab[s] = shift + 256 + len(HAND_MERGES) + k
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")),
                                          encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(HAND_MERGES) + "\n", encoding="utf-8")
    return directory


def test_from_gpt2_loads_specials_first_and_last_with_the_files_ids(tmp_path):
    d = _write_pair(tmp_path / "roberta", ROBERTA_FIRST, specials_last=["<mask>"])
    tok = BPETokenizer.from_gpt2(d / "vocab.json", d / "merges.txt")
    assert tok.special_tokens == {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 267}
    assert tok.vocab_size == 268
    # the hand-derived ids of test_from_gpt2_hand_made_pair, each + 4; specials kept whole
    assert tok.encode("<s>hello yell the</s><pad>") == [0, 265, 82, 224, 92, 263, 264, 2, 1]
    assert tok.encode("<mask>!<unk>") == [267, 4, 3]
    assert tok.encode("<s>", special=False) == [4 + 27, 4 + 82, 4 + 29]  # "<", "s", ">" as plain bytes
    assert tok.decode([0, 265, 82, 2, 267]) == "<s>hello</s><mask>"
    assert tok.token_str(0) == "<s>" and tok.token_str(264) == "Ġthe"
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))       # checkpoints keep the ids
    assert again.encode("<s>hello yell</s>") == tok.encode("<s>hello yell</s>")
    tok.save_gpt2(tmp_path / "saved")                                        # written back identically
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "saved" / name).read_bytes() == (d / name).read_bytes(), name


def test_from_gpt2_endoftext_at_id_zero_round_trips(tmp_path):
    d = _write_pair(tmp_path / "hf", ["<|endoftext|>"])
    tok = BPETokenizer.from_gpt2(d / "vocab.json", d / "merges.txt")
    assert tok.special_tokens == {"<|endoftext|>": 0} and tok.vocab_size == 264
    assert tok.encode("hello<|endoftext|> the") == [262, 79, 0, 261]
    tok.save_gpt2(tmp_path / "saved")
    assert (tmp_path / "saved" / "vocab.json").read_bytes() == (d / "vocab.json").read_bytes()


def test_a_vocabulary_with_an_id_nobody_owns_is_a_clear_error():
    vocab = [bytes([b]) for b in range(256)] + [None, b"ab"]
    with pytest.raises(ValueError, match=r"ids \[256\] have neither a token nor a special token"):
        BPETokenizer(vocab, [], {})
    assert BPETokenizer(vocab, [], {"<s>": 256, "</s>": 258}).vocab_size == 259


@pytest.mark.parametrize("specials", [["<|endoftext|>"], ROBERTA_FIRST + ["<mask>"]])
def test_from_gpt2_encodes_like_the_hugging_face_tokenizer_that_wrote_the_files(tmp_path, specials):
    """A byte-level BPE trained here by ``tokenizers`` (specials first, no download): same ids."""
    hf_tokenizers = pytest.importorskip("tokenizers")
    hf = hf_tokenizers.ByteLevelBPETokenizer()
    hf.train_from_iterator([SMALL_CORPUS] * 3, vocab_size=256 + 60 + len(specials), min_frequency=1,
                           special_tokens=specials, show_progress=False)
    hf.save_model(str(tmp_path))
    tok = BPETokenizer.from_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert tok.special_tokens == {s: i for i, s in enumerate(specials)}
    assert tok.vocab_size == hf.get_vocab_size()
    texts = [SMALL_CORPUS[:300], "  Before we proceed\n\nany further, é👍 \"x\\y\"", specials[0] + "hear me"
             + specials[-1] + " speak" + specials[0]]
    for text in texts:
        assert tok.encode(text) == hf.encode(text).ids, text
    tok.save_gpt2(tmp_path / "back")
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / name).read_bytes(), name
