"""The public API: Model, save/load, make_moons, warm starts, the tutorial helpers, the `fastnn train` command."""

import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets
import tutorial_literal as literal

import fastnn
from fastnn import tutorial

SETTINGS = ("activation", "output", "reduction", "lr", "reg", "passes", "seed", "batch_size", "backend")


@pytest.fixture(scope="module")
def moons():
    return fastnn.make_moons()


@pytest.fixture(scope="module", params=[("tanh", "softmax"), ("relu", "sigmoid"), ("sigmoid", "softmax")],
                ids=lambda p: "-".join(p))
def model(request, moons):
    activation, output = request.param
    return fastnn.train(*moons, 4, passes=1500, activation=activation, output=output, loss_every=500)


@pytest.fixture(scope="module")
def blobs3():
    """Three classes in five dimensions: predictions are not just a sign."""
    X, y = sklearn.datasets.make_blobs(90, n_features=5, centers=3, random_state=1)
    return X, y


def forward_by_hand(model, X):
    """The network's outputs, written out in NumPy: the formula of DESIGN.md."""
    f = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0)}
    z2 = f[model.settings["activation"]](X @ model.W1 + model.b1) @ model.W2 + model.b2
    if model.settings["output"] == "sigmoid":
        return 1 / (1 + np.exp(-z2))
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_model_attributes(moons, blobs3):
    X, y = blobs3
    m = fastnn.train(X, y, 7, passes=50, reduction="mean", lr=0.1, seed=2, batch_size=30)
    assert (m.n_features, m.hidden, m.n_classes, m.dtype) == (5, 7, 3, np.float64)
    assert [m.W1.shape, m.b1.shape, m.W2.shape, m.b2.shape] == [(5, 7), (7,), (7, 3), (3,)]
    assert m.theta.shape == (5 * 7 + 7 + 7 * 3 + 3,)
    np.testing.assert_array_equal(np.concatenate([m.W1.ravel(), m.b1, m.W2.ravel(), m.b2]), m.theta)
    assert {key: m.settings[key] for key in SETTINGS} == dict(
        activation="tanh", output="softmax", reduction="mean", lr=0.1, reg=0.01, passes=50, seed=2,
        batch_size=30, backend="numba")
    assert m.settings["hidden"] == 7
    assert fastnn.train(*moons, 3, passes=10, dtype="float32").dtype == np.float32


def test_predict_proba(model, moons):
    X, _ = moons
    P = model.predict_proba(X)
    assert P.shape == (len(X), 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-14)  # sigmoid outputs too: normalised per row
    expected = forward_by_hand(model, X)
    np.testing.assert_allclose(P, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-14)


def test_predict_and_score(model, moons, blobs3):
    X, y = moons
    labels = model.predict(X)
    assert labels.dtype == np.int64 and labels.shape == (len(X),)
    np.testing.assert_array_equal(labels, np.argmax(forward_by_hand(model, X), axis=1))
    assert model.score(X, y) == np.mean(labels == y) > 0.8  # the moons are learnable by 4 units
    X3, y3 = blobs3
    m3 = fastnn.train(X3, y3, 5, passes=300, reduction="mean", lr=0.1)
    assert set(m3.predict(X3)) == {0, 1, 2} and m3.score(X3, y3) == 1.0  # well separated blobs


def test_loss_is_the_tutorials_calculate_loss(moons):
    """tanh + softmax: the notebook's calculate_loss, verbatim (tests/tutorial_literal.py)."""
    X, y = moons
    m = fastnn.train(X, y, 3, passes=1500)
    by_hand = literal.calculate_loss({"W1": m.W1, "b1": m.b1, "W2": m.W2, "b2": m.b2}, X, y)
    assert m.loss(X, y) == pytest.approx(by_hand, rel=1e-12)
    assert tutorial.calculate_loss({"W1": m.W1, "b1": m.b1[None], "W2": m.W2, "b2": m.b2[None]}, X, y) == \
        pytest.approx(by_hand, rel=1e-12)


def test_loss_of_other_outputs(model, moons):
    """The same formula for any activation; squared error for sigmoid outputs (DESIGN.md)."""
    X, y = moons
    P = forward_by_hand(model, X)
    onehot = np.eye(2)[y]
    data = (0.5 * ((P - onehot) ** 2).sum() if model.settings["output"] == "sigmoid"
            else -np.log(P[np.arange(len(y)), y]).sum())
    penalty = model.settings["reg"] / 2 * ((model.W1 ** 2).sum() + (model.W2 ** 2).sum())
    assert model.loss(X, y) == pytest.approx((data + penalty) / len(y), rel=1e-12)


