"""Llama: the decoder most open models share (Llama 2/3, SmolLM, TinyLlama, Mistral, Qwen2).

What changed since GPT-2, each a few lines below:

    x = embed_tokens[idx]                               (B, T, C) no position table
    for each layer:                                     pre-norm residual blocks, as GPT-2
        x = x + self_attn(input_layernorm(x))           RMSNorm instead of LayerNorm
        x = x + mlp(post_attention_layernorm(x))
    logits = norm(x) @ lm_head                          (B, T, V) tied to embed_tokens or not

    self_attn: q, k = rope(q_proj(x)), rope(k_proj(x))  positions as rotations of q and k (RoPE)
               v = v_proj(x)                            k, v with n_kv_head <= n_head heads (GQA)
               o_proj(softmax(q k^T / sqrt(D) + causal) v)
    mlp:       down_proj(silu(gate_proj(x)) * up_proj(x))   SwiGLU: a gated MLP
    no biases (``attention_bias`` / ``mlp_bias`` / Qwen2's ``qkv_bias`` switch them on where a variant has them)

Names are Hugging Face's ``LlamaForCausalLM``: ``model.embed_tokens``,
``model.layers.{i}.input_layernorm``, ``model.layers.{i}.self_attn.q_proj`` /
``k_proj`` / ``v_proj`` / ``o_proj``, ``model.layers.{i}.post_attention_layernorm``,
``model.layers.{i}.mlp.gate_proj`` / ``up_proj`` / ``down_proj``, ``model.norm``,
``lm_head``. Linear weights are (in, out) here, as everywhere in minillm; the
converter (``minillm/hf/llama.py``) transposes them.

The KV cache holds n_kv_head heads per layer: 2 * n_layer * T * n_kv_head *
head_dim numbers per sequence, n_head / n_kv_head times less than multi-head
attention of the same width (``LlamaConfig.kv_cache_bytes``).
"""
import dataclasses
import math
import numbers

from minillm import backend
from minillm import functional as F
from minillm.models.config import (ModelConfig, check_bools, check_dropout, check_dtype, check_positive_ints,
                                   check_positive_numbers)
from minillm.models.decoder import DecoderLM
from minillm.nn import Embedding, Linear, Module, ModuleList, RMSNorm, RotaryEmbedding
from minillm.nn.attention import MultiHeadAttention, split_heads
from minillm.nn.rotary import LLAMA3_KEYS

ROPE_TYPES = ("default", "llama3")


