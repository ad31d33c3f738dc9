"""Fixtures shared by the test modules. Plain constants and helper functions live in helpers.py.

``pytest -m "not slow"`` leaves out the cases that take more than a few seconds with a warm Numba cache
(markers: pyproject.toml).
"""

import numpy as np
import pytest

import fastnn


@pytest.fixture
def rng():
    """A fresh generator per test, so that no test depends on which tests ran before it."""
    return np.random.default_rng(20240512)


@pytest.fixture(scope="session")
def moons():
    """The tutorial's data, (X (200, 2), y (200,)), shared by every module: read-only, so that no test can
    change it for the others (the kernels take read-only and writable arrays alike)."""
    X, y = fastnn.make_moons()
    X.flags.writeable = y.flags.writeable = False
    return X, y


@pytest.fixture(scope="session")
def trained(moons):
    """The tutorial's network (H = 3) after 300 passes: a model to predict with, save and load."""
    return fastnn.train(*moons, 3, passes=300)
