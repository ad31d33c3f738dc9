"""fastnn.reference, the specification the kernels are held to, checked on its own terms: its gradient is
the derivative of its loss (central differences), its softmax and loss stay finite and normalised for any
logits. So the kernels and the reference cannot agree on a wrong gradient.

The property tests run the kernels on the same draws (``impl`` kernels / reference): a property of the
specification is one its twin must share, and test_kernels.py compares the two only on fixed inputs.
"""

import warnings

import numpy as np
import pytest
from helpers import ACTIVATIONS, CLASSES, FEW, OUTPUTS, central_difference, loss_of, problems, step_gradient
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnn import kernels, reference

IMPLS = {"kernels": kernels, "reference": reference}


def loss(impl, X, y, theta, h, act, out, reg):
    """The mean loss L, with every floating-point warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return loss_of(IMPLS[impl], X, y, theta, h, act, out, reg)


def gradients(impl, X, y, theta, h, act, out, reg):
    """(analytic, numeric): the gradient a training pass steps along, and central differences of n L."""
    analytic = step_gradient(IMPLS[impl], X, y, theta, h, act, out, reg)
    numeric = len(X) * central_difference(lambda t: loss("reference", X, y, t, h, act, out, reg), theta)
    return analytic, numeric


# --- The gradient ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", CLASSES, ids=lambda k: f"k{k}")
@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_reference_gradient_is_the_derivative_of_the_loss(act, out, k, seed):
    """Central differences of reference.loss (float64, step 1e-6) against the analytic gradient. Rounding
    in the difference is about eps * n L / step, ~1e-9 of the largest gradient, the truncation
    step^2 f''' ~1e-12: 1e-6 leaves a wide margin, while a wrong derivative (1 - a for tanh's 1 - a^2, a
    missing or doubled L2 term with reg = 0.1) is off by 1e-2 or more."""
    rng = np.random.default_rng(seed)
    d, h, n = 2, 3, 7
    while True:  # relu has a kink at 0: keep every pre-activation far from it compared with the step
        X = rng.standard_normal((n, d))
        y = rng.standard_normal((n, k)) if out == "identity" else rng.integers(0, k, n)
        theta = rng.standard_normal(d * h + h + h * k + k)
        W1, b1 = reference.split(theta, d, h, k)[:2]
        if np.abs(X @ W1 + b1).min() > 1e-3:
            break
    analytic, numeric = gradients("reference", X, y, theta, h, act, out, reg=0.1)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


SMOOTH = (1.0, 1e-3)  # input scales on which n L is smooth at the difference step


def away_from_kinks(X, theta, h, act):
    # relu has no derivative at 0: a pre-activation within the difference step of 0 is not a fair test.
    if act == "relu":
        d = X.shape[1]
        W1, b1 = theta[: d * h].reshape(d, h), theta[d * h: d * h + h]
        assume(np.abs(X @ W1 + b1).min() > 1e-3 * (1 + np.abs(X).max()))


@pytest.mark.parametrize("impl", IMPLS)
@FEW
@given(problem=problems(scales=SMOOTH))
def test_gradients_match_central_differences(impl, problem):
    X, y, theta, h, act, out, reg = problem
    away_from_kinks(X, theta, h, act)
    exact, approx = gradients(impl, *problem)
    # Central differences err by O(step^2 f''') plus rounding eps |f| / step: about 1e-8 of the
    # gradient's scale here; the step of lr = 1 costs eps |theta| more.
    np.testing.assert_allclose(exact, approx, rtol=1e-5, atol=1e-6 * (1 + np.abs(approx).max()))


@FEW
@given(problem=problems(shapes="any", scales=SMOOTH))
def test_reference_gradients_any_shape(problem):
    X, y, theta, h, act, out, reg = problem
    away_from_kinks(X, theta, h, act)
    exact, approx = gradients("reference", *problem)
    np.testing.assert_allclose(exact, approx, rtol=1e-5, atol=1e-6 * (1 + np.abs(approx).max()))


# --- Softmax and the loss on extreme logits -------------------------------------------------------------------

def logits(dtype, bound):
    bound = float(np.dtype(dtype).type(bound))  # hypothesis wants a bound the width represents exactly
    return st.tuples(st.integers(2, 5), st.integers(1, 40)).flatmap(
        lambda km: hnp.arrays(dtype, km, elements=st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8)))


def softmax(impl, Z2, dtype):
    k, m = Z2.shape
    P, S = np.full((k, m), np.nan, dtype), np.full((2, m), np.nan, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, no invalid value: the max is subtracted first
        IMPLS[impl].build("tanh", "softmax", np.dtype(dtype).name, 2, k, "block").output_forward(Z2, m, P, S)
    return P


@pytest.mark.parametrize("impl", IMPLS)
@FEW
@given(Z2=logits(np.float64, 1e300))
def test_softmax_rows_sum_to_one(impl, Z2):
    # Logits up to +-1e300: differences stay finite (< 2e300), and exp(z - max) is at most 1.
    P = softmax(impl, Z2, np.float64)
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    # Each p is exact to a few ulp and the row sum adds k of them: within 4 k eps of 1.
    np.testing.assert_allclose(P.sum(axis=0), 1, rtol=0, atol=4 * Z2.shape[0] * np.finfo(np.float64).eps)
    # The largest logit gets the largest probability (ties aside).
    top = Z2.argmax(axis=0)
    assert (P[top, np.arange(P.shape[1])] >= P.max(axis=0)).all()


@pytest.mark.parametrize("impl", IMPLS)
@FEW
@given(Z2=logits(np.float32, 1e38))
def test_softmax_rows_sum_to_one_float32(impl, Z2):
    # float32 logits up to +-1e38 (differences up to 2e38 stay below float32's 3.4e38).
    P = softmax(impl, Z2, np.float32)
    assert P.dtype == np.float32 and np.isfinite(P).all() and (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=0), 1, rtol=0, atol=4 * Z2.shape[0] * np.finfo(np.float32).eps)


@pytest.mark.parametrize("impl", IMPLS)
@FEW
@given(problem=problems(bias2=1e300))
def test_loss_is_finite_and_non_negative(impl, problem):
    # Output biases up to +-1e300 make logits up to +-1e300: -log p_y is then up to 2e300, still finite,
    # because it is computed as log-sum-exp, never as log(p) of an underflowed p.
    value = loss(impl, *problem)
    assert np.isfinite(value) and value >= 0


@FEW
@given(problem=problems(shapes="any"))
def test_reference_loss_any_shape(problem):
    value = loss("reference", *problem)
    assert np.isfinite(value) and value >= 0
