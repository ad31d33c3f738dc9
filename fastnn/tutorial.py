"""The tutorial's own functions, computed by fastnn.

Swap the tutorial's imports for ``from fastnn.tutorial import *`` and its script runs unchanged::

    X, y = generate_data()
    model = build_model(X, y, 3, print_loss=True)
    plot_decision_boundary(lambda x: predict(model, x), X, y)
"""

import numpy as np

from .model import Model
from .train import train

nn_output_dim = 2  # the tutorial's two classes
epsilon = 0.01  # learning rate
reg_lambda = 0.01  # regularisation strength


def generate_data():
    """The tutorial's data: ``np.random.seed(0); make_moons(200, noise=0.20)``."""
    from sklearn.datasets import make_moons

    np.random.seed(0)
    return make_moons(200, noise=0.20)


def _model(model, d):
    W1, b1, W2, b2 = (np.asarray(model[key], np.float64) for key in ("W1", "b1", "W2", "b2"))
    theta = np.concatenate([W1.ravel(), b1.ravel(), W2.ravel(), b2.ravel()])
    settings = dict(activation="tanh", output="softmax", reduction="sum", lr=epsilon, reg=reg_lambda,
                    passes=0, seed=0, batch_size=None, backend="numba")
    return Model(theta, d, W1.shape[1], settings)


def calculate_loss(model, X, y):
    """The tutorial's loss: (cross-entropy + reg/2 (|W1|^2 + |W2|^2)) / n."""
    return _model(model, np.shape(X)[1]).loss(X, y)


def predict(model, x):
    """The tutorial's prediction: argmax of the softmax output, per row of x."""
    return _model(model, np.shape(x)[1]).predict(x)


def build_model(X, y, nn_hdim, num_passes=20000, print_loss=False):
    """The tutorial's training: full-batch gradient descent, returns {'W1', 'b1', 'W2', 'b2'}.

    With print_loss, prints "Loss after iteration i" for i = 0, 1000, ...: the loss after pass i + 1,
    as the tutorial's loop prints it.
    """
    settings = dict(lr=epsilon, reg=reg_lambda, seed=0)
    if not print_loss:
        m = train(X, y, nn_hdim, passes=num_passes, loss_every=num_passes, **settings)
    else:
        m, i = None, 0
        while i < num_passes:
            step = 1 if i % 1000 == 0 else min(999, num_passes - i)
            m = train(X, y, nn_hdim, passes=step, loss_every=step, init=m, **settings)
            if i % 1000 == 0:
                print("Loss after iteration %i: %f" % (i, m.loss(X, y)))
            i += step
    return {"W1": m.W1.copy(), "b1": m.b1.reshape(1, -1).copy(), "W2": m.W2.copy(),
            "b2": m.b2.reshape(1, -1).copy()}


def plot_decision_boundary(pred_func, X, y):
    """The tutorial's plot: pred_func on a 0.01 grid around X, filled contours, and the points."""
    from .plot import _pyplot, grid

    plt = _pyplot()
    xx, yy = grid(X, step=0.01)
    Z = pred_func(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    plt.contourf(xx, yy, Z, cmap=plt.cm.Spectral)
    plt.scatter(X[:, 0], X[:, 1], c=y, cmap=plt.cm.Spectral)