def check_rope_scaling(value):
    """None (plain RoPE) or Llama 3's remapping as a normalised dict; any other type is an error."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"rope_scaling must be None or a dict, got {value!r}")
    rope_type = value.get("rope_type", value.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_scaling type {rope_type!r} is not supported; minillm supports "
                         f"{' and '.join(repr(t) for t in ROPE_TYPES)}")
    if rope_type == "default":
        return None
    missing = [key for key in LLAMA3_KEYS if key not in value]
    if missing:
        raise ValueError(f"rope_scaling of type 'llama3' is missing {missing}")
    for key in LLAMA3_KEYS:
        if isinstance(value[key], bool) or not isinstance(value[key], numbers.Real) or not value[key] > 0:
            raise ValueError(f"rope_scaling {key} must be a positive number, got {value[key]!r}")
    if not value["high_freq_factor"] > value["low_freq_factor"]:
        raise ValueError(f"rope_scaling high_freq_factor ({value['high_freq_factor']}) must exceed "
                         f"low_freq_factor ({value['low_freq_factor']})")
    return {"rope_type": "llama3", **{key: value[key] for key in LLAMA3_KEYS}}


def default_hidden(n_embd):
    """SwiGLU's width: 8C/3 (three matrices of C x 8C/3 hold as many numbers as GPT-2's two of C x 4C),
    rounded up to a multiple of 8."""
    return 8 * math.ceil(8 * n_embd / 3 / 8)


@dataclasses.dataclass
class LlamaConfig(ModelConfig):
    """The shape of a Llama. Validated on creation; every error names the field.

    vocab_size           V    number of token ids
    block_size           T    longest sequence (Hugging Face: max_position_embeddings)
    n_layer              L    decoder layers
    n_head               H    query heads
    n_embd               C    width of the residual stream
    n_kv_head            Hkv  key/value heads (None: H, multi-head attention); must divide H
    n_hidden                  SwiGLU width (intermediate_size; None: 8C/3 rounded up to a multiple of 8)
    head_dim             D    None: C / H
    rope_theta                RoPE's base: frequencies theta^(-2i/D)
    rope_scaling              None, or {"rope_type": "llama3", "factor", "low_freq_factor",
                              "high_freq_factor", "original_max_position_embeddings"}
    norm_eps                  RMSNorm's epsilon (rms_norm_eps)
    tie_word_embeddings       lm_head is embed_tokens^T (SmolLM, Llama 3.2) or its own matrix
    attention_bias            biases on q/k/v/o_proj;  mlp_bias: on gate/up/down_proj
    qkv_bias                  biases on q/k/v_proj only (Qwen2)
    dropout                   on the attention weights in training (attention_dropout)
    dtype                     "float32" or "float64" (gradient checks)
    """
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    n_kv_head: int = None
    n_hidden: int = None
    head_dim: int = None
    rope_theta: float = 10000.0
    rope_scaling: dict = None
    norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    qkv_bias: bool = False
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.n_hidden is None and isinstance(self.n_embd, int):
            self.n_hidden = default_hidden(self.n_embd)
        if self.head_dim is None and isinstance(self.n_embd, int) and isinstance(self.n_head, int):
            if self.n_head > 0 and self.n_embd % self.n_head:
                raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                                 f"unless head_dim is given")
            self.head_dim = self.n_embd // max(self.n_head, 1)
        check_positive_ints(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "n_kv_head",
                                   "n_hidden", "head_dim"))
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even: RoPE rotates pairs of channels")
        check_positive_numbers(self, ("rope_theta", "norm_eps"))
        self.rope_scaling = check_rope_scaling(self.rope_scaling)
        check_bools(self, ("tie_word_embeddings", "attention_bias", "mlp_bias", "qkv_bias"))
        check_dropout(self)
        check_dtype(self)

    def kv_cache_bytes(self, n_tokens, batch=1, itemsize=4):
        """Bytes of keys and values cached for ``n_tokens`` tokens: 2 * L * B * T * Hkv * D * itemsize."""
        return 2 * self.n_layer * batch * n_tokens * self.n_kv_head * self.head_dim * itemsize


def linear_shapes(name, n_in, n_out, bias):
    """{name.weight: (in, out), name.bias: (out,)}: a ``Linear``'s parameter shapes, no arrays."""
    return {f"{name}.weight": (n_in, n_out), **({f"{name}.bias": (n_out,)} if bias else {})}


def parameter_shapes(config, feed_forward_shapes=None):
    """{parameter name: shape} of a Llama with ``config``, in ``named_parameters`` order, from
    the config alone (see ``DecoderLM.check_state``). ``feed_forward_shapes(config, prefix)``
    gives each layer's feed-forward part (default: the SwiGLU ``mlp``; Mixtral's experts)."""
    feed_forward_shapes = feed_forward_shapes or LlamaDecoderLayer.feed_forward_shapes
    C, D, H, Hkv = config.n_embd, config.head_dim, config.n_head, config.n_kv_head
    qkv_bias = config.attention_bias or config.qkv_bias
    shapes = {"model.embed_tokens.weight": (config.vocab_size, C)}
    for i in range(config.n_layer):
        layer = f"model.layers.{i}"
        shapes[f"{layer}.input_layernorm.weight"] = (C,)
        for name, n_out in (("q_proj", H * D), ("k_proj", Hkv * D), ("v_proj", Hkv * D)):
            shapes.update(linear_shapes(f"{layer}.self_attn.{name}", C, n_out, qkv_bias))
        shapes.update(linear_shapes(f"{layer}.self_attn.o_proj", H * D, C, config.attention_bias))
        shapes[f"{layer}.post_attention_layernorm.weight"] = (C,)
        shapes.update(feed_forward_shapes(config, layer))
    shapes["model.norm.weight"] = (C,)
    if not config.tie_word_embeddings:
        shapes.update(linear_shapes("lm_head", C, config.vocab_size, False))
    return shapes


