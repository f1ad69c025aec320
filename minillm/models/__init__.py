"""Model families, one a file, each assembled from the blocks in ``minillm.nn``.

    gpt2        GPTConfig, GPT: the decoder-only GPT-2
    llama       LlamaConfig, Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention
    mixtral     MixtralConfig, Mixtral: Llama with a sparse mixture-of-experts feed-forward
"""
from minillm.models.gpt2 import GPT, GPTConfig
from minillm.models.llama import Llama, LlamaConfig
from minillm.models.mixtral import Mixtral, MixtralConfig

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig", "Mixtral", "MixtralConfig"]
