"""generate(): shapes, seeds, greedy against a textbook loop, stop ids, modes, errors."""
import pathlib

import numpy as np
import pytest

from minillm import backend, generation, no_grad, sampling
from minillm.backend import xp
from minillm.models import GPT, GPTConfig


def host(a):
    return backend.to_numpy(a)


def random_model(seed=0, dtype="float64", dropout=0.0, block_size=8):
    config = GPTConfig(vocab_size=19, block_size=block_size, n_layer=2, n_head=2, n_embd=8,
                       dropout=dropout, dtype=dtype)
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in model.parameters():
        p.data[...] = xp.asarray(rng.normal(0.0, 0.5, p.data.shape).astype(p.data.dtype))
    return model


MODEL = random_model()


def test_shapes_rank_and_prompt_kept():
    one = generation.generate(MODEL, np.array([1, 2, 3]), 5, seed=0)
    assert one.shape == (8,) and backend.is_integer(one)
    np.testing.assert_array_equal(host(one)[:3], [1, 2, 3])
    two = generation.generate(MODEL, np.array([[1, 2, 3], [4, 5, 6]]), 5, seed=0)
    assert two.shape == (2, 8)
    assert ((host(two) >= 0) & (host(two) < 19)).all()
    zero = generation.generate(MODEL, [[4, 5]], 0)
    np.testing.assert_array_equal(host(zero), [[4, 5]])


def test_same_seed_same_tokens_with_and_without_cache():
    prompt = np.array([[1, 2, 3], [7, 7, 7]])
    settings = [dict(temperature=1.0), dict(temperature=0.7, top_k=5), dict(temperature=1.3, top_p=0.8)]
    for kwargs in settings:
        a = host(generation.generate(MODEL, prompt, 20, seed=5, **kwargs))
        b = host(generation.generate(MODEL, prompt, 20, seed=5, **kwargs))
        c = host(generation.generate(MODEL, prompt, 20, seed=5, use_cache=False, **kwargs))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    d = host(generation.generate(MODEL, prompt, 20, seed=6))
    assert (d != host(generation.generate(MODEL, prompt, 20, seed=5))).any()


def test_greedy_equals_a_textbook_loop():
    """temperature 0, no slide: argmax of a full forward at every step."""
    ids = np.array([[3, 1, 4]])
    with no_grad():
        for _ in range(5):                                   # 3 + 5 = 8 = block_size: no slide
            logits = host(MODEL(xp.asarray(ids)).data)[:, -1]
            ids = np.concatenate([ids, logits.argmax(-1)[:, None]], axis=1)
    for use_cache in (True, False):
        np.testing.assert_array_equal(host(generation.generate(MODEL, [[3, 1, 4]], 5, temperature=0,
                                                               use_cache=use_cache)), ids)


def test_sampling_equals_a_textbook_loop():
    """Each step draws sampling.sample(last logits) from one Generator: same tokens."""
    ids = np.array([[3, 1, 4], [0, 0, 1]])
    rng = np.random.default_rng(42)
    with no_grad():
        for _ in range(5):
            logits = MODEL(xp.asarray(ids)).data[:, -1]
            ids = np.concatenate([ids, host(sampling.sample(logits, rng, 0.9, 7, 0.95))[:, None]], axis=1)
    out = generation.generate(MODEL, [[3, 1, 4], [0, 0, 1]], 5, 0.9, 7, 0.95, seed=42)
    np.testing.assert_array_equal(host(out), ids)


def test_long_generation_and_long_prompt_slide_the_window():
    long_prompt = np.arange(12) % 19                         # longer than block_size 8
    a = generation.generate(MODEL, long_prompt, 30, seed=1)
    b = generation.generate(MODEL, long_prompt, 30, seed=1, use_cache=False)
    assert a.shape == (42,)
    np.testing.assert_array_equal(host(a), host(b))
    for keep in (1, 3, 8):
        a = generation.generate(MODEL, [[5]], 25, seed=2, slide_keep=keep)
        b = generation.generate(MODEL, [[5]], 25, seed=2, slide_keep=keep, use_cache=False)
        np.testing.assert_array_equal(host(a), host(b))




