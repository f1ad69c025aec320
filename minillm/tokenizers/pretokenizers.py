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
    Metaspace(replacement, prepend_scheme, split)
                                 SentencePiece's spaces (T5): " " -> "▁", a "▁" before each chunk,
                                 a new chunk at every "▁"
    WhitespaceSplit              cut at runs of whitespace, which are dropped

Normalisers: none, a Unicode normal form (NFC for Qwen2), Lowercase, Strip,
Replace, Prepend, and SentencePiece's ``Precompiled`` map (T5; ``precompiled.py``).
Anything else is a ValueError naming the type: minillm never encodes with a
silently different tokenizer.
"""
import base64
import unicodedata

import regex

from minillm.tokenizers.bytelevel import GPT2_SPLIT_PATTERN, known_split_pattern
from minillm.tokenizers.precompiled import Precompiled

UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
REPLACE_PATTERNS = {"spaces": " {2,}"}   # SentencePiece's normaliser: a run of spaces becomes one
METASPACE = "\u2581"   # "▁", SentencePiece's visible space


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


def metaspace(chunks, replacement, prepend, split):
    """Each " " becomes ``replacement``; with ``prepend`` a chunk that does not start with it
    gets one ("always"), or only the first chunk does ("first"); with ``split`` a new chunk
    starts at every ``replacement``."""
    out = []
    for i, chunk in enumerate(chunks):
        chunk = chunk.replace(" ", replacement)
        if (prepend == "always" or (prepend == "first" and i == 0)) and chunk and not chunk.startswith(replacement):
            chunk = replacement + chunk
        out += [p for p in regex.split(f"(?={regex.escape(replacement)})", chunk) if p] if split else [chunk]
    return [chunk for chunk in out if chunk]


def metaspace_prepend(spec):
    """Metaspace's prepend scheme: "always", "first" or "never" (older files: add_prefix_space)."""
    if "prepend_scheme" in spec:
        return spec["prepend_scheme"]
    return "always" if spec.get("add_prefix_space", True) else "never"


def chain(steps):
    """A Sequence: the function that runs ``steps`` one after the other."""
    def run(value):
        for step in steps:
            value = step(value)
        return value
    return run


def _pattern(spec, where, known=None):
    """A Split's or Replace's {"Regex": ...} or {"String": ...} as a compiled regex. A Regex must
    be one minillm knows (``bytelevel.SPLIT_PATTERNS``: GPT-2, Llama 3, Qwen2; for Replace,
    ``REPLACE_PATTERNS``), never compiled as the file gives it: "(a|aa)+$" takes exponential
    time, "[a-z]+" drops text. A String is literal."""
    if "Regex" in spec:
        return regex.compile(known_split_pattern(spec["Regex"], where, known))
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
    if kind == "Metaspace":
        replacement, prepend = spec.get("replacement", METASPACE), metaspace_prepend(spec)
        return lambda chunks: metaspace(chunks, replacement, prepend, spec.get("split", True))
    if kind == "WhitespaceSplit":
        return lambda chunks: [word for chunk in chunks for word in chunk.split()]
    raise ValueError(f"{where}: pre-tokenizer type {kind!r} is not supported; minillm reads "
                     f"Sequence, Split, Digits, ByteLevel, Metaspace and WhitespaceSplit")


def normalizer(spec, where="normalizer"):
    """A tokenizer.json "normalizer" entry -> a function str -> str."""
    if spec is None:
        return lambda text: text
    kind = spec.get("type")
    if kind == "Sequence":
        return chain([normalizer(step, where) for step in spec["normalizers"]])
    if kind in UNICODE_FORMS:
        return lambda text: unicodedata.normalize(kind, text)
    if kind == "Lowercase":
        return str.lower
    if kind == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)

        def strip(text):
            text = text.lstrip() if left else text
            return text.rstrip() if right else text
        return strip
    if kind == "Replace":
        pattern, content = _pattern(spec["pattern"], where, REPLACE_PATTERNS), spec["content"]
        return lambda text: pattern.sub(lambda _: content, text)
    if kind == "Prepend":
        return lambda text: spec["prepend"] + text if text else text
    if kind == "Precompiled":
        charsmap = spec.get("precompiled_charsmap")
        return Precompiled(base64.b64decode(charsmap)) if charsmap else (lambda text: text)
    raise ValueError(f"{where}: normalizer type {kind!r} is not supported; minillm reads none, "
                     f"{', '.join(UNICODE_FORMS)}, Lowercase, Strip, Replace, Prepend, Precompiled "
                     f"and a Sequence of them")