class LlamaAttention(MultiHeadAttention):
    """The shared attention core with Llama's projections and RoPE.

    q_proj (C, H*D), k_proj and v_proj (C, Hkv*D), o_proj (H*D, C). ``rotary``
    is the model's one ``RotaryEmbedding``, shared by every layer.
    """

    def __init__(self, config, layer_index, rotary, rng, dropout_rng):
        super().__init__(config.n_head, config.n_kv_head, causal=True, dropout=config.dropout,
                         dropout_rng=dropout_rng, layer_index=layer_index)
        C, D, dtype = config.n_embd, config.head_dim, config.dtype
        bias = config.attention_bias or config.qkv_bias
        self.rotary = rotary
        self.q_proj = Linear(C, config.n_head * D, bias, rng, 0.02, dtype)
        self.k_proj = Linear(C, config.n_kv_head * D, bias, rng, 0.02, dtype)
        self.v_proj = Linear(C, config.n_kv_head * D, bias, rng, 0.02, dtype)
        self.o_proj = Linear(config.n_head * D, C, config.attention_bias, rng, 0.02 / math.sqrt(2 * config.n_layer),
                             dtype)

    def project(self, x):
        q = split_heads(self.q_proj(x), self.n_head)                     # (B, H, T, D)
        k = split_heads(self.k_proj(x), self.n_kv_head)                  # (B, Hkv, T, D)
        v = split_heads(self.v_proj(x), self.n_kv_head)                  # (B, Hkv, T, D)
        return q, k, v

    def rotate(self, q, k, start):
        return self.rotary(q, k, start)                                  # positions start .. start + T - 1

    def output(self, y):
        return self.o_proj(y)                                            # (B, T, C)


class LlamaMLP(Module):
    """SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x)), C -> n_hidden -> C.

    The gate decides, per hidden unit and token, how much of up_proj(x) passes.
    """

    def __init__(self, n_embd, n_hidden, bias=False, rng=None, std=0.02, proj_std=0.02, dtype="float32"):
        super().__init__()
        self.gate_proj = Linear(n_embd, n_hidden, bias, rng, std, dtype)
        self.up_proj = Linear(n_embd, n_hidden, bias, rng, std, dtype)
        self.down_proj = Linear(n_hidden, n_embd, bias, rng, proj_std, dtype)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))   # (B, T, C)


class LlamaDecoderLayer(Module):
    """x + self_attn(input_layernorm(x)), then + feed_forward(post_attention_layernorm(x)).

    The feed-forward part is a hook: Llama's is the SwiGLU ``mlp``; a family
    with another (Mixtral's mixture of experts) overrides ``build_feed_forward``
    and ``feed_forward``.
    """

    def __init__(self, config, layer_index, rotary, rng, dropout_rng):
        super().__init__()
        C = config.n_embd
        self.input_layernorm = RMSNorm(C, config.norm_eps, config.dtype)
        self.self_attn = LlamaAttention(config, layer_index, rotary, rng, dropout_rng)
        self.post_attention_layernorm = RMSNorm(C, config.norm_eps, config.dtype)
        self.build_feed_forward(config, rng)

    def build_feed_forward(self, config, rng):
        self.mlp = LlamaMLP(config.n_embd, config.n_hidden, config.mlp_bias, rng, 0.02,
                            0.02 / math.sqrt(2 * config.n_layer), config.dtype)

    @staticmethod
    def feed_forward_shapes(config, prefix):
        """The shapes ``build_feed_forward`` makes under ``prefix`` (``parameter_shapes``)."""
        C, I, bias = config.n_embd, config.n_hidden, config.mlp_bias
        return {**linear_shapes(f"{prefix}.mlp.gate_proj", C, I, bias),
                **linear_shapes(f"{prefix}.mlp.up_proj", C, I, bias),
                **linear_shapes(f"{prefix}.mlp.down_proj", I, C, bias)}

    def feed_forward(self, x):
        return self.mlp(x)                                               # (B, T, C)

    def forward(self, x, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cache)           # (B, T, C)
        return x + self.feed_forward(self.post_attention_layernorm(x))   # (B, T, C)


