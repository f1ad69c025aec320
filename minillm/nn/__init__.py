"""Modules: parameters, layers, and the blocks every model family is built from.

    module      Module, Parameter, ModuleList: naming, state dicts, generators, train/eval, eval_mode
    layers      Linear, Embedding, LayerNorm, RMSNorm, Dropout; skip_init (build without drawing weights)
    attention   MultiHeadAttention: heads, KV cache, grouped KV heads, mask options
    mlp         MLP: c_proj(act(c_fc(x)))
    rotary      RotaryEmbedding: RoPE's cos/sin tables (with Llama 3's frequency remapping)
    moe         SparseMoE: a router and E SwiGLU experts, k per token; load_balancing_loss
"""
from minillm.nn.module import Module, Parameter, ModuleList, LoadResult, eval_mode
from minillm.nn.layers import Linear, Embedding, LayerNorm, Dropout
from minillm.nn.layers import RMSNorm
from minillm.nn.layers import skip_init
from minillm.nn.attention import MultiHeadAttention, split_heads, split_fused_heads, merge_heads, repeat_kv_heads
from minillm.nn.mlp import MLP
from minillm.nn.rotary import RotaryEmbedding
from minillm.nn.moe import SparseMoE, load_balancing_loss

__all__ = [
    "Module", "Parameter", "ModuleList", "LoadResult", "eval_mode",
    "Linear", "Embedding", "LayerNorm", "Dropout",
    "MultiHeadAttention", "split_heads", "split_fused_heads", "merge_heads", "repeat_kv_heads",
    "MLP",
    "RMSNorm",
    "RotaryEmbedding",
    "SparseMoE", "load_balancing_loss",
    "skip_init",
]
