"""GPT: the decoder-only transformer of GPT-2, with GPT-2's parameter names.

    x = wte[idx] + wpe[positions]                       (B, T, C) token + position
    for each block:                                     pre-LayerNorm residual blocks
        x = x + attn(ln_1(x))                           causal self-attention
        x = x + mlp(ln_2(x))                            GELU MLP of width 4C
    logits = ln_f(x) @ wte^T                            (B, T, V) lm_head tied to wte

    attn(x) = c_proj(softmax(Q K^T / sqrt(D) + causal mask) V),  [Q K V] = x W_attn + b_attn
    mlp(x)  = c_proj(gelu(c_fc(x)))

Names match Hugging Face's GPT-2 (without its "transformer." prefix): ``wte``,
``wpe``, ``h.{i}.ln_1``, ``h.{i}.attn.c_attn``, ``h.{i}.attn.c_proj``,
``h.{i}.ln_2``, ``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``. The output
layer ``lm_head`` is not a parameter of its own: it is ``wte.weight``, used a
second time (weight tying), so it gets gradient from both uses.

API: ``logits = model(idx)``; ``logits, loss = model(idx, targets)`` also
returns the mean cross-entropy against ``targets`` (teacher forcing: targets
are the inputs shifted by one). ``model(idx, cache=KVCache(n_layer))`` runs
the inference path that keeps keys and values between calls (under
``no_grad()``).
"""
import dataclasses
import math

from minillm import backend
from minillm import functional as F
from minillm.backend import xp
from minillm.models.config import ModelConfig, check_bools, check_dropout, check_dtype, check_positive_ints
from minillm.models.decoder import DecoderLM
from minillm.nn import Module, ModuleList, Linear, Embedding, LayerNorm, Dropout, MLP
from minillm.nn.attention import MultiHeadAttention, split_fused_heads

BLOCK_PARAMETERS = (  # (name, shape in units of C) in each block h.{i}, in parameter order
    ("ln_1.weight", (1,)), ("ln_1.bias", (1,)),
    ("attn.c_attn.weight", (1, 3)), ("attn.c_attn.bias", (3,)),
    ("attn.c_proj.weight", (1, 1)), ("attn.c_proj.bias", (1,)),
    ("ln_2.weight", (1,)), ("ln_2.bias", (1,)),
    ("mlp.c_fc.weight", (1, 4)), ("mlp.c_fc.bias", (4,)),
    ("mlp.c_proj.weight", (4, 1)), ("mlp.c_proj.bias", (1,)),
)


