"""fastnn: the classic one-hidden-layer network, trained by fused Numba kernels.

>>> import fastnn
>>> X, y = fastnn.make_moons()
>>> model = fastnn.train(X, y, hidden=3)
>>> model.score(X, y)
"""

from .data import make_moons
from .model import Model, load
from .train import DivergenceError, train

__all__ = ["make_moons", "train", "Model", "load", "DivergenceError"]
__version__ = "0.1.0"
