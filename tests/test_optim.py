"""AdamW and SGD against their formulas, state dicts, clipping, the schedule, accumulation."""
import math

import numpy
import pytest

from minillm import backend
from minillm.models import GPT, GPTConfig
from minillm.nn import Parameter
from minillm.optim import (AdamW, SGD, clip_grad_norm, cosine_lr, param_groups_for_weight_decay, set_lr)


def make_params(seed=0, shapes=((3, 4), (4,), (2, 2, 3))):
    rng = numpy.random.default_rng(seed)
    return [Parameter(backend.asarray(rng.standard_normal(s))) for s in shapes]


def fill_grads(params, rng):
    """Random gradients (float64), also returned as host arrays for the reference."""
    grads = [rng.standard_normal(p.shape) for p in params]
    for p, g in zip(params, grads):
        p.grad = backend.asarray(g.copy())             # its own array: optimizers work in place
    return grads


def host(params):
    return [backend.to_numpy(p.data).copy() for p in params]


def adamw_reference(p, g, m, v, t, lr, beta1, beta2, eps, wd):
    """AdamW written from its formulas (Loshchilov & Hutter; PyTorch's AdamW)."""
    p = p - lr * wd * p
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (numpy.sqrt(v_hat) + eps), m, v


# ---------------------------------------------------------------- AdamW

@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_its_formulas(weight_decay):
    params = make_params()
    lr, betas, eps = 3e-2, (0.8, 0.95), 1e-6
    optimizer = AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    ref = host(params)
    m = [numpy.zeros_like(r) for r in ref]
    v = [numpy.zeros_like(r) for r in ref]
    rng = numpy.random.default_rng(1)
    for t in range(1, 6):
        grads = fill_grads(params, rng)
        optimizer.step()
        for i, g in enumerate(grads):
            ref[i], m[i], v[i] = adamw_reference(ref[i], g, m[i], v[i], t, lr, *betas, eps, weight_decay)
        for p, r in zip(params, ref):
            numpy.testing.assert_allclose(backend.to_numpy(p.data), r, rtol=1e-12, atol=1e-14)
    assert optimizer.step_count == 5


def test_adamw_param_groups_use_their_own_options():
    params = make_params()
    optimizer = AdamW([{"params": params[:2], "weight_decay": 0.5},
                       {"params": params[2:], "weight_decay": 0.0, "lr": 1e-3}], lr=1e-2)
    ref = host(params)
    m = [numpy.zeros_like(r) for r in ref]
    v = [numpy.zeros_like(r) for r in ref]
    rng = numpy.random.default_rng(2)
    for t in range(1, 4):
        grads = fill_grads(params, rng)
        optimizer.step()
        for i, g in enumerate(grads):
            lr, wd = (1e-2, 0.5) if i < 2 else (1e-3, 0.0)
            ref[i], m[i], v[i] = adamw_reference(ref[i], g, m[i], v[i], t, lr, 0.9, 0.999, 1e-8, wd)
    for p, r in zip(params, ref):
        numpy.testing.assert_allclose(backend.to_numpy(p.data), r, rtol=1e-12, atol=1e-14)


def test_adamw_default_hyperparameters():
    group = AdamW(make_params()).param_groups[0]
    assert (group["lr"], group["beta1"], group["beta2"], group["eps"], group["weight_decay"]) == \
        (1e-3, 0.9, 0.999, 1e-8, 0.01)


def test_float32_update_stays_float32():
    p = Parameter(backend.asarray(numpy.ones((3, 3), dtype=numpy.float32)))
    p.grad = backend.asarray(numpy.full((3, 3), 0.5, dtype=numpy.float32))
    AdamW([p]).step()
    assert p.dtype == numpy.float32


def test_frozen_and_gradless_parameters_are_skipped_and_hold_no_state():
    params = make_params()
    params[0].requires_grad = False
    rng = numpy.random.default_rng(3)
    fill_grads(params, rng)
    params[1].grad = None
    before = host(params)
    optimizer = AdamW(params, lr=0.1)
    optimizer.step()
    after = host(params)
    assert numpy.array_equal(before[0], after[0]) and numpy.array_equal(before[1], after[1])
    assert not numpy.array_equal(before[2], after[2])
    assert set(optimizer.state) == {"2"}
    sgd = SGD(params, lr=0.1, momentum=0.9)
    sgd.step()
    assert set(sgd.state) == {"2"}


