"""Tests for minillm.cli: flag types refuse bad values, library errors become one line naming the flag.

In-process and fast; tests/test_demos_cli.py runs the demos themselves as subprocesses.
"""
import argparse

import pytest

from minillm import cli


def parser():
    p = cli.ArgumentParser(prog="demo")
    p.add_argument("--n-embd", type=cli.positive_int, default=128)
    p.add_argument("--n-head", type=cli.positive_int, default=4)
    p.add_argument("--data", default=None)
    p.add_argument("--top-p", type=cli.probability, default=None)
    p.add_argument("--ranks", type=cli.positive_int_list, default="2,8")
    p.add_argument("--resume", action="store_true")
    return p


@pytest.mark.parametrize("check, good, bad", [
    (cli.positive_int, [("1", 1), ("20", 20)], ["0", "-3", "1.5", "x"]),
    (cli.non_negative_int, [("0", 0), ("7", 7)], ["-1", "nan"]),
    (cli.positive_float, [("1e-3", 1e-3)], ["0", "-1", "nan", "inf", "x"]),
    (cli.non_negative_float, [("0", 0.0), ("2.5", 2.5)], ["-0.1", "nan", "inf"]),
    (cli.probability, [("1", 1.0), ("0.9", 0.9)], ["0", "1.01", "nan"]),
    (cli.dropout_rate, [("0", 0.0), ("0.5", 0.5)], ["1", "-0.1"]),
    (cli.positive_int_list, [("2,8", [2, 8]), ("4,", [4])], [",", "2,0", "a"]),
    (cli.name_list, [("c_attn, c_fc", ("c_attn", "c_fc"))], [",", ""]),
])
def test_flag_types_accept_good_values_and_refuse_bad_ones(check, good, bad):
    for text, value in good:
        assert check(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            check(text)


def test_existing_file_and_dir_say_what_is_there(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert cli.existing_file(str(tmp_path / "f.txt")) == str(tmp_path / "f.txt")
    assert cli.existing_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder, not a file"):
        cli.existing_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        cli.existing_dir(str(tmp_path / "f.txt"))
    with pytest.raises(argparse.ArgumentTypeError, match="nope does not exist"):
        cli.existing_file(str(tmp_path / "nope"))


def test_a_parse_error_is_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["--top-p", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --top-p: expected a probability in (0, 1], got 0" in err


def test_library_errors_are_prefixed_with_the_flags_they_name():
    p = parser()
    args = p.parse_args(["--n-head", "3", "--data", "/tmp/x y/corpus.txt"])
    error = ValueError("n_embd (128) must be divisible by n_head (3)")
    assert p.explain(error, args) == "--n-embd 128, --n-head 3: n_embd (128) must be divisible by n_head (3)"
    missing = FileNotFoundError("corpus file /tmp/x y/corpus.txt does not exist")
    assert p.explain(missing, args).startswith("--data /tmp/x y/corpus.txt: corpus file")
    assert p.explain(ValueError("ranks must be positive"), args).startswith("--ranks 2,8: ")
    assert p.explain(ValueError("--resume: no checkpoint"), args) == "--resume: no checkpoint"   # names itself
    assert p.explain(ValueError("something else\nentirely"), args) == "something else entirely"  # one line
    assert p.explain(ValueError("the n_embd_x field"), args) == "the n_embd_x field"     # whole words only


def test_run_reports_library_errors_in_one_line_with_status_2_or_1(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def body(args):
        raise ValueError(f"n_embd ({args.n_embd}) must be divisible by n_head ({args.n_head})")

    with pytest.raises(SystemExit) as exit_info:
        parser().run(body, ["--n-head", "3"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("demo: error: --n-embd 128, --n-head 3: n_embd (128) must be divisible "
                                       "by n_head (3)\n")

    class Diverged(RuntimeError):
        pass

    def diverges(args):
        raise Diverged("the loss is nan")

    with pytest.raises(SystemExit) as exit_info:
        parser().run(diverges, [], failures=(Diverged,))
    assert exit_info.value.code == 1 and capsys.readouterr().err == "demo: error: the loss is nan\n"
    assert parser().run(lambda args: args.n_head * 10, ["--n-head", "5"]) == 50


def test_bugs_keep_their_traceback_and_debug_shows_every_error(monkeypatch):
    def bug(args):
        raise KeyError("not bad input: a bug")

    with pytest.raises(KeyError):
        parser().run(bug, [])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")

    def bad(args):
        raise ValueError("n_head (3)")

    with pytest.raises(ValueError, match=r"n_head \(3\)"):
        parser().run(bad, [])
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    with pytest.raises(SystemExit):
        parser().run(bad, [])


def test_help_documents_the_debug_switch(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    assert "MINILLM_DEBUG=1 shows its traceback" in capsys.readouterr().out
