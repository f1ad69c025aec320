"""A training progress display: iteration, loss, ms per iteration and time left.

On a terminal it redraws one status line in place (carriage return); when
stdout is a file or a pipe (CI logs, ``| tee``) it prints a plain line every
``every`` iterations instead, so logs stay readable:

    iter   120/2000 |  6% | loss 2.4512 | lr 9.80e-04 | 45.2 ms/iter | ETA 1m25s

Milliseconds per iteration are the mean of the last ``window`` iterations
(what the time left is extrapolated from); the trainer passes each
iteration's duration, measured after ``backend.synchronize()``, so time spent
in evaluation or checkpointing does not inflate it.
"""
import collections
import sys
import time


def format_duration(seconds):
    """``3725 -> "1h02m05s"``, ``85 -> "1m25s"``, ``4.2 -> "4s"``."""
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


class Progress:
    """Shows progress of an iteration count from ``start`` to ``total``.

    ``update(step, loss=None, lr=None, seconds=None)`` after each iteration
    (``step`` iterations done); ``message(text)`` for a line of its own
    (evaluations, checkpoints); ``close()`` at the end. ``unit`` names what is
    counted ("iter", or e.g. "passage" for work without a loss).
    """

    def __init__(self, total, start=0, stream=None, every=None, window=20, min_interval=0.1, unit="iter"):
        self.total, self.start, self.unit = int(total), int(start), unit
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.every = every if every is not None else max(1, (self.total - self.start) // 20)
        self.times = collections.deque(maxlen=window)   # seconds of the last iterations
        self.min_interval = min_interval                # at most ~10 redraws per second on a TTY
        self._last_draw = 0.0
        self._last_clock = None
        self._line_open = False

    @property
    def ms_per_iter(self):
        """Mean milliseconds of the recent iterations (nan before the first)."""
        return 1000.0 * sum(self.times) / len(self.times) if self.times else float("nan")

    def eta_seconds(self, step):
        return (self.total - step) * self.ms_per_iter / 1000.0 if self.times else float("nan")

    def line(self, step, loss=None, lr=None):
        width = len(str(self.total))
        parts = [f"{self.unit} {step:>{width}d}/{self.total}", f"{100 * step / max(self.total, 1):3.0f}%"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if lr is not None:
            parts.append(f"lr {lr:.2e}")
        if self.times:
            parts += [f"{self.ms_per_iter:.1f} ms/{self.unit}", f"ETA {format_duration(self.eta_seconds(step))}"]
        return " | ".join(parts)

    def update(self, step, loss=None, lr=None, seconds=None):
        """Record one finished iteration (``step`` done so far) and maybe show it."""
        now = time.perf_counter()
        if seconds is None and self._last_clock is not None:
            seconds = now - self._last_clock
        self._last_clock = now
        if seconds is not None:
            self.times.append(seconds)
        if self.tty:
            if now - self._last_draw >= self.min_interval or step >= self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line(step, loss, lr) + "\033[K")
                self.stream.flush()
                self._line_open = True
        elif step % self.every == 0 or step >= self.total:
            self.stream.write(self.line(step, loss, lr) + "\n")
            self.stream.flush()

    def message(self, text):
        """Print ``text`` on a line of its own (below the status line on a terminal)."""
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self._line_open:
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False
