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
           "Bert", "BertConfig", "DECODERS", "decoder_from_checkpoint"]

# The decoders a training checkpoint can hold, by the "arch" it records (demos/train_shakespeare.py --arch).
DECODERS = {"gpt2": GPT, "llama": Llama, "mixtral": Mixtral}


def decoder_from_checkpoint(ckpt, seed=0, where="checkpoint"):
    """The decoder in a loaded training checkpoint (``checkpoint.load``'s dict), of the family its
    "arch" names; a checkpoint without one is GPT-2's (written before there were other families)."""
    arch = ckpt.get("arch", "gpt2")
    if arch not in DECODERS:
        raise ValueError(f"{where} holds a {arch!r} model; minillm's decoders are {sorted(DECODERS)}")
    return DECODERS[arch].from_checkpoint(ckpt, seed=seed, where=where)
