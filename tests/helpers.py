"""What several test modules share that is not a fixture: the shapes, the codes, every tolerance with the
reason for it, the comparison helpers, and the one gradient checker. Import as ``from helpers import ...``.

A kernel and its NumPy twin in ``fastnn.reference`` take the same named arguments, so a test builds one
set of named inputs (``call`` picks the ones a function names) and compares the outputs name by name.
"""

import inspect
import os

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnn import engine, kernels, reference

ACTIVATIONS, OUTPUTS = tuple(reference.ACTIVATIONS), reference.OUTPUTS  # the names every layer uses
NO_ORDER = np.empty((0, 0), np.int64)

# --- Shapes ---------------------------------------------------------------------------------------------------
# Numba compiles the kernels once per dtype, activation, output and (d, k) (kernels.build: d and k up to UNROLL,
# and more), not per n, h or m, so a test may use many of these cheaply once the cache is warm.
# d: one feature (the degenerate matrix), the tutorial's 2, and more than UNROLL (kernels/config.py): the
# compilation that wide inputs share.
INPUTS = (1, 2, 5)
HIDDEN = (1, 3, 50)  # h: a single unit (h = 1), the tutorial's 3, a wide layer
CLASSES = (2, 3, 5)  # k: the tutorial's two classes, more, and more than UNROLL (read at run time)
# m, the columns of a block in use: a single sample, a few, a block missing its last column, a full block.
COLUMNS = (1, 7, kernels.BLOCK - 1, kernels.BLOCK)
SAMPLES = (1, 7, 200)  # n of whole runs: one sample, less than a block, the tutorial's n
LARGE_LOGIT = 1e3  # logits this large overflow exp() unless the row max is subtracted first
DTYPES = (np.float64, np.float32)

# --- Tolerances -----------------------------------------------------------------------------------------------
# One stage of a kernel against its twin. Both compute the same sums of at most max(d, h, k, kernels.BLOCK)
# products, in another order (BLAS blocks them, the kernel runs them per sample with FMA), and the kernel's
# exp/tanh are within a few ulp of NumPy's. A wrong term or a wrong formula is off by far more.
# float64 (eps 2.2e-16): even the worst case, every rounding of an m-term sum adding up (m eps / 2), stays
# below 1e-12 for m up to 9000. float32 (eps 1.2e-7): the worst case reaches 1e-5 at m = 170, but roundings
# of varying sign grow as sqrt(m) eps / 2 (1e-6 for m = 256), which is what a correct kernel shows.
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
# An entry that cancels to near zero keeps the absolute rounding error of its terms, which are about the
# size of the array's largest entries: each entry may also be off by RTOL times the array's largest
# magnitude (ATOL_SCALE = 1).
ATOL_SCALE = 1.0

# Whole runs (1000 passes), float64: 1e-9 of the largest weight. On the well-conditioned runs of
# test_train.py the kernels and the reference agree to about 1e-14, so the margin is five orders of
# magnitude; a chaotic run (the tutorial's, after ~2000 passes) would not.
RUN_RTOL = 1e-9
# Whole runs in float32 (200 passes): if every update's rounding (eps32/2 = 6e-8 of a weight) added up, 200
# passes would reach 1.2e-5 of the largest weight; a well-conditioned run contracts such errors instead.
RUN_RTOL32 = 1e-5

# Elementwise functions: the bound in ulp against NumPy (float32 against NumPy in float64, rounded). The tanh
# bounds are the ones docs/DESIGN.md asks for (3 and 2); sigmoid and exp have one ulp of margin over what the
# kernels measure on the whole float range, so a change that costs an ulp fails on purpose.
ULP = {"tanh": {np.float64: 3, np.float32: 2},
       "sigmoid": {np.float64: 3, np.float32: 4},
       "exp": {np.float64: 2, np.float32: 2},
       # The two-class softmax's probabilities (both from one division, kernels' logistic_pair) against NumPy's
       # sigmoid: measured 4 and 3 (2.6 and 2.5 from the exact values, in 80-bit arithmetic).
       "softmax2": {np.float64: 5, np.float32: 4}}


# --- Calling kernels and their twins --------------------------------------------------------------------------

def params(f):
    """The parameter names of a kernel (a Numba dispatcher) or of its twin."""
    return list(inspect.signature(getattr(f, "py_func", f)).parameters)


def call(f, named):
    """Call f with the arguments it names, taken from the dict ``named``."""
    return f(*[named[p] for p in params(f)])


# --- Comparisons ----------------------------------------------------------------------------------------------

