"""The tutorial's own functions, computed by fastnn: a drop-in for Denny Britz's notebook and its script.

In the notebook (``nn-from-scratch.ipynb``), replace the cells that define ``plot_decision_boundary``,
``calculate_loss``, ``predict`` and ``build_model`` by one line, and keep every other cell (its imports
included) as it is::

    from fastnn.tutorial import *

    model = build_model(3, print_loss=True)        # Loss after iteration 0: 0.432387 ...
    plot_decision_boundary(lambda x: predict(model, x))
    plt.title("Decision Boundary for hidden layer size 3")

The notebook's functions read the data from its globals; these read the tutorial's data instead, the
``np.random.seed(0); make_moons(200, noise=0.20)`` of the notebook's second cell. The script form, which
passes the data, works as well::

    X, y = generate_data()
    model = build_model(X, y, 3, print_loss=True)
    plot_decision_boundary(lambda x: predict(model, x), X, y)

Figures follow the originals: in a notebook each cell shows its own, and a script shows what
``plot_decision_boundary`` drew when it ends, as the script's closing ``plt.show()`` does (unless it
called ``plt.show()`` or closed the figures itself). Nothing is shown on a non-interactive backend such
as Agg.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import sys
import weakref
from typing import Any, Callable, overload

import numpy as np
from numpy.typing import ArrayLike

from .data import make_moons
from .model import Model
from .train import Session, _settings

__all__ = ["generate_data", "build_model", "calculate_loss", "predict", "plot_decision_boundary"]

nn_output_dim = 2  # the tutorial's two classes
# The tutorial's parameters, read at every call, as its functions read them: from the globals of the code that
# calls (the notebook's cell "epsilon = 0.01", the script's), else these.
epsilon = 0.01  # learning rate
reg_lambda = 0.01  # regularisation strength

TutorialModel = dict[str, np.ndarray]  # 'W1' (d, h), 'b1' (1, h), 'W2' (h, 2), 'b2' (1, 2), as the tutorial has it


def generate_data() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data: ``np.random.seed(0); sklearn.datasets.make_moons(200, noise=0.20)``.

    Sets NumPy's global seed as the tutorial does, so later draws from ``np.random`` match it too.
    """
    from sklearn.datasets import make_moons as sklearn_moons

    np.random.seed(0)
    return sklearn_moons(200, noise=0.20)


@functools.cache
def _notebook_data():
    # The same arrays as generate_data() (tests/test_data.py), without scikit-learn's import or the global
    # seed: the notebook's functions only read its data.
    return make_moons()


def _data(X, y, what):
    if X is None and y is None:
        return _notebook_data()
    if X is None or y is None:
        raise TypeError(f"{what}() takes both X and y, or neither (the tutorial's data); got only one")
    return np.asarray(X), np.asarray(y)


def _setting(name):
    """The value of one of the tutorial's parameters (epsilon, reg_lambda) that the code calling this module's
    function sees: its own global, as the notebook and the script set them and their functions read them, or
    else this module's."""
    caller = sys._getframe(2).f_globals
    if caller.get("__name__") != __name__ and name in caller:
        return caller[name]
    return globals()[name]


def _model(model, d, reg=None):
    if isinstance(model, Model):
        return model
    W1, b1, W2, b2 = (np.asarray(model[key], np.float64) for key in ("W1", "b1", "W2", "b2"))
    theta = np.concatenate([W1.ravel(), b1.ravel(), W2.ravel(), b2.ravel()])
    settings = dict(activation="tanh", output="softmax", reduction="sum", lr=epsilon,
                    reg=reg_lambda if reg is None else reg, passes=0, seed=0, batch_size=None, backend="numba")
    return Model(theta, d, W1.shape[1], settings)


def calculate_loss(model: TutorialModel | Model, X: ArrayLike | None = None, y: ArrayLike | None = None) -> float:
    """The tutorial's loss, (cross-entropy + reg/2 (|W1|^2 + |W2|^2)) / n, on (X, y) or the tutorial's data."""
    X, y = _data(X, y, "calculate_loss")
    return _model(model, np.shape(X)[1], _setting("reg_lambda")).loss(X, y)


def predict(model: TutorialModel | Model, x: ArrayLike) -> np.ndarray:
    """The tutorial's prediction: the argmax of the softmax output for each row of x (n,)."""
    return _model(model, np.shape(x)[1]).predict(x)


# The two signatures of build_model: the notebook's (data from its globals) and the script's.
def _notebook_form(nn_hdim, num_passes=20000, print_loss=False):
    pass


def _script_form(X, y, nn_hdim, num_passes=20000, print_loss=False):
    pass


def _bind(form, args, kwargs):
    signature = inspect.signature(form)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"build_model{signature}: {e}") from None
    bound.apply_defaults()
    return bound.arguments


