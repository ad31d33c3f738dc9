"""The `sweep` workload (docs/DESIGN.md): make_moons(200), H in 1, 2, 3, 4, 5, 20, 50, 20000 passes each.

fastnn.sweep on one and two threads, and a sequential loop of NumPy-reference trainings, in one group.
``pytest bench/test_sweep_bench.py --benchmark-only``; the ratio of the two fastnn rows is the speed-up
from the second core, the NumPy row over them the gain over the reference.
"""

import pytest

import fastnn

HIDDEN = (1, 2, 3, 4, 5, 20, 50)
PASSES = 20000
GROUP = "sweep: n=200, H in 1..50 (7 runs), 20000 passes"


@pytest.fixture(scope="module")
def moons():
    return fastnn.make_moons()


def assert_tutorial_result(scores):
    """The tutorial's picture: one hidden unit cannot follow the moons, three or more can."""
    assert scores[1] < 0.9  # one tanh unit draws a straight boundary (H = 2 is chaotic: not asserted)
    assert all(scores[h] >= 0.97 for h in (3, 4, 5, 20, 50))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_sweep(benchmark, moons, n_jobs):
    """fastnn.sweep with n_jobs threads, each running the serial nogil kernels."""
    X, y = moons
    benchmark.group = GROUP
    fastnn.sweep(X, y, HIDDEN, passes=10, n_jobs=n_jobs, progress=False)  # load the kernels first
    result = benchmark.pedantic(fastnn.sweep, args=(X, y, HIDDEN),
                                kwargs=dict(passes=PASSES, n_jobs=n_jobs, progress=False), rounds=5, iterations=1)
    assert_tutorial_result({row["hidden"]: row["train_accuracy"] for row in result})


def test_numpy_reference_loop(benchmark, moons):
    """The same seven runs one after another on the NumPy reference backend (~10 s a round: one round)."""
    X, y = moons
    benchmark.group = GROUP
    fastnn.train(X, y, 3, passes=10, backend="numpy")

    def loop():
        return {h: fastnn.train(X, y, h, passes=PASSES, backend="numpy") for h in HIDDEN}

    models = benchmark.pedantic(loop, rounds=1, iterations=1)
    assert_tutorial_result({h: m.score(X, y) for h, m in models.items()})
