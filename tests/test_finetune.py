"""Finetuning (minillm/finetune.py): SFT masking and accumulation, the classifier head, continued pretraining.

What is proved here:
* SFT templates mask exactly the prompt targets; masked targets contribute zero loss and
  zero gradient (changing them changes nothing; counting them does change the loss);
* right padding never changes a row's loss (causality);
* an all-masked batch: finite loss 0, zero gradient, and sft_step makes no update;
* accumulation over micro-batches normalised by the total counted tokens equals one big
  batch (and the naive mean of micro-batch means does not);
* hidden_states reproduces GPT's logits; the classifier head reads the last real token,
  trains, and a frozen body stays bit-identical (an unfrozen one moves);
* continued pretraining (with LoRA) moves only the adapter and lowers the loss;
* the three demos run end to end with tiny settings and write their PNGs.
"""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import GPT, GPTConfig, backend
from minillm import functional as F
from minillm.autograd import Tensor
from minillm.finetune import (IGNORE_INDEX, GPTClassifier, SFTDataset, classifier_step, collate,
                              continued_pretraining, counted_tokens, hidden_states, masked_loss, pad_batch,
                              predict_classes, sft_step)
from minillm.lora import apply_lora
from minillm.optim import SGD, AdamW
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789QA:' \n+="
TOK = CharTokenizer.from_text(ALPHABET)


def config(dtype="float64"):
    return GPTConfig(vocab_size=TOK.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=8, dtype=dtype)


def host(x):
    return backend.to_numpy(x.data if isinstance(x, Tensor) else x)


def grads(model):
    return {n: host(p.grad).copy() for n, p in model.named_parameters() if p.grad is not None}


PAIRS = [("reverse 'abc'", "cba"), ("1+2", "3"), ("reverse 'ja'", "aj"), ("12+30", "42")]


def test_template_masks_exactly_the_prompt_targets():
    data = SFTDataset(PAIRS, TOK, template="Q: {prompt}\nA: ", end="\n")
    for (prompt, response), (x, y) in zip(PAIRS, data.examples):
        full = TOK.encode(f"Q: {prompt}\nA: {response}\n")
        P = len(TOK.encode(f"Q: {prompt}\nA: "))
        assert list(x) == full[:-1]
        assert list(y[:P - 1]) == [IGNORE_INDEX] * (P - 1)                # prompt tokens: not counted
        assert list(y[P - 1:]) == full[P:]                                  # the response and its end
        assert counted_tokens(y) == len(response) + 1
    everything = SFTDataset(PAIRS, TOK, train_on_prompt=True)
    assert all((y != IGNORE_INDEX).all() for _, y in everything.examples)


def test_masked_prompt_targets_contribute_zero_loss_and_zero_gradient():
    model = GPT(config(), seed=1)
    data = SFTDataset(PAIRS, TOK)
    x, y = data.batch(range(len(PAIRS)))
    loss = masked_loss(model, x, y)
    loss.backward()
    g, value = grads(model), float(loss.data)
    model.zero_grad()
    # perturb every prompt target: with the mask they still count for nothing
    rng = numpy.random.default_rng(0)
    everything = SFTDataset(PAIRS, TOK, train_on_prompt=True)
    _, y_all = everything.batch(range(len(PAIRS)))
    prompt = (y == IGNORE_INDEX) & (y_all != IGNORE_INDEX)
    perturbed = y_all.copy()
    perturbed[prompt] = rng.integers(0, TOK.vocab_size, size=int(prompt.sum()))
    remasked = numpy.where(prompt, IGNORE_INDEX, perturbed)
    loss2 = masked_loss(model, x, remasked)
    loss2.backward()
    # equal up to summation order (CuPy's scatter-add for the embedding gradient has no fixed
    # order); a masked target that counted would move them by ~1e-2, not 1e-10
    assert float(loss2.data) == pytest.approx(value, rel=1e-12)
    for n, v in grads(model).items():
        numpy.testing.assert_allclose(v, g[n], rtol=1e-10, atol=1e-13, err_msg=n)
    # counting them (train_on_prompt) does change the loss: the test can fail
    model.zero_grad()
    assert float(masked_loss(model, x, perturbed).data) != value
    # and at the logits: the gradient rows of masked positions are exactly zero
    logits = Tensor(host(model(x)).copy(), requires_grad=True)
    F.cross_entropy(logits, y).backward()
    assert numpy.all(host(logits.grad)[y == IGNORE_INDEX] == 0)
    assert numpy.all(numpy.abs(host(logits.grad)[y != IGNORE_INDEX]).sum(axis=-1) > 0)


