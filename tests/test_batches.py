"""Batches of token ids: the 90/10 split and shifted random windows."""
import numpy
import pytest

from minillm import batches


def test_split_is_contiguous_ninety_ten():
    ids = list(range(1000))
    train, val = batches.split_ids(ids)
    assert train.dtype == numpy.int64 and val.dtype == numpy.int64
    assert len(train) == 900 and len(val) == 100
    numpy.testing.assert_array_equal(numpy.concatenate([train, val]), ids)
    train, val = batches.split_ids(list(range(7)), val_fraction=0.0)
    assert len(train) == 7 and len(val) == 0


def test_split_rejects_bad_input():
    with pytest.raises(TypeError, match="integers, got float64"):
        batches.split_ids([1.0, 2.0])
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.5"):
        batches.split_ids([1, 2], val_fraction=1.5)
    with pytest.raises(ValueError, match="1-D"):
        batches.split_ids([[1, 2]])


def test_batches_are_windows_shifted_by_one():
    data = numpy.arange(50, dtype=numpy.int64) * 3
    x, y = batches.get_batch(data, 8, 5, numpy.random.default_rng(0))
    assert x.shape == (8, 5) and y.shape == (8, 5)
    assert x.dtype == numpy.int64 and y.dtype == numpy.int64
    numpy.testing.assert_array_equal(x[:, 1:], y[:, :-1])       # targets are inputs shifted by one
    for row_x, row_y in zip(x, y):                               # each row is a real window
        start = row_x[0] // 3
        numpy.testing.assert_array_equal(row_x, data[start:start + 5])
        numpy.testing.assert_array_equal(row_y, data[start + 1:start + 6])


def test_batches_reach_both_ends_and_never_overrun():
    data = numpy.arange(10)
    x, y = batches.get_batch(data, 2000, 4, numpy.random.default_rng(1))
    assert x[:, 0].min() == 0 and y[:, -1].max() == 9            # every start in [0, 5] is drawn
    assert set(x[:, 0].tolist()) == set(range(6))


def test_batches_are_reproducible_from_the_seed():
    data = numpy.arange(1000)
    a = batches.get_batch(data, 4, 16, numpy.random.default_rng(42))
    b = batches.get_batch(data, 4, 16, numpy.random.default_rng(42))
    c = batches.get_batch(data, 4, 16, numpy.random.default_rng(43))
    numpy.testing.assert_array_equal(a[0], b[0])
    numpy.testing.assert_array_equal(a[1], b[1])
    assert not numpy.array_equal(a[0], c[0])


def test_batch_from_too_short_data_is_a_clear_error():
    with pytest.raises(ValueError, match="has 5 tokens, fewer than block_size"):
        batches.get_batch(numpy.arange(5), 2, 8, numpy.random.default_rng(0))


def test_split_text_is_split_ids_for_one_id_per_character():
    text = "abcdefghij" * 7 + "xyz"
    train_text, val_text = batches.split_text(text)
    train_ids, val_ids = batches.split_ids([ord(c) for c in text])
    assert train_text + val_text == text
    assert [ord(c) for c in train_text] == train_ids.tolist()
    assert [ord(c) for c in val_text] == val_ids.tolist()
    with pytest.raises(ValueError, match="val_fraction"):
        batches.split_text(text, val_fraction=1.0)


def test_the_training_demo_learns_its_bpe_from_the_training_split_only():
    """No merge may come from the validation text: there "zq" is the most frequent pair of all."""
    import importlib.util, os
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "demos", "train_shakespeare.py")
    spec = importlib.util.spec_from_file_location("train_shakespeare_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    text = "to be or not " * 75 + "zqzq " * 20        # 900 + 100 characters: the last 10 % is all "zq"
    train_text, val_text = batches.split_text(text)
    assert "zq" not in train_text and "zqzq" in val_text
    bpe = demo.build_tokenizer("bpe", text, vocab_size=256 + 10 + 1)
    learned = [bpe.token_str(i) for i in range(256, 256 + len(bpe.merges))]
    assert learned and not any("z" in token or "q" in token for token in learned), learned
    train_ids, val_ids = demo.encode_split(bpe, text)
    assert bpe.decode(train_ids.tolist()) == train_text and bpe.decode(val_ids.tolist()) == val_text
