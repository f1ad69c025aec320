"""The steps a ``tokenizer.json`` runs before BPE: normalise the text, cut it into chunks.

Merges never cross a chunk boundary, so the cutting decides what can become
one token. Each step below takes the list of chunks so far and cuts every one
further; a ``Sequence`` runs its steps in order. They mirror the ``tokenizers``
library's pre-tokenizers of the same names:

    Split(regex, "Isolated")     every match is a chunk, and so is every stretch between matches
                                 (Llama 3, Qwen2: a GPT-2-like pattern with digits in groups of 3)
    Digits(individual_digits)    digits alone (True: "2024" -> "2" "0" "2" "4"; SmolLM) or in runs
    ByteLevel(add_prefix_space, use_regex)
                                 an optional leading space for each chunk, then GPT-2's pattern

Normalisers: none, or a Unicode normal form (NFC for Qwen2). Anything else is
a ValueError naming the type: minillm never encodes with a silently different
tokenizer.
"""
import unicodedata

import regex

from minillm.tokenizers.bytelevel import GPT2_SPLIT_PATTERN

UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")


def split_isolated(chunks, pattern):
    """Cut each chunk at the matches of ``pattern``: matches and the text between them, in order."""
    out = []
    for chunk in chunks:
        at = 0
        for match in pattern.finditer(chunk):
            if match.start() > at:
                out.append(chunk[at:match.start()])
            if match.end() > match.start():
                out.append(match.group())
            at = match.end()
        if at < len(chunk):
            out.append(chunk[at:])
    return out


def byte_level(chunks, add_prefix_space, use_regex):
    """GPT-2's step: a space before each chunk that lacks one (if asked), then its pattern."""
    if add_prefix_space:
        chunks = [chunk if chunk.startswith(" ") else " " + chunk for chunk in chunks]
    return split_isolated(chunks, regex.compile(GPT2_SPLIT_PATTERN)) if use_regex else chunks


def chain(steps):
    """A Sequence: the function that runs ``steps`` one after the other."""
    def run(value):
        for step in steps:
            value = step(value)
        return value
    return run


def _pattern(spec, where):
    """A Split's {"Regex": ...} or {"String": ...} as a compiled regex."""
    if "Regex" in spec:
        return regex.compile(spec["Regex"])
    if "String" in spec:
        return regex.compile(regex.escape(spec["String"]))
    raise ValueError(f"{where}: a Split pattern must be a Regex or a String, got {spec!r}")


def pre_tokenizer(spec, where="pre_tokenizer"):
    """A tokenizer.json "pre_tokenizer" entry -> a function list[str] -> list[str]."""
    if spec is None:
        return lambda chunks: chunks
    kind = spec.get("type")
    if kind == "Sequence":
        return chain([pre_tokenizer(step, where) for step in spec["pretokenizers"]])
    if kind == "Split":
        if spec.get("behavior") != "Isolated" or spec.get("invert", False):
            raise ValueError(f"{where}: Split with behavior {spec.get('behavior')!r} and invert "
                             f"{spec.get('invert')!r} is not supported; minillm reads 'Isolated', invert false")
        pattern = _pattern(spec["pattern"], where)
        return lambda chunks: split_isolated(chunks, pattern)
    if kind == "Digits":
        pattern = regex.compile(r"\p{N}" if spec.get("individual_digits", False) else r"\p{N}+")
        return lambda chunks: split_isolated(chunks, pattern)
    if kind == "ByteLevel":
        add_prefix_space, use_regex = spec.get("add_prefix_space", False), spec.get("use_regex", True)
        return lambda chunks: byte_level(chunks, add_prefix_space, use_regex)
    raise ValueError(f"{where}: pre-tokenizer type {kind!r} is not supported; minillm reads "
                     f"Sequence, Split, Digits and ByteLevel")


def normalizer(spec, where="normalizer"):
    """A tokenizer.json "normalizer" entry -> a function str -> str."""
    if spec is None:
        return lambda text: text
    kind = spec.get("type")
    if kind == "Sequence":
        return chain([normalizer(step, where) for step in spec["normalizers"]])
    if kind in UNICODE_FORMS:
        return lambda text: unicodedata.normalize(kind, text)
    raise ValueError(f"{where}: normalizer type {kind!r} is not supported; minillm reads none, "
                     f"{', '.join(UNICODE_FORMS)} and a Sequence of them")