@pytest.mark.parametrize("kwargs, words", [
    (dict(lr=-1.0), "lr must be >= 0"),
    (dict(betas=(1.0, 0.9)), "beta1 must be in [0, 1)"),
    (dict(betas=(0.9, -0.1)), "beta2 must be in [0, 1)"),
    (dict(eps=-1e-8), "eps must be >= 0"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0"),
])
def test_adamw_rejects_bad_hyperparameters(kwargs, words):
    with pytest.raises(ValueError) as info:
        AdamW(make_params(), **kwargs)
    assert words in str(info.value)


def test_bad_parameter_lists():
    params = make_params()
    with pytest.raises(ValueError, match="empty parameter list"):
        AdamW([])
    with pytest.raises(ValueError, match="more than one place"):
        AdamW([{"params": params}, {"params": params[:1]}])
    with pytest.raises(ValueError, match="unknown options"):
        AdamW([{"params": params, "momentum": 0.9}])


# ---------------------------------------------------------------- SGD

@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.01), (0.0, 0.1)])
def test_sgd_matches_its_formulas(momentum, weight_decay):
    params = make_params(4)
    lr = 0.05
    optimizer = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    ref = host(params)
    buffers = [None] * len(ref)
    rng = numpy.random.default_rng(5)
    for _ in range(4):
        grads = fill_grads(params, rng)
        optimizer.step()
        for i, g in enumerate(grads):
            g = g + weight_decay * ref[i]
            if momentum:
                buffers[i] = g if buffers[i] is None else momentum * buffers[i] + g
                g = buffers[i]
            ref[i] = ref[i] - lr * g
    for p, r in zip(params, ref):
        numpy.testing.assert_allclose(backend.to_numpy(p.data), r, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- state dicts

def tiny_model(seed=0):
    return GPT(GPTConfig(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, dtype="float64"), seed=seed)


def train(model, optimizer, steps, rng):
    for _ in range(steps):
        idx = rng.integers(0, 7, size=(2, 6))
        _, loss = model(idx, numpy.roll(idx, -1, axis=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("make", [
    lambda model: AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-2, betas=(0.9, 0.99)),
    lambda model: AdamW(model.parameters(), lr=1e-2),                  # state keyed by position
    lambda model: SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01),
])
def test_state_dict_round_trip_through_npz_resumes_exactly(make, tmp_path):
    straight = tiny_model()
    optimizer = make(straight)
    rng = numpy.random.default_rng(7)
    train(straight, optimizer, 3, rng)
    set_lr(optimizer, 5e-3)
    train(straight, optimizer, 3, rng)

    first = tiny_model()
    optimizer = make(first)
    rng = numpy.random.default_rng(7)
    train(first, optimizer, 3, rng)
    set_lr(optimizer, 5e-3)                                  # options live in the state dict too
    numpy.savez(tmp_path / "ckpt.npz", **{f"model/{k}": v for k, v in first.state_dict().items()},
                **{f"optim/{k}": v for k, v in optimizer.state_dict().items()})

    loaded = numpy.load(tmp_path / "ckpt.npz", allow_pickle=False)
    resumed = tiny_model(seed=99)                            # different initial weights, then overwritten
    resumed.load_state_dict({k[6:]: loaded[k] for k in loaded.files if k.startswith("model/")})
    fresh = make(resumed)
    fresh.load_state_dict({k[6:]: loaded[k] for k in loaded.files if k.startswith("optim/")})
    assert fresh.step_count == 3 and fresh.param_groups[0]["lr"] == 5e-3
    train(resumed, fresh, 3, rng)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if backend.name == "numpy":
            assert numpy.array_equal(a, b), name                  # bit for bit
        else:  # CuPy's embedding gradient adds with atomics, in a varying order
            numpy.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)


def test_state_dict_is_flat_and_keyed_by_name():
    model = tiny_model()
    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1))
    train(model, optimizer, 1, numpy.random.default_rng(0))
    state = optimizer.state_dict()
    assert state["step_count"] == 1
    assert state["groups.0.weight_decay"] == 0.1 and state["groups.1.weight_decay"] == 0.0
    assert state["state.h.0.attn.c_attn.weight.exp_avg"].shape == (8, 24)
    assert state["state.wte.weight.step"] == 1
    assert all(isinstance(v, (int, float, numpy.ndarray)) for v in state.values())


def test_load_state_dict_errors():
    model = tiny_model()
    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1))
    train(model, optimizer, 1, numpy.random.default_rng(0))
    state = optimizer.state_dict()
    fresh = AdamW(param_groups_for_weight_decay(tiny_model(), 0.1))
    with pytest.raises(ValueError, match=r"'state.wpe.weight.exp_avg': expected shape \(6, 8\), given \(5, 8\)"):
        fresh.load_state_dict({**state, "state.wpe.weight.exp_avg": numpy.zeros((5, 8))})
    with pytest.raises(KeyError, match="names no parameter"):
        fresh.load_state_dict({**state, "state.lm_head.weight.exp_avg": numpy.zeros((7, 8))})
    with pytest.raises(KeyError, match="step_count"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "step_count"})
    assert fresh.state == {} and fresh.step_count == 0      # nothing changed by a failed load


# ---------------------------------------------------------------- clipping, schedule, groups

def test_clip_grad_norm_scales_to_max_norm_and_returns_the_norm_before():
    params = make_params(8)
    grads = fill_grads(params, numpy.random.default_rng(9))
    norm = math.sqrt(sum((g * g).sum() for g in grads))
    assert clip_grad_norm(params, 1.0) == pytest.approx(norm, rel=1e-12)
    clipped = [backend.to_numpy(p.grad) for p in params]
    assert math.sqrt(sum((g * g).sum() for g in clipped)) == pytest.approx(1.0, rel=1e-5)
    for g, c in zip(grads, clipped):                              # the direction is kept
        numpy.testing.assert_allclose(c, g / (norm + 1e-6), rtol=1e-12)
    assert clip_grad_norm(params, 10.0) == pytest.approx(1.0, rel=1e-5)   # below max: unchanged
    numpy.testing.assert_array_equal(backend.to_numpy(params[0].grad), clipped[0])


