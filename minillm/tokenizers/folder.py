"""``minillm.tokenizers.load(directory)``: the tokenizer a Hugging Face model folder ships.

A model folder holds its tokenizer in one of three layouts, tried in this order:

    tokenizer.json              the ``tokenizers`` library's single file; its "model"."type" says which
                                algorithm: "BPE" (byte-level BPE: Llama 3, SmolLM, Qwen, GPT-2 re-saved),
                                "Unigram" (SentencePiece's unigram: T5, Flan-T5), "WordPiece" (BERT)
    vocab.json + merges.txt     GPT-2's byte-level BPE (``BPETokenizer.from_gpt2``)
    vocab.txt                   BERT's WordPiece vocabulary, one token a line

Each algorithm lives in its own file and registers a reader here: a function
``reader(directory, path) -> tokenizer``. A layout or a "type" that minillm
does not read is a ValueError naming the file and the value, never a silently
different tokenizer.
"""
import os

from minillm.safe_io import read_json_object

TOKENIZER_JSON = "tokenizer.json"

# tokenizer.json "model"."type" -> reader(directory, path); each algorithm's file adds its line.
TOKENIZER_JSON_READERS = {}
# a file that is enough on its own (e.g. "vocab.txt") -> reader(directory, path)
FILE_READERS = {}


def _read_gpt2_pair(directory):
    from minillm.tokenizers.bpe import BPETokenizer
    return BPETokenizer.from_gpt2(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"))


def load(directory):
    """The tokenizer of the model folder ``directory`` (see the module docstring for the layouts)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"tokenizer folder not found: {directory}")
    path = os.path.join(directory, TOKENIZER_JSON)
    if os.path.lexists(path):      # lexists: a FIFO or a dangling link is refused by name, not skipped
        data = read_json_object(path, "a JSON object with a 'model' entry")
        model = data.get("model")
        kind = model.get("type") if isinstance(model, dict) else None
        if kind not in TOKENIZER_JSON_READERS:
            raise ValueError(f"{path}: tokenizer model type {kind!r} is not supported; "
                             f"minillm reads {sorted(TOKENIZER_JSON_READERS) or 'none yet'}")
        return TOKENIZER_JSON_READERS[kind](directory, path)
    if os.path.lexists(os.path.join(directory, "vocab.json")) and os.path.lexists(os.path.join(directory, "merges.txt")):
        return _read_gpt2_pair(directory)
    for name, reader in FILE_READERS.items():
        candidate = os.path.join(directory, name)
        if os.path.lexists(candidate):
            return reader(directory, candidate)
    known = [TOKENIZER_JSON, "vocab.json + merges.txt"] + sorted(FILE_READERS)
    raise FileNotFoundError(f"no tokenizer files in {directory}: expected one of {known}")
