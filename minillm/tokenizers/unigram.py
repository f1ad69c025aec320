"""Unigram tokenization (SentencePiece's model), as T5 and Flan-T5 ship it in tokenizer.json.

A Unigram vocabulary is a list of pieces, each with a score: its log-probability.
Pieces are independent, so a segmentation's probability is the product of its
pieces' and the tokenizer picks the most probable one, by Viterbi over the
characters of a word (a pre-token such as "▁Hello"):

    best[0] = 0
    best[j] = max over pieces p = word[i:j] of  best[i] + score(p)        i < j
    then walk back from best[len(word)] through the argmaxes.

Ties keep the first candidate found (start positions left to right, shorter
pieces first), as the ``tokenizers`` library does. A character that starts no
piece of its own length gets an *unknown* edge of one character, scored
min(score) - 10; consecutive unknowns are fused into one ``<unk>``. With
``byte_fallback`` an unknown piece becomes its UTF-8 bytes, the pieces
``<0x41>`` ..., when the vocabulary has them all.

Around the model, the file's pipeline (``pretokenizers.py``): added tokens
(``</s>``, ``<extra_id_0>``, ...) are cut out of the text first; each stretch
between them is normalised (T5: SentencePiece's NFKC map) and pre-tokenised
(Metaspace: each space becomes "▁", a "▁" is prepended, a new piece starts
at every "▁"); the post-processor appends ``</s>``. ``decode`` turns "▁" back
into spaces and drops the first one, skipping special tokens.
"""
from minillm.tokenizers.bytelevel import special_splitter
from minillm.tokenizers.folder import TOKENIZER_JSON_READERS
from minillm.tokenizers.gpt2_files import read_json_object
from minillm.tokenizers import pretokenizers
from minillm.tokenizers.pretokenizers import METASPACE, metaspace_prepend
from minillm.tokenizers.saving import SavesAsJSON
from minillm.tokenizers.tokenizer_json import _template

UNKNOWN_PENALTY = 10.0   # tokenizers' K_UNK_PENALTY: an unknown edge scores min(score) - 10


def viterbi(word, ids, scores, max_len, unk_id, unk_score):
    """The best segmentation of ``word``: a list of (piece text, id); unknown stretches
    (fused) have id ``unk_id``. ``ids`` maps piece -> id; ``max_len`` is the longest piece."""
    n = len(word)
    best = [None] * (n + 1)            # best[j] = (score of the best path to j, its last edge's start, id)
    best[0] = (0.0, None, None)
    for i in range(n):
        if best[i] is None:
            continue
        here = best[i][0]
        has_single = False
        for j in range(i + 1, min(n, i + max_len) + 1):
            token = ids.get(word[i:j])
            if token is None:
                continue
            has_single |= j == i + 1
            candidate = here + scores[token]
            if best[j] is None or candidate > best[j][0]:
                best[j] = (candidate, i, token)
        if not has_single:
            candidate = here + unk_score
            if best[i + 1] is None or candidate > best[i + 1][0]:
                best[i + 1] = (candidate, i, unk_id)
    pieces, j = [], n
    while j > 0:
        _, i, token = best[j]
        pieces.append((word[i:j], token))
        j = i
    pieces.reverse()
    fused = []
    for text, token in pieces:   # consecutive unknowns become one
        if token == unk_id and fused and fused[-1][1] == unk_id:
            fused[-1] = (fused[-1][0] + text, unk_id)
        else:
            fused.append((text, token))
    return fused


