"""Run fixed computations on the backend MINILLM_BACKEND selects; save host copies.

    MINILLM_BACKEND=cupy python tests/backend_parity_worker.py out.npz

``tests/test_backend_parity.py`` runs this once per backend and compares the
two files: every op's forward value and input gradients (float32, the same
inputs and upstream gradients), a few AdamW steps of a small GPT (its loss
curve), and greedy and seeded-sampled generation (the same tokens).
"""
import sys

import numpy

from minillm import GPT, GPTConfig, Tensor, backend
import minillm.functional as F
from minillm.functional.moe import tokens_per_expert
from minillm.nn import SparseMoE
from minillm.optim import AdamW


def moe_dispatch_combine(x, w):
    """Five tokens routed to two of three experts each (fixed), each "expert" doubling its rows."""
    chosen = backend.asarray(numpy.array([[0, 1], [1, 2], [2, 0], [0, 2], [1, 0]]))
    tokens, slots = zip(*tokens_per_expert(chosen, 3))
    return F.moe_combine(w, [F.dispatch(x, t) * 2.0 for t in tokens], tokens, slots)


def op_cases():
    """(name, function, input shapes): each op at a small, GPT-like shape."""
    ids = numpy.array([[1, 4, 4, 0], [3, 2, 1, 4]])
    targets = numpy.array([[1, -100, 4, 0], [3, 2, 1, 4]])
    return [
        ("add_broadcast", lambda a, b: a + b, [(3, 1, 4), (2, 4)]),
        ("mul_div", lambda a, b: a * b / (b * b + 1.0), [(3, 4), (4,)]),
        ("matmul_batched", lambda a, b: a @ b, [(2, 3, 5), (5, 4)]),
        ("sum_mean_max", lambda x: x.sum(axis=0) + x.mean(axis=0) * x.max(axis=0), [(3, 5)]),
        ("getitem_repeat", lambda x: x[numpy.array([0, 0, 2]), 1:3], [(3, 4)]),
        ("transpose_reshape", lambda x: x.transpose(1, 0, 2).reshape(4, 6), [(2, 4, 3)]),
        ("exp_log_tanh", lambda x: F.tanh(F.exp(x)) + F.log(F.exp(x) + 1.0), [(3, 4)]),
        ("gelu_relu", lambda x: F.gelu(x) + F.relu(x), [(3, 4)]),
        ("softmax", lambda x: F.softmax(x), [(3, 7)]),
        ("log_softmax", lambda x: F.log_softmax(x), [(3, 7)]),
        ("cross_entropy", lambda x: F.cross_entropy(x, targets), [(2, 4, 5)]),
        ("layer_norm", lambda x, w, b: F.layer_norm(x, w, b), [(2, 3, 8), (8,), (8,)]),
        ("linear", lambda x, w, b: F.linear(x, w, b), [(2, 3, 8), (8, 6), (6,)]),
        ("embedding", lambda w: F.embedding(ids, w), [(5, 3)]),
        ("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4)]),
        ("silu_gelu_exact", lambda x: F.silu(x) + F.gelu(x, approximate="none"), [(3, 4)]),
        ("rms_norm", lambda x, w: F.rms_norm(x, w), [(2, 3, 8), (8,)]),
        ("rotary", lambda x: F.apply_rotary(x, *F.rotary_tables(numpy.arange(2, 5), 4)), [(2, 2, 3, 4)]),
        ("attention_gqa_mask_bias", lambda q, k, v, b: F.scaled_dot_product_attention(
            q, k, v, key_mask=numpy.array([[1, 0, 1, 1, 1], [0, 0, 1, 1, 0]]), bias=b, scale=0.5),
         [(2, 4, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4), (4, 3, 5)]),
        ("moe_dispatch_combine", moe_dispatch_combine, [(5, 4), (5, 2)]),
        ("moe_layer", lambda x: SparseMoE(4, 6, 3, 2, rng=0, std=1.0)(x), [(2, 3, 4)]),
        ("concat_split", lambda a, b: F.concat(F.split(F.concat([a, b], axis=1), 2, axis=1)[::-1], axis=0), [(2, 3), (2, 3)]),
    ]


def run_ops(results):
    rng = numpy.random.default_rng(0)
    for name, fn, shapes in op_cases():
        inputs = [Tensor(rng.standard_normal(s).astype("float32"), requires_grad=True) for s in shapes]
        out = fn(*inputs)
        upstream = rng.standard_normal(out.shape).astype("float32")
        out.backward(upstream)
        results[f"op/{name}/out"] = out.numpy()
        for i, t in enumerate(inputs):
            results[f"op/{name}/grad{i}"] = backend.to_numpy(t.grad)


def run_gpt(results):
    config = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    model = GPT(config)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    rng = numpy.random.default_rng(1)
    losses = []
    for _ in range(5):
        idx = rng.integers(0, 11, size=(4, 16))
        logits = model(idx[:, :-1])
        loss = F.cross_entropy(logits, backend.asarray(idx[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    results["gpt/losses"] = numpy.array(losses)
    prompt = numpy.array([[1, 2, 3]])
    results["gpt/greedy"] = backend.to_numpy(model.generate(prompt, 20, temperature=0.0))
    results["gpt/sampled"] = backend.to_numpy(model.generate(prompt, 20, temperature=1.0, top_k=5, seed=7))


if __name__ == "__main__":
    results = {"backend": numpy.array(backend.name)}
    run_ops(results)
    run_gpt(results)
    numpy.savez(sys.argv[1], **results)
    print(f"{backend.name}: saved {len(results)} arrays to {sys.argv[1]}")
