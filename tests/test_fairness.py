"""Tests for minillm.fairness (seeded bootstrap intervals, block bits per char, the probes) and
minillm.filters (the word-level filters and their flag rates)."""
import math

import numpy
import pytest

from minillm.fairness import (Interval, bits_per_char, bootstrap, bootstrap_difference, char_blocks,
                              cooccurrence_log_ratio, pronoun_probe)
from minillm.filters import blocklist_filter, coverage_filter, flag_rate, perplexity_filter, words
from minillm.ngram import NGramLM
from minillm.tokenizers import CharTokenizer


def test_bootstrap_is_seeded_and_reproducible():
    values = numpy.random.default_rng(0).normal(size=40)
    a = bootstrap(values, n_resamples=300, seed=7)
    assert a == bootstrap(values, n_resamples=300, seed=7)
    assert a != bootstrap(values, n_resamples=300, seed=8)
    assert a.estimate == pytest.approx(values.mean()) and a.low < a.estimate < a.high


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = numpy.random.default_rng(1)
    covered = 0
    for trial in range(80):
        interval = bootstrap(rng.normal(0.0, 1.0, 60), n_resamples=400, seed=trial)
        covered += interval.low <= 0.0 <= interval.high
        # its width is that of a mean's interval: about 2 * 1.96 / sqrt(60) = 0.51, not of one value's
        assert 0.3 < interval.high - interval.low < 0.75
    assert 68 <= covered <= 80                  # 95 % of 80 = 76; binomial sd ~ 2


def test_bootstrap_difference_finds_a_real_gap():
    rng = numpy.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, 100), rng.normal(1.0, 1.0, 120)
    gap = bootstrap_difference(a, b, n_resamples=500, seed=0)
    assert gap.estimate == pytest.approx(b.mean() - a.mean())
    assert gap.low > 0.5 and gap.high < 1.5
    same = bootstrap_difference(a, rng.normal(0.0, 1.0, 100), n_resamples=500, seed=0)
    assert same.low < 0 < same.high


def test_char_blocks_keep_the_totals():
    rng = numpy.random.default_rng(3)
    logp, chars = -rng.random(1000), rng.integers(1, 5, 1000)
    blocks = char_blocks(logp, chars, block_chars=300)
    assert blocks[:, 0].sum() == pytest.approx(-logp.sum()) and blocks[:, 1].sum() == chars.sum()
    assert (blocks[:, 1] >= 150).all()
    assert bits_per_char(blocks) == pytest.approx(-logp.sum() / math.log(2) / chars.sum())


def test_pronoun_probe_averages_over_templates():
    table = {("The king said", " he"): -1.0, ("The king said", " she"): -3.0,
             ("A king, and", " he"): -2.0, ("A king, and", " she"): -2.0}
    result = pronoun_probe(lambda prompt, word: table[(prompt, word)], ["king"],
                           ["The {role} said", "A {role}, and"], n_resamples=100)
    assert result["king"].estimate == pytest.approx(1.0)               # mean of 2 and 0
    assert result["king"].low >= 0.0 and result["king"].high <= 2.0
    with pytest.raises(ValueError, match="placeholder"):
        pronoun_probe(lambda p, w: 0.0, ["king"], ["no role here", "nor here"])


def test_cooccurrence_counts_pronouns_after_the_role():
    text = "The king came, and he spoke. The queen wept; she said her part. The king: his crown."
    ratios = cooccurrence_log_ratio(text, ["king", "queen"], window=4, smoothing=0.5)
    # king: "came and he spoke" (he) + "his crown" (his) -> m = 2, f = 0; queen: "wept she said her" -> f = 2
    assert ratios["king"] == (math.log(2.5 / 0.5), 2, 0)
    assert ratios["queen"] == (math.log(0.5 / 2.5), 0, 2)


def test_word_filters():
    assert words("O'er the hill, Thou ART") == ["o'er", "the", "hill", "thou", "art"]
    block = blocklist_filter(["whore"])
    assert block("Thou art a whore.") and block("A WHORE!") and block("You whoreson dog") is None
    cover = coverage_filter(["i", "love", "thee"], min_share=0.75)
    assert cover("I love thee") is None and "0.67" in cover("I loue thee")
    rate, flags, reasons = flag_rate(["a whore", "a rose", "whore and rose"], block)
    assert rate == pytest.approx(2 / 3) and flags == [1, 0, 1] and len(reasons) == 2


def test_perplexity_filter_flags_the_unfamiliar():
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
    model = NGramLM.fit(tok.encode("the cat sat on the mat " * 30), 3, tok.vocab_size, block_size=32)
    check = perplexity_filter(model, tok.encode, max_perplexity=3.0)
    assert check("the cat sat on the mat") is None
    assert check("zq xv jk wy") and "perplexity" in check("zq xv jk wy")


def test_interval_prints():
    assert str(Interval(1.0, 0.5, 1.5)) == "1 [0.5, 1.5]"
