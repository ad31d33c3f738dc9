"""fastnn.make_moons: draw for draw what scikit-learn's make_moons draws, the tutorial's data by default."""

import numpy as np
import pytest
import sklearn.datasets

import fastnn


def test_make_moons_is_the_tutorials_data():
    np.random.seed(0)
    X, y = sklearn.datasets.make_moons(200, noise=0.20)
    ours, labels = fastnn.make_moons()
    np.testing.assert_array_equal(ours, X)
    np.testing.assert_array_equal(labels, y)
    assert ours.dtype == np.float64 and labels.dtype == np.int64
    X5, y5 = sklearn.datasets.make_moons(50, noise=0.3, random_state=np.random.RandomState(5))
    ours, labels = fastnn.make_moons(50, noise=0.3, random_state=5, dtype=np.float32)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, X5.astype(np.float32))
    np.testing.assert_array_equal(labels, y5)


@pytest.mark.parametrize("n, noise, seed", [(2, 0.2, 0), (7, 0.0, 3), (1001, 0.5, 11)])
def test_make_moons_draws_what_scikit_learn_draws(n, noise, seed):
    # fastnn writes make_moons out (importing scikit-learn costs a second): odd n, no noise, other seeds
    X, y = sklearn.datasets.make_moons(n, noise=noise, random_state=np.random.RandomState(seed))
    ours, labels = fastnn.make_moons(n, noise=noise, random_state=seed)
    np.testing.assert_array_equal(ours, X)
    np.testing.assert_array_equal(labels, y)
