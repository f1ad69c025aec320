"""T5: the encoder-decoder transformer (T5 v1.0; v1.1 and Flan-T5), with Hugging Face's names.

    e = shared[input_ids]                                  (B, Ts, C) no position embedding
    encoder, each block (pre-norm residual):
        e = e + SelfAttention(layer_norm(e), bias=rel_enc, key_mask)         bidirectional
        e = e + DenseReluDense(layer_norm(e))
    h = final_layer_norm(e)                                (B, Ts, C) the encoder's states
    d = shared[decoder_input_ids]                          (B, Td, C)
    decoder, each block:
        d = d + SelfAttention(layer_norm(d), bias=rel_dec)                   causal
        d = d + EncDecAttention(layer_norm(d), h, key_mask)                  cross-attention
        d = d + DenseReluDense(layer_norm(d))
    logits = final_layer_norm(d) * C^-0.5 @ shared^T       (B, Td, V) v1.0: tied head, scaled
    logits = final_layer_norm(d) @ lm_head                 v1.1 / Flan-T5: a head of its own

What sets T5 apart from GPT-2, each a line or two below:
- every norm is RMSNorm (``layer_norm``: no mean, no bias), eps 1e-6; no Linear has a bias;
- attention is softmax(Q K^T + bias) V: no 1/sqrt(D) (T5 folds it into the init of q);
- positions enter only as that bias: a learned scalar per head and *bucket* of the
  relative distance key - query (``relative_position_bucket``), owned by the first
  block of each stack and reused by all its blocks; bidirectional buckets in the
  encoder, causal ones in the decoder; cross-attention has none;
- cross-attention: queries from the decoder, keys and values from the encoder's
  states, the encoder's padding mask (``attention_mask``: 1 = token, 0 = padding)
  on the keys: the same fused attention op with causal=False and Tq != Tk;
- feed-forward ``relu`` (v1.0: wo(relu(wi x))) or ``gated-gelu`` (v1.1:
  wo(gelu(wi_0 x) * wi_1 x), the tanh GELU, Hugging Face's "gelu_new").

Generation (``generate``) runs the encoder once, then the decoder one token at a
time with an ``EncoderDecoderCache``: self-attention keys and values grow as in
GPT-2, cross-attention keys and values are computed on the first step and reused
(see ``minillm.generation.generate_encoder_decoder``).
"""
import dataclasses
import math
import numbers

from minillm import backend
from minillm import functional as F
from minillm.autograd import Tensor, is_grad_enabled
from minillm.backend import xp
from minillm.nn import Module, ModuleList, Linear, Embedding, RMSNorm, Dropout
from minillm.models.config import (ModelConfig, check_bools, check_dropout, check_dtype, check_positive_ints,
                                   check_positive_numbers)
from minillm.nn.attention import MultiHeadAttention, split_heads, merge_heads
from minillm.shapes import shape_text

FEED_FORWARDS = ("relu", "gated-gelu")
_INT_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
               "relative_attention_num_buckets", "relative_attention_max_distance", "n_positions")


