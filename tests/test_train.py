"""fastnn.train: whole runs of the kernels against the reference, the two backends through the API,
mini-batches, continuing a run (init=), the loss history, divergence, bit-for-bit determinism (threads,
thread counts, the on-disk kernel cache), Ctrl-C, and the peak memory of a large run.

Bad arguments to train() are test_validate.py's; the tutorial's own run is test_tutorial.py's.
"""

import itertools
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from helpers import (ACTIVATIONS, CLASSES, HIDDEN, INPUTS, OUTPUTS, RUN_RTOL, RUN_RTOL32, RUNS, SAMPLES,
                     assert_weights_near, child_env, run_kernel)

import fastnn
from fastnn import _validate as check
from fastnn import engine, kernels, reference
from fastnn.train import init_params

PASSES = 1000
NO_ORDER = np.empty((0, 0), np.int64)
# Enough samples for two tiles, so that train() picks the parallel kernel when Numba has 2 threads.
N_PARALLEL = 2 * kernels.TILE + 1000


# --- Kernels against the reference, 1000 passes ---------------------------------------------------------------

def blobs(n, d, k):
    """k Gaussian clusters around centres 2 sd apart (seeded: the same data for every run of a shape)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % k
    centres = 2 * rng.standard_normal((k, d))
    return centres[y] + rng.standard_normal((n, d)), y


# The step on the mean loss, lr * n for "sum" and lr for "mean". The run must be well-conditioned for an
# ulp-level difference (another tanh, another summation order) to stay at the ulp level over 1000 passes:
# with the tutorial's lr = 0.01 summed over n = 200 (a step of 2.0) or even 0.3, several of these shapes
# reach the edge of stability (a sharpness above 2 / step) and then chaos, where ulps grow to 1e-1 within
# a few hundred passes, in the reference against itself too. At 0.1 the whole grid of every axis value
# (648 runs) agreed to 1.5e-14, while the weights still move by 0.07 to 7. The tutorial's own setting,
# which does end on a period-2 orbit, is tested against the tutorial's code in test_tutorial.py.
STEP = 0.1


# The (d, k, activation, output) of the grid's runs: each is a kernel variant of its own, compiled in
# seconds, so nine that hold every pair of values of those four axes (an orthogonal array: with i, j the
# indices of d and k, the activation's is i + j and the output's i + 2j, mod 3) rather than all 81.
VARIANTS = [(1, 2, "tanh", "softmax"), (1, 3, "sigmoid", "identity"), (1, 5, "relu", "sigmoid"),
            (2, 2, "sigmoid", "sigmoid"), (2, 3, "relu", "softmax"), (2, 5, "tanh", "identity"),
            (5, 2, "relu", "identity"), (5, 3, "tanh", "sigmoid"), (5, 5, "sigmoid", "softmax")]


def grid():
    """(d, k, h, n, act, out, mean) runs: each of the VARIANTS with every hidden size and sample count
    (81 runs), the reduction alternating, so that every value and every pair of values of the seven axes
    is covered (test_grid_covers_every_pair); then all 18 activation x output x reduction combinations on
    the tutorial's shape."""
    cases = []
    for v, (d, k, act, out) in enumerate(VARIANTS):
        for w, (h, n) in enumerate(itertools.product(HIDDEN, SAMPLES)):
            cases.append((d, k, h, n, act, out, bool((v + w) % 2)))
    for act, out, mean in itertools.product(ACTIVATIONS, OUTPUTS, (False, True)):
        cases.append((2, 2, 3, 200, act, out, mean))
    return list(dict.fromkeys(cases))  # without the few runs the first part already has


GRID = grid()
AXES = (INPUTS, CLASSES, HIDDEN, SAMPLES, ACTIVATIONS, OUTPUTS, (False, True))


def case_id(case):
    d, k, h, n, act, out, mean = case
    return f"d{d}k{k}h{h}n{n}-{act}-{out}-{'mean' if mean else 'sum'}"


def test_grid_covers_every_pair():
    for a, b in itertools.combinations(range(len(AXES)), 2):
        seen = {(case[a], case[b]) for case in GRID}
        assert seen == set(itertools.product(AXES[a], AXES[b])), (a, b)


def run_kernels_and_reference(d, k, h, n, act, out, mean, dtype=np.float64, passes=PASSES, lr=None):
    X, y = blobs(n, d, k)
    if out == "identity":  # regression onto each sample's cluster, one-hot (k targets), or a smooth function
        y = (np.eye(k)[y] if k > 1 else np.sin(X[:, :1])).astype(dtype)
    thetas = []
    for impl in (kernels, reference):
        theta = init_params(d, h, k, 0, dtype)
        done, _, _ = run_kernel(impl, X.astype(dtype), y, theta, h, act, out, passes,
                                lr=lr or (STEP if mean else STEP / n), mean=mean)
        assert done == passes
        thetas.append(theta)
    return thetas


@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_whole_run_matches_reference(case):
    kernel, ref = run_kernels_and_reference(*case)
    assert_weights_near(kernel, ref, RUN_RTOL, case_id(case))
    d, k, h = case[:3]
    assert np.abs(ref - init_params(d, h, k, 0, np.float64)).max() > 0.05  # it trained


def test_sum_with_lr_over_n_is_mean():
    """The two reductions differ only in where 1/n is applied."""
    case = (2, 3, 3, 200, "tanh", "softmax")
    summed, _ = run_kernels_and_reference(*case, mean=False, lr=STEP / 200)
    mean, _ = run_kernels_and_reference(*case, mean=True, lr=STEP)
    assert_weights_near(summed, mean, RUN_RTOL, "sum vs mean")


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("d, k, h, out", [(2, 2, 3, "softmax"), (5, 3, 50, "sigmoid"), (3, 1, 8, "identity")],
                         ids=["d2k2h3-softmax", "d5k3h50-sigmoid", "d3k1h8-identity"])