def _train(X, y, nn_hdim, num_passes=20000, print_loss=False, log=print, lr=None, reg=None):
    """The tutorial's run as a fastnn Model; with print_loss, ``log`` gets the tutorial's loss lines. lr, reg:
    the notebook's epsilon and reg_lambda (default: this module's).

    The tutorial prints "Loss after iteration i" for i = 0, 1000, ... after the update of pass i, that is
    after i + 1 passes: the run advances to those passes and on, which changes no bit of it. Like the
    tutorial's code, it returns the model wherever the run ends: it stops only where the loss stops being
    finite or grows 1000x (fastnn.train's other rule, on where a run ends, would refuse a run of a pass or a
    few that ends above where it started, which the tutorial returns).
    """
    s = _settings(hidden=nn_hdim, passes=num_passes, lr=epsilon if lr is None else lr,
                  reg=reg_lambda if reg is None else reg, seed=0, activation="tanh", output="softmax",
                  reduction="sum", batch_size=None, backend="numba", loss_every=num_passes, shuffle=True,
                  n_threads=None, init=None, stop=None)
    session = Session(X, y, s)
    i = 0
    while i < num_passes:
        step = num_passes if not print_loss else 1 if i % 1000 == 0 else min(999, num_passes - i)
        session.advance(step)
        if print_loss and i % 1000 == 0:
            log("Loss after iteration %i: %f" % (i, session.model().loss(X, y)))
        i += step
    return session.finish(judge=False)


@overload
def build_model(nn_hdim: int, num_passes: int = 20000, print_loss: bool = False) -> TutorialModel: ...
@overload
def build_model(X: ArrayLike, y: ArrayLike, nn_hdim: int, num_passes: int = 20000,
                print_loss: bool = False) -> TutorialModel: ...
def build_model(*args: Any, **kwargs: Any) -> TutorialModel:
    """The tutorial's training: full-batch gradient descent from ``np.random.seed(0)`` weights.

    ``build_model(nn_hdim, num_passes=20000, print_loss=False)`` as in the notebook, on the tutorial's
    data, or ``build_model(X, y, nn_hdim, ...)`` as in the script. With print_loss, prints "Loss after
    iteration i: ..." for i = 0, 1000, ..., the loss after the update of pass i, as the tutorial does.

    Returns
    -------
    dict
        'W1' (d, h), 'b1' (1, h), 'W2' (h, 2), 'b2' (1, 2): the tutorial's model.
    """
    if "X" in kwargs or (args and np.ndim(args[0]) >= 1):
        a = _bind(_script_form, args, kwargs)
        X, y = np.asarray(a.pop("X")), np.asarray(a.pop("y"))
    else:
        a = _bind(_notebook_form, args, kwargs)
        X, y = _notebook_data()
    m = _train(X, y, **a, lr=_setting("epsilon"), reg=_setting("reg_lambda"))
    return {"W1": m.W1.copy(), "b1": m.b1.reshape(1, -1).copy(), "W2": m.W2.copy(),
            "b2": m.b2.reshape(1, -1).copy()}


def plot_decision_boundary(pred_func: Callable[[np.ndarray], ArrayLike], X: ArrayLike | None = None,
                           y: ArrayLike | None = None) -> None:
    """The tutorial's plot on the current axes: pred_func over a 0.01 grid around X, filled, and the points.

    ``plot_decision_boundary(pred_func)`` draws the tutorial's data, as the notebook does;
    ``plot_decision_boundary(pred_func, X, y)`` draws X, y, as the script does.
    """
    from .plot import _pyplot

    X, y = _data(X, y, "plot_decision_boundary")
    plt = _pyplot()
    _draw(plt, pred_func, X, y)
    _show_at_exit(plt, plt.gcf())


def _draw(plt, pred_func, X, y):
    """The tutorial's drawing, on pyplot's current axes."""
    from .plot import grid

    xx, yy = grid(X, step=0.01)
    Z = np.asarray(pred_func(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)
    plt.contourf(xx, yy, Z, cmap=plt.cm.Spectral)
    plt.scatter(X[:, 0], X[:, 1], c=y, cmap=plt.cm.Spectral)


# Figures plot_decision_boundary drew in a script, shown when it ends unless they were shown or closed.
_drawn: weakref.WeakSet[Any] = weakref.WeakSet()
_registered = False


def _interactive_session(plt):
    if hasattr(sys, "ps1") or sys.flags.interactive or plt.isinteractive():
        return True  # a REPL, or plt.ion(): figures show themselves
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None  # a notebook shows each cell's figures


def _non_interactive_backend(plt):
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        names = backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        names = ["agg", "cairo", "pdf", "pgf", "ps", "svg", "template"]
    return plt.get_backend().lower() in names


def _show_at_exit(plt, fig):
    global _registered
    if _interactive_session(plt) or _non_interactive_backend(plt):
        return
    _drawn.add(fig)
    if not _registered:
        atexit.register(_show_drawn)
        _registered = True


def _show_drawn():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    open_ = {plt.figure(n) for n in plt.get_fignums()}
    if any(fig in open_ for fig in _drawn):
        plt.show()
