"""BERT: the encoder-only transformer, with Hugging Face's parameter names.

    x = LayerNorm(word[idx] + position[0..T-1] + token_type[types])     (B, T, C) embeddings
    for each layer:                                     post-LayerNorm residual blocks
        x = LayerNorm(x + attn(x, padding mask))        bidirectional: every token sees every real token
        x = LayerNorm(x + W_2 gelu(W_1 x))              exact (erf) GELU, width n_inner (4C)
    h = LayerNorm(gelu(dense(x)))                       the MLM head's transform
    logits = h @ word^T + bias                          (B, T, V) decoder tied to the word embeddings

    pooled = tanh(pooler(x[:, 0]))                      the [CLS] position, (B, C)
    class logits = classifier(dropout(pooled))          (B, num_labels), for finetuning

Two differences from GPT-2 (``models/gpt2.py``) carry the whole idea of an
encoder. Attention is not causal: position i attends to positions after it
too, so the model predicts a token from both sides; it is trained by masking
tokens (``minillm/mlm.py``) rather than by predicting the next one. And
LayerNorm comes after each residual add (post-LN, the original transformer's
order), with eps 1e-12. Padding is a ``key_mask`` on the attention: padded
keys get exactly zero weight in every softmax.

Names match Hugging Face's ``BertForMaskedLM`` without its "bert." prefix:
``embeddings.word_embeddings``, ``embeddings.position_embeddings``,
``embeddings.token_type_embeddings``, ``embeddings.LayerNorm``,
``encoder.layer.{i}.attention.self.{query,key,value}``,
``encoder.layer.{i}.attention.output.{dense,LayerNorm}``,
``encoder.layer.{i}.intermediate.dense``, ``encoder.layer.{i}.output.{dense,LayerNorm}``,
``pooler.dense``, ``cls.predictions.transform.{dense,LayerNorm}``,
``cls.predictions.bias``; ``classifier`` when ``num_labels > 0``
(``BertForSequenceClassification``'s head). Linear weights are (in, out) as
everywhere in minillm; ``minillm/hf/bert.py`` transposes PyTorch's (out, in).
"""
import dataclasses
import numbers

from minillm import backend
from minillm import functional as F
from minillm.autograd import Tensor
from minillm.backend import xp
from minillm.models.config import (ModelConfig, check_dropout, check_dtype, check_positive_ints,
                                   check_positive_numbers)
from minillm.nn import Module, ModuleList, Parameter, Linear, Embedding, LayerNorm, Dropout
from minillm.nn.attention import MultiHeadAttention, split_heads
from minillm.shapes import shape_text


@dataclasses.dataclass
class BertConfig(ModelConfig):
    """The shape of a BERT. Validated on creation; every error names the field.

    vocab_size               V  number of token ids
    max_position_embeddings  P  longest sequence (learned positions)
    n_layer                  L  encoder layers
    n_head                   H  attention heads (head_dim = n_embd / n_head)
    n_embd                   C  hidden size
    n_inner                     MLP width (None: 4 * n_embd; bert-base: 3072)
    type_vocab_size             segment types (sentence A / B)
    layer_norm_eps              BERT: 1e-12
    dropout                     on embeddings, residual branches and the classifier input
    attention_dropout           on attention weights (None: the same as dropout)
    pad_token_id                the [PAD] id (informational: padding is the attention_mask)
    num_labels                  classes of the classification head (0: no head)
    dtype                       "float32" or "float64" (gradient checks)
    """
    vocab_size: int
    max_position_embeddings: int
    n_layer: int
    n_head: int
    n_embd: int
    n_inner: int = None
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.0
    attention_dropout: float = None
    pad_token_id: int = 0
    num_labels: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        if self.n_inner is None and isinstance(self.n_embd, numbers.Integral):
            self.n_inner = 4 * self.n_embd
        if self.attention_dropout is None:
            self.attention_dropout = self.dropout
        check_positive_ints(self, ("vocab_size", "max_position_embeddings", "n_layer", "n_head", "n_embd",
                                   "n_inner", "type_vocab_size"))
        for field in ("pad_token_id", "num_labels"):        # may be 0
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{field} must be an integer >= 0, got {value!r}")
            setattr(self, field, int(value))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pad_token_id >= self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be below vocab_size ({self.vocab_size})")
        check_dropout(self, "dropout")
        check_dropout(self, "attention_dropout")
        check_positive_numbers(self, ("layer_norm_eps",))
        check_dtype(self)