@dataclasses.dataclass
class T5Config(ModelConfig):
    """The shape of a T5; field names are Hugging Face's. Validated; errors name the field.

    d_model C, d_kv D (per head; H * D need not be C), d_ff (feed-forward width),
    num_layers (encoder), num_decoder_layers (None: as the encoder), num_heads H,
    relative_attention_num_buckets / _max_distance (the position buckets),
    feed_forward_proj "relu" (v1.0) or "gated-gelu" (v1.1, Flan-T5),
    tie_word_embeddings (the head is ``shared``; v1.0) and scale_decoder_outputs
    (multiply by d_model^-0.5 before the head; None: as tie_word_embeddings),
    n_positions (the longest decoder sequence ``generate`` makes), the special ids.
    """
    vocab_size: int
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int = None
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "relu"
    tie_word_embeddings: bool = True
    scale_decoder_outputs: bool = None
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.0
    n_positions: int = 512
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        if self.scale_decoder_outputs is None:
            self.scale_decoder_outputs = self.tie_word_embeddings
        check_positive_ints(self, _INT_FIELDS)
        if self.relative_attention_num_buckets < 4:
            raise ValueError(f"relative_attention_num_buckets must be >= 4 (half exact, half logarithmic, "
                             f"each way in the encoder), got {self.relative_attention_num_buckets}")
        for field in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{field} must be a token id in [0, {self.vocab_size}), got {value!r}")
        if self.feed_forward_proj not in FEED_FORWARDS:
            raise ValueError(f"feed_forward_proj {self.feed_forward_proj!r} is not supported; "
                             f"expected one of {FEED_FORWARDS}")
        check_bools(self, ("tie_word_embeddings", "scale_decoder_outputs"))
        check_dropout(self, "dropout_rate")
        check_positive_numbers(self, ("layer_norm_epsilon",))
        check_dtype(self)

    @property
    def n_layer(self):
        """Decoder layers: the number of layers a generation cache holds."""
        return self.num_decoder_layers


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    """Bucket ids (int array, same shape) of the distances key_position - query_position.

    Half the buckets (each way, when ``bidirectional``) are exact distances
    0 .. n/2 - 1; the other half grow logarithmically up to ``max_distance``,
    beyond which every distance shares the last bucket. Causal (decoder): only
    distances into the past are told apart, the future maps to bucket 0 (and is
    masked anyway). Computed in float32, as Mesh TensorFlow and Hugging Face do,
    so the buckets at the logarithmic boundaries are the checkpoints' own.
    """
    relative_position = xp.asarray(relative_position)
    buckets = xp.zeros(relative_position.shape, dtype=xp.int64)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(xp.int64) * num_buckets   # the future: upper half
        distance = xp.abs(relative_position)
    else:
        distance = xp.maximum(-relative_position, 0)                       # the past only
    max_exact = num_buckets // 2
    ratio = xp.maximum(distance, max_exact).astype(xp.float32) / xp.float32(max_exact)   # >= 1: no log(0)
    steps = xp.log(ratio) / xp.float32(math.log(max_distance / max_exact)) * xp.float32(num_buckets - max_exact)
    large = xp.minimum(max_exact + steps.astype(xp.int64), num_buckets - 1)
    return buckets + xp.where(distance < max_exact, distance, large)


