"""Model families, one a file, each assembled from the blocks in ``minillm.nn``.

    gpt2        GPTConfig, GPT: the decoder-only GPT-2
"""
from minillm.models.gpt2 import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