class LlamaModel(Module):
    """The body, Hugging Face's ``model.`` prefix: embed_tokens, layers, norm."""

    def __init__(self, config, rng, dropout_rng, layer_class=LlamaDecoderLayer):
        super().__init__()
        self.rotary = RotaryEmbedding(config.head_dim, config.block_size, config.rope_theta,
                                      config.rope_scaling, config.dtype)
        self.embed_tokens = Embedding(config.vocab_size, config.n_embd, rng, 0.02, config.dtype)
        self.layers = ModuleList(layer_class(config, i, self.rotary, rng, dropout_rng)
                                 for i in range(config.n_layer))
        self.norm = RMSNorm(config.n_embd, config.norm_eps, config.dtype)

    def forward(self, idx, cache=None):
        x = self.embed_tokens(idx)                                       # (B, T, C)
        for layer in self.layers:
            x = layer(x, cache)                                          # (B, T, C)
        return self.norm(x)                                              # (B, T, C)


class Llama(DecoderLM):
    """A Llama-family decoder. ``Llama(config, seed=0)``: the seed fixes the initial weights
    and the dropout masks.

    Initialisation: every weight N(0, 0.02) (Hugging Face's initializer_range),
    with the two residual projections (o_proj, down_proj) scaled by
    1/sqrt(2 L) as in GPT-2, so that trained-here models of both families
    start alike; RMSNorm weights 1. Drawn on the host in creation order.
    """

    config_class = LlamaConfig
    layer_prefix = "model.layers."   # check_state counts these blocks before building anything
    layer_class = LlamaDecoderLayer

    @classmethod
    def parameter_shapes(cls, config):
        """``parameter_shapes`` with this family's layers: what ``check_state`` compares a file against."""
        return parameter_shapes(config, cls.layer_class.feed_forward_shapes)

    def __init__(self, config, seed=0):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        rng = backend.host_rng(seed)                       # initial weights
        self.dropout_rng = backend.device_rng(seed)        # attention dropout masks, one stream
        self.model = LlamaModel(config, rng, self.dropout_rng, self.layer_class)
        if not config.tie_word_embeddings:
            self.lm_head = Linear(config.n_embd, config.vocab_size, False, rng, 0.02, config.dtype)

    def hidden_states(self, idx, cache=None):
        """The final hidden states norm(x) (B, T, C) for the token ids ``idx`` (B, T).

        With a ``cache``, ``idx`` holds only the new tokens, at positions
        ``cache.position ...``: RoPE rotates their queries and keys by those
        positions, and they attend to every cached key.
        """
        start = self.start(cache)
        idx = self.check_idx(idx, start)
        x = self.model(idx, cache)                                       # (B, T, C)
        if cache is not None:
            cache.advance(idx.shape[1])
        return x

    def output(self, x):
        """Logits (B, T, V): x @ lm_head, or x @ embed_tokens^T when the two are tied."""
        if self.config.tie_word_embeddings:
            return F.linear(x, self.model.embed_tokens.weight.T)         # (B, T, V)
        return self.lm_head(x)                                           # (B, T, V)

    def num_parameters(self, non_embedding=False, trainable_only=False):
        """Parameter count; ``non_embedding`` leaves out embed_tokens when it is only a lookup
        table (untied), i.e. counts the parameters that take part in matrix products."""
        n = super().num_parameters(trainable_only)
        table = self.model.embed_tokens.weight
        if non_embedding and not self.config.tie_word_embeddings and (table.requires_grad or not trainable_only):
            n -= table.size
        return n

    @classmethod
    def from_pretrained(cls, directory, dtype="float32"):
        """A Llama from a Hugging Face folder (config.json + model.safetensors), via ``minillm.hf``."""
        from minillm.hf import llama
        return llama.load(directory, dtype=dtype, cls=cls)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors that transformers' LlamaForCausalLM loads."""
        from minillm.hf import llama
        llama.save(self, directory)
