"""GPT-2's tokenizer files: ``vocab.json`` and ``merges.txt``.

vocab.json: {"!": 0, "\\"": 1, ..., "Ġthe": 262, ..., "<|endoftext|>": 50256}
    each token spelled with ``bytes_to_unicode`` (a space is "Ġ", a newline "Ċ").
merges.txt: a "#version: 0.2" header, then one merge per line, lowest rank first:
    "Ġ t" (rank 0), "Ġ a" (rank 1), "h e", ...

These are the files on the Hugging Face hub's ``gpt2`` repository; OpenAI's
original release names them ``encoder.json`` and ``vocab.bpe`` (same content).
"""
import json
import os

from minillm import safe_io
from minillm.safe_io import read_json_object  # noqa: F401  (its home was here; hf and readers import it)
from minillm.tokenizers.bytelevel import check_special_tokens, str_to_token, token_to_str

MAX_TOKENIZER_BYTES = safe_io.MAX_JSON_BYTES   # GPT-2's vocab.json is 1 MB, merges.txt 0.5 MB


def _check_file(path, what):
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    safe_io.regular_file(path, what)
    return path


def is_marked_special(text):
    """Is ``text`` written like a special token: ``<...>`` (GPT-2's ``<|endoftext|>``,
    RoBERTa's ``<s>``) or ``[...]`` (BERT's ``[CLS]``)?"""
    return len(text) >= 3 and (text[0], text[-1]) in (("<", ">"), ("[", "]"))


def read_gpt2_tokenizer(vocab_json_path, merges_txt_path):
    """Parse the two files -> (vocab: list[bytes], merges: list[(id_a, id_b)], specials: dict).

    Ids are the file's own (vocab.json's numbers), so encodings match the
    tokenizer that wrote it. Vocabulary entries that are neither single bytes
    nor merge results are special tokens, at any id: last in GPT-2
    (``<|endoftext|>`` = 50256), first in RoBERTa and in byte-level BPEs trained
    by Hugging Face ``tokenizers``. ``vocab`` holds None at a special's id
    (trailing ones are left out, so GPT-2's vocab is the 50256 regular tokens).
    """
    vocab_json_path = _check_file(vocab_json_path, "GPT-2 vocab.json")
    merges_txt_path = _check_file(merges_txt_path, "GPT-2 merges.txt")
    encoder = read_json_object(vocab_json_path, "a JSON object token -> id", MAX_TOKENIZER_BYTES)
    for s, i in encoder.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"{vocab_json_path}: token {s!r} has id {i!r}; ids must be integers")
    ids = sorted(encoder.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"{vocab_json_path}: ids must be exactly 0..{len(ids) - 1}, each once")

    lines = safe_io.read_text(merges_txt_path, MAX_TOKENIZER_BYTES, "merges.txt").split("\n")
    merge_strs = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{merges_txt_path} line {lineno}: expected two tokens "
                             f"separated by a space, got {line!r}")
        merge_strs.append((parts[0], parts[1]))

    merged_strs = {a + b for a, b in merge_strs}
    id_to_str = {i: s for s, i in encoder.items()}
    vocab, specials = [], {}
    for i in range(len(id_to_str)):
        s = id_to_str[i]
        t = str_to_token(s)
        is_regular = t is not None and (len(t) == 1 or s in merged_strs)
        if is_regular:
            vocab.append(t)
        else:
            specials[s] = i
            vocab.append(None)                      # the id belongs to a special token
    while vocab and vocab[-1] is None:              # specials after the last regular token
        vocab.pop()
    merges = []
    for rank, (a, b) in enumerate(merge_strs):
        for s in (a, b, a + b):
            if s not in encoder or s in specials:
                raise ValueError(f"{merges_txt_path}: merge {rank} ({a!r} {b!r}) uses token "
                                 f"{s!r}, which is not in {os.path.basename(vocab_json_path)}")
        merges.append((encoder[a], encoder[b]))
    unmarked = [s for s in specials if not is_marked_special(s)]
    if unmarked:     # "ing" is not a merge result only when merges.txt lost the line that makes it
        raise ValueError(f"{vocab_json_path}: {len(unmarked)} token(s) are neither a single byte nor the result "
                         f"of a merge in {os.path.basename(merges_txt_path)} nor written like a special token "
                         f"(<...> or [...]), e.g. {[s[:40] for s in unmarked[:3]]} (id {specials[unmarked[0]]}); "
                         f"is {os.path.basename(merges_txt_path)} truncated?")
    check_special_tokens(specials, vocab_json_path)
    return vocab, merges, specials


def write_gpt2_tokenizer(directory, vocab, merges, special_tokens):
    """Write ``vocab.json`` (tokens in id order, specials where their ids are) and
    ``merges.txt`` into ``directory`` (created if needed)."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    encoder = {token_to_str(t): i for i, t in enumerate(vocab) if t is not None}
    encoder.update(special_tokens)
    encoder = dict(sorted(encoder.items(), key=lambda item: item[1]))
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(encoder, f, ensure_ascii=False, separators=(",", ":"))  # compact, as Hugging Face writes it
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{token_to_str(vocab[a])} {token_to_str(vocab[b])}\n")