def test_right_padding_does_not_change_a_rows_loss():
    model = GPT(config(), seed=2)
    data = SFTDataset(PAIRS, TOK)
    alone = [float(masked_loss(model, x[None], y[None]).data) for x, y in data.examples]
    x, y = data.batch(range(len(PAIRS)))                                   # padded to the longest
    assert x.shape[1] == max(len(e[0]) for e in data.examples)
    for row, (ex_x, ex_y) in enumerate(data.examples):
        padded = float(masked_loss(model, x[row:row + 1], y[row:row + 1]).data)
        assert padded == pytest.approx(alone[row], rel=1e-12)


def test_all_masked_batch_gives_finite_zero_loss_zero_gradient_and_no_update():
    model = GPT(config(), seed=3)
    x = numpy.zeros((2, 5), dtype=numpy.int64)
    y = numpy.full((2, 5), IGNORE_INDEX, dtype=numpy.int64)
    loss = masked_loss(model, x, y)
    assert numpy.isfinite(float(loss.data)) and float(loss.data) == 0.0
    loss.backward()
    assert all(numpy.all(g == 0) for g in grads(model).values())
    before = model.state_dict()
    opt = AdamW(model.parameters(), lr=0.1, weight_decay=0.1)            # decay would move weights if stepped
    assert sft_step(model, opt, [(x, y), (x, y)]) == (0.0, 0)
    assert opt.state == {} and opt.step_count == 0
    assert all(numpy.array_equal(v, before[n]) for n, v in model.state_dict().items())


@settings(max_examples=6)
@given(split=st.integers(1, 3), seed=st.integers(0, 5))
def test_accumulation_normalised_by_total_counted_tokens_equals_one_big_batch(split, seed):
    pairs = [("reverse 'abcdefgh'", "hgfedcba"), ("1+1", "2"), ("reverse 'ab'", "ba"), ("20+3", "23")]
    data = SFTDataset(pairs, TOK)
    order = list(numpy.random.default_rng(seed).permutation(len(pairs)))
    micro = [data.batch(order[:split]), data.batch(order[split:])]
    whole = data.batch(order)

    def step(batches):
        model = GPT(config(), seed=4)
        opt = SGD(model.parameters(), lr=0.5)
        loss, n = sft_step(model, opt, batches, grad_clip=0)
        return model.state_dict(), loss, n

    big, big_loss, big_n = step([whole])
    acc, acc_loss, acc_n = step(micro)
    assert acc_n == big_n == counted_tokens(whole[1])
    assert acc_loss == pytest.approx(big_loss, rel=1e-12)
    for name in big:
        numpy.testing.assert_allclose(acc[name], big[name], rtol=0, atol=1e-12)
    # the naive mean of the micro-batch means is a different (wrong) number
    model = GPT(config(), seed=4)
    naive = numpy.mean([float(masked_loss(model, x, y).data) for x, y in micro])
    assert abs(naive - big_loss) > 1e-6


def test_collate_pads_inputs_with_pad_id_and_targets_with_ignore_index():
    x, y = collate([(numpy.array([1, 2, 3]), numpy.array([2, 3, 4])), (numpy.array([5]), numpy.array([6]))],
                   pad_id=9)
    assert x.tolist() == [[1, 2, 3], [5, 9, 9]]
    assert y.tolist() == [[2, 3, 4], [6, IGNORE_INDEX, IGNORE_INDEX]]
    with pytest.raises(ValueError, match="more than block_size 4"):
        SFTDataset(PAIRS, TOK, block_size=4)


def test_hidden_states_reproduce_the_gpt_logits():
    model = GPT(config(), seed=5)
    x = numpy.random.default_rng(1).integers(0, TOK.vocab_size, size=(3, 7))
    h = hidden_states(model, x)
    assert h.shape == (3, 7, 8)
    numpy.testing.assert_allclose(host(h) @ host(model.wte.weight).T, host(model(x)), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="sequence length 49 exceeds block_size 48"):
        hidden_states(model, numpy.zeros((1, 49), dtype=numpy.int64))