def parameter_shapes(config):
    """{parameter name: shape} of a Bert with ``config``, in ``named_parameters`` order, from the
    config alone (tuples, no arrays): a loader compares a file against it before building."""
    C, I, V = config.n_embd, config.n_inner, config.vocab_size

    def dense(name, n_in, n_out):
        return {f"{name}.weight": (n_in, n_out), f"{name}.bias": (n_out,)}

    def layer_norm(name):
        return {f"{name}.weight": (C,), f"{name}.bias": (C,)}

    shapes = {"embeddings.word_embeddings.weight": (V, C),
              "embeddings.position_embeddings.weight": (config.max_position_embeddings, C),
              "embeddings.token_type_embeddings.weight": (config.type_vocab_size, C),
              **layer_norm("embeddings.LayerNorm")}
    for i in range(config.n_layer):
        layer = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            shapes.update(dense(f"{layer}.attention.self.{name}", C, C))
        shapes.update({**dense(f"{layer}.attention.output.dense", C, C),
                       **layer_norm(f"{layer}.attention.output.LayerNorm"),
                       **dense(f"{layer}.intermediate.dense", C, I),
                       **dense(f"{layer}.output.dense", I, C), **layer_norm(f"{layer}.output.LayerNorm")})
    shapes.update({**dense("pooler.dense", C, C), **dense("cls.predictions.transform.dense", C, C),
                   **layer_norm("cls.predictions.transform.LayerNorm"), "cls.predictions.bias": (V,)})
    if config.num_labels:
        shapes.update(dense("classifier", C, config.num_labels))
    return shapes


class BertSelfAttention(MultiHeadAttention):
    """The shared core, bidirectional (causal=False), with separate query, key, value
    projections (C, C); the output projection is the next module (``attention.output``)."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__(config.n_head, causal=False, dropout=config.attention_dropout, dropout_rng=dropout_rng)
        C, dtype = config.n_embd, config.dtype
        self.query = Linear(C, C, True, rng, 0.02, dtype)
        self.key = Linear(C, C, True, rng, 0.02, dtype)
        self.value = Linear(C, C, True, rng, 0.02, dtype)

    def project(self, x):
        return tuple(split_heads(p(x), self.n_head) for p in (self.query, self.key, self.value))  # (B, H, T, D)

    def output(self, y):
        return y                                                         # (B, T, C): heads merged


class ResidualLayerNorm(Module):
    """LayerNorm(residual + dropout(dense(h))): the post-LN residual add that closes both
    halves of a BERT layer (HF's ``BertSelfOutput`` and ``BertOutput``)."""

    def __init__(self, n_in, config, rng, dropout_rng):
        super().__init__()
        self.dense = Linear(n_in, config.n_embd, True, rng, 0.02, config.dtype)
        self.LayerNorm = LayerNorm(config.n_embd, eps=config.layer_norm_eps, dtype=config.dtype)
        self.dropout = Dropout(config.dropout, dropout_rng)

    def forward(self, h, residual):
        return self.LayerNorm(residual + self.dropout(self.dense(h)))   # (B, T, C)


class BertAttention(Module):
    """LayerNorm(x + dense(self-attention(x))): ``attention.self`` and ``attention.output``."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.self = BertSelfAttention(config, rng, dropout_rng)
        self.output = ResidualLayerNorm(config.n_embd, config, rng, dropout_rng)

    def forward(self, x, key_mask):
        return self.output(self.self(x, key_mask=key_mask), x)          # (B, T, C)


class Intermediate(Module):
    """gelu(x W_1 + b_1), the exact erf GELU: the MLP's first half (HF's ``BertIntermediate``)."""

    def __init__(self, config, rng):
        super().__init__()
        self.dense = Linear(config.n_embd, config.n_inner, True, rng, 0.02, config.dtype)

    def forward(self, x):
        return F.gelu(self.dense(x), approximate="none")                # (B, T, n_inner)


class BertLayer(Module):
    """One post-LN encoder layer: the attention half, then the MLP half (intermediate, output)."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.attention = BertAttention(config, rng, dropout_rng)
        self.intermediate = Intermediate(config, rng)
        self.output = ResidualLayerNorm(config.n_inner, config, rng, dropout_rng)

    def forward(self, x, key_mask):
        x = self.attention(x, key_mask)                                  # (B, T, C)
        return self.output(self.intermediate(x), x)                      # (B, T, C)


