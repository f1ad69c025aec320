"""The demos' command line: flag values checked as they are parsed, library errors as one line naming the flag.

A demo is a command-line program, so a learner's mistake should read like
argparse's own: one line on stderr, exit status 2, no traceback. Two layers
make that so.

1. *Parse time.* Each flag's ``type=`` checks its value (``positive_int``,
   ``non_negative_float``, ``probability``, ``existing_file``, ...), so an
   impossible value stops the program before anything runs::

       $ python demos/sample.py --top-k 0
       sample.py: error: argument --top-k: expected a positive integer, got 0 (see --help)

2. *Run time.* What depends on several flags, or on a file's contents, is
   checked where the work is done: by the library, whose errors speak of its
   own arguments ("n_embd (128) must be divisible by n_head (3)") and never of
   a demo's flags. ``ArgumentParser.run`` catches those errors (``ValueError``
   and ``OSError``: what the library raises for bad input) and names the flags
   the message is about: a flag whose destination (``n_head`` for ``--n-head``)
   is a word of the message, or whose text value (a path) the message quotes::

       $ python demos/train_shakespeare.py --n-head 3
       train_shakespeare.py: error: --n-head 3, --n-embd 128: n_embd (128) must be divisible by n_head (3)

Tracebacks are opt-in: with ``MINILLM_DEBUG=1`` in the environment the error
is raised as usual (an environment variable, like ``MINILLM_BACKEND``, so no
demo needs another flag and it works before the flags are parsed). Any other
exception (a ``KeyError``, a ``TypeError``) is a bug, not bad input, and keeps
its traceback.

This module is host-side plain Python; it lives in the package, not next to
the demos, because the tests load demos by path (no ``demos/`` on
``sys.path``) and every demo imports it the same way.
"""
import argparse
import math
import os
import re
import sys

DEBUG_ENV = "MINILLM_DEBUG"
INPUT_ERRORS = (ValueError, OSError)      # bad input, as the library reports it


def debug_enabled():
    """True when ``MINILLM_DEBUG`` is set to anything but "" or "0": show tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def warn(message):
    """One line on stderr for something the program did that the learner might not expect."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- flag types (argparse's type=)

def _parse(kind, text):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def _checked(kind, holds, expected):
    """A ``type=`` function: parse ``text`` as ``kind``; ``holds(value)`` or 'expected ..., got ...'."""
    def check(text):
        value = _parse(kind, text)
        if not holds(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    return check


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
non_negative_float = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
probability = _checked(float, lambda v: 0 < v <= 1, "a probability in (0, 1]")
dropout_rate = _checked(float, lambda v: 0 <= v < 1, "a probability in [0, 1)")


def positive_int_list(text):
    """ "2,8" -> [2, 8]: comma-separated positive integers, at least one."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return [positive_int(t) for t in items]


def name_list(text):
    """ "c_attn,c_fc" -> ("c_attn", "c_fc"): comma-separated names, at least one."""
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return items


def existing_file(text):
    if not os.path.isfile(text):
        what = "is a folder, not a file" if os.path.isdir(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


def existing_dir(text):
    if not os.path.isdir(text):
        what = "is a file, not a folder" if os.path.exists(text) else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}")
    return text


# ---------------------------------------------------------------- the parser

class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line, with ``run`` to report library errors.

        parser = cli.ArgumentParser(description="...")
        parser.add_argument("--top-k", type=cli.positive_int)
        return parser.run(generate, argv)      # generate(args); a ValueError -> one line, exit 2
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("epilog", f"An error prints one line; {DEBUG_ENV}=1 shows its traceback.")
        super().__init__(*args, **kwargs)

    def add_model_flags(self, block_size=64, n_layer=2, n_head=4, n_embd=64):
        """--block-size, --n-layer, --n-head, --n-embd: the GPT's shape (``GPTConfig``'s fields)."""
        self.add_argument("--block-size", type=positive_int, default=block_size, help="context length in tokens")
        self.add_argument("--n-layer", type=positive_int, default=n_layer)
        self.add_argument("--n-head", type=positive_int, default=n_head)
        self.add_argument("--n-embd", type=positive_int, default=n_embd)

    def add_sampling_flags(self, max_new_tokens=50, temperature=1.0):
        """--max-new-tokens, --temperature, --top-k, --top-p, --seed, --no-cache: ``generate``'s settings."""
        self.add_argument("--max-new-tokens", type=non_negative_int, default=max_new_tokens)
        self.add_argument("--temperature", type=non_negative_float, default=temperature, help="0 is greedy decoding")
        self.add_argument("--top-k", type=positive_int, default=None, help="keep the k most likely tokens")
        self.add_argument("--top-p", type=probability, default=None, help="nucleus sampling: keep probability mass p")
        self.add_argument("--seed", type=non_negative_int, default=0)
        self.add_argument("--no-cache", action="store_true", help="recompute the whole context at every step")

    def error(self, message):
        """argparse's usage errors, on one line (argparse alone prints the usage above it)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def flags_named_by(self, message, args):
        """["--n-head 3", ...]: the flags ``message`` is about (see the module docstring)."""
        named = []
        for action in self._actions:          # every flag, those in argument groups too
            value = getattr(args, action.dest, None)
            if isinstance(value, bool) or action.dest == "help":
                continue
            flag = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)
            about_dest = re.search(rf"(?<![\w.-]){re.escape(action.dest)}(?![\w-])", message)
            texts = {value, os.path.abspath(value)} if isinstance(value, str) and len(value) > 1 else ()
            about_value = any(re.search(rf"(?<![^\s'\"(]){re.escape(text)}(?![^\s'\",:;)])", message)
                              for text in texts)             # a path, as given or made absolute
            if about_dest or about_value:
                shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
                named.append(flag if value is None else f"{flag} {shown}")
        return named

    def explain(self, error, args):
        """The one-line text of a library error, with the flags it is about in front."""
        message = " ".join(str(error).split("\n"))
        if re.search(r"(?<![\w-])--[a-z]", message):         # the demo's own message names its flag
            return message
        named = self.flags_named_by(message, args)
        return f"{', '.join(named)}: {message}" if named else message

    def run(self, body, argv=None, failures=()):
        """Parse ``argv``, then return ``body(args)``, reporting bad input in one line.

        A ``ValueError`` or ``OSError`` from ``body`` prints ``prog: error: <flags>:
        <message>`` on stderr and exits with status 2; exceptions of the types in
        ``failures`` (a run that went wrong although its flags were fine, e.g.
        a diverged training) print the same way and exit with status 1.
        """
        args = self.parse_args(argv)
        try:
            return body(args)
        except INPUT_ERRORS + tuple(failures) as error:
            if debug_enabled():
                raise
            status = 1 if failures and isinstance(error, tuple(failures)) else 2
            self.exit(status, f"{self.prog}: error: {self.explain(error, args)}\n")
