"""minillm.safe_io: the helpers every loader reads through (see tests/test_hostile_files.py for the loaders)."""
import json
import os
import zipfile

import numpy as np
import pytest

from minillm import safe_io


pytestmark = pytest.mark.usefixtures("time_limit")      # each test: 10 s at most (conftest.py)


def test_regular_file_names_what_else_a_path_is(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / "ok").write_text("x")
    assert safe_io.regular_file(tmp_path / "ok").st_size == 1
    with pytest.raises(ValueError, match=r"pipe is a FIFO \(named pipe\), not a regular file"):
        safe_io.read_bytes(tmp_path / "pipe", 100)              # returns at once: never opened
    with pytest.raises(ValueError, match="zero is a character device"):
        safe_io.read_bytes("/dev/zero", 100, "zero")
    with pytest.raises(ValueError, match="folder is a directory"):
        safe_io.regular_file(tmp_path / "folder")
    with pytest.raises(FileNotFoundError, match=r"dangling does not exist \(a symbolic link to nothing\)"):
        safe_io.regular_file(tmp_path / "dangling")
    with pytest.raises(ValueError, match="loop cannot be opened"):
        safe_io.regular_file(tmp_path / "loop")


def test_sizes_are_checked_before_reading(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match=r"big is 101 bytes, more than the 100 a thing may have"):
        safe_io.read_bytes(tmp_path / "big", 100, "thing")
    assert safe_io.read_bytes(tmp_path / "big", 101) == b"x" * 101


def test_text_must_be_utf8_and_the_bad_byte_is_named(tmp_path):
    (tmp_path / "t.txt").write_bytes("héllo".encode("utf-8") + b"\xff!")
    with pytest.raises(ValueError, match=r"t.txt is not UTF-8 text: byte 0xff at offset 6"):
        safe_io.read_text(tmp_path / "t.txt", 100, "text")


@pytest.mark.parametrize("name", ["../other/model.safetensors", "/etc/passwd", "a/../../b", ".."])
def test_names_from_a_file_stay_inside_the_folder(tmp_path, name):
    with pytest.raises(ValueError, match="points outside the folder"):
        safe_io.inside(tmp_path, name, "index.json")


def test_names_inside_the_folder_are_kept(tmp_path):
    assert safe_io.inside(tmp_path, "sub/../model-1.safetensors", "x") == os.path.join(tmp_path, "model-1.safetensors")
    for bad in (None, 3, "", "a\0b"):
        with pytest.raises(ValueError, match="is not a file name"):
            safe_io.inside(tmp_path, bad, "x")


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"n": 1' + "0" * 5000 + "}", "has 5001 digits"),
    ('{"x": 1e999}', "too large for a float"),
    ('{"x": NaN}', "NaN is not a JSON number"),
    ('{"a": 1, "a": 2}', "the key 'a' appears twice"),
    ('{"a": ', "is not valid JSON"),
], ids=["deep", "huge_int", "huge_float", "nan", "repeated_key", "broken"])
def test_parse_json_wraps_every_failure_with_the_name(text, message):
    with pytest.raises(ValueError, match=f"config.json .*{message}"):
        safe_io.parse_json(text, "config.json")


def test_parse_json_allows_nan_when_asked_and_keeps_big_generator_states():
    state = 2 ** 127 + 1                                      # a PCG64 state has 39 digits
    data = safe_io.parse_json(json.dumps({"loss": [float("nan")], "state": state}), "meta", allow_nan=True)
    assert np.isnan(data["loss"][0]) and data["state"] == state


def test_read_json_object_names_the_file_and_the_type(tmp_path):
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"c.json must hold a config, not a JSON list"):
        safe_io.read_json_object(tmp_path / "c.json", "a config")


def test_read_npz_round_trips_what_numpy_writes(tmp_path):
    arrays = {"a": np.arange(12.0).reshape(3, 4), "f": np.asfortranarray(np.ones((2, 3), np.float32)),
              "s": np.array("text"), "e": np.zeros((0, 5)), "b": np.array([True, False])}
    np.savez(tmp_path / "x.npz", **arrays)
    back = safe_io.read_npz(tmp_path / "x.npz")
    assert list(back) == list(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)
        assert back[name].flags.writeable


def test_read_npz_refuses_a_header_larger_than_its_member(tmp_path):
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float64))
    header["shape"] = (10 ** 12,)                              # 8 TB claimed, 8 bytes present
    with zipfile.ZipFile(tmp_path / "lie.npz", "w") as z:
        with z.open("model/w.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(b"\0" * 8)
    with pytest.raises(ValueError, match=r"lie.npz: entry model/w.npy claims a \(1000000000000,\) float64"):
        safe_io.read_npz(tmp_path / "lie.npz")


def test_read_npz_refuses_objects_and_repeated_names(tmp_path):
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="holds Python objects"):
        safe_io.read_npz(tmp_path / "obj.npz")
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as z, pytest.warns(UserWarning, match="Duplicate"):
        z.writestr("a.npy", b"1")
        z.writestr("a.npy", b"2")
    with pytest.raises(ValueError, match=r"names the entries \['a.npy'\] more than once"):
        safe_io.read_npz(tmp_path / "twice.npz")


@pytest.mark.parametrize("dtype", ["int8", "bool", "int64", "complex64", "uint8"])
def test_check_weights_refuses_dtypes_a_model_cannot_use(dtype):
    with pytest.raises(ValueError, match=f"w.npz: tensor h.0.w has dtype {dtype}; weights must be one of"):
        safe_io.check_weights({"ok": np.zeros(2, np.float16), "h.0.w": np.zeros(2, dtype)}, "w.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_weights_refuses_non_finite_values(bad):
    w = np.zeros((3, 2), np.float32)
    w[1, 0] = bad
    with pytest.raises(ValueError, match=r"m: tensor wte.weight has 1 non-finite value\(s\) \(NaN or Inf\) of 6"):
        safe_io.check_weights({"wte.weight": w}, "m")


def test_check_layer_count_needs_no_list_of_the_config_size():
    names = [f"h.{i}.w" for i in range(3)] + ["wte.weight", "h.x.y"]
    safe_io.check_layer_count(names, "h.", 3, "f")
    with pytest.raises(ValueError, match=r"f holds 3 layer\(s\) h.0.. h.2, but its config says n_layer=1000000000"):
        safe_io.check_layer_count(names, "h.", 10 ** 9, "f")
