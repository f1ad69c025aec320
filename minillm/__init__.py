"""minillm: an educational LLM engine on NumPy, with CuPy as a drop-in GPU backend.

    import minillm
    minillm.backend.name            # "numpy" or "cupy" (MINILLM_BACKEND)
    from minillm import Tensor, no_grad, gradcheck
    import minillm.functional as F
    from minillm import GPT, GPTConfig
"""
from minillm import backend
from minillm.autograd import Tensor, Function, no_grad, is_grad_enabled
from minillm.gradcheck import gradcheck
from minillm.models import GPT, GPTConfig

__all__ = ["backend", "Tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck", "GPT", "GPTConfig"]