def test_tutorial_predict(moons):
    X, y = moons
    model = literal.build_model(X, y, 3, 300)
    np.testing.assert_array_equal(tutorial.predict(model, X), literal.predict(model, X))


def test_loss_history(model, moons):
    h = model.loss_history
    assert h.shape == (1500 // 500 + 1, 2) and h.dtype == np.float64
    np.testing.assert_array_equal(h[:, 0], [0, 500, 1000, 1500])
    assert h[-1, 1] == pytest.approx(model.loss(*moons), rel=1e-12)
    initial = fastnn.train(*moons, 4, passes=1, activation=model.settings["activation"],
                           output=model.settings["output"]).loss_history[0, 1]
    assert h[0, 1] == initial and h[-1, 1] < h[0, 1]
    # A last row at the end also when passes is not a multiple of loss_every.
    odd = fastnn.train(*moons, 3, passes=1234, loss_every=500)
    np.testing.assert_array_equal(odd.loss_history[:, 0], [0, 500, 1000, 1234])


@pytest.mark.parametrize("name", ["model.npz", "model.bin", "model"])
def test_save_load_round_trip(tmp_path, moons, blobs3, name):
    X, y = blobs3
    m = fastnn.train(X, y, 6, passes=120, activation="relu", output="sigmoid", reduction="mean", lr=0.05,
                     batch_size=25, dtype="float32", seed=5, loss_every=40)
    path = tmp_path / name
    m.save(path)
    assert os.listdir(tmp_path) == [name]  # written where asked: no .npz appended
    back = fastnn.load(path)
    assert back.theta.dtype == m.theta.dtype == np.float32
    np.testing.assert_array_equal(back.theta, m.theta)
    np.testing.assert_array_equal(back.loss_history, m.loss_history)
    assert back.settings == m.settings
    assert (back.n_features, back.hidden, back.n_classes) == (5, 6, 3)
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    assert back.loss(X, y) == m.loss(X, y)
    fastnn.load(str(path))  # a str works as a path too


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


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_warm_start_continues_exactly(moons, backend):
    """init=: 300 passes, then 700 more, is the run of 1000, bit for bit (full batch: no shuffles)."""
    first = fastnn.train(*moons, 3, passes=300, backend=backend)
    continued = fastnn.train(*moons, 3, passes=700, init=first, backend=backend)
    whole = fastnn.train(*moons, 3, passes=1000, backend=backend)
    np.testing.assert_array_equal(continued.theta, whole.theta)
    assert continued.settings["passes"] == 1000
    np.testing.assert_array_equal(continued.loss_history, [first.loss_history[0], first.loss_history[1],
                                                           whole.loss_history[1]])
    np.testing.assert_array_equal(first.theta, fastnn.train(*moons, 3, passes=300, backend=backend).theta)


def test_warm_start_continues_mini_batches_exactly(moons):
    settings = dict(batch_size=32, reduction="mean", lr=0.1)
    first = fastnn.train(*moons, 3, passes=30, **settings)
    continued = fastnn.train(*moons, 3, passes=70, init=first, **settings)
    np.testing.assert_array_equal(continued.theta, fastnn.train(*moons, 3, passes=100, **settings).theta)


# --- The command ---------------------------------------------------------------------------------------------

def fastnn_command(*args):
    return subprocess.run([sys.executable, "-m", "fastnn", *args], capture_output=True, text=True, timeout=300)


def test_train_command(moons):
    result = fastnn_command("train", "--passes", "2000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Traceback" not in result.stderr
    model = fastnn.train(*moons, 3, passes=2000)
    expected = [f"Loss after {passes:6d} passes: {loss:.6f}" for passes, loss in
                zip((0, 1000, 2000), model.loss_history[:, 1])]
    assert lines[:3] == expected
    assert lines[3] == f"Training accuracy: {model.score(*moons):.4f}"
    assert lines[4].startswith("Time: ") and " s for 2000 passes" in lines[4]


@pytest.mark.parametrize("args", [("--hidden", "0"), ("--activation", "softplus"), ("--passes", "abc")],
                         ids=["hidden0", "activation", "passes-not-int"])
def test_train_command_bad_argument(args):
    """Exit code 2 and one line that says what is wrong, no traceback (argparse's own errors print the
    usage before that line)."""
    result = fastnn_command("train", "--quiet", *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("fastnn train: error: ")]
    assert len(errors) == 1, result.stderr
    assert args[0].lstrip("-") in errors[0]
    if not errors[0].startswith("fastnn train: error: argument "):  # fastnn's own checks: that line alone
        assert result.stderr.splitlines() == errors
