"""The tutorial's data set."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from . import _validate as check


def make_moons(n_samples: int = 200, noise: float = 0.20, random_state: int = 0,
               dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half-moons, ``(X (n, 2), y (n,) int64)``; the defaults are the tutorial's data.

    Draw for draw ``sklearn.datasets.make_moons(n_samples, noise=noise, random_state=RandomState(seed))``
    (tests/test_data.py compares them), so ``random_state=0`` gives what the tutorial's
    ``np.random.seed(0); make_moons(200, noise=0.20)`` gives. Written out rather than imported because
    importing scikit-learn costs about a second, most of a warm ``fastnn train``.
    """
    n_samples = check.integer(n_samples, "n_samples", minimum=2)
    noise = check.real(noise, "noise")
    rng = np.random.RandomState(check.seed(random_state, "random_state"))
    n_out = n_samples // 2
    n_in = n_samples - n_out
    outer, inner = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(outer), 1 - np.cos(inner)),
                   np.append(np.sin(outer), 1 - np.sin(inner) - 0.5)]).T
    y = np.hstack([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = np.arange(n_samples)
    rng.shuffle(order)  # sklearn.utils.shuffle: one shuffle of the indices, then the noise
    X, y = X[order], y[order]
    X += rng.normal(scale=noise, size=X.shape)
    return X.astype(check.dtype_of(dtype)), y
