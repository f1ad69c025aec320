"""Checkpoints: exact round trip, atomic writes, no pickle, clear errors for bad files."""
import json
import os
import pickle
import zipfile

import numpy
import pytest

from minillm import checkpoint
from minillm.checkpoint import CheckpointError


class FakeOptimizer:
    """An optimizer-like object whose state dict mixes arrays and plain numbers."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return dict(self.state)


def _weights(seed=0):
    rng = numpy.random.default_rng(seed)
    return {"wte.weight": rng.standard_normal((5, 3)).astype(numpy.float32),
            "h.0.ln_1.bias": rng.standard_normal(3),
            "h.0.attn.c_attn.weight": rng.standard_normal((3, 9)).astype(numpy.float32)}


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / "ckpt.npz"
    weights = _weights()
    optim = FakeOptimizer({"m.wte.weight": numpy.arange(15.0).reshape(5, 3), "t": 7, "lr": 0.5})
    rng = numpy.random.default_rng(123)
    rng.random(10)
    checkpoint.save(path, weights, optim, step=42, history=[[1, 2.5, float("nan")]],
                    tokenizer={"type": "char", "chars": "ab\n"}, rng=checkpoint.rng_state(rng),
                    mask=numpy.array([True, False]))
    ckpt = checkpoint.load(path)
    assert set(ckpt) == {"model", "config", "step", "optimizer", "history", "tokenizer", "rng", "mask"}
    assert ckpt["step"] == 42 and isinstance(ckpt["step"], int)
    assert list(ckpt["model"]) == list(weights)                      # names and order kept
    for name, value in weights.items():
        assert ckpt["model"][name].dtype == value.dtype
        numpy.testing.assert_array_equal(ckpt["model"][name], value)
    assert ckpt["optimizer"]["t"] == 7 and ckpt["optimizer"]["lr"] == 0.5
    numpy.testing.assert_array_equal(ckpt["optimizer"]["m.wte.weight"], numpy.arange(15.0).reshape(5, 3))
    assert ckpt["tokenizer"] == {"type": "char", "chars": "ab\n"}
    assert ckpt["history"][0][:2] == [1, 2.5] and numpy.isnan(ckpt["history"][0][2])
    numpy.testing.assert_array_equal(ckpt["mask"], [True, False])
    restored = checkpoint.restore_rng(ckpt["rng"])                   # the stream continues exactly
    numpy.testing.assert_array_equal(restored.random(5), rng.random(5))


def test_saving_without_optimizer_gives_none(tmp_path):
    checkpoint.save(tmp_path / "c.npz", _weights())
    ckpt = checkpoint.load(tmp_path / "c.npz")
    assert ckpt["optimizer"] is None and ckpt["step"] == 0 and ckpt["config"] == {}


def test_writes_exactly_the_path_atomically(tmp_path, monkeypatch):
    path = tmp_path / "run" / "ckpt.npz"
    checkpoint.save(path, _weights(0), step=1)
    assert sorted(os.listdir(path.parent)) == ["ckpt.npz"]           # no temp file left, no ".npz.npz"
    # A failure in the middle of writing the next checkpoint keeps the old one whole.
    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint.numpy, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, _weights(1), step=2)
    assert sorted(os.listdir(path.parent)) == ["ckpt.npz"]
    assert checkpoint.load(path)["step"] == 1


def test_file_is_loadable_without_pickle(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, _weights(), FakeOptimizer({"t": 1}), step=3, note="hi")
    with numpy.load(path, allow_pickle=False) as npz:
        for name in npz.files:
            assert npz[name].dtype != object
        meta = json.loads(str(npz["meta"]))
    assert meta["format"] == checkpoint.FORMAT and meta["extra"] == {"note": "hi"}


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .*nothing.npz does not exist"):
        checkpoint.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("cut", [0, 10, 200, -30])
def test_truncated_file_is_a_clear_error(tmp_path, cut):
    path = tmp_path / "c.npz"
    checkpoint.save(path, _weights(), step=5)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut >= 0 else data[:len(data) + cut])
    with pytest.raises(CheckpointError, match=r"checkpoint .*c.npz is (corrupt or truncated|not a minillm)"):
        checkpoint.load(path)


def test_corrupt_member_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, _weights(), step=5)
    with zipfile.ZipFile(path) as z:                                  # where the first array's bytes are
        info = z.getinfo("model/wte.weight.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(path)


def test_garbage_and_pickle_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="garbage.npz is not a minillm checkpoint: it is not an .npz"):
        checkpoint.load(garbage)
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps({"model": {}}))                     # a pickle is never unpickled
    with pytest.raises(CheckpointError, match="evil.npz is not a minillm checkpoint: it is not an .npz"):
        checkpoint.load(evil)


def test_a_text_file_is_not_called_corrupt_nor_advised_to_unpickle(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("ROMEO: hello\n")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(text)
    assert "is not an .npz archive (it starts with b'ROMEO:')" in str(info.value)
    assert "pickle" not in str(info.value) and "corrupt" not in str(info.value)


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "other.npz"
    numpy.savez(other, weights=numpy.zeros(3))
    with pytest.raises(CheckpointError, match="not a minillm checkpoint: it has no 'meta'"):
        checkpoint.load(other)
    single = tmp_path / "single.npy"
    numpy.save(single, numpy.zeros(3))
    with pytest.raises(CheckpointError, match="single array"):
        checkpoint.load(single)
    wrong = tmp_path / "wrong.npz"
    numpy.savez(wrong, meta=numpy.array(json.dumps({"format": "something-else"})))
    with pytest.raises(CheckpointError, match="format 'something-else'"):
        checkpoint.load(wrong)
    zipped = tmp_path / "zipped.npz"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("meta.npy", b"not an npy")
    with pytest.raises(CheckpointError, match="zipped.npz: entry meta.npy is not a .npy array"):
        checkpoint.load(zipped)


def test_save_rejects_reserved_and_unserialisable_extras(tmp_path):
    with pytest.raises(ValueError, match=r"may not be named \['config'\]"):
        checkpoint.save(tmp_path / "c.npz", _weights(), config={})
    with pytest.raises(TypeError, match="checkpoint entry 'extra/thing' must be an array or JSON"):
        checkpoint.save(tmp_path / "c.npz", _weights(), thing=object())
    assert not os.listdir(tmp_path)


def test_restore_rebuilds_a_gpt_and_its_optimizer(tmp_path):
    import minillm.functional as F
    from minillm.models import GPT, GPTConfig
    from minillm.optim import AdamW, param_groups_for_weight_decay

    def make_optimizer(model):
        return AdamW(param_groups_for_weight_decay(model, 0.1), lr=1e-2)

    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=8), seed=1)
    optimizer = make_optimizer(model)
    ids = numpy.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    F.cross_entropy(model(ids[:, :3]), ids[:, 1:]).backward()
    optimizer.step()
    checkpoint.save(tmp_path / "c.npz", model, optimizer, step=1)
    restored, restored_optimizer = checkpoint.restore(checkpoint.load(tmp_path / "c.npz"), make_optimizer)
    assert restored.config == model.config
    for (name, p), (_, q) in zip(model.named_parameters(), restored.named_parameters()):
        numpy.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    mine, theirs = optimizer.state_dict(), restored_optimizer.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        numpy.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    assert checkpoint.restore(checkpoint.load(tmp_path / "c.npz"))[1] is None


def test_gpt_from_checkpoint_reads_a_path_or_a_loaded_dict(tmp_path):
    from minillm.models import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=8, dropout=0.1), seed=5)
    checkpoint.save(tmp_path / "c.npz", model, step=3)
    for source in (tmp_path / "c.npz", checkpoint.load(tmp_path / "c.npz")):
        back = GPT.from_checkpoint(source)
        assert type(back) is GPT and back.config == model.config
        for (name, p), (_, q) in zip(model.named_parameters(), back.named_parameters()):
            numpy.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    with pytest.raises(FileNotFoundError):
        GPT.from_checkpoint(tmp_path / "missing.npz")


def test_restore_rebuilds_the_family_the_checkpoint_records(tmp_path):
    """A Llama checkpoint comes back as a Llama (finetune.load_pretrained and every --ckpt demo use
    restore); an unknown family is an error naming it."""
    from minillm.models import Llama, LlamaConfig
    model = Llama(LlamaConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8), seed=1)
    checkpoint.save(tmp_path / "l.npz", model, arch="llama")
    restored, _ = checkpoint.restore(checkpoint.load(tmp_path / "l.npz"))
    assert type(restored) is Llama
    numpy.testing.assert_array_equal(restored.state_dict()["lm_head.weight"], model.state_dict()["lm_head.weight"])
    checkpoint.save(tmp_path / "x.npz", model, arch="rwkv")
    with pytest.raises(ValueError, match="'rwkv' model; minillm's decoders are"):
        checkpoint.restore(checkpoint.load(tmp_path / "x.npz"))
