"""fastnn.plot: every figure draws what it says, checked in its Axes and in the PNG it writes."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib  # noqa: E402
from helpers import assert_png_shows_classes, on_white, pixels_near  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

import fastnn  # noqa: E402
from fastnn import _validate as check  # noqa: E402
from fastnn import plot  # noqa: E402

HIDDEN = (1, 3, 20)


@pytest.fixture(scope="module")
def result(moons):
    return fastnn.sweep(*moons, HIDDEN, test=0.3, passes=1000, progress=False)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plot._pyplot().close("all")


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


@pytest.mark.parametrize("step, message", [(1e-5, "use a larger step"), (0.0, "step must be"),
                                           (-0.1, "step must be"), (float("nan"), "step must be")])
def test_decision_boundary_checks_its_step_before_the_grid(moons, step, message, monkeypatch):
    """A step far too fine for the data (1e-5 on make_moons': 1.5e11 points) is refused before the grid is
    allocated, whatever memory the machine has."""
    monkeypatch.setattr(check, "available_memory", lambda: 64 << 30)
    model = fastnn.train(*moons, 3, passes=5)
    with pytest.raises(ValueError, match=message):
        plot.decision_boundary(model, *moons, step=step)
    with pytest.raises(ValueError, match="finite values"):
        plot.grid(np.array([[np.nan, 0.0]]))


def test_plots_name_what_they_draw(moons, result):
    X, y = moons
    regression = fastnn.train(X, X[:, 0], 3, passes=5, output="identity", reduction="mean", lr=0.1)
    with pytest.raises(ValueError, match="identity outputs"):
        plot.decision_boundary(regression, X, y)
    with pytest.raises(TypeError, match="draws a fastnn.Model; got dict"):
        plot.decision_boundary({"W1": None}, X, y)
    model = result.rows[0]["model"]
    for draw, args in ((plot.sweep_grid, ([model], X, y)), (plot.accuracy_vs_hidden, (model,))):
        with pytest.raises(TypeError, match="draws a SweepResult"):
            draw(*args)


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


def test_loss_curves_of_one_model(moons):
    model = fastnn.train(*moons, 3, passes=500, loss_every=50)
    (ax,) = plot.loss_curves(model).axes
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_xydata(), model.loss_history)
    assert line.get_label() == "H=3" and ax.get_yscale() == "log"


def test_loss_curves_of_models_label_what_differs(moons):
    a = fastnn.train(*moons, 3, passes=200, loss_every=50)
    b = fastnn.train(*moons, 5, passes=200, loss_every=50, activation="sigmoid")
    c = fastnn.train(*moons, 5, passes=200, loss_every=50)
    (ax,) = plot.loss_curves([a, b, c]).axes
    assert [line.get_label() for line in ax.get_lines()] == ["H=3, activation=tanh", "H=5, activation=sigmoid",
                                                            "H=5, activation=tanh"]
    (ax,) = plot.loss_curves(m for m in (a, c)).axes  # any iterable of models
    assert [line.get_label() for line in ax.get_lines()] == ["H=3", "H=5"]


@pytest.mark.parametrize("runs, error, message", [
    ("model", TypeError, "loss_curves draws a fastnn.Model, a list of them or a SweepResult; got str"),
    ({"model": 1}, TypeError, "got dict holding str"),
    (3, TypeError, "got int"),
    ([], ValueError, "no runs to draw"),
], ids=["str", "dict", "int", "empty"])
def test_loss_curves_of_something_else(runs, error, message):
    with pytest.raises(error, match=message):
        plot.loss_curves(runs)


def test_decision_boundary_marks_held_out_points(moons, tmp_path):
    X, y = moons
    model = fastnn.train(X[:140], y[:140], 3, passes=300)
    fig = plot.decision_boundary(model, X[:140], y[:140], test=(X[140:], y[140:]))
    (ax,) = fig.axes
    train, test = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_array_equal(train.get_offsets(), X[:140])
    np.testing.assert_array_equal(test.get_offsets(), X[140:])
    # Circles and larger triangles: the held-out points stand apart.
    assert not np.array_equal(train.get_paths()[0].vertices, test.get_paths()[0].vertices)
    assert test.get_sizes()[0] > train.get_sizes()[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test (held out)"]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()  # the regions cover the held-out points too
    assert x0 <= X[140:, 0].min() and x1 >= X[140:, 0].max() and y0 <= X[140:, 1].min() and y1 >= X[140:, 1].max()
    fig.savefig(tmp_path / "held_out.png")
    assert_png_shows_classes(tmp_path / "held_out.png", 2)


def test_sweep_grid_with_held_out_points_gives_both_accuracies(moons):
    X, y = moons
    result = fastnn.sweep(X[:140], y[:140], (1, 3, 5), test=(X[140:], y[140:]), passes=200, progress=False)
    fig = plot.sweep_grid(result, X[:140], y[:140], test=(X[140:], y[140:]))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [
        f"Hidden Layer size {r['hidden']}: train {r['train_accuracy']:.3f}, test {r['test_accuracy']:.3f}"
        for r in result.rows]
    assert all(len([c for c in ax.collections if isinstance(c, PathCollection)]) == 2 for ax in panels)


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


def test_missing_matplotlib_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install fastnn\[plot\]"):
        plot._pyplot()
