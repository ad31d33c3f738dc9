"""Every kernel of fastnn.kernels against its NumPy twin in fastnn.reference, by name.

The stage kernels are compared on one block over shapes, dtypes, activations and outputs; the elementwise
functions by their distance in ulp to NumPy over the whole float range; the loop kernels on short runs, and
their parallel variants bit for bit with the serial ones.
"""

import itertools
import math

import numpy as np
import pytest
from conftest import (ACTIVATIONS, CLASSES, COLUMNS, DTYPES, HIDDEN, INPUTS, LARGE_LOGIT, OUTPUTS, RTOL,
                      ULP, assert_near, call, dims, params)

from fastnn import kernels, reference
from fastnn.train import init_params

BLOCK, TILE = kernels.BLOCK, kernels.TILE
SCALAR = ("exp", "tanh", "sigmoid")  # used inside kernels only; their twins are NumPy functions


def ids(name):
    return lambda value: f"{name}{value}"


def dtype_id(dtype):
    return np.dtype(dtype).name


# --- The twins -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", kernels.__all__)
def test_every_kernel_has_a_twin_with_the_same_parameters(name):
    kernel = getattr(kernels, name)
    assert hasattr(reference, name), f"fastnn.reference has no twin of kernels.{name}"
    twin = getattr(reference, name)
    if name in SCALAR:  # a NumPy ufunc-like twin; values compared through exp_array etc. below
        assert callable(kernel) and callable(twin)
        return
    assert params(twin) == params(kernel)


def test_scalar_twins_are_numpys():
    assert reference.exp is np.exp and reference.tanh is np.tanh
    x = np.linspace(-40, 40, 1001)
    np.testing.assert_allclose(reference.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15, atol=1e-300)


# --- Stage kernels on one block --------------------------------------------------------------------------

def block(rng, d, h, k, dtype, act=0, out=0):
    """Named inputs of every stage, for one block of BLOCK columns; float arrays in dtype, G in float64."""
    B = BLOCK
    normal = rng.standard_normal
    Z2 = 3 * normal((k, B))
    softmax = np.exp(Z2 - Z2.max(axis=0)) / np.exp(Z2 - Z2.max(axis=0)).sum(axis=0)
    named = dict(
        XB=normal((d, B)), W1=normal((d, h)) / np.sqrt(d), b1=0.5 * normal(h),
        W2=normal((h, k)) / np.sqrt(h), b2=0.5 * normal(k),
        A1=reference.ACTIVATIONS[act](normal((h, B))), Z2=Z2,
        P=softmax if out == 0 else reference.sigmoid(Z2),
        D3=0.5 * normal((k, B)), D2=0.5 * normal((h, B)), S=normal((2, B)),
        theta=normal(d * h + h + h * k + k))
    named = {key: value.astype(dtype) for key, value in named.items()}
    named.update(yb=rng.integers(0, k, B), G=normal(d * h + h + h * k + k), dims=dims(d, k),
                 act=act, out=out, d=d, h=h, k=k)
    return named


def run_both(name, named, outputs, alias=None):
    """Run kernels.name and reference.name on copies of the same inputs, outputs filled with NaN first.

    Whatever either writes past column m stays NaN only if it writes nothing there: comparing the whole
    buffers also checks that. alias: (a, b) passes the same array as a and b.
    """
    results = []
    for impl in (kernels, reference):
        env = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in named.items()}
        for o in outputs:
            if env[o].dtype.kind == "f":
                env[o][...] = np.nan
        if alias:
            env[alias[1]] = env[alias[0]]
        call(getattr(impl, name), env)
        results.append(env)
    return results


def compare(kernel_env, reference_env, outputs, dtype, **kw):
    for o in outputs:
        assert_near(kernel_env[o], reference_env[o], RTOL[dtype], err_msg=o, **kw)


def every_shape(test):
    """Parametrise a stage test over every d, h, k, m, activation and dtype of conftest."""
    for name, values, label in [("d", INPUTS, ids("d")), ("h", HIDDEN, ids("h")), ("k", CLASSES, ids("k")),
                                ("m", COLUMNS, ids("m")), ("act", ACTIVATIONS.values(), ACTIVATIONS),
                                ("dtype", DTYPES, dtype_id)]:
        test = pytest.mark.parametrize(name, values, ids=label)(test)
    return test