def toy_classification(n=24, seed=0):
    """Strings of 'a'/'b' of various lengths: class 1 when 'b' is the majority."""
    rng = numpy.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(n):
        s = "".join(rng.choice(list("ab"), size=int(rng.integers(3, 9))))
        seqs.append(TOK.encode(s))
        labels.append(int(s.count("b") > s.count("a")))
    ids, lengths = pad_batch(seqs)
    return ids, lengths, numpy.array(labels)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classifier_reads_the_real_tokens_regardless_of_padding(pooling):
    clf = GPTClassifier(GPT(config(), seed=6), n_classes=3, pooling=pooling)
    ids, lengths, _ = toy_classification(6)
    batched = host(clf(ids, lengths))                                        # (B, K)
    assert batched.shape == (6, 3)
    for row in range(6):
        alone = host(clf(ids[row:row + 1, :lengths[row]]))
        numpy.testing.assert_allclose(batched[row], alone[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("freeze_body", [True, False])
def test_classifier_head_trains_and_a_frozen_body_stays_unchanged(freeze_body):
    clf = GPTClassifier(GPT(config(), seed=7), n_classes=2, freeze_body=freeze_body, seed=1)
    body_before = clf.body.state_dict()
    trainable = [n for n, p in clf.named_parameters() if p.requires_grad]
    assert (trainable == ["head.weight", "head.bias"]) == freeze_body
    ids, lengths, labels = toy_classification(24)
    opt = AdamW([p for p in clf.parameters() if p.requires_grad], lr=5e-2, weight_decay=0.0)
    losses = [classifier_step(clf, opt, ids, lengths, labels) for _ in range(40)]
    assert losses[-1] < 0.75 * losses[0]                                    # frozen: 0.69 -> 0.50
    body_same = all(numpy.array_equal(v, body_before[n]) for n, v in clf.body.state_dict().items())
    assert body_same == freeze_body
    predicted = predict_classes(clf, ids, lengths)
    assert predicted.shape == (24,) and (predicted == labels).mean() > 0.7


def test_pooling_is_the_last_or_the_mean_hidden_state():
    clf = {p: GPTClassifier(GPT(config(), seed=6), n_classes=3, pooling=p) for p in ("last", "mean")}
    x = numpy.random.default_rng(2).integers(0, TOK.vocab_size, size=(2, 6))
    h = host(hidden_states(clf["last"].body, x))                               # (2, 6, C)
    W, b = host(clf["last"].head.weight), host(clf["last"].head.bias)
    numpy.testing.assert_allclose(host(clf["last"](x)), h[:, -1] @ W + b, rtol=0, atol=1e-12)
    numpy.testing.assert_allclose(host(clf["mean"](x, numpy.array([6, 4]))),
                                  numpy.stack([h[0].mean(0), h[1, :4].mean(0)]) @ W + b, rtol=0, atol=1e-12)


def test_classifier_errors():
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2, got 1"):
        GPTClassifier(GPT(config()), 1)
    with pytest.raises(ValueError, match="pooling must be 'last' or 'mean', got 'max'"):
        GPTClassifier(GPT(config()), 2, pooling="max")
    clf = GPTClassifier(GPT(config()), 2)
    with pytest.raises(ValueError, match="lengths must be 1 values in \\[1, 3\\]"):
        clf(numpy.zeros((1, 3), dtype=numpy.int64), numpy.array([4]))


def test_continued_pretraining_with_lora_moves_only_the_adapter_and_lowers_the_loss():
    quiet = open("/dev/null", "w")
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=8)
    cfg = TrainConfig(iters=40, batch_size=8, lr=2e-2, min_lr=2e-3, warmup_iters=0, eval_every=40,
                      eval_iters=2, checkpoint_every=0, weight_decay=0.0)
    old = numpy.array(TOK.encode("abcab cabca bcabc " * 40))               # "pretraining" domain
    new = numpy.array(TOK.encode("hij ijh jhi hji " * 40))                  # the new domain
    continued_pretraining(model, old[:600], old[600:], cfg, stream=quiet)   # full training first
    base = model.state_dict()
    apply_lora(model, rank=4, alpha=8, targets=("c_attn", "c_fc"))
    trainer = continued_pretraining(model, new[:500], new[500:], cfg, stream=quiet)
    first, last = trainer.history["evals"][0][2], trainer.history["evals"][-1][2]
    assert last < first - 1.0, (first, last)
    after = model.state_dict()
    assert all(numpy.array_equal(after[n], base[n]) for n in base)          # the base weights never moved


def _demo(name):
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "demos", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"demo_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, flags", [
    ("finetune_lora", ["--pretrain-iters", "2", "--iters", "2", "--eval-tokens", "200", "--ranks", "2",
                       "--n-layer", "1", "--n-embd", "16", "--block-size", "16"]),
    ("sft", ["--pretrain-iters", "2", "--iters", "2", "--n-train", "20", "--n-test", "4", "--eval-every", "2",
             "--n-layer", "1", "--n-embd", "16", "--block-size", "32", "--lora-rank", "2", "--unfreeze", "wpe"]),
    ("classify", ["--pretrain-iters", "2", "--iters", "2", "--n-train", "4", "--n-test", "1", "--task", "genre",
                  "--n-layer", "1", "--n-embd", "16", "--block-size", "16", "--passage-len", "16"]),
])
def test_demos_run_end_to_end_with_tiny_settings(name, flags, tmp_path, capsys):
    _demo(name).main(flags + ["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert (tmp_path / f"{name}.png").is_file()
    assert "before" in out or "accuracy" in out
