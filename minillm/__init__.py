"""minillm: an educational LLM engine on NumPy, with CuPy as a drop-in GPU backend.

    import minillm
    minillm.backend.name            # "numpy" or "cupy" (MINILLM_BACKEND)
    from minillm import Tensor, no_grad, gradcheck
    import minillm.functional as F
    from minillm import GPT, GPTConfig
    from minillm import Llama, LlamaConfig
    from minillm import Mixtral, MixtralConfig
    from minillm import T5, T5Config, Bert, BertConfig
    minillm.optim.AdamW, minillm.hf.load, minillm.tokenizers.BPETokenizer, ...   # every public submodule
"""
from minillm import backend
from minillm.autograd import Tensor, Function, no_grad, is_grad_enabled
from minillm.gradcheck import gradcheck
from minillm.models import GPT, GPTConfig, Llama, LlamaConfig, Mixtral, MixtralConfig
from minillm.models import T5, T5Config, Bert, BertConfig
# The public submodules, so that ``import minillm`` is enough for ``minillm.optim.AdamW``
# (as ``torch.optim`` after ``import torch``); listed in layer order (tests/test_layering.py).
from minillm import shapes, functional, nn, optim, kvcache, models, sampling, generation
from minillm import tokenizers, corpus, batches, data, plotting, progress, mlm
from minillm import checkpoint, distributed, train, lora, hf, finetune, evaluate, scaling
from minillm import ngram, half_precision, memory, energy, filters, fairness
from minillm import safe_io

__all__ = ["backend", "Tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck", "GPT", "GPTConfig",
           "Llama", "LlamaConfig", "Mixtral", "MixtralConfig", "T5", "T5Config", "Bert", "BertConfig"]