def parameter_shapes(config):
    """{parameter name: shape} of a T5 with ``config``, in ``named_parameters`` order, from the
    config alone (tuples, no arrays): a loader compares a file against it before building."""
    C, V, HD, F = config.d_model, config.vocab_size, config.num_heads * config.d_kv, config.d_ff
    attention = {"q.weight": (C, HD), "k.weight": (C, HD), "v.weight": (C, HD), "o.weight": (HD, C)}
    wi = ("wi_0", "wi_1") if config.feed_forward_proj == "gated-gelu" else ("wi",)
    feed_forward = {**{f"{name}.weight": (C, F) for name in wi}, "wo.weight": (F, C)}
    shapes = {"shared.weight": (V, C)}
    for stack, n, sublayers in (("encoder", config.num_layers, ("SelfAttention", "DenseReluDense")),
                                ("decoder", config.num_decoder_layers,
                                 ("SelfAttention", "EncDecAttention", "DenseReluDense"))):
        for i in range(n):
            for j, name in enumerate(sublayers):
                prefix = f"{stack}.block.{i}.layer.{j}"
                shapes[f"{prefix}.layer_norm.weight"] = (C,)
                inner = feed_forward if name == "DenseReluDense" else attention
                shapes.update((f"{prefix}.{name}.{k}", shape) for k, shape in inner.items())
                if i == 0 and name == "SelfAttention":
                    shapes[f"{prefix}.{name}.relative_attention_bias.weight"] = (
                        config.relative_attention_num_buckets, config.num_heads)
        shapes[f"{stack}.final_layer_norm.weight"] = (C,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (C, V)
    return shapes


class T5Attention(MultiHeadAttention):
    """T5's attention: q, k, v (C -> H*D) and o (H*D -> C), no biases, scale 1.

    Self-attention takes q, k, v from x; cross-attention (``cross=True``,
    Hugging Face's ``EncDecAttention``) takes k and v from the encoder's states.
    The first self-attention of a stack owns ``relative_attention_bias``
    (num_buckets, H) and computes the position bias every block of the stack adds.
    Init as Hugging Face: q ~ N(0, 1/(C D)), k, v ~ N(0, 1/C), o ~ N(0, 1/(H D)).
    """

    def __init__(self, config, causal, cross, has_relative_attention_bias, layer_index, rng, dropout_rng):
        super().__init__(config.num_heads, causal=causal, dropout=config.dropout_rate, dropout_rng=dropout_rng,
                         layer_index=layer_index)
        C, D, H, dtype = config.d_model, config.d_kv, config.num_heads, config.dtype
        self.cross, self.bidirectional = cross, not causal
        self.q = Linear(C, H * D, False, rng, (C * D) ** -0.5, dtype)
        self.k = Linear(C, H * D, False, rng, C ** -0.5, dtype)
        self.v = Linear(C, H * D, False, rng, C ** -0.5, dtype)
        self.o = Linear(H * D, C, False, rng, (H * D) ** -0.5, dtype)
        if has_relative_attention_bias:
            self.num_buckets = config.relative_attention_num_buckets
            self.max_distance = config.relative_attention_max_distance
            self.relative_attention_bias = Embedding(self.num_buckets, H, rng, C ** -0.5, dtype)

    def position_bias(self, t_query, t_key, start):
        """The learned bias (1, H, Tq, Tk) for queries at start .. start + Tq - 1 and keys 0 .. Tk - 1."""
        query = xp.arange(t_query)[:, None] + start                    # (Tq, 1) absolute positions
        key = xp.arange(t_key)[None, :]                                # (1, Tk)
        buckets = relative_position_bucket(key - query, self.bidirectional, self.num_buckets, self.max_distance)
        values = self.relative_attention_bias(buckets)                 # (Tq, Tk, H)
        return values.transpose(2, 0, 1).reshape(1, self.n_head, t_query, t_key)  # (1, H, Tq, Tk)

    def output(self, y):
        return self.o(y)                                               # (B, T, C)

    def keys_values(self, states):
        """states (B, Ts, C) -> k, v (B, H, Ts, D)."""
        return split_heads(self.k(states), self.n_head), split_heads(self.v(states), self.n_head)

    def forward(self, x, bias=None, key_mask=None, cache=None, states=None):
        """x (B, T, C) -> (B, T, C). Self-attention: ``bias`` (1, H, T, Tk) and the ``cache``'s
        prefix; cross-attention: keys and values from ``states`` (B, Ts, C), masked by ``key_mask``."""
        q = split_heads(self.q(x), self.n_head)                        # (B, H, T, D)
        if not self.cross:
            k, v = self.keys_values(x)                                 # (B, H, T, D)
            y = self.attend(q, k, v, cache, bias=bias, key_mask=key_mask, scale=1.0)
        elif cache is None:
            k, v = self.keys_values(states)                            # (B, H, Ts, D)
            y = self.attend(q, k, v, None, key_mask=key_mask, scale=1.0)
        else:  # generation: the encoder's keys and values, computed on the first step only
            k, v = cache.cross_attention(self.layer_index, lambda: tuple(t.data for t in self.keys_values(states)))
            y = self.attend(q, Tensor(k), Tensor(v), None, key_mask=key_mask, scale=1.0)
        return self.output(merge_heads(y))                             # (B, T, C)


class DenseReluDense(Module):
    """T5's feed-forward: ``relu``: wo(relu(wi x)); ``gated-gelu``: wo(gelu(wi_0 x) * wi_1 x).

    The gate (v1.1) multiplies a GELU branch by a linear one, element by element;
    dropout sits on the hidden layer (d_ff). Init as Hugging Face: wi ~ N(0, 1/C), wo ~ N(0, 1/d_ff).
    """

    def __init__(self, config, rng, dropout_rng):
        super().__init__()
        C, H, dtype = config.d_model, config.d_ff, config.dtype
        self.gated = config.feed_forward_proj == "gated-gelu"
        if self.gated:
            self.wi_0 = Linear(C, H, False, rng, C ** -0.5, dtype)
            self.wi_1 = Linear(C, H, False, rng, C ** -0.5, dtype)
        else:
            self.wi = Linear(C, H, False, rng, C ** -0.5, dtype)
        self.wo = Linear(H, C, False, rng, H ** -0.5, dtype)
        self.dropout = Dropout(config.dropout_rate, dropout_rng)

    def forward(self, x):
        h = F.gelu(self.wi_0(x)) * self.wi_1(x) if self.gated else F.relu(self.wi(x))   # (B, T, d_ff)
        return self.wo(self.dropout(h))                                               # (B, T, C)


class Residual(Module):
    """x + dropout(inner(layer_norm(x), ...)): one pre-norm sub-layer, with the inner
    module under the name Hugging Face gives it (SelfAttention, EncDecAttention, DenseReluDense)."""

    def __init__(self, name, inner, config, dropout_rng):
        super().__init__()
        self.name = name
        self.layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, config.dtype)
        setattr(self, name, inner)
        self.dropout = Dropout(config.dropout_rate, dropout_rng)

    def forward(self, x, *args, **kwargs):
        return x + self.dropout(getattr(self, self.name)(self.layer_norm(x), *args, **kwargs))   # (B, T, C)


