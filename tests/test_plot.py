"""fastnn.plot: every figure draws what it says, checked in its Axes and in the PNG it writes."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import fastnn  # noqa: E402
from fastnn import plot  # noqa: E402

HIDDEN = (1, 3, 20)


@pytest.fixture(scope="module")
def moons():
    return fastnn.make_moons()


@pytest.fixture(scope="module")
def result(moons):
    return fastnn.sweep(*moons, HIDDEN, test=0.3, passes=1000, progress=False)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plot._pyplot().close("all")


def pixels_near(png, rgb, tol=0.02):
    """How many pixels of the PNG are within tol of the colour rgb in every channel."""
    image = imread(png)[..., :3]
    return int(np.all(np.abs(image - np.asarray(rgb)[:3]) < tol, axis=-1).sum())


def on_white(rgb, alpha):
    return alpha * np.asarray(rgb)[:3] + (1 - alpha)


def scatter_of(ax):
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return points


def assert_classes_drawn(ax, X, y):
    """The points are X, coloured by class; the filled regions cover each class the model predicts."""
    k = int(y.max()) + 1
    colours = plot.class_colors(k)
    ax.figure.canvas.draw()  # maps the class values to colours
    points = scatter_of(ax)
    assert np.array_equal(points.get_offsets(), X)
    np.testing.assert_allclose(points.get_facecolors(), colours[y])
    (regions,) = [c for c in ax.collections if c is not points]
    np.testing.assert_array_equal(regions.levels, np.arange(k + 1) - 0.5)


def assert_png_shows_classes(png, k, panels=1):
    """Each class colour appears in the PNG, both as scatter points and (lighter) as a filled region."""
    for rgb in plot.class_colors(k):
        assert pixels_near(png, rgb) >= 10 * panels  # the centres of the points' markers
        assert pixels_near(png, on_white(rgb, 0.45)) >= 1000 * panels  # the region the model gives the class


def test_decision_boundary(moons, result, tmp_path):
    X, y = moons
    model = result.rows[1]["model"]
    fig = plot.decision_boundary(model, X, y, title="Hidden Layer size 3")
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert ax.get_title() == "Hidden Layer size 3"
    assert_classes_drawn(ax, X, y)
    fig.savefig(tmp_path / "b.png")
    assert_png_shows_classes(tmp_path / "b.png", 2)


def test_decision_boundary_follows_the_model(moons, tmp_path):
    # a model that predicts class 1 everywhere: the plane has one colour, the points still two
    X, y = moons
    model = fastnn.train(X, y, 2, passes=1)
    model.theta[-2:] = [-50.0, 50.0]  # b2 decides
    plot.decision_boundary(model, X, y).savefig(tmp_path / "one.png")
    c0, c1 = plot.class_colors(2)
    assert pixels_near(tmp_path / "one.png", on_white(c0, 0.45)) == 0
    assert pixels_near(tmp_path / "one.png", on_white(c1, 0.45)) > 10000
    assert pixels_near(tmp_path / "one.png", c0) > 0


def test_decision_boundary_three_classes_on_given_axes(tmp_path):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(150, centers=3, random_state=0)
    model = fastnn.train(X, y, 5, passes=500, reduction="mean", lr=0.5)
    fig, ax = plot._pyplot().subplots()
    assert plot.decision_boundary(model, X, y, ax=ax) is fig
    assert_classes_drawn(ax, X, y)
    fig.savefig(tmp_path / "blobs.png")
    assert_png_shows_classes(tmp_path / "blobs.png", 3)


def test_decision_boundary_needs_two_features(moons):
    X, y = moons
    model = fastnn.train(np.c_[X, X], y, 2, passes=1)
    with pytest.raises(ValueError, match="2 features"):
        plot.decision_boundary(model, np.c_[X, X], y)


def test_sweep_grid(moons, result, tmp_path):
    X, y = moons
    fig = plot.sweep_grid(result, X, y)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [f"Hidden Layer size {h}" for h in HIDDEN]
    assert len(fig.axes) == 4 and not fig.axes[3].get_visible()  # two columns, as the tutorial's figure
    for ax, row in zip(shown, result.rows):
        assert_classes_drawn(ax, X, y)
    fig.savefig(tmp_path / "grid.png")
    assert_png_shows_classes(tmp_path / "grid.png", 2, panels=len(HIDDEN))


def test_sweep_grid_names_what_varies(moons):
    X, y = moons
    result = fastnn.sweep(X, y, (2,), reg=(0.01, 0.1), passes=50, progress=False)
    titles = [ax.get_title() for ax in plot.sweep_grid(result, X, y).axes]
    assert titles == ["Hidden Layer size 2, reg=0.01", "Hidden Layer size 2, reg=0.1"]


def test_loss_curves(result):
    fig = plot.loss_curves(result)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == [f"H={h}" for h in HIDDEN]
    for line, row in zip(lines, result.rows):
        np.testing.assert_array_equal(line.get_xydata(), row["model"].loss_history)
    assert ax.get_yscale() == "log"


def test_accuracy_vs_hidden(result, tmp_path):
    fig = plot.accuracy_vs_hidden(result)
    (ax,) = fig.axes
    train, test = ax.get_lines()
    assert (train.get_label(), test.get_label()) == ("train", "test")
    assert list(train.get_xdata()) == sorted(HIDDEN)
    by_hidden = {row["hidden"]: row for row in result.rows}
    assert list(train.get_ydata()) == [by_hidden[h]["train_accuracy"] for h in sorted(HIDDEN)]
    assert list(test.get_ydata()) == [by_hidden[h]["test_accuracy"] for h in sorted(HIDDEN)]
    fig.savefig(tmp_path / "acc.png")
    for line in (train, test):
        assert pixels_near(tmp_path / "acc.png", matplotlib.colors.to_rgb(line.get_color()), 0.05) > 50


def test_accuracy_vs_hidden_without_test_set(moons):
    result = fastnn.sweep(*moons, (1, 2), passes=50, progress=False)
    (ax,) = plot.accuracy_vs_hidden(result).axes
    assert [line.get_label() for line in ax.get_lines()] == ["train"]


def test_tutorial_plot_shares_the_grid(moons):
    from fastnn import tutorial

    X, y = moons
    model = tutorial.build_model(X, y, 3, num_passes=200)
    plt = plot._pyplot()
    plt.figure()
    tutorial.plot_decision_boundary(lambda x: tutorial.predict(model, x), X, y)
    ax = plt.gca()
    xx, yy = plot.grid(X, step=0.01)
    np.testing.assert_allclose(ax.get_xlim(), [xx.min(), xx.max()])  # contourf spans the tutorial's grid
    assert xx[0, 1] - xx[0, 0] == pytest.approx(0.01)
    assert np.array_equal(scatter_of(ax).get_offsets(), X)


def test_missing_matplotlib_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install fastnn\[plot\]"):
        plot._pyplot()
