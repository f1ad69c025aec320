"""Model families, one a file, each assembled from the blocks in ``minillm.nn``.

    gpt2        GPTConfig, GPT: the decoder-only GPT-2
    llama       LlamaConfig, Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention
    mixtral     MixtralConfig, Mixtral: Llama with a sparse mixture-of-experts feed-forward
    bert        BertConfig, Bert: the encoder-only BERT (masked LM, [CLS] classifier)
"""
from minillm.models.gpt2 import GPT, GPTConfig
from minillm.models.llama import Llama, LlamaConfig
from minillm.models.mixtral import Mixtral, MixtralConfig
from minillm.models.bert import Bert, BertConfig

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig", "Mixtral", "MixtralConfig", "Bert", "BertConfig"]
