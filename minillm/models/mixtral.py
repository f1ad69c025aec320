"""Mixtral: a Llama whose feed-forward is a sparse mixture of experts.

Everything but the MLP is Llama's (RoPE, RMSNorm, grouped-query attention,
the KV cache). Each layer's SwiGLU becomes ``block_sparse_moe``: a router and
E SwiGLU experts, of which each token uses k (minillm/nn/moe.py):

    x = x + self_attn(input_layernorm(x))
    x = x + block_sparse_moe(post_attention_layernorm(x))      k of E experts per token

Total parameters grow with E, the compute per token with k: Mixtral 8x7B
holds 46.7 B parameters and uses 12.9 B of them for each token.

Training adds the load-balancing loss (``router_aux_loss``, Switch
Transformer's E * sum_e f_e P_e over all layers' routing) times
``router_aux_loss_coef`` to the cross-entropy, so that the router spreads
tokens over the experts instead of collapsing onto a few.

Names are those of Mixtral's checkpoints: Llama's, with
``model.layers.{i}.block_sparse_moe.gate`` (the router) and
``model.layers.{i}.block_sparse_moe.experts.{e}.w1`` / ``w2`` / ``w3`` in place of ``mlp``.
"""
import dataclasses
import math
import numbers

from minillm.backend import to_numpy, xp
from minillm.models.config import check_positive_ints
from minillm.models.llama import Llama, LlamaConfig, LlamaDecoderLayer, linear_shapes
from minillm import safe_io
from minillm.nn.moe import SparseMoE, load_balancing_loss


@dataclasses.dataclass
class MixtralConfig(LlamaConfig):
    """A ``LlamaConfig`` with the experts (every Llama field keeps its meaning):

    n_expert              E    experts per layer (num_local_experts)
    top_k                 k    experts each token uses (num_experts_per_tok), 1 <= k <= E
    router_aux_loss_coef       weight of the load-balancing loss in the training loss (0: off)
    n_hidden                   each expert's SwiGLU width (intermediate_size)
    """
    n_expert: int = 8
    top_k: int = 2
    router_aux_loss_coef: float = 0.001

    def __post_init__(self):
        super().__post_init__()
        for field in ("attention_bias", "mlp_bias", "qkv_bias"):
            if getattr(self, field):
                raise ValueError(f"{field} must be False: Mixtral has no biases")
        check_positive_ints(self, ("n_expert", "top_k"))
        if self.top_k > self.n_expert:
            raise ValueError(f"top_k ({self.top_k}) must not exceed n_expert ({self.n_expert})")
        coef = self.router_aux_loss_coef
        if isinstance(coef, bool) or not isinstance(coef, numbers.Real) or not coef >= 0:
            raise ValueError(f"router_aux_loss_coef must be a number >= 0, got {coef!r}")
        self.router_aux_loss_coef = float(coef)

    def parameter_counts(self):
        """(total, active per token) parameters: every expert vs the k a token uses (embeddings included)."""
        C, L, D = self.n_embd, self.n_layer, self.head_dim
        attention = C * D * (2 * self.n_head + 2 * self.n_kv_head) + 2 * C            # q, o, k, v; two norms
        expert = 3 * C * self.n_hidden
        router = C * self.n_expert
        embeddings = self.vocab_size * C * (1 if self.tie_word_embeddings else 2) + C   # + final norm
        total = embeddings + L * (attention + router + self.n_expert * expert)
        active = embeddings + L * (attention + router + self.top_k * expert)
        return total, active


class MixtralDecoderLayer(LlamaDecoderLayer):
    """Llama's layer with the sparse MoE as its feed-forward."""

    def build_feed_forward(self, config, rng):
        self.block_sparse_moe = SparseMoE(config.n_embd, config.n_hidden, config.n_expert, config.top_k, rng,
                                          0.02, 0.02 / math.sqrt(2 * config.n_layer), config.dtype)

    @staticmethod
    def feed_forward_shapes(config, prefix):
        """The router (C, E) and E experts' w1, w3 (C, I) and w2 (I, C) under ``prefix``."""
        C, I, moe = config.n_embd, config.n_hidden, f"{prefix}.block_sparse_moe"
        shapes = linear_shapes(f"{moe}.gate", C, config.n_expert, False)
        for e in range(config.n_expert):
            shapes.update({f"{moe}.experts.{e}.w1.weight": (C, I), f"{moe}.experts.{e}.w2.weight": (I, C),
                           f"{moe}.experts.{e}.w3.weight": (C, I)})
        return shapes

    def feed_forward(self, x):
        return self.block_sparse_moe(x)                                  # (B, T, C)


class Mixtral(Llama):
    """A Mixtral-style sparse decoder. ``Mixtral(config, seed=0)``; initialised as Llama (the router
    and every expert N(0, 0.02), each expert's w2 scaled by 1/sqrt(2 L))."""

    config_class = MixtralConfig
    layer_class = MixtralDecoderLayer

    @classmethod
    def check_state(cls, config, state, where):
        """Llama's checks, with the expert count of layer 0 compared first: a config claiming
        10**6 experts over two would otherwise build n_layer * 10**6 * 3 names to compare."""
        safe_io.check_layer_count(state, cls.layer_prefix, config.n_layer, where)
        safe_io.check_layer_count(state, "model.layers.0.block_sparse_moe.experts.", config.n_expert, where,
                                  "n_expert", "expert")
        super().check_state(config, state, where)

    def moe_layers(self):
        return [layer.block_sparse_moe for layer in self.model.layers]

    def router_aux_loss(self):
        """The load-balancing loss of the last forward pass (transformers' ``aux_loss``; k when balanced)."""
        layers = self.moe_layers()
        return load_balancing_loss([m.router_logits for m in layers], [m.chosen for m in layers],
                                   self.config.n_expert)

    def auxiliary_loss(self):
        """What training adds to the cross-entropy: router_aux_loss_coef * router_aux_loss (None if 0)."""
        if self.config.router_aux_loss_coef == 0:
            return None
        return self.router_aux_loss() * self.config.router_aux_loss_coef

    def expert_load(self):
        """(L, E) host array: the fraction of the last forward's tokens each expert of each layer got."""
        return to_numpy(xp.stack([m.expert_load() for m in self.moe_layers()]))

    def forward(self, idx, targets=None, cache=None, last_only=False):
        """As Llama's; with ``targets`` the loss is cross-entropy + router_aux_loss_coef * router_aux_loss
        (transformers' loss with ``output_router_logits=True``)."""
        out = super().forward(idx, targets, cache, last_only)
        if targets is None:
            return out
        aux = self.auxiliary_loss()
        return out if aux is None else (out[0], out[1] + aux)

    @classmethod
    def from_pretrained(cls, directory, dtype="float32"):
        """A Mixtral from a Hugging Face folder (config.json + model.safetensors), via ``minillm.hf``."""
        from minillm.hf import mixtral
        return mixtral.load(directory, dtype=dtype, cls=cls)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors that transformers' MixtralForCausalLM loads."""
        from minillm.hf import mixtral
        mixtral.save(self, directory)
