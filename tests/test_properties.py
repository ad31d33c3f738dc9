"""Property tests (hypothesis): softmax, the loss, gradients and sample order, on kernels and reference.

The kernels are compiled for each number of inputs up to kernels.config.UNROLL (``kernels.dims``), about
8 s the first time, so the kernel properties draw d from the sizes the rest of the suite compiles anyway
(issue 2's equivalence grid: d in 1, 2, 5); the reference takes any shape.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from fastnn import kernels, reference
from fastnn._validate import ACTIVATIONS, OUTPUTS

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KERNEL_D, KERNEL_K = (1, 2, 5), (2, 3)
STAGES = {"kernel": kernels, "reference": reference}


def _logits(dtype, bound):
    bound = float(np.dtype(dtype).type(bound))  # hypothesis wants a bound the width represents exactly
    return st.tuples(st.integers(2, 5), st.integers(1, 40)).flatmap(
        lambda km: hnp.arrays(dtype, km, elements=st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8)))


def _softmax(stage, Z2, dtype):
    k, m = Z2.shape
    P, S = np.full((k, m), np.nan, dtype), np.full((2, m), np.nan, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no invalid value: the max is subtracted first
        STAGES[stage].output_forward(Z2, m, 0, P, S)
    return P


@pytest.mark.parametrize("stage", STAGES)
@FEW
@given(Z2=_logits(np.float64, 1e300))
def test_softmax_rows_sum_to_one(stage, Z2):
    # Logits up to +-1e300: differences stay finite (< 2e300), and exp(z - max) is at most 1.
    P = _softmax(stage, Z2, np.float64)
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    # Each p is exact to a few ulp and the row sum adds k of them: within 4 k eps of 1.
    np.testing.assert_allclose(P.sum(axis=0), 1, rtol=0, atol=4 * Z2.shape[0] * np.finfo(np.float64).eps)
    # The largest logit gets the largest probability (ties aside).
    top = Z2.argmax(axis=0)
    assert (P[top, np.arange(P.shape[1])] >= P.max(axis=0)).all()


@pytest.mark.parametrize("stage", STAGES)
@FEW
@given(Z2=_logits(np.float32, 1e38))
def test_softmax_rows_sum_to_one_float32(stage, Z2):
    # float32 logits up to +-1e38 (differences up to 2e38 stay below float32's 3.4e38).
    P = _softmax(stage, Z2, np.float32)
    assert P.dtype == np.float32 and np.isfinite(P).all() and (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=0), 1, rtol=0, atol=4 * Z2.shape[0] * np.finfo(np.float32).eps)


def _network(draw, d, k, weight=3.0, bias2=3.0):
    """theta for a random (d, h, k) network: weights in +-weight, output biases in +-bias2."""
    h = draw(st.integers(1, 5))
    rng = np.random.RandomState(draw(st.integers(0, 2**32 - 1)))
    W1, b1 = rng.uniform(-weight, weight, (d, h)), rng.uniform(-weight, weight, h)
    W2 = rng.uniform(-weight, weight, (h, k))
    b2 = draw(hnp.arrays(np.float64, k, elements=st.floats(-bias2, bias2)))
    return np.concatenate([W1.ravel(), b1, W2.ravel(), b2]), h, rng


@st.composite
def problems(draw, shapes="kernel", bias2=3.0, scales=(1.0, 1e-3, 1e3)):
    """(X, y, theta, h, act, out, reg): a random small network and data set."""
    if shapes == "kernel":
        d, k = draw(st.sampled_from(KERNEL_D)), draw(st.sampled_from(KERNEL_K))
    else:
        d, k = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    theta, h, rng = _network(draw, d, k, bias2=bias2)
    n = draw(st.integers(1, 12))
    X = rng.uniform(-2, 2, (n, d)) * draw(st.sampled_from(scales))
    y = rng.randint(0, k, n)
    act, out = draw(st.sampled_from(sorted(ACTIVATIONS.values()))), draw(st.sampled_from(sorted(OUTPUTS.values())))
    reg = draw(st.sampled_from([0.0, 0.01, 1.0]))
    return X, y, theta, h, act, out, reg


def _loss(backend, X, y, theta, h, act, out, reg):
    k = (theta.size - X.shape[1] * h - h) // (h + 1)
    f = kernels.loss_serial if backend == "numba" else reference.loss
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return f(X, y, theta, h, kernels.dims(X.shape[1]), reg, act, out, 1)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@FEW
@given(problem=problems(bias2=1e300))
def test_loss_is_finite_and_non_negative(backend, problem):
    # Output biases up to +-1e300 make logits up to +-1e300: -log p_y is then up to 2e300, still finite,
    # because it is computed as log-sum-exp, never as log(p) of an underflowed p.
    value = _loss(backend, *problem)
    assert np.isfinite(value) and value >= 0


@FEW
@given(problem=problems(shapes="any"))
def test_reference_loss_any_shape(problem):
    value = _loss("numpy", *problem)
    assert np.isfinite(value) and value >= 0


def _gradient(backend, X, y, theta, h, act, out, reg):
    """The summed gradient G + reg W, from one step of lr = 1 on the full batch ("sum" reduction)."""
    n, d = X.shape
    k = (theta.size - d * h - h) // (h + 1)
    f = kernels.train_serial if backend == "numba" else reference.train
    after = theta.copy()
    f(X, y, np.empty((0, 0), np.int64), after, h, kernels.dims(d), 1, n, 1.0, reg, False, act, out, 1)
    return theta - after


def _central(X, y, theta, h, act, out, reg, step=1e-6):
    """Central differences of n * L, whose gradient the "sum" reduction steps along."""
    n = X.shape[0]
    grad = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = step * max(1.0, abs(theta[i]))
        up = _loss("numpy", X, y, theta + e, h, act, out, reg)
        down = _loss("numpy", X, y, theta - e, h, act, out, reg)
        grad[i] = n * (up - down) / (2 * e[i])
    return grad


SMOOTH = (1.0, 1e-3)  # input scales on which n L is smooth at the difference step


def _away_from_kinks(X, theta, h, act):
    # relu has no derivative at 0: a pre-activation within the difference step of 0 is not a fair test.
    if act == ACTIVATIONS["relu"]:
        d = X.shape[1]
        W1, b1 = theta[: d * h].reshape(d, h), theta[d * h: d * h + h]
        assume(np.abs(X @ W1 + b1).min() > 1e-3 * (1 + np.abs(X).max()))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@FEW
@given(problem=problems(scales=SMOOTH))
def test_gradients_match_central_differences(backend, problem):
    X, y, theta, h, act, out, reg = problem
    _away_from_kinks(X, theta, h, act)
    exact = _gradient(backend, *problem)
    approx = _central(*problem)
    # Central differences err by O(step^2 f''') plus rounding eps |f| / step: about 1e-8 of the
    # gradient's scale here; the step of lr = 1 costs eps |theta| more.
    scale = 1 + np.abs(approx).max()
    np.testing.assert_allclose(exact, approx, rtol=1e-5, atol=1e-6 * scale)


@FEW
@given(problem=problems(shapes="any", scales=SMOOTH))
def test_reference_gradients_any_shape(problem):
    X, y, theta, h, act, out, reg = problem
    _away_from_kinks(X, theta, h, act)
    exact, approx = _gradient("numpy", *problem), _central(*problem)
    np.testing.assert_allclose(exact, approx, rtol=1e-5, atol=1e-6 * (1 + np.abs(approx).max()))


def _model(theta, d, h, act, out, backend):
    names = {v: k for k, v in ACTIVATIONS.items()}, {v: k for k, v in OUTPUTS.items()}
    s = dict(activation=names[0][act], output=names[1][out], reduction="sum", lr=0.01, reg=0.01, passes=0,
             seed=0, batch_size=None, backend=backend)
    return fastnn.Model(theta, d, h, s)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@FEW
@given(problem=problems(), n=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_predictions_do_not_depend_on_sample_order(backend, problem, n, seed):
    # n up to 700 spans several blocks of BLOCK samples, so a sample moves between blocks and lanes.
    X0, _, theta, h, act, out, _ = problem
    d = X0.shape[1]
    k = (theta.size - d * h - h) // (h + 1)
    rng = np.random.RandomState(seed)
    X = rng.uniform(-3, 3, (n, d))
    y = rng.randint(0, k, n)
    order = rng.permutation(n)
    m = _model(theta, d, h, act, out, backend)
    P = m.predict_proba(X)
    Q = m.predict_proba(X[order])
    np.testing.assert_allclose(Q, P[order], rtol=1e-12, atol=1e-15)
    sure = np.sort(P, axis=1)
    sure = sure[:, -1] - sure[:, -2] > 1e-9  # argmax is only defined up to rounding for near ties
    np.testing.assert_array_equal(m.predict(X[order])[sure[order]], m.predict(X)[order][sure[order]])
    assert m.loss(X[order], y[order]) == pytest.approx(m.loss(X, y), rel=1e-12)