@every_shape
def test_hidden_forward(rng, d, h, k, m, act, dtype):
    named = dict(block(rng, d, h, k, dtype, act), m=m)
    compare(*run_both("hidden_forward", named, ["A1", "Z2"]), ["A1", "Z2"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("out", OUTPUTS.values(), ids=OUTPUTS)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
def test_output_forward(rng, k, m, out, dtype):
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    # S holds the softmax's (max, sum of exp) per sample; the sigmoid output leaves it alone (NaN in both).
    kernel, ref = run_both("output_forward", named, ["P", "S"])
    compare(kernel, ref, ["P", "S"], dtype)
    if out == 0:
        np.testing.assert_allclose(kernel["P"][:, :m].sum(axis=0), 1, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("out", OUTPUTS.values(), ids=OUTPUTS)
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
def test_output_forward_large_logits(rng, k, out, dtype):
    """Logits of +-1e3 (exp overflows at 710, or 89 in float32): finite, rows of the softmax sum to 1."""
    m = 9
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    named["Z2"] = (LARGE_LOGIT * rng.choice([-1, 1], named["Z2"].shape) * rng.uniform(0.5, 1, named["Z2"].shape)
                   ).astype(dtype)
    named["Z2"][:, 0] = LARGE_LOGIT  # a tie between the largest logits
    kernel, ref = run_both("output_forward", named, ["P", "S"])
    P = kernel["P"][:, :m]
    assert np.isfinite(P).all() and (P >= 0).all() and (P <= 1).all()
    if out == 0:
        np.testing.assert_allclose(P.sum(axis=0), 1, rtol=4 * np.finfo(dtype).eps)
        assert_near(P[:, 0], np.r_[np.ones(k) / k], RTOL[dtype])
    # Probabilities of e**-1000 are 0 in NumPy and at most the smallest normal in the kernel: absolute
    # agreement to RTOL is what matters (atol_scale: the largest entry is about 1).
    compare(kernel, ref, ["P", "S"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("alias", [False, True], ids=["D3", "D3=P"])
@pytest.mark.parametrize("out", OUTPUTS.values(), ids=OUTPUTS)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
def test_output_delta(rng, k, m, out, alias, dtype):
    """D3 may be P itself (the loop kernels overwrite P in place)."""
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    kernel, ref = run_both("output_delta", named, ["D3"], alias=("P", "D3") if alias else None)
    compare(kernel, ref, ["D3"], dtype)
    if out == 0:  # softmax rows sum to 1 and one-hot rows too: the deltas of a sample sum to 0
        np.testing.assert_allclose(kernel["D3"][:, :m].sum(axis=0), 0, atol=8 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("act", ACTIVATIONS.values(), ids=ACTIVATIONS)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
@pytest.mark.parametrize("h", HIDDEN, ids=ids("h"))
def test_hidden_delta(rng, h, k, m, act, dtype):
    named = dict(block(rng, 2, h, k, dtype, act), m=m)
    compare(*run_both("hidden_delta", named, ["D2"]), ["D2"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
@pytest.mark.parametrize("h", HIDDEN, ids=ids("h"))
@pytest.mark.parametrize("d", INPUTS, ids=ids("d"))
def test_accumulate(rng, d, h, k, m, dtype):
    """G += the block's gradient sums; G starts non-zero, so that '=' instead of '+=' would fail."""
    named = dict(block(rng, d, h, k, dtype), m=m)
    kernel, ref = run_both("accumulate", named, [])
    assert kernel["G"].dtype == np.float64
    compare(kernel, ref, ["G"], dtype)
    assert not np.allclose(kernel["G"], named["G"])


@every_shape
def test_backward(rng, d, h, k, m, act, dtype):
    """hidden_delta and accumulate in one: fused per hidden unit for k = 2 and d <= UNROLL (d 1 and 2 here),
    the two stages in turn otherwise (k = 3, d = 5); G starts non-zero."""
    named = dict(block(rng, d, h, k, dtype, act), m=m)
    kernel, ref = run_both("backward", named, ["D2"])
    compare(kernel, ref, ["D2", "G"], dtype)
    assert not np.allclose(kernel["G"], named["G"])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("lr, reg, scale", [(0.01, 0.01, 1.0), (0.5, 0.0, 1 / 7), (2.0, 0.3, 1 / BLOCK)])
@pytest.mark.parametrize("d, h, k", [(1, 1, 2), (2, 3, 2), (5, 50, 3)], ids=["d1h1k2", "d2h3k2", "d5h50k3"])
def test_update(rng, d, h, k, lr, reg, scale, dtype):
    named = dict(block(rng, d, h, k, dtype), lr=lr, reg=reg, scale=scale)
    kernel, ref = run_both("update", named, [])
    assert kernel["theta"].dtype == dtype
    compare(kernel, ref, ["theta"], dtype)
    # The L2 term falls on the weights only: with G = 0, the biases stay, the weights shrink by lr*reg*scale.
    named["G"][:] = 0
    kernel, _ = run_both("update", named, [])
    W1, b1, W2, b2 = reference.split(kernel["theta"], d, h, k)
    V1, c1, V2, c2 = reference.split(named["theta"], d, h, k)
    np.testing.assert_array_equal(np.r_[b1, b2], np.r_[c1, c2])
    assert_near(np.r_[W1.ravel(), W2.ravel()], (1 - lr * reg * scale) * np.r_[V1.ravel(), V2.ravel()],
                RTOL[dtype])


@pytest.mark.parametrize("d, h, k", list(itertools.product(INPUTS, HIDDEN, CLASSES)),
                         ids=lambda v: str(v))
def test_split(d, h, k):
    theta = np.arange(d * h + h + h * k + k, dtype=np.float64)
    parts = kernels.split(theta, d, h, k)
    twins = reference.split(theta, d, h, k)
    assert [p.shape for p in parts] == [(d, h), (h,), (h, k), (k,)]
    for p, t in zip(parts, twins):
        np.testing.assert_array_equal(p, t)
        assert np.shares_memory(p, theta)  # views: an update through W1 is an update of theta
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in parts]), theta)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "order"])
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("d", INPUTS, ids=ids("d"))
def test_load_block(rng, d, m, shuffled, dtype):
    n, start = 2 * BLOCK + 5, 3  # start > 0: the block is taken from the middle of the data or order
    named = dict(X=rng.standard_normal((n, d)).astype(dtype), y=rng.integers(0, 3, n), start=start, m=m,
                 order=rng.permutation(n) if shuffled else np.empty(0, np.int64),
                 XB=np.full((d, BLOCK), np.nan, dtype), yb=np.full(BLOCK, -1, np.int64))
    kernel, ref = run_both("load_block", named, [])
    np.testing.assert_array_equal(kernel["XB"], ref["XB"])
    np.testing.assert_array_equal(kernel["yb"], ref["yb"])
    rows = named["order"][start: start + m] if shuffled else np.arange(start, start + m)
    np.testing.assert_array_equal(kernel["XB"][:, :m], named["X"][rows].T)


# --- Elementwise functions: distance in ulp to NumPy ------------------------------------------------------

def ordered(x):
    """The floats as integers in the same order (-0 and +0 both 0): ulp distance is then a difference."""
    bits = x.view(np.int64 if x.dtype == np.float64 else np.int32).astype(np.int64)
    return np.where(bits < 0, np.int64(np.iinfo(np.int64 if x.dtype == np.float64 else np.int32).min) - bits,
                    bits)


def ulp_distance(a, b):
    """|a - b| in units in the last place; differences of sign count as the sum of both distances to 0."""
    ia, ib = ordered(a), ordered(b)
    same = (ia >= 0) == (ib >= 0)
    return np.where(same, np.abs(ia - ib).astype(np.float64), np.abs(ia).astype(np.float64) + np.abs(ib))


def numpy_value(name, x):
    """NumPy's value in float64, rounded to x's dtype (so float32 is compared with the correctly rounded
    result, not with NumPy's float32 functions, which carry errors of their own)."""
    f = {"exp": np.exp, "tanh": np.tanh, "sigmoid": reference.sigmoid}[name]
    with np.errstate(over="ignore", under="ignore"):
        return f(x.astype(np.float64)).astype(x.dtype)


def kernel_value(name, x):
    out = np.empty_like(x)
    getattr(kernels, name + "_array")(x, out)
    return out


def whole_range(rng, dtype, n=200_000):
    """Magnitudes log-uniform from the smallest normal to the largest float, both signs, plus n points
    uniform in (-25, 25), where tanh and sigmoid change branch and saturate, and 0 and -0."""
    info = np.finfo(dtype)
    mag = np.exp(rng.uniform(np.log(info.tiny), np.log(info.max), n))
    x = np.concatenate([mag * rng.choice([-1.0, 1.0], n), rng.uniform(-25, 25, n), [0.0, -0.0]])
    with np.errstate(over="ignore"):
        x = x.astype(dtype)
    return x[np.isfinite(x)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "exp"])
def test_ulp_distance_to_numpy(rng, name, dtype):
    x = whole_range(rng, dtype)
    if name == "exp":  # where e**x is a normal number; test_exp_whole_normal_range covers the ends
        info = np.finfo(dtype)
        x = x[(x >= math.log(info.tiny)) & (x <= math.log(info.max))]
    dist = ulp_distance(kernel_value(name, x), numpy_value(name, x))
    worst = np.argmax(dist)
    assert dist.max() <= ULP[name][dtype], f"{name}({x[worst]!r}) is {dist.max():g} ulp from NumPy's"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([nan, -nan, inf, -inf, 0.0, -0.0], dtype)
    tanh, sigmoid, exp = (kernel_value(name, x) for name in ("tanh", "sigmoid", "exp"))
    for values in (tanh, sigmoid, exp):
        assert np.isnan(values[:2]).all()  # NaN in, NaN out (no 'nnan' fastmath flag)
    np.testing.assert_array_equal(tanh[2:], [1, -1, 0, 0])  # the sign of zero is free ('nsz')
    np.testing.assert_array_equal(sigmoid[[2, 4, 5]], [1, 0.5, 0.5])
    np.testing.assert_array_equal(exp[4:], [1, 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_exp_whole_normal_range(rng, dtype):
    info = np.finfo(dtype)
    x = rng.uniform(math.log(info.tiny), math.log(info.max), 200_000).astype(dtype)
    dist = ulp_distance(kernel_value("exp", x), numpy_value("exp", x))
    assert dist.max() <= ULP["exp"][dtype], f"exp({x[np.argmax(dist)]!r}): {dist.max():g} ulp"
    x = np.array([np.inf, -np.inf, 2 * math.log(info.max), 2 * math.log(info.tiny)], dtype)
    np.testing.assert_array_equal(kernel_value("exp", x), [np.inf, 0, np.inf, 0])
    np.testing.assert_array_equal(kernel_value("sigmoid", x), [1, 0, 1, 0])


# --- Loop kernels against the reference loops -------------------------------------------------------------

def loop_inputs(rng, d, h, k, n, dtype, act=0, out=0, batch=None, passes=5, shuffled=False, nslots=1,
                lr=0.1, mean=True):
    X = rng.standard_normal((n, d)).astype(dtype)
    y = np.arange(n) % k
    order = (np.stack([rng.permutation(n) for _ in range(passes)]) if shuffled
             else np.empty((0, 0), np.int64))
    return dict(X=X, y=y, order=order, theta=init_params(d, h, k, 0, dtype), hidden=h, dims=dims(d, k),
                passes=passes, batch=batch or n, lr=lr, reg=0.01, mean=mean, act=act, out=out,
                nslots=nslots, P=np.full((n, k), np.nan, dtype))


def run_loop(impl, name, named):
    env = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in named.items()}
    return call(getattr(impl, name), env), env


# Loop shapes: one sample; one block short of a column; two blocks and a half; and a wide, deep net.
LOOP_SHAPES = [(1, 1, 2, 1), (2, 3, 2, BLOCK - 1), (2, 3, 3, 2 * BLOCK + 60), (5, 50, 3, 300)]
LOOP_IDS = ["d{}h{}k{}n{}".format(*s) for s in LOOP_SHAPES]


# The parallel variant compiles once per (d, k) and takes minutes cold: one shape of it is enough here, the
# tests further below show it bit-identical to the serial one.
LOOP_CASES = [(*s, "serial") for s in LOOP_SHAPES] + [(2, 3, 3, 2 * BLOCK + 60, "parallel")]


@pytest.mark.parametrize("batching", ["full", "batches", "shuffled"])
@pytest.mark.parametrize("act, out", [(0, 0), (1, 1), (2, 0), (0, 1)], ids=["tanh-softmax", "sigmoid-sigmoid",
                                                                              "relu-softmax", "tanh-sigmoid"])
@pytest.mark.parametrize("d, h, k, n, variant", LOOP_CASES, ids=[*LOOP_IDS, LOOP_IDS[2] + "-parallel"])
def test_train_kernel(rng, d, h, k, n, variant, act, out, batching):
    batch = {"full": None, "batches": 50, "shuffled": 50}[batching]
    named = loop_inputs(rng, d, h, k, n, np.float64, act, out, batch=batch, shuffled=batching == "shuffled",
                        nslots=2 if variant == "parallel" else 1)
    done_k, kernel = run_loop(kernels, "train_" + variant, named)
    done_r, ref = run_loop(reference, "train_" + variant, named)
    assert done_k == done_r == named["passes"]
    assert_near(kernel["theta"], ref["theta"], RTOL[np.float64])
    assert not np.allclose(kernel["theta"], named["theta"], rtol=1e-3)  # it trained


@pytest.mark.parametrize("act", ACTIVATIONS.values(), ids=ACTIVATIONS)
def test_train_kernel_reports_divergence_at_the_same_pass(rng, act):
    """A step of 1e150 overflows within a few passes: both stop at the same pass and say which."""
    named = loop_inputs(rng, 2, 3, 2, 40, np.float64, act, passes=50, lr=1e150, mean=False)
    done_k, kernel = run_loop(kernels, "train_serial", named)
    with np.errstate(all="ignore"):
        done_r, _ = run_loop(reference, "train_serial", named)
    assert done_k == done_r < named["passes"]
    assert not np.isfinite(kernel["theta"]).all()


@pytest.mark.parametrize("variant, nslots", [("serial", 1), ("parallel", 1), ("parallel", 2)])
@pytest.mark.parametrize("out", OUTPUTS.values(), ids=OUTPUTS)
@pytest.mark.parametrize("act", ACTIVATIONS.values(), ids=ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 300])
def test_loss_and_forward_kernels(rng, n, act, out, variant, nslots):
    named = loop_inputs(rng, 2, 3, 3, n, np.float64, act, out, nslots=nslots)
    named["theta"] = rng.standard_normal(named["theta"].size)
    assert_near(call(getattr(kernels, "loss_" + variant), named), call(reference.loss, named),
                RTOL[np.float64])
    _, kernel = run_loop(kernels, "forward_" + variant, named)
    _, ref = run_loop(reference, "forward_" + variant, named)
    assert_near(kernel["P"], ref["P"], RTOL[np.float64])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("out", OUTPUTS.values(), ids=OUTPUTS)
def test_loss_with_large_logits(rng, out, dtype):
    """Logits of ~1e3: the loss is finite (log-sum-exp, never log(0)) and equal to the reference's."""
    named = loop_inputs(rng, 2, 3, 3, 40, dtype, out=out)
    W1, b1, W2, b2 = reference.split(named["theta"], 2, 3, 3)
    W2 *= LARGE_LOGIT / np.abs(W2).max()
    b2[:] = [LARGE_LOGIT, -LARGE_LOGIT, 0]
    value = call(kernels.loss_serial, named)
    assert np.isfinite(value) and value > 10  # some samples are wrong by hundreds of nats
    assert_near(value, call(reference.loss, named), RTOL[dtype])
    _, kernel = run_loop(kernels, "forward_serial", named)
    assert np.isfinite(kernel["P"]).all()


# --- Parallel variants: bit for bit the serial kernel, whatever the number of slots --------------------------

N_PARALLEL = 2 * TILE + 77  # three tiles, the last one partial: more tiles than slots, and a remainder


@pytest.fixture(scope="module")
def parallel_inputs():
    rng = np.random.default_rng(7)
    return loop_inputs(rng, 2, 2, 3, N_PARALLEL, np.float64, passes=3)


@pytest.mark.parametrize("batching", ["full", "shuffled"])
@pytest.mark.parametrize("nslots", [1, 2])
def test_train_parallel_is_bit_identical_to_serial(parallel_inputs, nslots, batching):
    named = dict(parallel_inputs)
    if batching == "shuffled":  # batches of more than one tile, in a random order
        rng = np.random.default_rng(8)
        named.update(batch=TILE + 100, order=np.stack([rng.permutation(N_PARALLEL) for _ in range(3)]))
    done_s, serial = run_loop(kernels, "train_serial", dict(named, nslots=1))
    done_p, parallel = run_loop(kernels, "train_parallel", dict(named, nslots=nslots))
    assert done_s == done_p == named["passes"]
    np.testing.assert_array_equal(parallel["theta"], serial["theta"])
    assert not np.array_equal(serial["theta"], named["theta"])


@pytest.mark.parametrize("nslots", [1, 2])
def test_loss_and_forward_parallel_are_bit_identical_to_serial(parallel_inputs, nslots):
    named = dict(parallel_inputs, nslots=nslots)
    assert call(kernels.loss_parallel, named) == call(kernels.loss_serial, dict(named, nslots=1))
    _, parallel = run_loop(kernels, "forward_parallel", named)
    _, serial = run_loop(kernels, "forward_serial", dict(named, nslots=1))
    np.testing.assert_array_equal(parallel["P"], serial["P"])
    assert np.isfinite(serial["P"]).all()
