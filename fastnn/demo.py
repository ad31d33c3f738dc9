"""The tutorial's study end to end, as ``fastnn demo`` runs it.

1. the data; 2. the network with 3 hidden units, its loss printed as the tutorial prints it, and its
decision boundary; 3. the tutorial's figure: every hidden size trained on all 200 points, on the
tutorial's 5 x 2 grid, each panel the model the tutorial's own code makes, and their loss curves; 4. the
overfitting the tutorial describes, measured: the same sizes trained on 70% of the points and tested on
the held-out 30%, which its figure marks.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import _validate as check
from . import plot, tutorial
from .data import make_moons
from .errors import DivergenceError
from .model import Model
from .sweep import SweepResult, sweep
from .train import train

HIDDEN = (1, 2, 3, 4, 5, 20, 50)  # the tutorial's hidden sizes
TEST = 0.3  # the held-out fraction of the overfitting study
FILES = {"hidden_3": "hidden_3.png", "tutorial_grid": "tutorial_grid.png", "loss_curves": "loss_curves.png",
         "overfitting_grid": "overfitting_grid.png", "accuracy_vs_hidden": "accuracy_vs_hidden.png",
         "sweep": "sweep.csv"}


def tutorial_models(X: ArrayLike, y: ArrayLike, hidden: Sequence[int] = HIDDEN, passes: int = 20000,
                    n_jobs: int | None = None, progress: bool = False) -> SweepResult:
    """Each hidden size trained on all of (X, y) as the tutorial's ``build_model`` trains it.

    Seed 0, lr 0.01, reg 0.01, summed gradients: every row's model is, bit for bit, ``build_model``'s
    (``fastnn.tutorial``), about 100 loss records each for the loss curves.
    """
    passes = check.integer(passes, "passes")
    return sweep(X, y, hidden, passes=passes, n_jobs=n_jobs, progress=progress,
                 loss_every=max(1, passes // 100), judge_end=False)  # models wherever they end, as build_model's


def tutorial_figure(models: SweepResult | Sequence[Model], X: ArrayLike, y: ArrayLike) -> Any:
    """The tutorial's figure: ``plt.figure(figsize=(16, 32))``, panel i at ``plt.subplot(5, 2, i + 1)``,
    titled 'Hidden Layer size %d', drawn by the tutorial's ``plot_decision_boundary``; returns the Figure."""
    models = [row["model"] for row in models.rows] if isinstance(models, SweepResult) else list(models)
    if not 1 <= len(models) <= 10:
        raise ValueError(f"the tutorial's 5 x 2 grid holds 1 to 10 models; got {len(models)}")
    X, y = np.asarray(X), np.asarray(y)
    plt = plot._pyplot()
    fig = plt.figure(figsize=(16, 32))
    for i, model in enumerate(models):
        plt.subplot(5, 2, i + 1)
        plt.title("Hidden Layer size %d" % model.hidden)
        tutorial._draw(plt, model.predict, X, y)
    return fig


def boundary_figure(model: Model, X: ArrayLike, y: ArrayLike) -> Any:
    """The tutorial's figure of one network, at the notebook's figure size (10, 8); returns the Figure."""
    plt = plot._pyplot()
    fig = plt.figure(figsize=(10, 8))
    tutorial._draw(plt, model.predict, np.asarray(X), np.asarray(y))
    plt.title("Decision Boundary for hidden layer size %d" % model.hidden)
    return fig


def _print(line):
    print(line, flush=True)  # each line as it comes, also into a pipe: the first precedes seconds of compiling


def _save(fig, path, log):
    fig.savefig(path, dpi=100)
    plot._pyplot().close(fig)
    log(f"   Wrote: {path}")


