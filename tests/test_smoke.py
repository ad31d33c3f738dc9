import numpy as np

import fastnn


def test_train_matches_reference_backend():
    X, y = fastnn.make_moons()
    a = fastnn.train(X, y, 3, passes=500)
    b = fastnn.train(X, y, 3, passes=500, backend="numpy")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-10, atol=1e-12)