class T5Block(Module):
    """``layer``: [self-attention, (decoder: cross-attention,) feed-forward], each a ``Residual``."""

    def __init__(self, config, is_decoder, layer_index, rng, dropout_rng):
        super().__init__()
        self.is_decoder = is_decoder
        attention = T5Attention(config, is_decoder, False, layer_index == 0, layer_index, rng, dropout_rng)
        layers = [Residual("SelfAttention", attention, config, dropout_rng)]
        if is_decoder:
            cross = T5Attention(config, False, True, False, layer_index, rng, dropout_rng)
            layers.append(Residual("EncDecAttention", cross, config, dropout_rng))
        layers.append(Residual("DenseReluDense", DenseReluDense(config, rng, dropout_rng), config, dropout_rng))
        self.layer = ModuleList(layers)

    def forward(self, x, bias, key_mask=None, states=None, cache=None):
        if not self.is_decoder:
            return self.layer[1](self.layer[0](x, bias, key_mask))                   # (B, Ts, C)
        x = self.layer[0](x, bias, None, cache)                                       # (B, Td, C) causal
        x = self.layer[1](x, key_mask=key_mask, cache=cache, states=states)          # (B, Td, C) cross
        return self.layer[2](x)                                                       # (B, Td, C)


class T5Stack(Module):
    """The encoder or the decoder: blocks, then ``final_layer_norm`` and dropout."""

    def __init__(self, config, is_decoder, rng, dropout_rng):
        super().__init__()
        n = config.num_decoder_layers if is_decoder else config.num_layers
        self.is_decoder = is_decoder
        self.dropout = Dropout(config.dropout_rate, dropout_rng)
        self.block = ModuleList(T5Block(config, is_decoder, i, rng, dropout_rng) for i in range(n))
        self.final_layer_norm = RMSNorm(config.d_model, config.layer_norm_epsilon, config.dtype)

    def forward(self, x, key_mask=None, states=None, cache=None):
        """x: embeddings (B, T, C) -> (B, T, C). Decoder: ``states`` (B, Ts, C) and ``key_mask``
        (B, Ts) of the encoder; with a ``cache``, x holds only the new tokens."""
        start = 0 if cache is None else cache.position
        T = x.shape[1]
        bias = self.block[0].layer[0].SelfAttention.position_bias(T, start + T, start)   # (1, H, T, start + T)
        x = self.dropout(x)
        for block in self.block:
            x = block(x, bias, key_mask, states, cache)                                  # (B, T, C)
        if cache is not None:
            cache.advance(T)
        return self.dropout(self.final_layer_norm(x))                                    # (B, T, C)


