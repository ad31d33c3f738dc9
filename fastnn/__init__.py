"""fastnn: the classic one-hidden-layer network, trained by fused Numba kernels.

>>> import fastnn
>>> X, y = fastnn.make_moons()
>>> model = fastnn.train(X, y, hidden=3)
>>> model.score(X, y)
"""

from . import engine
from .data import make_moons
from .engine import compile
from .errors import Cancelled, DivergenceError, SweepError
from .model import Model, load
from .sweep import SweepResult, sweep
from .train import train

__all__ = ["make_moons", "train", "Model", "load", "DivergenceError", "Cancelled", "sweep", "SweepResult", "SweepError",
           "compile", "NeuralNetClassifier", "NeuralNetRegressor"]
__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)


def __getattr__(name):
    # The estimator imports scikit-learn (about half a second): only when it is asked for.
    if name in ("NeuralNetClassifier", "NeuralNetRegressor"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