def run(out: str | os.PathLike = "fastnn-demo", passes: int = 20000, n_jobs: int | None = None,
        progress: bool = False, log: Callable[[str], Any] = _print) -> dict[str, Any]:
    """Run the study, print it through ``log`` and write its figures and sweep.csv to ``out``.

    Parameters
    ----------
    out : path
        Folder for the files (created if missing).
    passes : int
        Passes of every training (the tutorial's 20000).
    n_jobs : int, optional
        Threads of the sweeps (default: every core).
    progress : bool
        Progress bars on stderr.
    log : callable
        Receives each line of the report (default: print it at once).

    Returns
    -------
    dict
        ``model`` (H = 3), ``tutorial`` (SweepResult on all points), ``overfitting`` (SweepResult on 70%,
        tested on 30%) and ``files`` (name: path written).
    """
    passes = check.integer(passes, "passes")
    if n_jobs is not None:  # checked now, not by the sweeps after the first steps
        n_jobs = check.integer(n_jobs, "n_jobs")
    began = time.perf_counter()
    # Printed before matplotlib and the kernels load: a first run spends seconds compiling them.
    log("1. The data: make_moons(200, noise=0.20) with seed 0, two interleaving half-moons.")
    plot._pyplot()  # fail now, not after the runs, when matplotlib is missing
    os.makedirs(out, exist_ok=True)
    files = {name: os.path.join(out, file) for name, file in FILES.items()}
    X, y = make_moons()
    start = time.perf_counter()
    try:
        train(X, y, 3, passes=1)
    except DivergenceError:  # one pass only loads the kernels; the runs themselves report divergence
        pass
    log(f"   (loading or compiling the kernels took {time.perf_counter() - start:.2f} s)")

    log(f"\n2. A network with 3 hidden tanh units, {passes} passes of gradient descent (lr 0.01, reg 0.01); "
        "the loss after iteration i is the loss after its update, as the tutorial prints it:")
    start = time.perf_counter()
    model = tutorial._train(X, y, 3, passes, print_loss=True, log=lambda line: log("   " + line))
    log(f"   Training accuracy {model.score(X, y):.4f}, in {time.perf_counter() - start:.3f} s")
    _save(boundary_figure(model, X, y), files["hidden_3"], log)

    log(f"\n3. The tutorial's figure: hidden layer sizes {', '.join(map(str, HIDDEN))}, each trained on all "
        f"{len(X)} points:")
    start = time.perf_counter()
    every = tutorial_models(X, y, passes=passes, n_jobs=n_jobs, progress=progress)
    for row in every.rows:
        log(f"   Hidden Layer size {row['hidden']:2d}: loss {row['train_loss']:.6f}, "
            f"training accuracy {row['train_accuracy']:.4f}")
    log(f"   {len(every)} trainings in {time.perf_counter() - start:.2f} s")
    _save(tutorial_figure(every, X, y), files["tutorial_grid"], log)
    _save(plot.loss_curves(every), files["loss_curves"], log)

    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST, stratify=y, random_state=0)
    log(f"\n4. Overfitting: the same sizes trained on {len(X_train)} of the points ({1 - TEST:.0%}) and tested "
        f"on the other {len(X_test)}, held out:")
    start = time.perf_counter()
    held = sweep(X_train, y_train, HIDDEN, test=(X_test, y_test), passes=passes, n_jobs=n_jobs,
                 progress=progress, judge_end=False)
    log("   " + held.table().replace("\n", "\n   "))
    log(f"   {len(held)} trainings in {time.perf_counter() - start:.2f} s")
    held.to_csv(files["sweep"])
    log(f"   Wrote: {files['sweep']}")
    _save(plot.sweep_grid(held, X_train, y_train, test=(X_test, y_test)), files["overfitting_grid"], log)
    _save(plot.accuracy_vs_hidden(held), files["accuracy_vs_hidden"], log)

    top, fit = held.best("test_accuracy"), held.best("train_accuracy")
    log(f"\nTraining accuracy reaches {fit['train_accuracy']:.4f} at {fit['hidden']} hidden units; test accuracy "
        f"is best, {top['test_accuracy']:.4f}, at {top['hidden']}. The boundary grows more complex with the "
        "hidden size (tutorial_grid.png); larger layers fit the noise of the training points, which the "
        "held-out points show (overfitting_grid.png, accuracy_vs_hidden.png).")
    log(f"Done in {time.perf_counter() - began:.1f} s; figures in {out}{os.sep}")
    return dict(model=model, tutorial=every, overfitting=held, files=files)
