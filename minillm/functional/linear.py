"""The affine map of a linear layer, fused: y = x W + b.

Weights are (in_features, out_features), as in GPT-2's checkpoints and the
course's LoRA slide. The leading axes of x are flattened so that each of the
three products is one large matrix multiplication:

    dL/dx = dL/dy W^T      dL/dW = x^T dL/dy      dL/db = sum over rows of dL/dy

A gradient no input needs (a frozen weight, as in LoRA) is not computed.
Each product is shared out over the CPU threads (``parallel.matmul``).
"""
from minillm.autograd import Function
from minillm.functional import parallel
from minillm.shapes import check_matmul_shapes, shape_text


class Linear(Function):

    def forward(self, x, weight, bias=None):
        check_matmul_shapes(x, weight)
        self.x, self.weight = x, weight  # x for dL/dW, W for dL/dx
        self.has_bias = bias is not None
        y = parallel.matmul(x.reshape(-1, x.shape[-1]), weight)                       # (N, out)
        if bias is not None:
            y += bias
        return y.reshape(x.shape[:-1] + (weight.shape[1],))           # (..., out)

    def backward(self, grad):
        needs = self.needs_input_grad or (True, True, True)           # x, W[, b]; a frozen W: no dL/dW
        g2 = grad.reshape(-1, grad.shape[-1])                          # (N, out)
        grad_x = parallel.matmul(g2, self.weight.T).reshape(self.x.shape) if needs[0] else None          # (..., in)
        grad_w = parallel.matmul(self.x.reshape(-1, self.x.shape[-1]).T, g2) if needs[1] else None        # (in, out)
        grad_b = g2.sum(axis=0) if self.has_bias and needs[2] else None                   # (out,)
        return grad_x, grad_w, grad_b


def linear(x, weight, bias=None):
    """y = x @ weight + bias, with weight of shape (in_features, out_features)."""
    if weight.ndim != 2:
        raise ValueError("linear weight must be 2-D (in_features, out_features), "
                         f"got shape {shape_text(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1],):
        raise ValueError(f"linear bias has shape {shape_text(bias.shape)}, expected "
                         f"{shape_text((weight.shape[1],))} (out_features)")
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
