"""The tutorial's data set."""

import numpy as np

from . import _validate as check


def make_moons(n_samples=200, noise=0.20, random_state=0, dtype=np.float64):
    """Two interleaving half-moons, ``(X (n, 2), y (n,) int64)``; the defaults are the tutorial's data.

    A thin wrapper over ``sklearn.datasets.make_moons``; ``random_state=0`` draws what the tutorial's
    ``np.random.seed(0); make_moons(200, noise=0.20)`` draws.
    """
    from sklearn.datasets import make_moons as moons  # scikit-learn's import costs ~0.5 s: only when used

    n_samples = check.integer(n_samples, "n_samples", minimum=2)
    noise = check.real(noise, "noise")
    X, y = moons(n_samples, noise=noise, random_state=np.random.RandomState(random_state))
    return X.astype(check.dtype_of(dtype)), y.astype(np.int64)