def assert_near(actual, desired, rtol, atol_scale=ATOL_SCALE, err_msg=""):
    """|actual - desired| <= rtol |desired| + rtol * atol_scale * max|desired| elementwise (NaN == NaN)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    finite = desired[np.isfinite(desired)]
    scale = np.abs(finite).max() if finite.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * atol_scale * scale, err_msg=err_msg)


def assert_weights_near(actual, desired, rtol=RUN_RTOL, err_msg=""):
    """max |actual - desired| <= rtol * max |desired|: relative to the largest weight, not elementwise.

    Elementwise relative error is meaningless for a weight that crosses zero during training; the largest
    weight sets the scale of every rounding the run made.
    """
    scale = np.abs(desired).max()
    err = np.abs(np.asarray(actual, np.float64) - desired).max()
    assert err <= rtol * scale, f"{err_msg}: max |diff| {err:.3g} > {rtol:g} * max |weight| {scale:.3g}"


# --- The gradient checker -------------------------------------------------------------------------------------

def run_kernel(impl, X, y, theta, h, act, out, passes, lr=0.1, reg=0.01, mean=True, batch=None, order=NO_ORDER,
               parallel=False, slots=1, evaluate=False, outputs=False):
    """The ``run`` kernel of ``impl`` (fastnn.kernels or fastnn.reference) for these settings, called with the
    buffers fastnn.engine gives it: trains theta in place; returns (passes completed, loss, outputs P)."""
    n, d = X.shape
    k = (theta.size - d * h - h) // (h + 1)
    batch = batch or n
    loop = "block" if batch <= kernels.BLOCK else "tiles"
    run = impl.build(act, out, X.dtype.name, d, k, loop, parallel).run
    P = np.empty((n if outputs else 0, k), X.dtype)
    args = engine.arguments(X, y, order, theta, reference.split(theta, d, h, k), passes, batch, lr, reg, mean,
                            evaluate, P, slots)
    done, loss = run(*args)
    return done, loss, P


def loss_of(impl, X, y, theta, h, act, out, reg):
    """The loss the kernel (or its twin) computes for theta."""
    return run_kernel(impl, X, y, theta, h, act, out, 0, reg=reg, evaluate=True)[1]


def step_gradient(impl, X, y, theta, h, act, out, reg):
    """n dL/dtheta as the training kernel (or its twin) steps along it: one full-batch pass of the "sum"
    reduction with lr = 1, read back as theta before minus theta after."""
    after = theta.copy()
    run_kernel(impl, X, y, after, h, act, out, 1, lr=1.0, reg=reg, mean=False)
    return theta - after


def central_difference(loss, theta, step=1e-6):
    """d loss / d theta by central differences, each coordinate moved by step * max(1, |theta_i|)."""
    grad = np.empty(theta.size)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = step * max(1.0, abs(theta[i]))
        grad[i] = (loss(theta + e) - loss(theta - e)) / (2 * e[i])
    return grad


# --- Child processes and figures ------------------------------------------------------------------------------

def child_env(threads=None, **extra):
    """The environment for a child Python: compiled kernels (never NUMBA_DISABLE_JIT), optionally a thread
    count, and any extra variables."""
    env = dict(os.environ, **extra)
    env.pop("NUMBA_DISABLE_JIT", None)
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def pixels_near(png, rgb, tol=0.02):
    """How many pixels of the PNG are within tol of the colour rgb in every channel."""
    from matplotlib.image import imread

    image = imread(png)[..., :3]
    return int(np.all(np.abs(image - np.asarray(rgb)[:3]) < tol, axis=-1).sum())


def on_white(rgb, alpha):
    """The colour rgb drawn with this alpha over a white figure."""
    return alpha * np.asarray(rgb)[:3] + (1 - alpha)


def assert_png_shows_classes(png, k, panels=1):
    """Each class colour appears in the PNG, both as scatter points and (lighter) as a filled region."""
    from fastnn import plot

    for rgb in plot.class_colors(k):
        assert pixels_near(png, rgb) >= 10 * panels, f"class colour {rgb} missing in {png}"  # marker centres
        assert pixels_near(png, on_white(rgb, 0.45)) >= 1000 * panels, f"no region of colour {rgb} in {png}"


# --- Runs and random problems shared by several modules -------------------------------------------------------

# Runs on the tutorial's data that differ in everything the bits of a result depend on.
RUNS = {
    "tutorial": dict(hidden=3, passes=1000),
    "relu float32": dict(hidden=5, passes=500, activation="relu", dtype="float32"),
    "sigmoid output": dict(hidden=4, passes=500, output="sigmoid", activation="sigmoid"),
    "mini-batch": dict(hidden=3, passes=50, batch_size=16, reduction="mean", lr=0.1),
    "numpy backend": dict(hidden=3, passes=300, backend="numpy"),
}

# The variants random problems run through the kernels: each (activation, output, d, k) is a compilation
# of its own (kernels.build, seconds each), so four that cover every activation, output, number of inputs
# and number of classes at least once, rather than all 36 combinations.
KERNEL_VARIANTS = (("tanh", "softmax", 2, 2), ("sigmoid", "sigmoid", 1, 3), ("relu", "softmax", 5, 3),
                   ("tanh", "sigmoid", 5, 2))
# Property tests: each example trains or differentiates a network, so fewer than hypothesis's default 100.
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def problems(shapes="kernel", bias2=3.0, scales=(1.0, 1e-3, 1e3)):
    """A hypothesis strategy for (X, y, theta, h, act, out, reg): a random small network and data set.

    shapes: "kernel" draws (activation, output, d, k) from KERNEL_VARIANTS, "any" any of them with d in 1..4
    and k in 2..4 (for the reference only).
    bias2: the output biases' range, which sets how large the logits get; scales: X's scales to draw from.
    """

    @st.composite
    def draw_problem(draw):
        if shapes == "kernel":
            act, out, d, k = draw(st.sampled_from(KERNEL_VARIANTS))
        else:
            act, out = draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(OUTPUTS))
            d, k = draw(st.integers(1, 4)), draw(st.integers(2, 4))
        h = draw(st.integers(1, 5))
        rng = np.random.RandomState(draw(st.integers(0, 2**32 - 1)))
        W1, b1, W2 = rng.uniform(-3, 3, (d, h)), rng.uniform(-3, 3, h), rng.uniform(-3, 3, (h, k))
        b2 = draw(hnp.arrays(np.float64, k, elements=st.floats(-bias2, bias2)))
        theta = np.concatenate([W1.ravel(), b1, W2.ravel(), b2])
        n = draw(st.integers(1, 12))
        X = rng.uniform(-2, 2, (n, d)) * draw(st.sampled_from(scales))
        y = rng.uniform(-2, 2, (n, k)) if out == "identity" else rng.randint(0, k, n)  # targets, or labels
        reg = draw(st.sampled_from([0.0, 0.01, 1.0]))
        return X, y, theta, h, act, out, reg

    return draw_problem()