class T5(Module):
    """T5ForConditionalGeneration. ``T5(config, seed=0)``; the seed fixes weights and dropout masks.

    ``model(input_ids, decoder_input_ids, attention_mask=None)`` -> logits (B, Td, V);
    with ``targets`` (B, Td; -100 = ignored) -> (logits, mean cross-entropy).
    Teacher forcing: decoder_input_ids = [decoder_start_token_id] + targets[:-1].
    """

    parameter_shapes = staticmethod(parameter_shapes)   # what a loader checks a file against

    def __init__(self, config, seed=0):
        super().__init__()
        if not isinstance(config, T5Config):
            raise TypeError(f"T5 needs a T5Config, got {type(config).__name__}")
        self.config = config
        rng = backend.host_rng(seed)
        self.dropout_rng = backend.device_rng(seed)
        self.shared = Embedding(config.vocab_size, config.d_model, rng, 1.0, config.dtype)
        self.encoder = T5Stack(config, False, rng, self.dropout_rng)
        self.decoder = T5Stack(config, True, rng, self.dropout_rng)
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.d_model, config.vocab_size, False, rng, 1.0, config.dtype)

    def _ids(self, ids, name, start=0):
        """ids as a backend int array (B, T), or an error naming the argument."""
        ids = xp.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"{name} must be a 2-D array (batch, time) with at least one token, "
                             f"got shape {shape_text(ids.shape)}")
        F.check_token_ids(ids, self.config.vocab_size, what=f"{name} token id")
        if name == "decoder_input_ids" and start + ids.shape[1] > self.config.n_positions:
            where = f" after {start} cached tokens" if start else ""
            raise ValueError(f"decoder length {start + ids.shape[1]}{where} exceeds n_positions "
                             f"{self.config.n_positions}")
        return ids

    def _mask(self, attention_mask, batch, time):
        """attention_mask as a backend array (batch, time), or an error naming the shapes."""
        if attention_mask is None:
            return None
        mask = xp.asarray(attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask)
        if tuple(mask.shape) != (batch, time):
            raise ValueError(f"attention_mask has shape {shape_text(mask.shape)}; expected the encoder "
                             f"input's (batch, time) {shape_text((batch, time))}")
        return mask

    def encode(self, input_ids, attention_mask=None):
        """The encoder's states (B, Ts, C); ``attention_mask`` (B, Ts): 1 = token, 0 = padding."""
        input_ids = self._ids(input_ids, "input_ids")
        mask = self._mask(attention_mask, *input_ids.shape)
        return self.encoder(self.shared(input_ids), key_mask=mask)                       # (B, Ts, C)

    def decode(self, decoder_input_ids, states, attention_mask=None, cache=None, last_only=False):
        """Logits (B, Td, V) of the decoder over the encoder's ``states`` (B, Ts, C).

        With ``cache`` (an ``EncoderDecoderCache``, under ``no_grad``), ``decoder_input_ids``
        holds only the new tokens. ``last_only``: the last position's logits (B, 1, V)."""
        if cache is not None and is_grad_enabled():
            raise RuntimeError("the KV-cache path is for inference: call the model under minillm.no_grad()")
        ids = self._ids(decoder_input_ids, "decoder_input_ids", 0 if cache is None else cache.position)
        mask = self._mask(attention_mask, *states.shape[:2])
        x = self.decoder(self.shared(ids), key_mask=mask, states=states, cache=cache)   # (B, Td, C)
        if last_only:
            x = x[:, -1:, :]                                                             # (B, 1, C)
        if self.config.scale_decoder_outputs:
            x = x * (self.config.d_model ** -0.5)       # v1.0: the tied head sees C^-1/2 x
        head = self.shared.weight.T if self.config.tie_word_embeddings else self.lm_head.weight
        return F.linear(x, head)                                                         # (B, Td, V)

    def forward(self, input_ids, decoder_input_ids, attention_mask=None, targets=None):
        logits = self.decode(decoder_input_ids, self.encode(input_ids, attention_mask), attention_mask)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    def generate(self, input_ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=None,
                 use_cache=True, attention_mask=None):
        """-> (B, 1 + new): decoder_start_token_id, then up to ``max_new_tokens`` tokens; a row
        that produced eos_token_id is finished (padded with pad_token_id). See
        ``minillm.generation.generate_encoder_decoder``."""
        from minillm.generation import generate_encoder_decoder
        return generate_encoder_decoder(self, input_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                        top_p=top_p, seed=seed, use_cache=use_cache,
                                        attention_mask=attention_mask)

    @classmethod
    def from_pretrained(cls, directory, dtype="float32"):
        """A T5 from a Hugging Face folder (config.json + model.safetensors), via ``minillm.hf``."""
        from minillm.hf import t5
        return t5.load(directory, dtype=dtype, cls=cls)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors that transformers' T5ForConditionalGeneration loads."""
        from minillm.hf import t5
        t5.save(self, directory)
