"""The sparse mixture-of-experts feed-forward (minillm/nn/moe.py, minillm/functional/moe.py).

What is proved here:
- top-k routing picks the k largest logits, ties to the lower expert id (against a stable sort);
- the sparse layer equals the dense reference (every expert on every token, masked), values and
  every gradient, in float64 to 1e-10;
- each expert computes exactly the tokens routed to it, nothing else, and idle experts not at all;
- dispatch, combine and the whole layer pass float64 gradient checks (random upstream gradient),
  so the router learns through the gate weights;
- the load-balancing loss equals transformers' ``load_balancing_loss_func`` and passes a gradient check.
"""
import numpy
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minillm.functional as F
from minillm import Tensor, backend
from minillm.functional.moe import tokens_per_expert, top_k_experts
from minillm.gradcheck import gradcheck
from minillm.nn import SparseMoE, load_balancing_loss
from tests.strategies import seeds
from tests.test_functional import check_gradients, host, normal

FEW = 10


def moe_layer(C, H, E, k, seed, std=0.7):
    """A float64 layer whose router logits are spread out (std), so that routing is clear-cut."""
    return SparseMoE(C, H, E, k, rng=seed, std=std, proj_std=std, dtype="float64")


def margin(logits, k):
    """The smallest gap between a token's k-th and (k+1)-th largest logit (inf when k = E)."""
    s = numpy.sort(host(logits), axis=-1)[:, ::-1]
    return numpy.inf if k == s.shape[1] else float((s[:, k - 1] - s[:, k]).min())


layer_shapes = dict(B=st.integers(1, 2), T=st.integers(1, 4), C=st.integers(1, 4), H=st.integers(1, 4),
                    E=st.integers(1, 5), k=st.integers(1, 3), seed=seeds())


# ---------------------------------------------------------------- routing

@settings(max_examples=40)
@given(logits=st.lists(st.lists(st.integers(-2, 2), min_size=5, max_size=5), min_size=1, max_size=6),
       k=st.integers(1, 5))
def test_top_k_is_a_stable_sort_ties_to_the_lower_expert_id(logits, k):
    logits = numpy.array(logits, dtype=numpy.float64)   # small integers: many ties
    expected = numpy.argsort(-logits, axis=-1, kind="stable")[:, :k]
    numpy.testing.assert_array_equal(host(top_k_experts(backend.asarray(logits), k)), expected)


def test_top_k_ties_examples():
    logits = backend.asarray(numpy.array([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 1.0, 1.0, 5.0]]))
    numpy.testing.assert_array_equal(host(top_k_experts(logits, 2)), [[1, 2], [0, 1], [0, 3]])


def test_equal_logits_route_to_the_first_experts_with_equal_weights():
    moe = moe_layer(3, 4, 4, 2, seed=0)
    moe.gate.weight.data[...] = 0.0                      # every logit 0: a four-way tie everywhere
    moe(Tensor(normal(1, (2, 3, 3))))
    numpy.testing.assert_array_equal(host(moe.chosen), numpy.tile([0, 1], (6, 1)))
    numpy.testing.assert_array_equal(host(moe.expert_load()), [1.0, 1.0, 0.0, 0.0])


# ---------------------------------------------------------------- sparse = dense reference

@settings(max_examples=FEW)
@given(**layer_shapes)
def test_sparse_layer_equals_the_dense_reference_values_and_gradients(B, T, C, H, E, k, seed):
    assume(k <= E)
    moe = moe_layer(C, H, E, k, seed)
    x = normal(seed, (B, T, C))
    G = normal(seed + 1, (B, T, C))
    results = []
    for forward in (moe.forward, moe.dense_forward):
        moe.zero_grad()
        xt = Tensor(x.copy(), requires_grad=True)
        y = forward(xt)
        y.backward(backend.asarray(G))
        results.append([host(y), host(xt.grad)] + [host(p.grad) if p.grad is not None else 0 * host(p)
                                                    for p in moe.parameters()])
    for sparse, dense in zip(*results):
        numpy.testing.assert_allclose(sparse, dense, rtol=0, atol=1e-10)
    if k >= 2:   # with k = 1 the one gate weight is softmax of one logit = 1: no gradient (Mixtral's order)
        assert numpy.abs(results[0][2]).max() > 0, "no gradient reached the router"


def test_each_expert_computes_exactly_its_routed_tokens():
    E, k = 6, 2
    moe = moe_layer(5, 7, E, k, seed=3)
    x = normal(4, (3, 8, 5))                             # N = 24 tokens
    seen = {}
    for e, expert in enumerate(moe.experts):
        def record(inputs, e=e, inner=expert.forward):
            seen.setdefault(e, []).append(host(inputs))
            return inner(inputs)
        object.__setattr__(expert, "forward", record)
    moe(Tensor(x))
    chosen = host(moe.chosen)                            # (24, 2)
    flat = x.reshape(-1, 5)
    for e in range(E):
        routed = numpy.flatnonzero((chosen == e).any(axis=1))
        if len(routed) == 0:
            assert e not in seen, f"idle expert {e} was called"
            continue
        assert len(seen[e]) == 1, f"expert {e} ran {len(seen[e])} times"
        numpy.testing.assert_array_equal(seen[e][0], flat[routed])   # exactly its tokens, in order
    assert sum(len(rows[0]) for rows in seen.values()) == 24 * k      # N k rows in all, never N E
    numpy.testing.assert_allclose(host(moe.expert_load()).sum(), k)


