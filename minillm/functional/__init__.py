"""Every differentiable op of minillm, one concept per file.

    arithmetic      + - * / ** and unary - (the Functions behind Tensor's operators)
    matmul          a @ b, batched, broadcasting
    elementwise     exp, log, tanh, sqrt, relu, gelu, where, masked_fill
    reduction       sum, mean, max
    shape           getitem, reshape, transpose/permute, concat, stack, split, split_fused_heads
    linear          linear: x W + b, fused
    embedding       embedding: table lookup with scatter-add backward
    softmax         softmax, log_softmax, fused
    cross_entropy   cross_entropy with ignore_index, fused with log-softmax
    layer_norm      layer_norm, fused
    dropout         inverted dropout with an explicit generator
    attention       scaled_dot_product_attention, fused, causal, KV prefix, padding, bias, GQA
    rms_norm        rms_norm (T5, Llama), fused
    activation      silu (SwiGLU), gelu_exact (gelu(x, approximate="none")), fused
    rotary          apply_rotary (RoPE, rotate-half), rotary_tables
    moe             dispatch, moe_combine (sparse mixture of experts: gather, weighted scatter-add), fused
"""
from minillm.functional.elementwise import exp, log, tanh, sqrt, relu, gelu, where, masked_fill
from minillm.functional.reduction import sum, mean, max
from minillm.functional.matmul import matmul
from minillm.functional.shape import reshape, transpose, permute, getitem, concat, stack, split
from minillm.functional.shape import split_fused_heads
from minillm.functional.linear import linear
from minillm.functional.embedding import embedding, check_token_ids
from minillm.functional.softmax import softmax, log_softmax
from minillm.functional.cross_entropy import cross_entropy
from minillm.functional.layer_norm import layer_norm
from minillm.functional.dropout import dropout
from minillm.functional.attention import scaled_dot_product_attention
from minillm.functional.rms_norm import rms_norm
from minillm.functional.activation import silu, gelu_exact
from minillm.functional.rotary import apply_rotary, rotary_tables
from minillm.functional.moe import dispatch, moe_combine

__all__ = [
    "exp", "log", "tanh", "sqrt", "relu", "gelu", "where", "masked_fill",
    "sum", "mean", "max", "matmul",
    "reshape", "transpose", "permute", "getitem", "concat", "stack", "split",
    "linear", "embedding", "check_token_ids", "softmax", "log_softmax", "cross_entropy",
    "layer_norm", "dropout", "scaled_dot_product_attention",
    "rms_norm", "silu", "gelu_exact", "apply_rotary", "rotary_tables",
    "dispatch", "moe_combine",
    "split_fused_heads",
]
