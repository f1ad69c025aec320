"""tokenizer.json byte-level BPE against the ``tokenizers`` library, on tokenizers trained here.

Three pipelines as the checkpoints ship them: GPT-2's (ByteLevel with its regex;
a special token at id 0), Llama 3's (a Split regex with digits in groups of
three, ByteLevel without regex, ignore_merges, special tokens after the
vocabulary, a <|begin_of_text|> template) with Qwen2's NFC normaliser, and
SmolLM's (digits one by one, then ByteLevel with a prefix space). Each is
compared id for id on a few hundred texts, with and without the template.
"""
import json
import os

import pytest

tokenizers = pytest.importorskip("tokenizers", reason="the parity test needs the tokenizers library")

import minillm.tokenizers  # noqa: E402
from minillm.tokenizers import HFBPETokenizer, tokenizer_from_dict  # noqa: E402

CORPUS = os.path.join(os.path.dirname(minillm.tokenizers.__file__), os.pardir, "corpus", "shakespeare.txt")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
EXTRA = ["Caf\u00e9 na\u0131ve \u00e9l\u00e8ve \u2014 \u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \U0001F600\U0001F44D!",
         "Cafe\u0301 (e + combining accent)", "In 2024, 1234567 apples cost $3.50; x=42**7.",
         "tabs\tand\n\nnewlines  \n   trailing   ", "<|endoftext|>Hello<|endoftext|> world <|im_start|>user",
         "I'll've you're WE'RE it's", "", " ", "\u00a0nbsp and \u200b zero width", "a" * 40 + " " + "ab" * 20]


def texts():
    with open(CORPUS, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n")[2000:2600] if line.strip()]
    chunks = ["\n".join(lines[i:i + 3]) for i in range(0, 600, 3)][:190]
    return chunks + lines[:100] + EXTRA


def train(pre_tokenizer, special_tokens, normalizer=None, **bpe_options):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(**bpe_options))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    with open(CORPUS, encoding="utf-8") as f:
        tok.train_from_iterator(f.read()[:200_000].split("\n"), trainer)
    return tok


def gpt2_style(add_prefix_space=False):
    from tokenizers import pre_tokenizers
    return train(pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space), ["<|endoftext|>"])


def roberta_style():
    """GPT-2's pipeline with a space put before every chunk that lacks one (after each special token too)."""
    return gpt2_style(add_prefix_space=True)


def llama3_style():
    from tokenizers import Regex, normalizers, pre_tokenizers, processors
    tok = train(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                [], normalizer=normalizers.NFC(), ignore_merges=True)
    tok.add_special_tokens(["<|begin_of_text|>", "<|endoftext|>", "<|im_start|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])])
    return tok


def smollm_style():
    from tokenizers import pre_tokenizers
    return train(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                          pre_tokenizers.ByteLevel(add_prefix_space=False)]),
                 ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


@pytest.mark.parametrize("build", [gpt2_style, roberta_style, llama3_style, smollm_style])
def test_ids_equal_the_tokenizers_library(tmp_path, build):
    reference = build()
    reference.save(str(tmp_path / "tokenizer.json"))
    ours = minillm.tokenizers.load(tmp_path)
    assert isinstance(ours, HFBPETokenizer) and ours.vocab_size == reference.get_vocab_size()
    samples = texts()
    assert len(samples) >= 300
    for text in samples:
        for add in (False, True):
            expected = reference.encode(text, add_special_tokens=add).ids
            assert ours.encode(text, add_special_tokens=add) == expected, (text, add)
        ids = reference.encode(text).ids
        assert ours.decode(ids) == reference.decode(ids, skip_special_tokens=False)
    again = tokenizer_from_dict(json.loads(json.dumps(ours.to_dict())))
    assert again.encode(samples[0]) == ours.encode(samples[0])


def test_the_layouts_differ_where_they_should(tmp_path):
    """Where the special tokens sit, and what the pre-tokenizers do to digits, first words and accents."""
    names = ("gpt2", "roberta", "llama3", "smollm")
    for name, build in zip(names, (gpt2_style, roberta_style, llama3_style, smollm_style)):
        build().save(str(tmp_path / f"{name}.json"))
    gpt2, roberta, llama3, smollm = (HFBPETokenizer.load(tmp_path / f"{n}.json") for n in names)
    assert gpt2.token_to_id("<|endoftext|>") == 0 and llama3.token_to_id("<|endoftext|>") == 601
    assert llama3.encode("x", add_special_tokens=True)[0] == llama3.token_to_id("<|begin_of_text|>")
    assert [smollm.decode([i]) for i in smollm.encode("2024")] == ["2", "0", "2", "4"]
    assert roberta.decode(roberta.encode("Hi<|endoftext|>you")) == " Hi<|endoftext|> you"
    assert llama3.decode(llama3.encode("Cafe\u0301")) == "Caf\u00e9"                             # NFC


def test_unsupported_pipelines_are_named_errors(tmp_path):
    data = json.loads(gpt2_style().to_str())
    for change, message in [
        (lambda d: d["model"].update(byte_fallback=True), "byte_fallback = true is SentencePiece-style BPE"),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer type 'Whitespace'"),
        (lambda d: d.update(normalizer={"type": "BertNormalizer"}), "normalizer type 'BertNormalizer'"),
        (lambda d: d.update(post_processor={"type": "RobertaProcessing"}), "post_processor type 'RobertaProcessing'"),
    ]:
        broken = json.loads(json.dumps(data))
        change(broken)
        (tmp_path / "tokenizer.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=message):
            minillm.tokenizers.load(tmp_path)


def test_ignore_merges_takes_a_whole_chunk_that_is_a_token():
    """Llama 3's ignore_merges: a chunk found in the vocabulary is that token, whatever the merges say.
    "zzzq" is added to the vocabulary with no merge that builds it."""
    data = json.loads(llama3_style().to_str())
    data["model"]["vocab"]["zzzq"] = 603
    reference = tokenizers.Tokenizer.from_str(json.dumps(data))
    ours = HFBPETokenizer(data)
    for text in ["zzzq", "zzzq zzzq", "Hello zzzq!"] + texts()[:50]:
        assert ours.encode(text) == reference.encode(text, add_special_tokens=False).ids, text
    assert ours.encode("zzzq") == [603]
    data["model"]["ignore_merges"] = False
    assert HFBPETokenizer(data).encode("zzzq") != [603]
