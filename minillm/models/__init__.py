"""Model families, one a file, each assembled from the blocks in ``minillm.nn``.

    gpt2        GPTConfig, GPT: the decoder-only GPT-2
    llama       LlamaConfig, Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention
    mixtral     MixtralConfig, Mixtral: Llama with a sparse mixture-of-experts feed-forward
    t5          T5Config, T5: the encoder-decoder T5 (v1.0, v1.1, Flan-T5)
    bert        BertConfig, Bert: the encoder-only BERT (masked LM, [CLS] classifier)
"""
from minillm.models.gpt2 import GPT, GPTConfig
from minillm.models.llama import Llama, LlamaConfig
from minillm.models.mixtral import Mixtral, MixtralConfig
from minillm.models.t5 import T5, T5Config
from minillm.models.bert import Bert, BertConfig

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig", "Mixtral", "MixtralConfig", "T5", "T5Config",
           "Bert", "BertConfig"]
