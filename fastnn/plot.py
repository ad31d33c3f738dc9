"""Figures: decision boundaries, the tutorial's hidden-size grid, loss curves, accuracy against hidden size.

matplotlib is an optional extra (``pip install fastnn[plot]``), imported on the first plot. Every
function returns the matplotlib Figure; ``fig.savefig("name.png")`` writes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from . import _validate as check
from .model import Model
from .sweep import SweepResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CMAP = "Spectral"  # the tutorial's colour map; class c of K gets CMAP(c / (K - 1))


def _pyplot() -> Any:
    """matplotlib.pyplot, on the Agg backend when there is no display to show figures on."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("fastnn.plot needs matplotlib: pip install fastnn[plot]") from None
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or
                                                          os.environ.get("WAYLAND_DISPLAY"))
    if headless and "matplotlib.pyplot" not in sys.modules and "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid(X: ArrayLike, step: float | None = None, margin: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(xx, yy): a mesh over the first two columns of X, ``margin`` beyond the data, spaced ``step``
    (default: 1/400 of the wider side, about the tutorial's 0.01 on its data)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] == 0 or not np.isfinite(X[:, :2]).all():
        raise ValueError(f"X must hold at least one point of finite values to draw around; got shape {X.shape}"
                         + (", with NaN or inf" if X.size and not np.isfinite(X[:, :2]).all() else ""))
    lo, hi = X[:, :2].min(axis=0) - margin, X[:, :2].max(axis=0) + margin
    step = float((hi - lo).max()) / 400 if step is None else check.real(step, "step", strict=True)
    # Checked before the mesh exists: a step far too fine for the data's range (1e-4 on make_moons' is 1.5e9
    # points) would otherwise be allocated, predicted on, and end the process for want of memory.
    points = np.prod(np.ceil((hi - lo) / step))
    check.memory(points * _BYTES_PER_POINT, f"step={step} over the data's range ({points:.3g} grid points)",
                 "use a larger step")
    return np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))


# What a grid point costs while drawn: its two coordinates, their copy as a (points, 2) array, the outputs of
# a model of a few classes and the predicted class (float64 each), with room for matplotlib's own copies.
_BYTES_PER_POINT = 128


def class_colors(n_classes: int) -> np.ndarray:
    """The RGBA colour of each class, as the scatter and the filled regions draw it."""
    plt = _pyplot()
    return plt.get_cmap(CMAP)(np.linspace(0, 1, n_classes))


def _classifier(model: object, what: str) -> None:
    """A TypeError unless model is a fastnn.Model, a ValueError if it regresses (no classes to draw)."""
    if not isinstance(model, Model):
        raise TypeError(f"{what} draws a fastnn.Model; got {type(model).__name__}")
    if model.settings["output"] == "identity":
        raise ValueError(f"{what} draws the classes a classifier predicts; this model has identity outputs "
                         "(a regression)")


def _sweep_result(result: object, what: str) -> SweepResult:
    if not isinstance(result, SweepResult):
        raise TypeError(f"{what} draws a SweepResult (from fastnn.sweep); got {type(result).__name__}")
    return result


def _two_features(X: ArrayLike, what: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"{what} draws 2-D data: X must have 2 features; got shape {X.shape}")
    return X