class Embeddings(Module):
    """LayerNorm(word + position + token type), then dropout."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        C, dtype = config.n_embd, config.dtype
        self.word_embeddings = Embedding(config.vocab_size, C, rng, 0.02, dtype)
        self.position_embeddings = Embedding(config.max_position_embeddings, C, rng, 0.02, dtype)
        self.token_type_embeddings = Embedding(config.type_vocab_size, C, rng, 0.02, dtype)
        self.LayerNorm = LayerNorm(C, eps=config.layer_norm_eps, dtype=dtype)
        self.dropout = Dropout(config.dropout, dropout_rng)

    def forward(self, idx, token_type_ids):
        x = self.word_embeddings(idx) + self.position_embeddings(xp.arange(idx.shape[1]))  # (B, T, C)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))                           # (B, T, C)


class Encoder(Module):
    """The stack of ``n_layer`` BertLayers (HF's ``encoder.layer.{i}``)."""

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        self.layer = ModuleList(BertLayer(config, rng, dropout_rng) for _ in range(config.n_layer))

    def forward(self, x, key_mask):
        for layer in self.layer:
            x = layer(x, key_mask)                                       # (B, T, C)
        return x


class Pooler(Module):
    """tanh(dense(h[:, 0])): the [CLS] position's summary of the sequence (B, C)."""

    def __init__(self, config, rng):
        super().__init__()
        self.dense = Linear(config.n_embd, config.n_embd, True, rng, 0.02, config.dtype)

    def forward(self, h):
        return F.tanh(self.dense(h[:, 0]))                              # (B, C)


class PredictionHeadTransform(Module):
    """LayerNorm(gelu(dense(h))): the MLM head's first half (HF's ``cls.predictions.transform``)."""

    def __init__(self, config, rng):
        super().__init__()
        self.dense = Linear(config.n_embd, config.n_embd, True, rng, 0.02, config.dtype)
        self.LayerNorm = LayerNorm(config.n_embd, eps=config.layer_norm_eps, dtype=config.dtype)

    def forward(self, h):
        return self.LayerNorm(F.gelu(self.dense(h), approximate="none"))  # (B, T, C)


class MLMPredictions(Module):
    """transform(h) @ word_embeddings^T + bias: the decoder's weight is the word-embedding
    table (tied, passed in by the model), its bias this module's ``bias``."""

    def __init__(self, config, rng):
        super().__init__()
        self.transform = PredictionHeadTransform(config, rng)
        self.bias = Parameter(xp.zeros(config.vocab_size, dtype=config.dtype))

    def forward(self, h, word_embeddings):
        return F.linear(self.transform(h), word_embeddings.T, self.bias)  # (B, T, V)


class MLMHead(Module):
    """A container, for HF's names: ``cls.predictions.*``."""

    def __init__(self, config, rng):
        super().__init__()
        self.predictions = MLMPredictions(config, rng)


class Bert(Module):
    """BERT with its masked-LM head, a pooler and (``num_labels > 0``) a classifier.

    ``Bert(config, seed=0)``: the seed fixes the initial weights (every weight
    N(0, 0.02), biases 0, LayerNorms 1 and 0, as Hugging Face) and the dropout masks.

    ``model(idx, attention_mask=None, token_type_ids=None)`` -> MLM logits (B, T, V);
    with ``targets`` (``ignore_index`` -100 where not masked) -> (logits, loss).
    ``model.classify(idx, attention_mask, token_type_ids)`` -> class logits (B, K).
    """

    parameter_shapes = staticmethod(parameter_shapes)   # what a loader checks a file against

    def __init__(self, config, seed=0):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"Bert needs a BertConfig, got {type(config).__name__}")
        self.config = config
        rng = backend.host_rng(seed)
        self.dropout_rng = backend.device_rng(seed)
        self.embeddings = Embeddings(config, rng, self.dropout_rng)
        self.encoder = Encoder(config, rng, self.dropout_rng)
        self.pooler = Pooler(config, rng)
        self.cls = MLMHead(config, rng)
        if config.num_labels:
            self.dropout = Dropout(config.dropout, self.dropout_rng)
            self.classifier = Linear(config.n_embd, config.num_labels, True, rng, 0.02, config.dtype)

    def _check_inputs(self, idx, attention_mask, token_type_ids):
        """(idx, key_mask or None, token_type_ids) as backend int arrays, or a clear error."""
        idx = xp.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.ndim != 2 or idx.shape[1] == 0:
            raise ValueError(f"idx must be a 2-D array (batch, time) of token ids, got shape {shape_text(idx.shape)}")
        if idx.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        F.check_token_ids(idx, self.config.vocab_size)
        if attention_mask is not None:
            attention_mask = xp.asarray(attention_mask)
            if attention_mask.shape != idx.shape:
                raise ValueError(f"attention_mask has shape {shape_text(attention_mask.shape)}; expected "
                                 f"{shape_text(idx.shape)} like idx (1 = real token, 0 = padding)")
            if not (attention_mask.dtype == bool or backend.is_integer(attention_mask)):
                raise TypeError(f"attention_mask must hold ints or bools (1 = real token, 0 = padding), "
                                f"got {attention_mask.dtype}")
        if token_type_ids is None:
            token_type_ids = xp.zeros(idx.shape, dtype=idx.dtype)
        token_type_ids = xp.asarray(token_type_ids)
        if token_type_ids.shape != idx.shape:
            raise ValueError(f"token_type_ids has shape {shape_text(token_type_ids.shape)}; expected "
                             f"{shape_text(idx.shape)} like idx")
        F.check_token_ids(token_type_ids, self.config.type_vocab_size, "token type id")
        return idx, attention_mask, token_type_ids

    def hidden_states(self, idx, attention_mask=None, token_type_ids=None):
        """The encoder's output (B, T, C): Hugging Face ``BertModel``'s last_hidden_state."""
        idx, key_mask, token_type_ids = self._check_inputs(idx, attention_mask, token_type_ids)
        return self.encoder(self.embeddings(idx, token_type_ids), key_mask)   # (B, T, C)

    def forward(self, idx, attention_mask=None, token_type_ids=None, targets=None):
        h = self.hidden_states(idx, attention_mask, token_type_ids)          # (B, T, C)
        logits = self.cls.predictions(h, self.embeddings.word_embeddings.weight)  # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, xp.asarray(targets))

    def pooled(self, idx, attention_mask=None, token_type_ids=None):
        """tanh(pooler(h[CLS])) (B, C): ``BertModel``'s pooler_output."""
        return self.pooler(self.hidden_states(idx, attention_mask, token_type_ids))

    def classify(self, idx, attention_mask=None, token_type_ids=None):
        """Class logits (B, num_labels) from the [CLS] position (``BertForSequenceClassification``)."""
        if not self.config.num_labels:
            raise ValueError("this Bert has no classification head: build it with num_labels > 0")
        return self.classifier(self.dropout(self.pooled(idx, attention_mask, token_type_ids)))

    @classmethod
    def from_pretrained(cls, directory, dtype="float32"):
        """A Bert from a Hugging Face folder (``BertForMaskedLM``, ``BertModel``, ...; ``minillm.hf``)."""
        from minillm.hf import bert
        return bert.load(directory, dtype=dtype, cls=cls)

    def save_pretrained(self, directory):
        """config.json + model.safetensors that transformers' ``BertForMaskedLM`` loads (``minillm.hf``)."""
        from minillm.hf import bert
        bert.save(self, directory)
