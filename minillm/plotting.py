"""The loss curve of a training run as a PNG (matplotlib, Agg canvas, no display needed).

    plot_loss_curve(history, "out/shakespeare/loss.png")

``history`` is the trainer's record: ``{"train_loss": [loss of iteration 1, 2, ...],
"evals": [[step, train_loss, val_loss], ...]}``. The per-iteration training
loss is drawn faint with a moving average over it; the evaluation estimates
(mean over ``eval_iters`` batches) are the points that matter, in particular
the validation loss: when it turns up while the training loss still falls,
the model has started to memorise (overfit).
"""
import os

import numpy


def moving_average(values, window):
    """The mean of each run of ``window`` consecutive values (shorter at the start)."""
    values = numpy.asarray(values, dtype=numpy.float64)
    if values.size == 0:
        return values
    cumulative = numpy.concatenate([[0.0], numpy.cumsum(values)])
    index = numpy.arange(1, values.size + 1)
    lower = numpy.maximum(index - window, 0)
    return (cumulative[index] - cumulative[lower]) / (index - lower)


def plot_loss_curve(history, path, title="training loss"):
    """Write the loss curve of ``history`` to the PNG file ``path``; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # no pyplot: no global state
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    losses = history.get("train_loss", [])
    if losses:
        steps = numpy.arange(1, len(losses) + 1)
        axes.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train (one batch)")
        window = max(1, len(losses) // 50)
        if window > 1:
            axes.plot(steps, moving_average(losses, window), color="tab:blue", linewidth=1.2,
                      label=f"train (moving average of {window})")
    evals = numpy.asarray(history.get("evals", []), dtype=numpy.float64).reshape(-1, 3)
    if len(evals):
        axes.plot(evals[:, 0], evals[:, 1], "o-", color="tab:green", markersize=3, label="train (estimate)")
        axes.plot(evals[:, 0], evals[:, 2], "o-", color="tab:red", markersize=3, label="validation (estimate)")
        best = int(numpy.nanargmin(evals[:, 2])) if numpy.isfinite(evals[:, 2]).any() else None
        if best is not None:
            axes.annotate(f"{evals[best, 2]:.3f}", (evals[best, 0], evals[best, 2]),
                          textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8, color="tab:red")
    axes.set_xlabel("iteration")
    axes.set_ylabel("cross-entropy (nats per token)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if losses or len(evals):
        axes.legend(fontsize=8)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    figure.savefig(path)
    return path