def test_clip_grad_norm_ignores_missing_gradients():
    params = make_params()
    assert clip_grad_norm(params, 1.0) == 0.0
    params[0].grad = backend.asarray(numpy.full((3, 4), 2.0))
    assert clip_grad_norm(params, 100.0) == pytest.approx(math.sqrt(12 * 4.0))


def test_cosine_schedule_hits_its_endpoints():
    max_lr, min_lr, warmup, decay = 1e-3, 1e-4, 100, 2000
    lr = [cosine_lr(s, max_lr, min_lr, warmup, decay) for s in range(2101)]
    assert lr[0] == pytest.approx(max_lr / 101)
    assert lr[99] == pytest.approx(max_lr * 100 / 101)
    assert lr[100] == max_lr
    assert lr[1050] == pytest.approx((max_lr + min_lr) / 2)     # half way through the cosine
    assert lr[2000] == pytest.approx(min_lr) and lr[2100] == min_lr
    assert all(a < b for a, b in zip(lr[:100], lr[1:101]))      # rises during warmup
    assert all(a >= b for a, b in zip(lr[100:2000], lr[101:2001]))  # then falls
    assert cosine_lr(5, 1.0, 0.0, 0, 10) == pytest.approx(0.5)   # no warmup
    with pytest.raises(ValueError, match="warmup_iters <= decay_iters"):
        cosine_lr(0, 1.0, 0.1, 20, 10)


def test_set_lr_changes_every_group():
    model = tiny_model()
    optimizer = AdamW(param_groups_for_weight_decay(model, 0.1))
    set_lr(optimizer, 0.25)
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]


def test_weight_decay_groups_split_by_dimension():
    model = tiny_model()
    model.h[0].ln_1.weight.requires_grad = False
    decay, no_decay = param_groups_for_weight_decay(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decay_names = [n for n, _ in decay["params"]]
    no_decay_names = [n for n, _ in no_decay["params"]]
    assert decay_names[:3] == ["wte.weight", "wpe.weight", "h.0.attn.c_attn.weight"]
    assert all(n.endswith("bias") or ".ln_" in n or n.startswith("ln_f") for n in no_decay_names)
    assert "h.0.ln_1.weight" not in no_decay_names               # frozen: left out
    assert len(decay_names) + len(no_decay_names) == len(model.parameters()) - 1


# ---------------------------------------------------------------- gradient accumulation

def test_accumulating_scaled_micro_batches_equals_one_large_batch():
    rng = numpy.random.default_rng(11)
    idx = rng.integers(0, 7, size=(6, 6))
    targets = rng.integers(0, 7, size=(6, 6))
    big, small = tiny_model(), tiny_model()
    big_opt, small_opt = AdamW(big.parameters(), lr=1e-2), AdamW(small.parameters(), lr=1e-2)

    _, loss = big(idx, targets)
    loss.backward()
    k = 3
    for micro in range(k):                                      # 3 micro-batches of 2 rows
        rows = slice(2 * micro, 2 * micro + 2)
        _, loss = small(idx[rows], targets[rows])
        (loss * (1.0 / k)).backward()                           # each scaled by 1/k; .grad adds them up
    for (name, a), b in zip(big.named_parameters(), small.parameters()):
        numpy.testing.assert_allclose(backend.to_numpy(b.grad), backend.to_numpy(a.grad),
                                      rtol=1e-10, atol=1e-14, err_msg=name)
    big_opt.step()
    small_opt.step()
    for (name, a), b in zip(big.state_dict().items(), small.state_dict().values()):
        numpy.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("make", [lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1),
                                  lambda ps: SGD(ps, lr=1e-2, momentum=0.9, weight_decay=0.1)],
                         ids=["AdamW", "SGD"])
def test_a_step_shared_out_over_threads_updates_every_parameter_as_one_thread_does(monkeypatch, make):
    np = numpy
    """Parameters of unequal sizes cut into per-thread runs: every one updated, number for number."""
    from minillm.functional import parallel
    shapes = [(7, 5), (3,), (40, 2), (1,), (6, 6, 2), (9,)]
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(parallel, "THREADS", threads)
        monkeypatch.setattr(parallel, "MIN_THREADED", 0)
        rng = np.random.default_rng(0)
        params = [Parameter(rng.standard_normal(shape)) for shape in shapes]
        opt = make(params)
        if threads > 1:
            runs = opt._runs([(str(i), None, p) for i, p in enumerate(params)])
            assert len(runs) == threads and [p for run in runs for _, _, p in run] == params
        for _ in range(3):
            for p in params:
                p.grad = rng.standard_normal(p.shape)
            opt.step()
        results.append([backend.to_numpy(p.data) for p in params])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