def test_float32_run(d, k, h, out, act):
    """float32 kernels against the float32 reference, and against their own float64 run (200 passes)."""
    kernel32, ref32 = run_kernels_and_reference(d, k, h, 200, act, out, True, np.float32, passes=200)
    kernel64, _ = run_kernels_and_reference(d, k, h, 200, act, out, True, np.float64, passes=200)
    assert kernel32.dtype == ref32.dtype == np.float32
    assert_weights_near(kernel32, ref32, RUN_RTOL32, "float32 kernels vs float32 reference")
    assert_weights_near(kernel32, kernel64, RUN_RTOL32, "float32 vs float64")


# --- The two backends through the API -------------------------------------------------------------------------

@pytest.mark.parametrize("reduction, lr", [("sum", 0.01), ("mean", 0.5)], ids=["sum", "mean"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backends_agree(moons, activation, output, reduction, lr):
    if output == "identity":  # the labels as one real target; an identity output takes a smaller step
        lr /= 5
    settings = dict(passes=PASSES, activation=activation, output=output, reduction=reduction, lr=lr)
    fast = fastnn.train(*moons, 3, backend="numba", **settings)
    slow = fastnn.train(*moons, 3, backend="numpy", **settings)
    assert_weights_near(fast.theta, slow.theta, RUN_RTOL, "numba vs numpy")
    np.testing.assert_array_equal(fast.loss_history[:, 0], slow.loss_history[:, 0])
    np.testing.assert_allclose(fast.loss_history[:, 1], slow.loss_history[:, 1], rtol=RUN_RTOL)


def test_float32_through_the_api(moons):
    X, y = moons
    fast = fastnn.train(X.astype(np.float32), y, 3, passes=200)
    slow = fastnn.train(X, y, 3, passes=200, dtype="float32", backend="numpy")
    full = fastnn.train(X, y, 3, passes=200)
    assert fast.dtype == slow.dtype == np.float32
    assert_weights_near(fast.theta, slow.theta, RUN_RTOL32, "float32 numba vs numpy")
    assert_weights_near(fast.theta, full.theta, RUN_RTOL32, "float32 vs float64")


@pytest.mark.parametrize("activation, output", [("tanh", "softmax"), ("relu", "sigmoid"), ("sigmoid", "softmax")],
                         ids=["tanh-softmax", "relu-sigmoid", "sigmoid-softmax"])
def test_loss_history(moons, activation, output):
    model = fastnn.train(*moons, 4, passes=1500, activation=activation, output=output, loss_every=500)
    h = model.loss_history
    assert h.shape == (1500 // 500 + 1, 2) and h.dtype == np.float64
    np.testing.assert_array_equal(h[:, 0], [0, 500, 1000, 1500])
    assert h[-1, 1] == pytest.approx(model.loss(*moons), rel=1e-12)
    initial = fastnn.train(*moons, 4, passes=1, activation=activation, output=output).loss_history[0, 1]
    assert h[0, 1] == initial and h[-1, 1] < h[0, 1]
    # A last row at the end also when passes is not a multiple of loss_every.
    odd = fastnn.train(*moons, 3, passes=1234, loss_every=500)
    np.testing.assert_array_equal(odd.loss_history[:, 0], [0, 500, 1000, 1234])


# --- Mini-batches ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size, passes", [(1, 10), (32, 100), (200, 100)], ids=["1", "32", "200"])
def test_mini_batches_agree(moons, batch_size, passes):
    """Same seeded shuffles, same updates: batch 1 is SGD, 32 leaves a partial last batch, 200 is one batch
    over a shuffled order (so the full-batch gradient up to summation order)."""
    settings = dict(passes=passes, batch_size=batch_size, reduction="mean", lr=0.1, seed=3)
    fast = fastnn.train(*moons, 3, backend="numba", **settings)
    slow = fastnn.train(*moons, 3, backend="numpy", **settings)
    assert_weights_near(fast.theta, slow.theta, RUN_RTOL, "numba vs numpy")
    full = fastnn.train(*moons, 3, passes=passes, reduction="mean", lr=0.1, seed=3)
    if batch_size == 200:
        assert_weights_near(fast.theta, full.theta, RUN_RTOL, "one shuffled batch vs full batch")
    else:
        assert not np.allclose(fast.theta, full.theta, rtol=1e-3)  # more updates per pass: another run


def test_unshuffled_mini_batches_follow_the_order_of_X(moons):
    X, y = moons
    kw = dict(passes=20, batch_size=32, reduction="mean", lr=0.1)
    a = fastnn.train(X, y, 3, shuffle=False, **kw)
    assert a.theta.tobytes() == fastnn.train(X, y, 3, shuffle=False, seed=0, **kw).theta.tobytes()
    np.testing.assert_allclose(fastnn.train(X, y, 3, shuffle=False, backend="numpy", **kw).theta, a.theta,
                               rtol=1e-10, atol=1e-12)
    assert a.theta.tobytes() != fastnn.train(X, y, 3, **kw).theta.tobytes()
    # One batch of all samples is full-batch gradient descent, whatever the order
    full = fastnn.train(X, y, 3, passes=20)
    assert fastnn.train(X, y, 3, passes=20, batch_size=200, shuffle=False).theta.tobytes() == full.theta.tobytes()


# --- Continuing a run (init=) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_warm_start_continues_exactly(moons, backend):
    """init=: 300 passes, then 700 more, is the run of 1000, bit for bit (full batch: no shuffles)."""
    first = fastnn.train(*moons, 3, passes=300, loss_every=100, backend=backend)
    continued = fastnn.train(*moons, 3, passes=700, loss_every=100, init=first, backend=backend)
    whole = fastnn.train(*moons, 3, passes=1000, loss_every=100, backend=backend)
    np.testing.assert_array_equal(continued.theta, whole.theta)
    assert continued.settings["passes"] == 1000
    np.testing.assert_array_equal(continued.loss_history, whole.loss_history)  # rows at 0, 100, ..., 1000
    np.testing.assert_array_equal(first.theta, fastnn.train(*moons, 3, passes=300, backend=backend).theta)


def test_warm_start_continues_mini_batches_exactly(moons):
    settings = dict(batch_size=32, reduction="mean", lr=0.1)
    first = fastnn.train(*moons, 3, passes=30, **settings)
    continued = fastnn.train(*moons, 3, passes=70, init=first, **settings)
    np.testing.assert_array_equal(continued.theta, fastnn.train(*moons, 3, passes=100, **settings).theta)


SOLVERS = {"adam": dict(solver="adam", lr=0.01), "momentum": dict(momentum=0.9, nesterov=False, lr=0.05),
           "nesterov": dict(momentum=0.9, nesterov=True, lr=0.05)}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("batch_size", [None, 32], ids=["full", "batch32"])
def test_optimiser_state_carries_over_init(moons, solver, batch_size):
    """init= carries the velocity or Adam's moments and step count: 30 + 70 passes are the run of 100."""
    settings = dict(SOLVERS[solver], batch_size=batch_size, reduction="mean")
    first = fastnn.train(*moons, 3, passes=30, **settings)
    continued = fastnn.train(*moons, 3, passes=70, init=first, **settings)
    whole = fastnn.train(*moons, 3, passes=100, **settings)
    np.testing.assert_array_equal(continued.theta, whole.theta)
    np.testing.assert_array_equal(continued.optimiser["state"], whole.optimiser["state"])
    assert continued.optimiser["steps"] == whole.optimiser["steps"] == (100 * 7 if batch_size else 100) * (
        solver == "adam")
    # A fresh optimiser (what a model loaded from a file continues with) steps differently.
    first.optimiser = None
    assert not np.array_equal(fastnn.train(*moons, 3, passes=70, init=first, **settings).theta, whole.theta)


def test_init_keeps_its_number_of_outputs(moons):
    first = fastnn.train(*moons, 3, passes=5)
    assert fastnn.train(*moons, 3, passes=5, init=first, n_classes=2).n_classes == 2
    with pytest.raises(ValueError, match="n_classes=3, but init has 2 outputs"):
        fastnn.train(*moons, 3, passes=5, init=first, n_classes=3)


@pytest.mark.parametrize("solver", SOLVERS)
def test_optimisers_match_the_reference_and_train(moons, solver):
    settings = dict(SOLVERS[solver], batch_size=50, reduction="mean", passes=200)
    kernel = fastnn.train(*moons, 3, **settings)
    twin = fastnn.train(*moons, 3, backend="numpy", **settings)
    assert_weights_near(kernel.theta, twin.theta)
    plain = fastnn.train(*moons, 3, **dict(settings, solver="sgd", momentum=0.0))
    assert kernel.loss(*moons) < plain.loss(*moons)  # the same 200 passes and lr: momentum and Adam go further
    assert not np.array_equal(kernel.theta, plain.theta)


@pytest.mark.parametrize("argument, value, error", [
    ("solver", "lbfgs", ValueError), ("solver", 1, TypeError), ("momentum", 1.0, ValueError),
    ("momentum", -0.1, ValueError), ("nesterov", 1, TypeError), ("beta_1", 1.5, ValueError),
    ("beta_2", "0.9", TypeError), ("epsilon", 0.0, ValueError), ("init_scheme", "he", ValueError)])
def test_optimiser_settings_are_checked(moons, argument, value, error):
    with pytest.raises(error, match=argument):
        fastnn.train(*moons, 3, passes=1, **{argument: value})


# --- Sample weights -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_batch_of_zero_weights_steps_nowhere(moons, backend):
    """Mean gradients over a batch whose samples all weigh 0 (0 / 0): no step, as if the batch were dropped;
    the batches after it are those of the run without it."""
    X, y = moons
    w = np.ones(len(y))
    w[:8] = 0.0  # the first two batches of 4
    settings = dict(passes=3, batch_size=4, shuffle=False, reduction="mean", lr=0.5, backend=backend)
    weighted = fastnn.train(X, y, 3, sample_weight=w, **settings)
    dropped = fastnn.train(X[8:], y[8:], 3, **settings)
    assert_weights_near(weighted.theta, dropped.theta)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_zero_weights_drop_samples_and_twos_repeat_them(moons, backend):
    """Full batch, mean reduction: a weight of 0 is the sample dropped, a weight of 2 the sample twice."""
    X, y = moons
    w = np.ones(len(y))
    w[::3], w[1::3] = 0.0, 2.0
    settings = dict(passes=300, reduction="mean", lr=0.5, backend=backend)
    weighted = fastnn.train(X, y, 3, sample_weight=w, **settings)
    rows = np.repeat(np.arange(len(y)), w.astype(int))
    repeated = fastnn.train(X[rows], y[rows], 3, **settings)
    assert_weights_near(weighted.theta, repeated.theta)
    assert weighted.loss_history[-1, 1] == pytest.approx(repeated.loss_history[-1, 1], rel=1e-9)
    assert not np.allclose(weighted.theta, fastnn.train(X, y, 3, **settings).theta)


@pytest.mark.parametrize("weights, error, match", [
    (np.ones(7), ValueError, "shape"), (-np.ones(200), ValueError, ">= 0"), (np.zeros(200), ValueError, "positive"),
    (np.r_[np.nan, np.ones(199)], ValueError, "finite"), (np.array(["a"] * 200), TypeError, "real")])
def test_sample_weight_is_checked(moons, weights, error, match):
    with pytest.raises(error, match=match):
        fastnn.train(*moons, 3, passes=1, sample_weight=weights)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_running_loss_is_the_loss_each_pass_started_from(moons, backend):
    """Full batch: the loss a pass computes as it trains is that of the parameters it started from, which the
    default records evaluate after the pass before; the updates are the same to the bit."""
    settings = dict(passes=300, loss_every=1, backend=backend)
    exact = fastnn.train(*moons, 3, **settings)
    running = fastnn.train(*moons, 3, running_loss=True, **settings)
    np.testing.assert_array_equal(running.theta, exact.theta)
    np.testing.assert_array_equal(running.loss_history[:, 0], exact.loss_history[:, 0])
    np.testing.assert_allclose(running.loss_history[1:, 1], exact.loss_history[:-1, 1], rtol=1e-12)


# --- Identity outputs (regression) ----------------------------------------------------------------------------

def smooth_targets(n=300, d=3, seed=0):
    """X (n, d) and two real targets of it, a product and a sine: a network of a few tanh units fits them."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, d))
    return X, np.c_[X[:, 0] * X[:, 1], np.sin(X[:, 2])]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_identity_outputs_regress(backend):
    X, Y = smooth_targets()
    m = fastnn.train(X, Y, 16, passes=3000, lr=0.1, reg=1e-4, reduction="mean", output="identity", backend=backend)
    assert m.n_classes == 2 and m.predict(X).shape == (300, 2) and m.predict(X).dtype == np.float64
    assert m.score(X, Y) > 0.95  # R^2, averaged over the two targets
    from sklearn.metrics import r2_score
    assert m.score(X, Y) == pytest.approx(r2_score(Y, m.predict(X)), rel=1e-12)
    # the loss: half the squared error summed over the targets, averaged over samples, plus the L2 term
    expected = (0.5 * np.sum((m.predict(X) - Y) ** 2) + 1e-4 / 2 * (np.sum(m.W1 ** 2) + np.sum(m.W2 ** 2))) / 300
    assert m.loss(X, Y) == pytest.approx(expected, rel=1e-12)
    assert m.loss_history[-1, 1] == pytest.approx(expected, rel=1e-12)
    one = fastnn.train(X, Y[:, 1], 4, passes=200, lr=0.1, reduction="mean", output="identity", backend=backend)
    assert one.n_classes == 1 and one.predict(X).shape == (300, 1)  # a 1-D y is one target
    with pytest.raises(ValueError, match="no class probabilities"):
        one.predict_proba(X)


def test_identity_outputs_match_the_reference_in_float32():
    X, Y = smooth_targets()
    settings = dict(passes=200, lr=0.1, reduction="mean", output="identity", dtype="float32", batch_size=32)
    kernels_run = fastnn.train(X, Y, 8, **settings)
    reference_run = fastnn.train(X, Y, 8, backend="numpy", **settings)
    assert kernels_run.theta.dtype == np.float32
    assert_weights_near(kernels_run.theta, reference_run.theta, RUN_RTOL32, "float32 identity")


@pytest.mark.parametrize("y, error, match", [
    (np.ones((7, 1)), ValueError, "rows"), (np.ones((300, 2, 2)), ValueError, "1-D .* or 2-D"),
    (np.r_[np.nan, np.ones(299)], ValueError, "finite"), (np.array(["a"] * 300), TypeError, "real-valued"),
    (np.full(300, 1e39), ValueError, "float32")])
def test_targets_are_checked(y, error, match):
    X, _ = smooth_targets()
    with pytest.raises(error, match=match):
        fastnn.train(X, y, 3, passes=1, output="identity", dtype="float32")


def test_identity_continuation_needs_the_same_targets():
    X, Y = smooth_targets()
    m = fastnn.train(X, Y, 3, passes=5, output="identity", reduction="mean", lr=0.1)
    with pytest.raises(ValueError, match="2 outputs"):
        fastnn.train(X, Y[:, 0], 3, passes=5, output="identity", reduction="mean", lr=0.1, init=m)


def test_large_targets_diverge_with_a_hint():
    """Targets in the hundreds make the output layer's step hundreds of times larger: an error, not a model."""
    X, Y = smooth_targets()
    with pytest.raises(fastnn.DivergenceError, match="standardise the targets"):
        fastnn.train(X, 300 * Y, 32, passes=200, lr=0.5, reduction="mean", output="identity")


def test_sweep_is_for_classifiers(moons):
    with pytest.raises(ValueError, match="classifiers"):
        fastnn.sweep(*moons, (2,), passes=10, output="identity")


# --- Divergence -----------------------------------------------------------------------------------------------

def test_divergence_error_is_an_arithmetic_error():
    assert issubclass(fastnn.DivergenceError, ArithmeticError)
    e = pickle.loads(pickle.dumps(fastnn.DivergenceError("diverged", at=3, lr=0.5, reduction="sum", n=9)))
    assert (str(e), e.at, e.lr, e.reduction, e.n) == ("diverged", 3, 0.5, "sum", 9)


@pytest.fixture(scope="module")
def moons20000():
    return fastnn.make_moons(20000)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_sum_reduction_on_large_n_diverges(moons20000, backend):
    # The tutorial's lr = 0.01 with summed gradients is a step of 200 on the mean loss for n = 20000. With
    # tanh the units saturate and the run stays finite (loss ~ 10x its initial value, forever): it ends
    # worse than its random initialisation, which train() reports as divergence.
    X, y = moons20000
    with pytest.raises(fastnn.DivergenceError) as info:
        fastnn.train(X, y, 3, passes=200, loss_every=50, reduction="sum", lr=0.01, backend=backend,
                     n_threads=1)
    message = str(info.value)
    for part in (f"pass {info.value.at}", "lr=0.01", "reduction='sum'", "(20000)", "reduction='mean'"):
        assert part in message, message
    assert info.value.at == 200 and info.value.lr == 0.01 and info.value.n == 20000


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_judge_end_false_returns_a_run_that_ended_above_its_start(moons20000, backend):
    """The run above, with the rule on where it ended left out: its model, whose last loss is above its first;
    the rules on a run's course still stop a run whose parameters stop being finite."""
    X, y = moons20000
    model = fastnn.train(X, y, 3, passes=200, loss_every=50, reduction="sum", lr=0.01, backend=backend,
                         n_threads=1, judge_end=False)
    assert model.loss_history[-1, 0] == 200 and model.loss_history[-1, 1] > model.loss_history[0, 1]
    with pytest.raises(fastnn.DivergenceError, match="NaN or inf|loss became"):
        fastnn.train(X[:200] * 1e150, y[:200], 3, passes=1000, activation="relu", backend=backend, judge_end=False)


def test_exploding_loss_stops_early(moons20000):
    # With relu the weights grow geometrically: a loss of 1e24 by pass 1000 while still finite.
    X, y = moons20000
    with pytest.raises(fastnn.DivergenceError, match="grew from|NaN or inf") as info:
        fastnn.train(X, y, 3, passes=20000, loss_every=100, activation="relu", lr=0.01, n_threads=1)
    assert info.value.at <= 1000


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_adams_divergence_hint_is_its_lr(moons, reduction):
    """Adam's step is about lr whatever the gradient's scale: the hint is a smaller lr, not the reduction."""
    with pytest.raises(fastnn.DivergenceError, match="Adam's steps") as info:
        fastnn.train(*moons, 3, passes=200, lr=1e5, solver="adam", reduction=reduction)
    assert "reduction='mean' or" not in str(info.value)


def test_nonfinite_parameters_stop_at_their_pass(moons):
    X, y = moons
    with pytest.raises(fastnn.DivergenceError, match="became NaN or inf|loss became (nan|inf)") as info:
        fastnn.train(X * 1e150, y, 3, passes=1000, activation="relu")
    assert info.value.at <= 10
    assert "scale the features" in str(info.value)  # the inputs are to blame, not the lr


def test_mean_reduction_trains_large_n(moons20000):
    X, y = moons20000
    m = fastnn.train(X, y, 3, passes=300, lr=1.0, reduction="mean", loss_every=100, n_threads=1)
    assert m.loss_history[-1, 1] < 0.5 * m.loss_history[0, 1]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
@pytest.mark.parametrize("scale", [1e6, 1e150, 1e300])
@pytest.mark.parametrize("running_loss", [False, True])  # True: the start's loss comes from the first pass
def test_large_inputs_train_or_raise_never_warn(moons, scale, output, activation, backend, running_loss):
    X, y = moons
    Xs = X * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            m = fastnn.train(Xs, y, 3, passes=300, loss_every=100, activation=activation, output=output,
                             backend=backend, running_loss=running_loss)
        except fastnn.DivergenceError:
            return
        assert np.isfinite(m.theta).all() and np.isfinite(m.loss_history).all()
        try:
            P = m.predict_proba(Xs)
        except ValueError as e:  # finite weights whose products with these inputs overflow
            assert str(e).startswith("X is too large")
            return
        assert np.isfinite(P).all()
        assert np.isfinite(m.loss(Xs, y))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_full_batch_running_loss_starts_from_the_first_pass(moons, monkeypatch, backend):
    """With running_loss and full batches, the loss of the starting parameters is the first pass's training
    loss (its forward pass computes it): the one evaluation is the end's, and the history starts with that
    loss; inputs that overflow the starting network still stop the run at pass 0, saying so."""
    evaluations = []
    call = engine.Engine.__call__

    def counted(self, X, y, order, theta, params, passes, *rest, **kw):
        evaluations.append(passes)
        return call(self, X, y, order, theta, params, passes, *rest, **kw)

    monkeypatch.setattr(engine.Engine, "__call__", counted)
    X, y = moons
    model = fastnn.train(X, y, 3, passes=10, running_loss=True, backend=backend)
    assert evaluations.count(0) == 1 and sum(evaluations) == 10
    start = fastnn.train(X, y, 3, passes=1, backend=backend)  # its history starts with an evaluation
    assert model.loss_history[0, 0] == 0
    assert model.loss_history[0, 1] == pytest.approx(start.loss_history[0, 1], rel=1e-12)
    batches = fastnn.train(X, y, 3, passes=10, running_loss=True, batch_size=50, backend=backend)
    assert batches.loss_history[0, 1] == start.loss_history[0, 1]  # evaluated: a batch's loss is not the start's
    with pytest.raises(fastnn.DivergenceError, match="starting parameters") as info:
        fastnn.train(X * 1e307, y, 3, passes=10, running_loss=True, activation="relu", backend=backend)
    assert info.value.at == 0


# Full batches of one block, of tiles (the last of 1000 samples, blocks halved for h = 40), on threads where
# the machine has them; float32, weighted, and identity outputs; the reference.
CHECKPOINT_CASES = {
    "block": dict(n=200), "tiles": dict(n=kernels.TILE + 1000, h=40), "parallel": dict(n=N_PARALLEL, h=40),
    "float32": dict(n=N_PARALLEL, h=40, dtype="float32"), "weighted": dict(n=kernels.TILE + 1000, weighted=True),
    "identity": dict(n=300, output="identity"), "numpy": dict(n=300, backend="numpy"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_checkpoint_losses_come_from_the_next_pass_to_the_bit(case, monkeypatch):
    """Full batches in natural order: the loss of the parameters after pass p is what pass p + 1's forward
    computes, so train() evaluates only at the end; the loss it records after p passes has the bits of a
    p-pass run's final evaluation (the training's blocks and sums are the evaluation's)."""
    c = dict(dict(h=5, dtype="float64", output="softmax", backend="numba", weighted=False), **CHECKPOINT_CASES[case])
    rng = np.random.default_rng(3)
    if c["output"] == "identity":
        X, y = smooth_targets(c["n"])
    else:
        X, y = fastnn.make_moons(c["n"], random_state=1)
    settings = dict(reduction="mean", lr=0.5, dtype=c["dtype"], output=c["output"], backend=c["backend"],
                    sample_weight=rng.uniform(0.1, 3, c["n"]) if c["weighted"] else None)
    evaluations = []
    call = engine.Engine.__call__

    def counted(self, *args, **kw):
        evaluations.append(args[10])  # evaluate
        return call(self, *args, **kw)

    monkeypatch.setattr(engine.Engine, "__call__", counted)
    long = fastnn.train(X, y, c["h"], passes=6, loss_every=1, **settings)
    assert evaluations.count(True) == 1 and len(evaluations) == 6  # a call a checkpoint, the last evaluates
    assert long.loss_history[:, 0].tolist() == list(range(7))
    for p in range(6):
        short = fastnn.train(X, y, c["h"], passes=max(p, 1), **settings)
        expected = short.loss_history[0 if p == 0 else -1]
        assert long.loss_history[p].tolist() == expected.tolist(), p


# --- Determinism ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", RUNS)
def test_same_call_same_bits(moons, run):
    X, y = moons
    a = fastnn.train(X, y, **RUNS[run])
    b = fastnn.train(X, y, **RUNS[run])
    assert a.theta.tobytes() == b.theta.tobytes()
    assert a.loss_history.tobytes() == b.loss_history.tobytes()


CHILD = """
import hashlib, numba, numpy as np, fastnn
from fastnn import engine
X, y = fastnn.make_moons({n}, random_state=3)
Xp, yp = fastnn.make_moons(engine.EVALUATE_PARALLEL, random_state=4)
for dtype in ("float64", "float32"):
    m = fastnn.train(X, y, 8, passes=20, loss_every=5, reduction="mean", lr=0.5, dtype=dtype)
    h = hashlib.sha256(m.theta.tobytes() + m.loss_history.tobytes() + np.float64(m.loss(Xp, yp)).tobytes())
    p = hashlib.sha256(m.predict_proba(Xp).tobytes())
    print(numba.get_num_threads(), dtype, h.hexdigest(), p.hexdigest())
"""


@pytest.mark.parametrize("threads", [2, pytest.param(3, marks=pytest.mark.slow), pytest.param(4, marks=pytest.mark.slow)])
def test_thread_count_does_not_change_a_bit(threads):
    # Training on n of several tiles takes the parallel kernel with 2 or more threads, the serial one with
    # 1; loss() and predict_proba() on EVALUATE_PARALLEL rows likewise. Tiles' gradients and losses are
    # summed in tile order, whichever thread ran them: weights, loss history, loss and outputs are the same
    # bytes. (3 and 4 threads oversubscribe a 2-core machine: the split of tiles over threads changes.)
    outs = []
    for count in (1, threads):
        r = subprocess.run([sys.executable, "-c", CHILD.format(n=N_PARALLEL)], env=child_env(count),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        lines = [line.split() for line in r.stdout.splitlines()]
        assert [line[0] for line in lines] == [str(count)] * 2
        outs.append([line[1:] for line in lines])
    assert outs[0] == outs[1]


BOUNDS = """
import numpy as np, fastnn
X, y = fastnn.make_moons({n}, random_state=1)
for threads, batch in ((1, None), (2, None), (1, 32), (2, 32), (2, {tile})):
    m = fastnn.train(X, y, 8, passes=2, batch_size=batch, reduction="mean", lr=0.1, n_threads=threads)
    m.loss(X, y), m.predict_proba(X), m.predict_proba(X[:100])
print("ok")
"""


@pytest.mark.slow
def test_kernels_index_within_bounds(tmp_path):
    # Numba checks no index unless NUMBA_BOUNDSCHECK is set: every loop and variant a call can take (one block
    # and tiles, serial and on threads, training and evaluation alone), compiled with the checks in a cache of
    # their own (the checked machine code is slower: it must not reach the shared cache).
    code = BOUNDS.format(n=N_PARALLEL, tile=kernels.TILE + 100)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                       env=child_env(2, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["ok"]


CACHED = """
import hashlib, fastnn
X, y = fastnn.make_moons()
for dtype in ("float64", "float32"):
    m = fastnn.train(X, y, 3, passes=2000, dtype=dtype)
    print(dtype, hashlib.sha256(m.theta.tobytes() + m.loss_history.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_a_cached_kernel_computes_the_bits_of_a_fresh_compilation(tmp_path):
    # The first child compiles into an empty cache, the second loads from it. They must agree bit for bit:
    # a kernel can compile to other code when it is cached than when it is fresh (a variant of the fused
    # backward did). 2000 passes of the tutorial's run cross its chaotic stretch, which turns a 1-ulp
    # difference into 1e-3.
    env = child_env(1, NUMBA_CACHE_DIR=str(tmp_path))
    outs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", CACHED], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert len(outs[0]) == 4 and outs[0] == outs[1]


SHARED = """
import hashlib, os, sys, fastnn
from sklearn.datasets import make_blobs
X, y = make_blobs(300, centers=3, random_state=0)
m = fastnn.train(X, y, 5, passes=500, dtype=sys.argv[1])
folder = os.path.join(fastnn.engine.cache_dir(), "subroutines")
print(hashlib.sha256(m.theta.tobytes() + m.loss_history.tobytes()).hexdigest(), len(os.listdir(folder)))
"""


@pytest.mark.slow
def test_subroutines_compiled_by_another_variant_compute_the_bits_of_a_fresh_compilation(tmp_path):
    """A variant's subroutines come from the disk where another variant compiled them (the tutorial's, here:
    it shares update, the loss and the elementary functions with a three-class variant). The variant must
    compute what it computes when compiled from nothing, also where the entries on disk are damaged."""
    def child(cache, dtype):
        r = subprocess.run([sys.executable, "-c", SHARED, dtype], env=child_env(1, NUMBA_CACHE_DIR=str(cache)),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        digest, files = r.stdout.split()
        return digest, int(files)

    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    r = subprocess.run([sys.executable, "-m", "fastnn", "train", "--quiet"], capture_output=True, text=True,
                       env=child_env(1, NUMBA_CACHE_DIR=str(shared)), timeout=600)
    assert r.returncode == 0, r.stderr
    folder = next(shared.glob("*/subroutines"))
    tutorial = len(list(folder.iterdir()))
    digest, files = child(shared, "float64")
    fresh_digest, fresh_files = child(fresh, "float64")
    assert digest == fresh_digest
    assert files - tutorial < fresh_files  # some were loaded, not compiled
    for entry in folder.iterdir():
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # the header whole, half the code
    assert child(shared, "float32")[0] == child(fresh, "float32")[0]


HELPED = """
import hashlib, json, os, fastnn
from fastnn import engine
folder = os.path.join(engine.cache_dir(), "subroutines")
helped, send = [], engine._send


def send_and_wait(helper, calls):  # the helper's whole work is done before this process lowers the kernel
    send(helper, calls)
    helper.wait()
    helped.append([helper.returncode, len(os.listdir(folder))])


engine._send = send_and_wait
X, y = fastnn.make_moons()
m = fastnn.train(X, y, 3, passes=2000)
digest = hashlib.sha256(m.theta.tobytes() + m.loss_history.tobytes()).hexdigest()
print(digest, json.dumps(helped, separators=(",", ":")), len(os.listdir(folder)))
"""


@pytest.mark.slow
def test_the_compile_helper_makes_every_subroutine_its_kernel_links(tmp_path):
    """The helper process (engine._start_helper) is told the subroutines of the kernel being compiled once it is
    typed, and makes each one the kernel links: when it has finished before the kernel is lowered, the kernel
    compiles none of them, and computes the bits of a kernel compiled without a helper."""
    def child(cache, **env):
        r = subprocess.run([sys.executable, "-c", HELPED], capture_output=True, text=True, timeout=600,
                           env=child_env(1, NUMBA_CACHE_DIR=str(cache), **env))
        assert r.returncode == 0, r.stderr
        digest, helped, files = r.stdout.split()
        return digest, json.loads(helped), int(files)

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: no helper")
    digest, helped, files = child(tmp_path / "helped", FASTNN_COMPILE_HELPER="1")
    assert helped == [[0, files]] and files > 0  # the helper exited cleanly, and nothing was compiled after it
    alone, none, _ = child(tmp_path / "alone", FASTNN_COMPILE_HELPER="0")
    assert none == [] and alone == digest


# --- Threads --------------------------------------------------------------------------------------------------

def eight_calls(moons):
    Xl, yl = fastnn.make_moons(N_PARALLEL, random_state=1)
    small = [dict(hidden=h, passes=2000, activation=a, dtype=t)
             for h, a, t in [(1, "tanh", None), (2, "relu", None), (3, "tanh", None), (4, "sigmoid", None),
                             (5, "tanh", "float32"), (20, "relu", None), (50, "tanh", None)]]
    calls = [(moons, kw) for kw in small]
    calls.insert(3, ((Xl, yl), dict(hidden=16, passes=30, reduction="mean", lr=0.5, loss_every=10)))
    return calls


def test_eight_threads_match_sequential_runs(moons):
    calls = eight_calls(moons)
    assert len(calls) == 8
    sequential = [fastnn.train(*data, **kw) for data, kw in calls]
    results, errors = [None] * 8, []
    start = threading.Barrier(8)

    def work(i):
        try:
            start.wait()
            data, kw = calls[i]
            results[i] = fastnn.train(*data, **kw)
        except BaseException as e:  # reported below: an exception in a thread would pass silently
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for a, b in zip(sequential, results):
        assert a.theta.tobytes() == b.theta.tobytes()
        assert a.loss_history.tobytes() == b.loss_history.tobytes()


def ticker(stop, ticks):
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(1e-4)  # a tick needs the GIL, not a core: the parallel kernel keeps both of a 2-core machine


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_kernels_release_the_gil(parallel):
    # A pure-Python thread appends timestamps while one kernel call runs. Were the GIL held for the call,
    # no Python code could run between its start and its end; ticks in the middle half of the call show
    # that it was released. (The clock only frames the window; nothing asserts a speed.)
    Xl, yl = fastnn.make_moons(N_PARALLEL, random_state=2)
    Xl, (yl, _) = check.features(Xl, np.float64), check.labels(yl, N_PARALLEL)
    theta = fastnn.train(Xl, yl, 8, passes=1, reduction="mean", n_threads=1).theta.copy()
    slots = 2 if parallel else 1

    def run(passes):
        run_kernel(kernels, Xl, yl, theta, 8, "tanh", "softmax", passes, lr=1e-3, reg=0.0, parallel=parallel,
                   slots=slots)

    run(1)  # compiled and warm
    passes = 1
    while True:  # longer calls until one lasts 0.2 s, whatever the speed of the machine
        passes *= 4
        stop, ticks = threading.Event(), []
        thread = threading.Thread(target=ticker, args=(stop, ticks))
        thread.start()
        while not ticks:
            time.sleep(0.001)
        t0 = time.perf_counter()
        run(passes)
        t1 = time.perf_counter()
        stop.set()
        thread.join()
        if t1 - t0 >= 0.2:
            break
    quarter = (t1 - t0) / 4
    inside = [t for t in ticks if t0 + quarter < t < t1 - quarter]
    assert len(inside) > 100, f"{len(inside)} ticks during the middle of a {t1 - t0:.2f} s kernel call"


# --- Ctrl-C ---------------------------------------------------------------------------------------------------

# 10**9 passes: hours for any of these runs, so a run that only stopped at its end would hang the test.
LONG = """
import signal, sys, threading, traceback, fastnn
signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the test process hands down
for i, (n, hidden, backend, progress) in enumerate({cases}):
    X, y = fastnn.make_moons(n)
    settings = dict(reduction="mean", lr=0.1, backend=backend)
    fastnn.train(X, y, hidden, passes=1, **settings)  # compiled (or loaded from cache) before saying so
    print("started", i, flush=True)
    try:
        fastnn.train(X, y, hidden, passes=10**9, progress=progress, **settings)
    except KeyboardInterrupt:
        traceback.print_exc()
        print("interrupted", i, "threads", threading.active_count(), flush=True)
        if i == len({cases}) - 1:
            raise
"""

INTERRUPTED = {  # (n, hidden, backend, progress)
    "tutorial, with a progress bar": (200, 3, "numba", True),
    "parallel kernel": (N_PARALLEL, 32, "numba", False),
    "numpy backend": (2000, 8, "numpy", False),
}
# How long to wait for a line from the child before calling it hung: far more than the ~0.15 s chunk of
# passes after which train() notices Ctrl-C (and the interpreter start), far less than the runs' hours.
HANG = 120


def test_ctrl_c_stops_a_long_train():
    # One child runs each case in turn (one interpreter start instead of three): started, Ctrl-C, stopped.
    cases = list(INTERRUPTED.values())
    p = subprocess.Popen([sys.executable, "-c", LONG.format(cases=cases)], env=child_env(2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, stderr = queue.Queue(), []  # both pipes read as the child writes: neither can fill up and block it
    threading.Thread(target=lambda: ([lines.put(line.split()) for line in p.stdout], lines.put(None)),
                     daemon=True).start()
    reader = threading.Thread(target=lambda: stderr.extend(p.stderr), daemon=True)
    reader.start()

    def next_line(case):
        try:
            line = lines.get(timeout=HANG)
        except queue.Empty:
            p.kill()
            pytest.fail(f"{case}: no line from the child in {HANG} s")
        if line is None:  # the child ended
            p.wait(timeout=HANG)
            reader.join(timeout=HANG)
            pytest.fail(f"{case}: the child exited early: {''.join(stderr)}")
        return line

    try:
        for i, case in enumerate(INTERRUPTED):
            started = next_line(case)
            assert started == ["started", str(i)], f"{case}: {started}"
            time.sleep(0.5)  # well inside the run
            p.send_signal(signal.SIGINT)
            line = next_line(case)
            assert line[:2] == ["interrupted", str(i)], f"{case}: {line}"
            # tqdm's monitor thread, started by the first bar, must not outlive the bar
            assert line[2:] == ["threads", "1"], f"{case}: {line}"
        p.wait(timeout=HANG)
        reader.join(timeout=HANG)
    finally:
        p.kill()
    err = "".join(stderr)
    assert p.returncode != 0, err
    assert err.count("KeyboardInterrupt") >= len(INTERRUPTED), err


# --- Peak memory ----------------------------------------------------------------------------------------------

# Training n = 10,000,000, H = 64 in float64 must stay within 1.3x the size of X and y plus 200 MB: no (n, h)
# array, so the data itself dominates. Run in a subprocess, whose peak resident size (VmHWM) is reset once the
# data exists, so that what is measured is training's own growth over everything before it (interpreter,
# libraries, compiled kernels, data).
MEMORY = """
import json, numpy as np, fastnn
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
X, y = fastnn.make_moons(200, random_state=1)
fastnn.train(X, y, 64, passes=1, reduction="mean", loss_every=1)  # compile or load the kernels first
before = status("VmRSS:")
X, y = fastnn.make_moons({n}, random_state=1)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current resident size
model = fastnn.train(X, y, 64, passes=1, reduction="mean", loss_every=1)
print(json.dumps(dict(data=X.nbytes + y.nbytes, before=before, peak=status("VmHWM:"),
                      finite=bool(np.isfinite(model.theta).all()))))
"""


@pytest.mark.slow
def test_large_run_stays_near_the_size_of_the_data():
    n = 10_000_000
    r = subprocess.run([sys.executable, "-c", MEMORY.format(n=n)], env=child_env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["finite"]
    grown = m["peak"] - m["before"]
    assert grown <= 1.3 * m["data"] + 200e6, f"peak grew {grown / 1e6:.0f} MB for {m['data'] / 1e6:.0f} MB of data"