@dataclasses.dataclass
class GPTConfig(ModelConfig):
    """The shape of a GPT. Validated on creation; every error names the field.

    vocab_size  V   number of token ids
    block_size  T   longest sequence (number of learned positions)
    n_layer     L   transformer blocks
    n_head      H   attention heads per block (head_dim D = n_embd / n_head)
    n_embd      C   width of the residual stream
    dropout         probability on embeddings, attention weights and residual branches
    bias            biases in the Linear and LayerNorm layers (GPT-2: True)
    dtype           parameter dtype, "float32" or "float64" (gradient checks)
    """
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    dtype: str = "float32"

    def __post_init__(self):
        check_positive_ints(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        check_dropout(self)
        check_bools(self, ("bias",))
        check_dtype(self)

    @property
    def head_dim(self):
        return self.n_embd // self.n_head


def parameter_shapes(config):
    """{parameter name: shape} of a GPT with ``config``, in ``named_parameters`` order,
    from the config alone: nothing is allocated (see ``DecoderLM.check_state``)."""
    V, T, C = config.vocab_size, config.block_size, config.n_embd
    kept = [(name, units) for name, units in BLOCK_PARAMETERS if config.bias or not name.endswith(".bias")]
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for i in range(config.n_layer):
        shapes.update((f"h.{i}.{name}", tuple(u * C for u in units)) for name, units in kept)
    shapes.update({"ln_f.weight": (C,), **({"ln_f.bias": (C,)} if config.bias else {})})
    return shapes


class CausalSelfAttention(MultiHeadAttention):
    """GPT-2's attention: the shared core with a fused qkv projection c_attn (C, 3C)
    and an output projection c_proj (C, C) followed by residual dropout."""

    def __init__(self, config, layer_index, rng, dropout_rng):
        super().__init__(config.n_head, causal=True, dropout=config.dropout, dropout_rng=dropout_rng,
                         layer_index=layer_index)
        C, dtype = config.n_embd, config.dtype
        self.c_attn = Linear(C, 3 * C, config.bias, rng, 0.02, dtype)
        self.c_proj = Linear(C, C, config.bias, rng, 0.02 / math.sqrt(2 * config.n_layer), dtype)
        self.resid_dropout = Dropout(config.dropout, dropout_rng)

    def project(self, x):
        return split_fused_heads(self.c_attn(x), 3, self.n_head)        # q, k, v: (B, H, T, D) each

    def output(self, y):
        return self.resid_dropout(self.c_proj(y))                        # (B, T, C)


class Block(Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x)): a pre-LayerNorm transformer block."""

    def __init__(self, config, layer_index, rng, dropout_rng):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias, dtype=config.dtype)
        self.attn = CausalSelfAttention(config, layer_index, rng, dropout_rng)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias, dtype=config.dtype)
        self.mlp = MLP(config.n_embd, 4 * config.n_embd, bias=config.bias, rng=rng, activation=F.gelu,
                       proj_std=0.02 / math.sqrt(2 * config.n_layer), dropout=config.dropout,
                       dropout_rng=dropout_rng, dtype=config.dtype)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)                           # (B, T, C)
        return x + self.mlp(self.ln_2(x))                                # (B, T, C)


class GPT(DecoderLM):
    """GPT-2. ``GPT(config, seed=0)``: the seed fixes the initial weights and the dropout masks.

    Initialisation (GPT-2): every weight N(0, 0.02), the two residual
    projections (``attn.c_proj``, ``mlp.c_proj``) N(0, (0.02 / sqrt(2 L))^2)
    so the residual stream's variance does not grow with depth; biases 0,
    LayerNorm weights 1. Weights are drawn on the host in creation order, so
    both backends start from the same numbers.
    """

    config_class = GPTConfig
    parameter_shapes = staticmethod(parameter_shapes)   # DecoderLM.check_state compares a file against it

    def __init__(self, config, seed=0):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        rng = backend.host_rng(seed)                       # initial weights
        self.dropout_rng = backend.device_rng(seed)        # every dropout mask, one stream
        C, dtype = config.n_embd, config.dtype
        self.wte = Embedding(config.vocab_size, C, rng, 0.02, dtype)
        self.wpe = Embedding(config.block_size, C, rng, 0.02, dtype)
        self.drop = Dropout(config.dropout, self.dropout_rng)
        self.h = ModuleList(Block(config, i, rng, self.dropout_rng) for i in range(config.n_layer))
        self.ln_f = LayerNorm(C, bias=config.bias, dtype=dtype)

    def hidden_states(self, idx, cache=None):
        """The final hidden states ln_f(x) (B, T, C) for the token ids ``idx`` (B, T):
        the whole transformer without its output layer (used by ``forward`` and
        by heads that read the last hidden state, e.g. a classifier).

        With a ``cache`` (a ``KVCache``), ``idx`` holds only the new tokens: they
        sit at positions ``cache.position ...`` and attend to every cached one.
        """
        start = self.start(cache)
        idx = self.check_idx(idx, start)
        T = idx.shape[1]
        positions = xp.arange(start, start + T)                         # (T,)
        x = self.drop(self.wte(idx) + self.wpe(positions))              # (B, T, C)
        for block in self.h:
            x = block(x, cache)                                          # (B, T, C)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)                                              # (B, T, C)

    def output(self, x):
        """The output layer: logits (B, T, V) = x (B, T, C) @ wte^T (lm_head tied to wte)."""
        return F.linear(x, self.wte.weight.T)                            # (B, T, V)

    def num_parameters(self, non_embedding=False, trainable_only=False):
        """Parameter count; ``non_embedding`` leaves out the position table wpe (as nanoGPT;
        wte stays in because it is also the output layer)."""
        n = super().num_parameters(trainable_only)
        if non_embedding and (self.wpe.weight.requires_grad or not trainable_only):
            n -= self.wpe.weight.size
        return n

    @classmethod
    def from_pretrained(cls, directory, dtype="float32"):
        """A GPT from a Hugging Face GPT-2 folder (config.json + model.safetensors).

        The file format lives in ``minillm.hf`` (imported here: formats know
        models, models know no format)."""
        from minillm.hf import gpt2
        return gpt2.load(directory, dtype=dtype, cls=cls)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors in the Hugging Face GPT-2 layout (``minillm.hf``)."""
        from minillm.hf import gpt2
        gpt2.save(self, directory)
