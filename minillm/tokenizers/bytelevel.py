"""The byte-level pieces of GPT-2's tokenizer: pre-tokenisation and the byte alphabet.

Byte-level BPE works on the UTF-8 *bytes* of the text, so its 256 base tokens
cover every string there is: no unknown characters, ever.

Two details come straight from OpenAI's GPT-2 ``encoder.py``:

1. **Pre-tokenisation.** Before any merging, text is cut into chunks with the
   regular expression ``GPT2_SPLIT_PATTERN`` (contractions, an optional space
   followed by letters, or by digits, or by other symbols, and whitespace).
   Merges never cross a chunk boundary, so " the" can become one token but
   "e t" never can. ``\\p{L}`` / ``\\p{N}`` are Unicode letter/number classes,
   which is why this needs the ``regex`` package rather than ``re``.
2. **The byte -> printable character table** (``bytes_to_unicode``). GPT-2's
   ``vocab.json`` and ``merges.txt`` are text files, so each byte is written
   as a visible Unicode character: printable Latin-1 bytes stand for
   themselves and the other 68 (control bytes, space, ...) are shifted to
   U+0100 and beyond. That is why a leading space appears as ``Ġ`` (U+0120)
   in GPT-2's vocabulary.
"""
import regex

GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_SPLIT_RE = regex.compile(GPT2_SPLIT_PATTERN)
# The split patterns minillm knows, by name. A tokenizer read from a file (a checkpoint's
# to_dict, a tokenizer.json) names one of these, or spells one exactly; a pattern is never
# compiled from a file, since a regex can take exponential time ("(a|aa)+$") or drop text.
SPLIT_PATTERNS = {
    "gpt2": GPT2_SPLIT_PATTERN,
    # Llama 3 (and GPT-4's cl100k): case-insensitive contractions, digits in groups of 1-3
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    # Qwen2: the same with every digit on its own
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}
MAX_SPECIAL_CHARS = 256     # "<|reserved_special_token_250|>" is 30; a 10 MB "token" is an attack


def pretokenize(text, pattern=GPT2_SPLIT_RE):
    """Cut ``text`` into the chunks that BPE merges within: list[str]."""
    return pattern.findall(text)


def bytes_to_unicode():
    """GPT-2's table byte value (0..255) -> a printable one-character str.

    Bytes that are already printable (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    map to themselves; the remaining 68 map, in increasing order, to
    U+0100, U+0101, ...  The table is a bijection, so it can be inverted.
    """
    printable = (list(range(ord("!"), ord("~") + 1))
                 + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table = {}
    shifted = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_ENCODER = bytes_to_unicode()                        # byte -> char
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}   # char -> byte


def token_to_str(token_bytes):
    """bytes -> GPT-2's printable spelling, e.g. b" the" -> "Ġthe"."""
    return "".join(BYTE_ENCODER[b] for b in token_bytes)


def str_to_token(spelling):
    """GPT-2's printable spelling -> bytes; None if a character is not in the table."""
    try:
        return bytes(BYTE_DECODER[c] for c in spelling)
    except KeyError:
        return None


def known_split_pattern(value, where, known=None):
    """The pattern text for ``value``, a name in ``known`` (default ``SPLIT_PATTERNS``) or the
    exact text of one; anything else is a ValueError naming ``where`` (it is never compiled)."""
    known = SPLIT_PATTERNS if known is None else known
    if isinstance(value, str):
        if value in known:
            return known[value]
        if value in known.values():
            return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ValueError(f"{where}: pattern {shown} is not one minillm knows; expected one of "
                     f"{sorted(known)} (a pattern from a file is never compiled)")


def check_special_tokens(special_tokens, where):
    """Refuse special tokens that cannot be cut out of text safely: not a string, empty (it
    would match between every two characters), not encodable as UTF-8 (a lone surrogate),
    longer than ``MAX_SPECIAL_CHARS``, or not a plain integer id."""
    for text, i in special_tokens.items():
        if not isinstance(text, str) or not text:
            raise ValueError(f"{where}: special token {text!r} must be a non-empty string")
        if len(text) > MAX_SPECIAL_CHARS:
            raise ValueError(f"{where}: special token {text[:20]!r}... is {len(text):,} characters long, "
                             f"more than {MAX_SPECIAL_CHARS}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{where}: special token {text!r} is not valid text ({error.reason})") from None
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"{where}: special token {text!r} has id {i!r}, not an integer")


def special_splitter(special_tokens):
    """A compiled regex that finds any of ``special_tokens`` (longest first), or None."""
    if not special_tokens:
        return None
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")