# ---------------------------------------------------------------- gradient checks

@settings(max_examples=FEW)
@given(**layer_shapes)
def test_moe_layer_gradients(B, T, C, H, E, k, seed):
    assume(k <= E)
    moe = moe_layer(C, H, E, k, seed)
    x = Tensor(normal(seed, (B, T, C)), requires_grad=True)
    moe(x)
    assume(margin(moe.router_logits, k) > 1e-3)          # a nudge of 1e-6 must not change the routing
    assert gradcheck(lambda x, *params: moe(x), x, *moe.parameters(), seed=seed, rtol=1e-5)


@settings(max_examples=FEW)
@given(N=st.integers(1, 6), C=st.integers(1, 4), E=st.integers(1, 4), k=st.integers(1, 3), seed=seeds())
def test_dispatch_and_combine_gradients(N, C, E, k, seed):
    assume(k <= E)
    rng = numpy.random.default_rng(seed)
    chosen = numpy.argsort(rng.random((N, E)), axis=-1)[:, :k]          # k distinct experts per token
    routes = [(t, s) for t, s in tokens_per_expert(backend.asarray(chosen), E) if len(t)]
    tokens, slots = [t for t, _ in routes], [s for _, s in routes]
    for t in tokens:
        check_gradients(lambda x, t=t: F.dispatch(x, t), normal(seed, (N, C)), seed=seed)
    outputs = [normal(seed + 1 + e, (len(t), C)) for e, t in enumerate(tokens)]
    check_gradients(lambda w, *hs: F.moe_combine(w, hs, tokens, slots), normal(seed, (N, k)), *outputs,
                    seed=seed)
    # the fused combine against its plain formula: y[t] = sum_s w[t, s] h_{chosen[t, s]}[row of t]
    w = normal(seed, (N, k))
    expected = numpy.zeros((N, C))
    for (t, s), h in zip(routes, outputs):
        for i, (token, slot) in enumerate(zip(host(t), host(s))):
            expected[token] += w[token, slot] * h[i]
    got = F.moe_combine(Tensor(w), [Tensor(h) for h in outputs], tokens, slots)
    numpy.testing.assert_allclose(host(got), expected, rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------- load-balancing loss

def test_load_balancing_loss_is_k_when_balanced_and_grows_with_collapse():
    E, k = 4, 2
    chosen = backend.asarray(numpy.array([[0, 1], [2, 3]]))
    balanced = Tensor(numpy.zeros((2, E)))             # uniform probabilities, every expert used once
    assert float(load_balancing_loss([balanced], [chosen], E).data) == pytest.approx(k)
    collapsed = Tensor(numpy.array([[9.0, 9.0, -9, -9], [9.0, 9.0, -9, -9]]))
    same = backend.asarray(numpy.array([[0, 1], [0, 1]]))
    assert float(load_balancing_loss([collapsed], [same], E).data) == pytest.approx(E, rel=1e-6)


@settings(max_examples=FEW)
@given(L=st.integers(1, 3), N=st.integers(1, 5), E=st.integers(2, 5), k=st.integers(1, 2), seed=seeds())
def test_load_balancing_loss_gradients(L, N, E, k, seed):
    assume(k <= E)
    logits = [normal(seed + i, (N, E)) for i in range(L)]
    chosen = [top_k_experts(backend.asarray(x), k) for x in logits]    # fixed: the count has no gradient
    check_gradients(lambda *xs: load_balancing_loss(list(xs), chosen, E), *logits, seed=seed)


def test_load_balancing_loss_equals_transformers():
    torch = pytest.importorskip("torch", reason="the reference loss is transformers' (needs torch)")
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral",
                                  reason="transformers is needed for its load_balancing_loss_func")
    L, N, E, k = 3, 10, 6, 2
    logits = [normal(i, (N, E), 2.0) for i in range(L)]
    ours = load_balancing_loss([Tensor(x) for x in logits],
                               [top_k_experts(backend.asarray(x), k) for x in logits], E)
    theirs = mixtral.load_balancing_loss_func(tuple(torch.tensor(x) for x in logits), E, k)
    assert float(ours.data) == pytest.approx(float(theirs), rel=1e-6)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match=r"top_k \(3\) must be between 1 and n_experts \(2\)"):
        SparseMoE(4, 4, 2, 3)
    with pytest.raises(ValueError, match="one \\(tokens, slots\\) pair per expert output"):
        F.moe_combine(Tensor(numpy.ones((2, 1))), [Tensor(numpy.ones((2, 3)))], [], [])
    with pytest.raises(ValueError, match="expected \\(1, C\\)"):
        F.moe_combine(Tensor(numpy.ones((2, 1))), [Tensor(numpy.ones((2, 3)))],
                      [backend.asarray([0])], [backend.asarray([0])])
    with pytest.raises(ValueError, match="one chosen-experts array per router-logits tensor"):
        load_balancing_loss([Tensor(numpy.zeros((2, 2)))], [], 2)
