"""The masked-LM objective (minillm/mlm.py): which positions are chosen, what they become,
and that only they count in the loss.

Exact properties on hypothesis batches (counts per row, never a special token or
padding, targets and untouched inputs), then seeded chi-square tests over many
draws against the exact expected frequencies (as tests/test_sampling.py does),
with a check that the same statistic rejects a wrong rule."""
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import Tensor, backend
from minillm import functional as F
from minillm.mlm import IGNORE_INDEX, choose_positions, mask_tokens, masked_accuracy

V, PAD, CLS, SEP, MASK = 30, 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)
ORDINARY = np.arange(4, V)


@st.composite
def batches(draw):
    """Rows of [CLS] words [SEP] [PAD]... with their attention masks."""
    B, T = draw(st.integers(1, 4)), draw(st.integers(2, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    ids = rng.integers(4, V, (B, T))
    mask = np.zeros((B, T), dtype=np.int64)
    for row in range(B):
        n = draw(st.integers(2, T))
        ids[row, 0], ids[row, n - 1], ids[row, n:] = CLS, SEP, PAD
        mask[row, :n] = 1
    return ids, mask


@settings(max_examples=40, deadline=None)
@given(batch=batches(), seed=st.integers(0, 2 ** 16), p=st.sampled_from([0.15, 0.5, 1.0]))
def test_each_row_gets_round_p_of_its_eligible_positions_and_nothing_else_changes(batch, seed, p):
    ids, mask = batch
    inputs, targets = mask_tokens(ids, np.random.default_rng(seed), MASK, V, SPECIAL, mask, mlm_probability=p)
    chosen = targets != IGNORE_INDEX
    eligible = ~np.isin(ids, SPECIAL) & (mask == 1)
    n = eligible.sum(axis=1)
    expected = np.where(n > 0, np.maximum(1, np.floor(p * n + 0.5)), 0)
    np.testing.assert_array_equal(chosen.sum(axis=1), expected)              # exact count per row
    assert not (chosen & ~eligible).any()                                    # never special, never padding
    np.testing.assert_array_equal(targets[chosen], ids[chosen])             # the original token is the target
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])            # the rest is untouched
    assert not np.isin(inputs[chosen], [PAD, CLS, SEP]).any()               # chosen become [MASK] or ordinary


def test_the_same_seed_gives_the_same_masks():
    ids = np.random.default_rng(0).integers(4, V, (8, 32))
    a = mask_tokens(ids, np.random.default_rng(7), MASK, V, SPECIAL)
    b = mask_tokens(ids, np.random.default_rng(7), MASK, V, SPECIAL)
    c = mask_tokens(ids, np.random.default_rng(8), MASK, V, SPECIAL)
    np.testing.assert_array_equal(a[0], b[0]) and np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def outcome_counts(n_rows=4000, T=40, seed=1234):
    """How the chosen tokens ended: [MASK], another ordinary token, or unchanged."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, V, (n_rows, T))
    inputs, targets = mask_tokens(ids, rng, MASK, V, SPECIAL)
    chosen = targets != IGNORE_INDEX
    became = inputs[chosen]
    original = ids[chosen]
    counts = np.array([(became == MASK).sum(), ((became != MASK) & (became != original)).sum(),
                       (became == original).sum()])
    return counts, chosen.sum()


def test_80_10_10_split_chi_square_against_exact_expectations():
    counts, n = outcome_counts()
    assert n == 4000 * 6                                                     # round(0.15 * 40) = 6 per row
    hit = 1 / len(ORDINARY)                                                  # a random draw may equal the original
    expected = n * np.array([0.8, 0.1 * (1 - hit), 0.1 + 0.1 * hit])
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-3
    wrong = n * np.array([0.7, 0.2 * (1 - hit), 0.1 + 0.2 * hit])            # a 70/20/10 rule is rejected
    assert scipy.stats.chisquare(counts, wrong).pvalue < 1e-10


def test_chosen_positions_and_random_tokens_are_uniform():
    rng = np.random.default_rng(5)
    eligible = np.ones((20000, 10), dtype=bool)
    eligible[:, [0, 9]] = False                                              # [CLS] and [SEP] columns
    chosen = choose_positions(eligible, rng, 0.25)                           # round(0.25 * 8) = 2 per row
    per_column = chosen.sum(axis=0)
    assert per_column[0] == per_column[9] == 0 and per_column.sum() == 40000
    assert scipy.stats.chisquare(per_column[1:9]).pvalue > 1e-3              # each column: 40000 / 8
    ids = np.full((2000, 50), 4)
    inputs, targets = mask_tokens(ids, rng, MASK, V, SPECIAL, mlm_probability=1.0)
    swapped = inputs[(inputs != MASK) & (inputs != 4)]
    counts = np.bincount(swapped, minlength=V)[5:]                           # the other ordinary ids
    assert len(swapped) > 5000 and scipy.stats.chisquare(counts).pvalue > 1e-3


def test_unchosen_positions_change_neither_loss_nor_gradient():
    rng = np.random.default_rng(3)
    ids = rng.integers(4, V, (3, 12))
    _, targets = mask_tokens(ids, rng, MASK, V, SPECIAL)
    logits = Tensor(rng.standard_normal((3, 12, V)), requires_grad=True)
    loss = F.cross_entropy(logits, backend.asarray(targets))
    loss.backward()
    chosen = targets != IGNORE_INDEX
    grad = backend.to_numpy(logits.grad)
    assert (grad[~chosen] == 0).all() and (grad[chosen] != 0).any()
    x = backend.to_numpy(logits.data)[chosen]                                # (n, V) the chosen rows alone
    log_p = x - x.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    assert float(loss.data) == pytest.approx(-log_p[np.arange(len(x)), targets[chosen]].mean(), rel=1e-12)
    other = backend.to_numpy(logits.data).copy()
    other[~chosen] = rng.standard_normal(other[~chosen].shape) * 10          # anything at unchosen positions
    assert float(F.cross_entropy(Tensor(other), backend.asarray(targets)).data) == pytest.approx(
        float(loss.data), rel=1e-12)
    assert masked_accuracy(other, targets) == masked_accuracy(backend.to_numpy(logits.data), targets)


def test_masking_errors_name_the_problem():
    ids = np.full((1, 5), 4)
    with pytest.raises(ValueError, match="special_ids must include mask_id"):
        mask_tokens(ids, np.random.default_rng(0), MASK, V, (PAD,))
    with pytest.raises(ValueError, match="token id 30 is outside the vocabulary"):
        mask_tokens(ids + 26, np.random.default_rng(0), MASK, V, SPECIAL)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        mask_tokens(ids, np.random.default_rng(0), MASK, V, SPECIAL, attention_mask=np.ones((1, 4)))
    with pytest.raises(ValueError, match="mlm_probability must be in"):
        mask_tokens(ids, np.random.default_rng(0), MASK, V, SPECIAL, mlm_probability=0.0)