def decision_boundary(model: Model, X: ArrayLike, y: ArrayLike, ax: Axes | None = None, step: float | None = None,
                      title: str | None = None, test: tuple[ArrayLike, ArrayLike] | None = None) -> Figure:
    """The classes ``model`` predicts over the plane (filled regions) and the points (X, y) on top.

    Parameters
    ----------
    model : fastnn.Model
        Trained on 2 features.
    X : array (n, 2)
    y : array (n,)
        Class labels 0..K-1, coloured as the regions.
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).
    step : float, optional
        Spacing of the prediction grid (default: 1/400 of the data's wider side).
    title : str, optional
    test : (X_test (m, 2), y_test (m,)), optional
        Held-out points, drawn as triangles in their class colour (X drawn as circles), with a legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    _classifier(model, "decision_boundary")
    X = _two_features(X, "decision_boundary")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    k = model.n_classes
    # The grid covers the test points too, so that none falls outside the coloured regions.
    xx, yy = grid(X if test is None else np.vstack([X, _two_features(test[0], "decision_boundary")]), step)
    Z = model.predict(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    # One level per class and the same norm for regions and points, so a class has one colour in both.
    ax.contourf(xx, yy, Z, levels=np.arange(k + 1) - 0.5, cmap=CMAP, vmin=0, vmax=k - 1, alpha=0.45)
    points: dict[str, Any] = dict(cmap=CMAP, vmin=0, vmax=k - 1, edgecolors="k")
    ax.scatter(X[:, 0], X[:, 1], c=np.asarray(y), s=20, linewidths=0.4, label="train", **points)
    if test is not None:
        X_test = np.asarray(test[0])
        # Larger, thick-edged triangles: held-out points must stand out from the training circles at a glance.
        ax.scatter(X_test[:, 0], X_test[:, 1], c=np.asarray(test[1]), marker="^", s=46, linewidths=1.2,
                   label="test (held out)", **points)
        ax.legend(loc="lower left", fontsize="small", framealpha=0.8)
    if title is not None:
        ax.set_title(title)
    return _figure(ax)


def _label(row, varying):
    return "".join(f", {name}={row[name]:g}" for name in ("reg", "seed") if name in varying)


def _varying(result):
    return {name for name in ("reg", "seed") if len({row[name] for row in result.rows}) > 1}


def sweep_grid(result: SweepResult, X: ArrayLike, y: ArrayLike, ncols: int = 2,
               test: tuple[ArrayLike, ArrayLike] | None = None) -> Figure:
    """One decision-boundary panel per run, titled "Hidden Layer size N" as in the tutorial's figure.

    Parameters
    ----------
    result : SweepResult
        From ``fastnn.sweep`` on 2 features; panels follow its rows (grid order).
    X, y : arrays (n, 2), (n,)
        The points to draw on every panel (usually the sweep's training data).
    ncols : int
        Panels per row (the tutorial's figure has 2).
    test : (X_test, y_test), optional
        The held-out points, marked apart on every panel (see ``decision_boundary``); the titles then give
        each run's train and test accuracy.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    _sweep_result(result, "sweep_grid")
    X = _two_features(X, "sweep_grid")
    n = len(result.rows)
    if n == 0:
        raise ValueError("the sweep has no rows to draw")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    varying = _varying(result)
    for ax, row in zip(axes.flat, result.rows):
        title = f"Hidden Layer size {row['hidden']}" + _label(row, varying)
        if test is not None and row["test_accuracy"] is not None:
            title += f": train {row['train_accuracy']:.3f}, test {row['test_accuracy']:.3f}"
        decision_boundary(row["model"], X, y, ax=ax, title=title, test=test)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def _figure(ax: Axes) -> Figure:
    return cast("Figure", ax.figure)  # an Axes of a subfigure is not drawn here: its figure is a Figure


def _runs(runs: Any) -> list[tuple[str, Model]]:
    """(label, Model) pairs from a SweepResult, a Model or an iterable of Models."""
    if isinstance(runs, SweepResult):
        varying = _varying(runs)
        return [(f"H={row['hidden']}" + _label(row, varying), row["model"]) for row in runs.rows]
    models = [runs] if isinstance(runs, Model) else list(runs) if isinstance(runs, Iterable) else None
    if models is None or not all(isinstance(m, Model) for m in models):
        raise TypeError(f"loss_curves draws a fastnn.Model, a list of them or a SweepResult; got "
                        f"{type(runs).__name__}" + (f" holding {type(models[0]).__name__}" if models else ""))
    varying = [name for name in ("activation", "output", "reg", "seed", "lr")
               if len({m.settings[name] for m in models}) > 1]
    return [(f"H={m.hidden}" + "".join(f", {name}={m.settings[name]}" for name in varying), m) for m in models]


def loss_curves(runs: SweepResult | Model | Iterable[Model], ax: Axes | None = None) -> Figure:
    """The training loss of every run against passes (log scale), one line per run.

    Parameters
    ----------
    runs : SweepResult, Model or iterable of Models
        The lines: each model's ``loss_history``, labelled by hidden size (and by what else differs).
    ax : matplotlib Axes, optional
        Where to draw (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
    """
    lines = _runs(runs)
    if not lines:
        raise ValueError("loss_curves has no runs to draw")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    for label, model in lines:
        history = model.loss_history
        ax.plot(history[:, 0], history[:, 1], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("passes")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize="small", ncol=2)
    return _figure(ax)


def accuracy_vs_hidden(result: SweepResult, ax: Axes | None = None) -> Figure:
    """Train and test accuracy against hidden size (mean over seeds, one pair of lines per reg).

    Training accuracy keeps rising with the hidden size while test accuracy stalls or falls: the
    overfitting the tutorial describes.
    """
    plt = _pyplot()
    _sweep_result(result, "accuracy_vs_hidden")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    regs = list(dict.fromkeys(row["reg"] for row in result.rows))
    splits = ("train", "test") if result.tested else ("train",)
    for reg in regs:
        rows = [row for row in result.rows if row["reg"] == reg]
        hidden = sorted({row["hidden"] for row in rows})
        for split, style in zip(splits, ("o-", "s--")):
            acc = [np.mean([r[f"{split}_accuracy"] for r in rows if r["hidden"] == h]) for h in hidden]
            ax.plot(hidden, acc, style, label=split + (f" (reg={reg:g})" if len(regs) > 1 else ""))
    ax.set_xscale("log")
    ax.set_xticks(sorted({row["hidden"] for row in result.rows}))
    ax.set_xticklabels([str(h) for h in sorted({row["hidden"] for row in result.rows})])
    ax.minorticks_off()
    ax.set_xlabel("hidden layer size")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy against hidden layer size")
    ax.legend()
    return _figure(ax)
