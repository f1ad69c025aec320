"""The position-wise MLP of a transformer block: widen, activate, project back.

    mlp(x) = c_proj(act(c_fc(x)))        C -> hidden -> C, applied to every position alone

GPT-2 uses the tanh GELU and hidden = 4C, with GPT-2's parameter names
``c_fc`` and ``c_proj``. A family whose MLP has other names or a gate (Llama's
``down_proj(silu(gate_proj(x)) * up_proj(x))``) writes its own few lines next to
its model; the activation here is an option (``activation=F.relu``, ...).
"""
from minillm import functional as F
from minillm.nn.layers import Dropout, Linear
from minillm.nn.module import Module


class MLP(Module):
    """c_proj(act(c_fc(x))), then dropout.

    ``std`` is the init scale of c_fc, ``proj_std`` of c_proj (GPT-2 scales the
    residual projection down by 1/sqrt(2 n_layer)); ``rng`` draws both, c_fc first.
    """

    def __init__(self, n_embd, n_hidden, bias=True, rng=None, std=0.02, proj_std=0.02,
                 dropout=0.0, dropout_rng=None, activation=F.gelu, dtype="float32"):
        super().__init__()
        self.activation = activation
        self.c_fc = Linear(n_embd, n_hidden, bias, rng, std, dtype)
        self.c_proj = Linear(n_hidden, n_embd, bias, rng, proj_std, dtype)
        self.dropout = Dropout(dropout, dropout_rng)

    def forward(self, x):
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))))   # (B, T, C)