def test_stop_ends_a_single_row_at_the_stop_token():
    free = host(generation.generate(MODEL, [[1, 2]], 30, seed=3))
    stop = int(free[0, 6])                                   # the token produced at step 4
    first = 2 + list(free[0, 2:]).index(stop)                # its first appearance
    out = host(generation.generate(MODEL, [[1, 2]], 30, seed=3, stop=stop))
    np.testing.assert_array_equal(out, free[:, :first + 1])  # same tokens, ends with the stop token
    out_list = host(generation.generate(MODEL, [[1, 2]], 30, seed=3, stop=[18, stop], use_cache=False))
    assert out_list.shape[1] <= first + 1 and out_list[0, -1] in (18, stop)


def test_stop_in_a_batch_pads_finished_rows_with_their_stop_token():
    prompt = [[1, 2], [3, 4], [5, 6]]
    free = host(generation.generate(MODEL, prompt, 40, seed=4))
    stop = int(free[0, 3])
    out = host(generation.generate(MODEL, prompt, 40, seed=4, stop=stop))
    for row in range(3):
        produced = list(free[row, 2:])
        if stop in produced:
            at = 2 + produced.index(stop)
            np.testing.assert_array_equal(out[row, :at + 1], free[row, :at + 1])
            assert (out[row, at:] == stop).all()
        else:
            np.testing.assert_array_equal(out[row], free[row, :out.shape[1]])
    if all(stop in list(free[r, 2:]) for r in range(3)):
        assert out.shape[1] < free.shape[1]


def test_runs_in_eval_mode_and_restores_the_mode():
    model = random_model(dropout=0.5)
    model.train()
    a = generation.generate(model, [[1, 2, 3]], 10, seed=0)
    assert model.training
    b = generation.generate(model, [[1, 2, 3]], 10, seed=0, use_cache=False)
    np.testing.assert_array_equal(host(a), host(b))           # dropout off: both paths agree
    model.eval()
    generation.generate(model, [[1, 2, 3]], 3, seed=0)
    assert not model.training


def test_sampler_settings_are_checked_once_per_call_not_per_token(monkeypatch):
    calls = []
    original = sampling.check_top_p
    monkeypatch.setattr(sampling, "check_top_p", lambda p: calls.append(p) or original(p))
    out = generation.generate(MODEL, np.array([[1, 2]]), 12, top_k=5, top_p=0.9, seed=0)
    assert out.shape == (1, 14)
    assert 1 <= len(calls) <= 2, f"top_p was checked {len(calls)} times for 12 tokens"


def test_gpt_generate_delegates_here():
    a = MODEL.generate(xp.asarray(np.array([[1, 2, 3]])), 6, temperature=0.8, top_k=4, seed=9)
    b = generation.generate(MODEL, [[1, 2, 3]], 6, temperature=0.8, top_k=4, seed=9)
    np.testing.assert_array_equal(host(a), host(b))


@pytest.mark.parametrize("idx, kwargs, error, message", [
    (np.array([[1.0, 2.0]]), {}, TypeError, "token ids must be integers, got float64"),
    (np.zeros((1, 1, 2), dtype=int), {}, ValueError, "idx must be 1-D"),
    (np.zeros((1, 0), dtype=int), {}, ValueError, "at least one token"),
    (np.array([[1, 19]]), {}, ValueError, r"token id 19 is outside the vocabulary \[0, 19\)"),
    (np.array([[-1, 2]]), {}, ValueError, r"token id -1 is outside the vocabulary"),
    (np.array([[1]]), dict(max_new_tokens=-1), ValueError, "max_new_tokens must be an integer >= 0"),
    (np.array([[1]]), dict(max_new_tokens=2.0), ValueError, "max_new_tokens"),
    (np.array([[1]]), dict(temperature=-1), ValueError, "temperature"),
    (np.array([[1]]), dict(top_k=0), ValueError, "top_k"),
    (np.array([[1]]), dict(top_p=2), ValueError, "top_p"),
    (np.array([[1]]), dict(slide_keep=9), ValueError, r"slide_keep must be an integer in \[1, block_size=8\]"),
    (np.array([[1]]), dict(stop=19), ValueError, "stop token id 19 is outside"),
    (np.array([[1]]), dict(stop=["a"]), TypeError, "stop must be a token id"),
])
def test_errors(idx, kwargs, error, message):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=message):
        generation.generate(MODEL, idx, **kwargs)


def test_array_modules_do_not_import_numpy():
    root = pathlib.Path(generation.__file__).parent
    for name in ("sampling.py", "generation.py", "kvcache.py"):
        text = (root / name).read_text()
        assert "import numpy" not in text and "from numpy" not in text, name
