"""Model families, one a file, each assembled from the blocks in ``minillm.nn``.

    gpt2        GPTConfig, GPT: the decoder-only GPT-2
    llama       LlamaConfig, Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention
"""
from minillm.models.gpt2 import GPT, GPTConfig
from minillm.models.llama import Llama, LlamaConfig

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig"]