class UnigramTokenizer(SavesAsJSON):
    """A tokenizer.json Unigram model with its pipeline.

    vocab: list of [piece, score]; unk_id; byte_fallback; the other arguments are
    tokenizer.json's entries as they are in the file (kept for ``to_dict``).
    """

    def __init__(self, vocab, unk_id=None, byte_fallback=False, added_tokens=(), normalizer=None,
                 pre_tokenizer=None, post_processor=None, decoder=None):
        normalizer_spec, pre_tokenizer_spec = normalizer, pre_tokenizer   # the file's entries
        self.pieces = [str(piece) for piece, _ in vocab]
        self.scores = [float(score) for _, score in vocab]
        if not self.pieces:
            raise ValueError("a Unigram vocabulary needs at least one piece")
        if unk_id is not None and not 0 <= unk_id < len(self.pieces):
            raise ValueError(f"unk_id {unk_id} is outside the vocabulary [0, {len(self.pieces)})")
        self.unk_id, self.byte_fallback = unk_id, bool(byte_fallback)
        self.ids = {}
        for i, piece in enumerate(self.pieces):
            self.ids.setdefault(piece, i)
        self.max_len = max(len(p) for p in self.pieces)
        self.unk_score = min(self.scores) - UNKNOWN_PENALTY
        self.spec = dict(added_tokens=list(added_tokens), normalizer=normalizer_spec,
                         pre_tokenizer=pre_tokenizer_spec, post_processor=post_processor, decoder=decoder)
        self.added = {t["content"]: int(t["id"]) for t in added_tokens}
        self.special_ids = {int(t["id"]) for t in added_tokens if t.get("special", False)}
        self._split_added = special_splitter(self.added)
        self._normalize = pretokenizers.normalizer(normalizer_spec)
        self._pre_tokenize = pretokenizers.pre_tokenizer(pre_tokenizer_spec)
        self._pre_tokenize_later = pretokenizers.pre_tokenizer(_first_to_never(pre_tokenizer_spec))   # after an added token
        self._prefix, self._suffix = _template(post_processor, "post_processor")
        self._decode_prepend = decoder is not None and metaspace_prepend(decoder) != "never"

    @classmethod
    def from_tokenizer_json(cls, data, path="tokenizer.json"):
        model = data.get("model", {})
        if model.get("type") != "Unigram":
            raise ValueError(f"{path}: model type {model.get('type')!r}, expected 'Unigram'")
        if "vocab" not in model:
            raise ValueError(f"{path}: the Unigram model has no 'vocab'")
        decoder = data.get("decoder")
        if decoder is not None and decoder.get("type") == "Sequence":
            decoder = next((d for d in decoder["decoders"] if d.get("type") == "Metaspace"), None)
        return cls(model["vocab"], model.get("unk_id"), model.get("byte_fallback", False),
                   data.get("added_tokens") or (), data.get("normalizer"), data.get("pre_tokenizer"),
                   data.get("post_processor"), decoder)

    @property
    def vocab_size(self):
        return max(len(self.pieces), max(self.added.values(), default=-1) + 1)

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return f"UnigramTokenizer(vocab_size={self.vocab_size}, unk_id={self.unk_id}, byte_fallback={self.byte_fallback})"

    # --- encoding ----------------------------------------------------------

    def _word_ids(self, word):
        out = []
        for text, token in viterbi(word, self.ids, self.scores, self.max_len, self.unk_id, self.unk_score):
            if token != self.unk_id or text in self.ids:   # (a fused stretch may be a piece after all)
                out.append(self.ids.get(text, token))
                continue
            byte_ids = [self.ids.get(f"<0x{b:02X}>") for b in text.encode("utf-8")] if self.byte_fallback else [None]
            if None not in byte_ids:
                out.extend(byte_ids)
            elif self.unk_id is None:
                raise ValueError(f"{text!r} has no piece and the vocabulary has no unk_id")
            else:
                out.append(self.unk_id)
        return out

    def encode(self, text, add_special_tokens=True):
        """text -> ids; with ``add_special_tokens``, the post-processor's (T5: "</s>" at the end)."""
        parts = self._split_added.split(text) if self._split_added else [text]
        ids, offset = [], 0
        for k, part in enumerate(parts):
            if k % 2:              # an added token, matched on the raw text
                ids.append(self.added[part])
            elif part:
                pre_tokenize = self._pre_tokenize if offset == 0 else self._pre_tokenize_later
                for word in pre_tokenize([self._normalize(part)]):
                    ids.extend(self._word_ids(word))
            offset += len(part)
        return self._prefix + ids + self._suffix if add_special_tokens else ids

    # --- decoding ----------------------------------------------------------

    def id_to_piece(self, i):
        for text, token in self.added.items():
            if token == i:
                return text
        return self.pieces[i]

    def decode(self, ids, skip_special_tokens=True):
        """ids -> text: pieces joined, "▁" -> " ", the first one dropped; <0xXX> pieces as bytes."""
        text, pending = [], bytearray()
        for i in (int(i) for i in ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            if skip_special_tokens and i in self.special_ids:
                continue
            piece = self.id_to_piece(i)
            if self.byte_fallback and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                pending.append(int(piece[3:5], 16))
                continue
            if pending:
                text.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            text.append(piece)
        if pending:
            text.append(pending.decode("utf-8", errors="replace"))
        out = "".join(text).replace(METASPACE, " ")
        return out[1:] if self._decode_prepend and out.startswith(" ") else out

    # --- serialisation -----------------------------------------------------

    def to_dict(self):
        return {"type": "unigram", "vocab": [[p, s] for p, s in zip(self.pieces, self.scores)],
                "unk_id": self.unk_id, "byte_fallback": self.byte_fallback, **self.spec}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict) or d.get("type") != "unigram":
            got = d.get("type") if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"expected a dict with type 'unigram', got {got!r}")
        return cls(**{k: v for k, v in d.items() if k != "type"})


def _first_to_never(spec):
    """The pre-tokenizer spec for text after the first added token: Metaspace's "first" scheme
    prepends "▁" only at the very start of the input, so there it becomes "never"."""
    if not isinstance(spec, dict):
        return spec
    if spec.get("type") == "Metaspace" and metaspace_prepend(spec) == "first":
        return {**spec, "prepend_scheme": "never"}
    if spec.get("type") == "Sequence":
        return {**spec, "pretokenizers": [_first_to_never(step) for step in spec["pretokenizers"]]}
    return spec


def read_tokenizer_json(directory, path):
    return UnigramTokenizer.from_tokenizer_json(read_json_object(path, "a JSON object with a 'model' entry"), path)


TOKENIZER_JSON_READERS["Unigram"] = read_tokenizer_json
