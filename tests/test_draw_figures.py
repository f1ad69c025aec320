"""demos/draw_figures.py: every figure of docs/img is drawn by minillm's own functions, without error."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_demo():
    spec = importlib.util.spec_from_file_location("draw_figures", os.path.join(REPO, "demos", "draw_figures.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_every_figure_is_drawn_and_each_is_in_the_docs(tmp_path):
    demo = load_demo()
    demo.main(["--out", str(tmp_path)])
    for name in demo.FIGURES:
        path = tmp_path / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert os.path.exists(os.path.join(REPO, "docs", "img", f"{name}.png")), f"docs/img/{name}.png not committed"
    pages = "".join(open(os.path.join(REPO, "docs", page), encoding="utf-8").read()
                    for page in os.listdir(os.path.join(REPO, "docs")) if page.endswith(".md"))
    unused = [name for name in demo.FIGURES if f"img/{name}.png" not in pages]
    assert not unused, f"figures no page shows: {unused}"


def test_an_unknown_figure_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_demo().main(["--only", "nope"])
    assert exit_info.value.code == 2
    assert "--only" in capsys.readouterr().err
