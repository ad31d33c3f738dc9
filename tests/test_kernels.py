"""Every kernel of fastnn.kernels against its NumPy twin in fastnn.reference, by name.

The stage kernels are compared on one block over shapes, dtypes, activations and outputs; the elementwise
functions by their distance in ulp to NumPy over the whole float range; ``run`` on short runs and
evaluations, and its variants (one block or tiles, serial or parallel) bit for bit with one another.
"""

import itertools
import math

import numpy as np
import pytest
from helpers import (CLASSES, COLUMNS, DTYPES, HIDDEN, INPUTS, LARGE_LOGIT, RTOL, RUN_RTOL32, ULP, assert_near, call,
                     params)

from fastnn import engine, kernels, reference
from fastnn.train import init_params

BLOCK, TILE = kernels.BLOCK, kernels.TILE
ACTIVATIONS, OUTPUTS = tuple(reference.ACTIVATIONS), reference.OUTPUTS


def ids(name):
    return lambda value: f"{name}{value}"


def dtype_id(dtype):
    return np.dtype(dtype).name


def both(act="tanh", out="softmax", dtype=np.float64, d=2, k=2, loop="block", parallel=False, solver="sgd",
         weighted=False, blas=False):
    """The kernels of one variant and their twins."""
    args = (act, out, np.dtype(dtype).name, d, k, loop, parallel, solver, weighted, blas)
    return kernels.build(*args), reference.build(*args)


# --- The twins -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("d, k", [(2, 2), (5, 3)])
def test_every_kernel_has_a_twin_with_the_same_parameters(d, k):
    kernel_set, twin_set = both(d=d, k=k)
    names = sorted(vars(kernel_set))
    assert names == sorted(vars(twin_set))
    assert {"run", "hidden_forward", "backward", "update"} <= set(names)
    for name in names:
        assert params(getattr(kernel_set, name)) == params(getattr(twin_set, name)), name
    for name in kernels.__all__:
        if name != "build":
            assert params(getattr(kernels, name)) == params(getattr(reference, name)), name


def test_the_activations_and_outputs_are_the_same_names():
    assert tuple(kernels.ACTIVATIONS) == tuple(reference.ACTIVATIONS)
    assert tuple(kernels.OUTPUTS) == tuple(reference.OUTPUTS)
    assert tuple(kernels.SOLVERS) == tuple(reference.SOLVERS)
    with pytest.raises(ValueError, match="no kernel variant"):
        kernels.build("softplus", "softmax", "float64", 2, 2, "block")


# --- Stage kernels on one block --------------------------------------------------------------------------

def block(rng, d, h, k, dtype, act="tanh", out="softmax"):
    """Named inputs of every stage, for one block of BLOCK columns; float arrays in dtype, G in float64."""
    B = BLOCK
    normal = rng.standard_normal
    Z2 = 3 * normal((k, B))
    softmax = np.exp(Z2 - Z2.max(axis=0)) / np.exp(Z2 - Z2.max(axis=0)).sum(axis=0)
    named = dict(
        XB=normal((d, B)), W1=normal((d, h)) / np.sqrt(d), b1=0.5 * normal(h),
        W2=normal((h, k)) / np.sqrt(h), b2=0.5 * normal(k),
        A1=reference.ACTIVATIONS[act][0](normal((h, B))), Z2=Z2,
        P=softmax if out == "softmax" else reference.sigmoid(Z2),
        D3=0.5 * normal((k, B)), D2=0.5 * normal((h, B)), S=normal((2, B)),
        theta=normal(d * h + h + h * k + k))
    if out == "softmax" and k == 2:  # the two-class softmax's deltas are opposite rows (output_delta), which
        named["D3"][1] = -named["D3"][0]  # backward relies on
    named = {key: value.astype(dtype) for key, value in named.items()}
    size = d * h + h + h * k + k
    # Labels, or an identity output's targets (k, B).
    yb = normal((k, B)).astype(dtype) if out == "identity" else rng.integers(0, k, B)
    named.update(yb=yb, wb=rng.uniform(0.5, 2, B).astype(dtype), G=normal(size), partials=normal((3, size)),
                 ntiles=3, GW=np.full((d, h), np.nan, dtype), d=d, h=h, k=k, state=np.zeros((0, size)),
                 optimiser=np.zeros(6))
    return named


def copies(named):
    """The named arguments with each array copied in its own layout (a column-major XB stays one)."""
    return {key: value.copy(order="K") if isinstance(value, np.ndarray) else value for key, value in named.items()}


def run_both(name, named, outputs, variant, alias=None):
    """Run the kernel ``name`` of a variant and its twin on copies of the same inputs, outputs filled with
    NaN first: whatever either writes past column m stays NaN only if it writes nothing there, which
    comparing the whole buffers also checks. alias: (a, b) passes the same array as a and b."""
    results = []
    for impl in both(**variant):
        env = copies(named)
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
    """Parametrise a stage test over every d, h, k, m, activation and dtype."""
    for name, values, label in [("d", INPUTS, ids("d")), ("h", HIDDEN, ids("h")), ("k", CLASSES, ids("k")),
                                ("m", COLUMNS, ids("m")), ("act", ACTIVATIONS, None), ("dtype", DTYPES, dtype_id)]:
        test = pytest.mark.parametrize(name, values, ids=label)(test)
    return test


@every_shape
def test_hidden_forward(rng, d, h, k, m, act, dtype):
    named = dict(block(rng, d, h, k, dtype, act), m=m)
    variant = dict(act=act, dtype=dtype, d=d, k=k)
    compare(*run_both("hidden_forward", named, ["A1", "Z2"], variant), ["A1", "Z2"], dtype)


# Each output with k = 2 (fused loops of its own) and 3; identity outputs (regression) also with one target.
OUTPUT_SHAPES = [(out, k) for out in OUTPUTS for k in CLASSES] + [("identity", 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("out, k", OUTPUT_SHAPES, ids=["{}-k{}".format(*s) for s in OUTPUT_SHAPES])
def test_output_forward(rng, k, m, out, dtype):
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    # S holds the softmax's (max, sum of exp) per sample; two-class softmax and sigmoid outputs leave it alone
    # (NaN in both).
    kernel, ref = run_both("output_forward", named, ["P", "S"], dict(out=out, dtype=dtype, k=k))
    compare(kernel, ref, ["P", "S"], dtype)
    if out == "softmax":
        np.testing.assert_allclose(kernel["P"][:, :m].sum(axis=0), 1, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("out, k", OUTPUT_SHAPES, ids=["{}-k{}".format(*s) for s in OUTPUT_SHAPES])
def test_output_forward_large_logits(rng, k, out, dtype):
    """Logits of +-1e3 (exp overflows at 710, or 89 in float32): finite, rows of the softmax sum to 1,
    identity outputs equal to them."""
    m = 9
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    named["Z2"] = (LARGE_LOGIT * rng.choice([-1, 1], named["Z2"].shape) * rng.uniform(0.5, 1, named["Z2"].shape)
                   ).astype(dtype)
    named["Z2"][:, 0] = LARGE_LOGIT  # a tie between the largest logits
    kernel, ref = run_both("output_forward", named, ["P", "S"], dict(out=out, dtype=dtype, k=k))
    P = kernel["P"][:, :m]
    assert np.isfinite(P).all()
    if out == "identity":
        np.testing.assert_array_equal(P, named["Z2"][:, :m])
    else:
        assert (P >= 0).all() and (P <= 1).all()
    if out == "softmax":
        np.testing.assert_allclose(P.sum(axis=0), 1, rtol=4 * np.finfo(dtype).eps)
        assert_near(P[:, 0], np.r_[np.ones(k) / k], RTOL[dtype])
    # Probabilities of e**-1000 are 0 in NumPy and at most the smallest normal in the kernel: absolute
    # agreement to RTOL is what matters (atol_scale: the largest entry is about 1).
    compare(kernel, ref, ["P", "S"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
@pytest.mark.parametrize("alias", [False, True], ids=["D3", "D3=P"])
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("out, k", OUTPUT_SHAPES, ids=["{}-k{}".format(*s) for s in OUTPUT_SHAPES])
def test_output_delta(rng, k, m, out, alias, weighted, dtype):
    """D3 may be P itself; weighted, each sample's deltas are times its weight."""
    named = dict(block(rng, 2, 3, k, dtype, out=out), m=m)
    kernel, ref = run_both("output_delta", named, ["D3"], dict(out=out, dtype=dtype, k=k, weighted=weighted),
                           alias=("P", "D3") if alias else None)
    compare(kernel, ref, ["D3"], dtype)
    if out == "softmax":  # softmax rows sum to 1 and one-hot rows too: the deltas of a sample sum to 0
        np.testing.assert_allclose(kernel["D3"][:, :m].sum(axis=0), 0, atol=8 * np.finfo(dtype).eps)
    if out == "softmax" and k == 2 and not weighted:  # opposite rows; row 0 without p0 - 1's cancellation
        y, P = named["yb"][:m], named["P"][:, :m]
        np.testing.assert_array_equal(kernel["D3"][0, :m], np.where(y == 0, -P[1], P[0]))
        np.testing.assert_array_equal(kernel["D3"][1, :m], -kernel["D3"][0, :m])
    if out == "identity" and not weighted:  # the error itself, exact (one subtraction)
        np.testing.assert_array_equal(kernel["D3"][:, :m], named["P"][:, :m] - named["yb"][:, :m])
    if weighted:
        unweighted, _ = run_both("output_delta", named, ["D3"], dict(out=out, dtype=dtype, k=k))
        assert_near(kernel["D3"][:, :m], unweighted["D3"][:, :m] * named["wb"][:m], RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
@pytest.mark.parametrize("h", HIDDEN, ids=ids("h"))
def test_hidden_delta(rng, h, k, m, act, dtype):
    named = dict(block(rng, 2, h, k, dtype, act), m=m)
    compare(*run_both("hidden_delta", named, ["D2"], dict(act=act, dtype=dtype, k=k)), ["D2"], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("k", CLASSES, ids=ids("k"))
@pytest.mark.parametrize("h", HIDDEN, ids=ids("h"))
@pytest.mark.parametrize("d", INPUTS, ids=ids("d"))
def test_accumulate(rng, d, h, k, m, dtype):
    """G += the block's gradient sums; G starts non-zero, so that '=' instead of '+=' would fail."""
    named = dict(block(rng, d, h, k, dtype), m=m)
    kernel, ref = run_both("accumulate", named, [], dict(dtype=dtype, d=d, k=k))
    assert kernel["G"].dtype == np.float64
    compare(kernel, ref, ["G"], dtype)
    assert not np.allclose(kernel["G"], named["G"])


@every_shape
def test_backward(rng, d, h, k, m, act, dtype):
    """hidden_delta and accumulate in one: fused per hidden unit for d and k up to UNROLL (d 1, 2 and k 2, 3
    here), the two stages in turn otherwise (d = 5 or k = 5); G starts non-zero."""
    named = dict(block(rng, d, h, k, dtype, act), m=m)
    kernel, ref = run_both("backward", named, ["D2"], dict(act=act, dtype=dtype, d=d, k=k))
    compare(kernel, ref, ["D2", "G"], dtype)
    assert not np.allclose(kernel["G"], named["G"])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("lr, reg, scale", [(0.01, 0.01, 1.0), (0.5, 0.0, 1 / 7), (2.0, 0.3, 1 / BLOCK)])
@pytest.mark.parametrize("d, h, k", [(1, 1, 2), (2, 3, 2), (5, 50, 3)], ids=["d1h1k2", "d2h3k2", "d5h50k3"])
@pytest.mark.parametrize("ntiles", [1, 2, 3])
def test_update(rng, d, h, k, lr, reg, scale, dtype, ntiles):
    named = dict(block(rng, d, h, k, dtype), lr=lr, reg=reg, scale=scale, ntiles=ntiles)
    variant = dict(dtype=dtype, d=d, k=k)
    kernel, ref = run_both("update", named, [], variant)
    assert kernel["theta"].dtype == dtype
    compare(kernel, ref, ["theta"], dtype)
    # The tiles' partials are consumed, the others left as they were.
    np.testing.assert_array_equal(kernel["partials"][:ntiles], 0)
    np.testing.assert_array_equal(kernel["partials"][ntiles:], named["partials"][ntiles:])
    np.testing.assert_array_equal(ref["partials"], kernel["partials"])
    # The L2 term falls on the weights only: with G = 0, the biases stay, the weights shrink by lr*reg*scale.
    named["partials"][:] = 0
    kernel, _ = run_both("update", named, [], variant)
    W1, b1, W2, b2 = reference.split(kernel["theta"], d, h, k)
    V1, c1, V2, c2 = reference.split(named["theta"], d, h, k)
    np.testing.assert_array_equal(np.r_[b1, b2], np.r_[c1, c2])
    assert_near(np.r_[W1.ravel(), W2.ravel()], (1 - lr * reg * scale) * np.r_[V1.ravel(), V2.ravel()],
                RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_update_sums_the_partials_in_tile_order_and_reports_a_non_finite_step(rng, dtype):
    named = dict(block(rng, 5, 50, 3, dtype), lr=0.01, reg=0.01, scale=1.0)
    summed = dict(named, partials=named["partials"].copy(), ntiles=1)
    summed["partials"][0] = (named["partials"][0] + named["partials"][1]) + named["partials"][2]
    for impl in both(dtype=dtype, d=5, k=3):
        tiles, one = copies(named), copies(summed)
        assert call(impl.update, tiles) is True and call(impl.update, one) is True
        np.testing.assert_array_equal(tiles["theta"], one["theta"])  # the same sum, in the same order
        blown = dict(tiles, theta=tiles["theta"].copy(), lr=1e300, partials=np.full_like(named["partials"], 1e300))
        with np.errstate(all="ignore"):  # the twin's NumPy says so too, as it should
            assert call(impl.update, blown) is False  # theta became inf
        nan = dict(tiles, theta=tiles["theta"].copy())
        nan["theta"][7] = np.nan
        assert call(impl.update, nan) is False


OPTIMISERS = {  # name: (kernel solver, optimiser settings: momentum, nesterov, beta_1, beta_2, epsilon, steps)
    "momentum": ("momentum", [0.9, 0, 0.9, 0.999, 1e-8, 0]),
    "nesterov": ("momentum", [0.7, 1, 0.9, 0.999, 1e-8, 0]),
    "adam": ("adam", [0.0, 0, 0.9, 0.999, 1e-8, 0]),
    "adam, step 41": ("adam", [0.0, 0, 0.8, 0.99, 1e-3, 40]),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("optimiser", OPTIMISERS)
@pytest.mark.parametrize("d, h, k", [(1, 1, 2), (2, 3, 2), (5, 50, 3)], ids=["d1h1k2", "d2h3k2", "d5h50k3"])
def test_update_with_an_optimiser(rng, d, h, k, optimiser, dtype):
    """The step, the state (velocity or moments, started non-zero) and Adam's step count, against the twin."""
    solver, settings = OPTIMISERS[optimiser]
    named = dict(block(rng, d, h, k, dtype), lr=0.05, reg=0.01, scale=1 / 7, optimiser=np.array(settings, float))
    named["state"] = np.abs(rng.standard_normal((2, named["theta"].size))) * 0.01
    kernel, ref = run_both("update", named, [], dict(dtype=dtype, d=d, k=k, solver=solver))
    compare(kernel, ref, ["theta", "state", "optimiser"], dtype)
    assert not np.allclose(kernel["theta"], named["theta"])
    assert not np.allclose(kernel["state"][0], named["state"][0])
    assert kernel["optimiser"][5] == settings[5] + (solver == "adam")


@pytest.mark.parametrize("optimiser", OPTIMISERS)
@pytest.mark.parametrize("d, h, k, n, batch", [(2, 3, 2, 200, 50), (5, 50, 3, 300, None), (64, 17, 10, 600, 128)],
                         ids=["tutorial-batches", "d5-full", "wide-batches"])
def test_run_with_an_optimiser(rng, d, h, k, n, batch, optimiser):
    """Whole runs, float64: the kernels' optimisers against the twin's, state carried from update to update."""
    solver, settings = OPTIMISERS[optimiser]
    named = run_inputs(rng, d, h, k, n, batch=batch, passes=4, shuffled=batch is not None, lr=0.01)
    named.update(state=np.zeros((2, named["theta"].size)), optimiser=np.array(settings, float))
    kernel, twin = both("tanh", "softmax", np.float64, d, k, loop_for(named["batch"], d, h), solver=solver)
    (_, loss_k), k_env = call_run(kernel, named)
    (_, loss_r), r_env = call_run(twin, named)
    for name in ("theta", "state", "optimiser"):
        assert_near(k_env[name], r_env[name], RTOL[np.float64], err_msg=name)
    assert_near(loss_k, loss_r, RTOL[np.float64])
    updates = named["passes"] * -(-n // named["batch"])
    assert k_env["optimiser"][5] == settings[5] + (updates if solver == "adam" else 0)


@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("d, h, k, n, batch", [(2, 3, 2, 200, 50), (2, 3, 3, 2 * BLOCK + 60, None),
                                               (64, 17, 10, 600, 128)],
                         ids=["tutorial-batches", "tiles-full", "wide-batches"])
def test_weighted_run(rng, d, h, k, n, batch, out):
    """Sample weights (some 0): deltas and losses weighted, batches and the loss divided by weight sums."""
    named = run_inputs(rng, d, h, k, n, batch=batch, passes=3, shuffled=batch is not None, out=out)
    named["weights"] = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.1, 3, n))
    kernel, twin = both("tanh", out, np.float64, d, k, loop_for(named["batch"], d, h), weighted=True)
    (_, loss_k), k_env = call_run(kernel, named)
    (_, loss_r), r_env = call_run(twin, named)
    assert_near(k_env["theta"], r_env["theta"], RTOL[np.float64])
    assert_near(loss_k, loss_r, RTOL[np.float64])
    (_, loss_u), u_env = call_run(both("tanh", out, np.float64, d, k, loop_for(named["batch"], d, h))[0],
                                  dict(named, weights=np.empty(0)))
    assert not np.allclose(u_env["theta"], k_env["theta"])  # the weights made a difference


@pytest.mark.parametrize("d, h, k", [(1, 1, 2), (2, 3, 2), (5, 50, 3)], ids=str)
def test_split(d, h, k):
    theta = np.arange(d * h + h + h * k + k, dtype=np.float64)
    kernel, twin = both(d=d, k=k)
    parts = kernel.split(theta, d, h, k)
    assert [p.shape for p in parts] == [(d, h), (h,), (h, k), (k,)]
    for p, t in zip(parts, twin.split(theta, d, h, k)):
        np.testing.assert_array_equal(p, t)
        assert np.shares_memory(p, theta)  # views: an update through W1 is an update of theta
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in parts]), theta)


# d = 784: XB is written line by line, or (blas) a sample's row at a time into a column-major XB.
LOADS = [(d, False) for d in INPUTS] + [(5, True), (784, False), (784, True)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "order"])
@pytest.mark.parametrize("m", COLUMNS, ids=ids("m"))
@pytest.mark.parametrize("d, blas", LOADS, ids=[f"d{d}" + "-blas" * blas for d, blas in LOADS])
@pytest.mark.parametrize("out", ["softmax", "identity"])  # labels (n,), or targets (n, 3) into yb (3, BLOCK)
def test_load_block(rng, d, blas, m, shuffled, dtype, out):
    n, start = 2 * BLOCK + 5, 3  # start > 0: the block is taken from the middle of the data or order
    targets = out == "identity"
    named = dict(X=rng.standard_normal((n, d)).astype(dtype), start=start, m=m, e=1,
                 y=rng.standard_normal((n, 3)).astype(dtype) if targets else rng.integers(0, 3, n),
                 order=np.stack([rng.permutation(n) for _ in range(2)]) if shuffled else np.empty((0, 0), np.int64),
                 XB=np.full((BLOCK, d), np.nan, dtype).T if blas else np.full((d, BLOCK), np.nan, dtype),
                 yb=np.full((3, BLOCK), np.nan, dtype) if targets else np.full(BLOCK, -1, np.int64),
                 weights=rng.uniform(0, 2, n).astype(dtype), wb=np.full(BLOCK, np.nan, dtype))
    variant = dict(out=out, dtype=dtype, d=d, k=3, weighted=True, blas=blas)
    kernel, ref = run_both("load_block", named, [], variant)
    for name in ("XB", "yb", "wb"):
        np.testing.assert_array_equal(kernel[name], ref[name])
    rows = named["order"][1, start: start + m] if shuffled else np.arange(start, start + m)
    np.testing.assert_array_equal(kernel["XB"][:, :m], named["X"][rows].T)
    assert kernel["XB"].flags.c_contiguous != blas  # run_both's copies keep the layout
    np.testing.assert_array_equal(kernel["yb"][..., :m], named["y"][rows].T)
    np.testing.assert_array_equal(kernel["wb"][:m], named["weights"][rows])


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


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_two_class_softmax_ulp_distance_to_numpy(rng, dtype):
    """The two-class softmax of logits (0, t) is (sigmoid(-t), sigmoid(t)): within ULP of NumPy's on the whole
    float range, and 0 where that is below the smallest normal number (logistic_pair: no subnormal results)."""
    t = whole_range(rng, dtype)
    t = np.concatenate([t, np.zeros(-t.size % BLOCK, dtype)])
    ns = kernels.build("tanh", "softmax", np.dtype(dtype).name, 2, 2, "block")
    P = np.empty((2, t.size), dtype)
    for at in range(0, t.size, BLOCK):
        Z2, out = np.zeros((2, BLOCK), dtype), np.empty((2, BLOCK), dtype)
        Z2[1] = t[at: at + BLOCK]
        ns.output_forward(Z2, BLOCK, out, np.empty((2, BLOCK), dtype))
        P[:, at: at + BLOCK] = out
    for p, want in zip(P, (numpy_value("sigmoid", -t), numpy_value("sigmoid", t))):
        normal = want >= np.finfo(dtype).tiny
        dist = ulp_distance(p[normal], want[normal])
        assert dist.max() <= ULP["softmax2"][dtype], f"t = {t[normal][np.argmax(dist)]!r}: {dist.max():g} ulp"
        assert (p[~normal] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_two_class_softmax_special_values(dtype):
    """Logits (0, t): NaN in, NaN out (a diverging run must not look finite); an infinite gap gives exactly 0
    and 1; equal logits 1/2 each."""
    t = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    Z2, P = np.zeros((2, BLOCK), dtype), np.zeros((2, BLOCK), dtype)
    Z2[1, :t.size] = t
    kernels.build("tanh", "softmax", np.dtype(dtype).name, 2, 2, "block").output_forward(Z2, t.size, P, Z2.copy())
    assert np.isnan(P[:, 0]).all()
    np.testing.assert_array_equal(P[:, 1:t.size], [[0, 1, 0.5, 0.5], [1, 0, 0.5, 0.5]])


# --- Sample orders of shuffled mini-batches ---------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000])
@pytest.mark.parametrize("seed, first", [(0, 0), (5, 7), (2**32 - 1, 10**6)])
def test_orders_match_their_twin_and_are_permutations(n, seed, first):
    kernel_orders, twin_orders = np.full((3, n), -1), np.full((3, n), -1)
    kernels.orders(seed, first, kernel_orders)
    reference.orders(seed, first, twin_orders)
    np.testing.assert_array_equal(kernel_orders, twin_orders)
    for row in kernel_orders:
        np.testing.assert_array_equal(np.sort(row), np.arange(n))
    later = np.empty((1, n), np.int64)
    kernels.orders(seed, first + 2, later)  # a pass's order does not depend on the passes drawn before it
    np.testing.assert_array_equal(later[0], kernel_orders[2])
    if n >= 17:
        assert not np.array_equal(kernel_orders[0], kernel_orders[1])


def test_orders_draw_every_permutation_equally_often():
    """All 24 orders of 4 samples over 24,000 passes: a shuffle that drew j below i instead of up to it
    (Sattolo's: cycles only) or mod the wrong bound would miss or favour some, far beyond this bound."""
    out = np.empty((24_000, 4), np.int64)
    kernels.orders(3, 0, out)
    _, counts = np.unique(out, axis=0, return_counts=True)
    assert len(counts) == 24
    chi2 = ((counts - 1000) ** 2 / 1000).sum()
    assert chi2 < 60  # 23 degrees of freedom: exceeded by chance with probability below 1e-4


# --- run against the reference's run -------------------------------------------------------------------------

def run_inputs(rng, d, h, k, n, dtype=np.float64, batch=None, passes=5, shuffled=False, slots=1, lr=0.1,
               mean=True, evaluate=True, outputs=True, out="softmax"):
    """Named arguments of ``run``: data, a fresh initialisation, buffers sized as fastnn.engine sizes them;
    labels, or targets (n, k) for identity outputs."""
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.standard_normal((n, k)).astype(dtype) if out == "identity" else np.arange(n) % k
    order = np.stack([rng.permutation(n) for _ in range(passes)]) if shuffled else np.empty((0, 0), np.int64)
    theta = init_params(d, h, k, 0, dtype)
    batch = batch or n
    return dict(X=X, y=y, order=order, theta=theta, passes=passes, batch=batch, lr=lr, reg=0.01, mean=mean,
                evaluate=evaluate, work=np.empty((slots, kernels.work_rows(d, h, k), BLOCK), dtype),
                labels=engine.label_buffer(y, slots, dtype),
                partials=np.zeros((engine.tiles(min(batch, n), d, h), theta.size)),
                losses=np.zeros(max(engine.tiles(n, d, h), engine.tiles(min(batch, n), d, h))),
                P=np.full((n if outputs else 0, k), np.nan, dtype), d=d, h=h, k=k, weights=np.empty(0, dtype),
                state=np.zeros((0, theta.size)), optimiser=np.zeros(6), running=np.empty(0))


def call_run(impl, named):
    """``run`` on copies of the named inputs (params: views of the copied theta); (result, the copies)."""
    env = copies(named)
    env["params"] = reference.split(env["theta"], env["d"], env["h"], env["k"])
    return call(impl.run, env), env


def loop_for(batch, d, h):
    """The loop fastnn.engine gives a batch: one block unless it spans blocks or tiles."""
    return "block" if batch <= BLOCK and engine.tiles(batch, d, h) == 1 else "tiles"


# Shapes of whole runs: one sample; one block short of a column; two blocks and a half; a wide, deep net.
RUN_SHAPES = [(1, 1, 2, 1), (2, 3, 2, BLOCK - 1), (2, 3, 3, 2 * BLOCK + 60), (3, 4, 5, 300), (5, 50, 3, 300)]
PAIRS = [("tanh", "softmax"), ("sigmoid", "sigmoid"), ("relu", "softmax"), ("tanh", "sigmoid"), ("tanh", "identity")]


@pytest.mark.parametrize("batching", ["full", "batches", "shuffled"])
@pytest.mark.parametrize("act, out", PAIRS, ids=["-".join(p) for p in PAIRS])
@pytest.mark.parametrize("d, h, k, n", RUN_SHAPES, ids=["d{}h{}k{}n{}".format(*s) for s in RUN_SHAPES])
def test_run(rng, d, h, k, n, act, out, batching):
    batch = {"full": None, "batches": 50, "shuffled": 50}[batching]
    named = run_inputs(rng, d, h, k, n, batch=batch, shuffled=batching == "shuffled", out=out)
    kernel, twin = both(act, out, np.float64, d, k, loop_for(named["batch"], d, h))
    (done_k, loss_k), k_env = call_run(kernel, named)
    (done_r, loss_r), r_env = call_run(twin, named)
    assert done_k == done_r == named["passes"]
    assert_near(k_env["theta"], r_env["theta"], RTOL[np.float64])
    assert not np.allclose(k_env["theta"], named["theta"], rtol=1e-3)  # it trained
    assert_near(loss_k, loss_r, RTOL[np.float64])
    assert_near(k_env["P"], r_env["P"], RTOL[np.float64])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batching", ["full", "batches", "shuffled"])
@pytest.mark.parametrize("d, h, k, n", [(3, 4, 1, 300), (5, 17, 1, 2 * BLOCK + 60), (64, 17, 1, 200)],
                         ids=["d3h4n300", "d5h17-tiles", "d64h17-wide"])
def test_identity_run_one_target(rng, d, h, k, n, batching, dtype):
    """Regression's common case, one target (k = 1): whole runs against the twin, in both dtypes, through
    the unrolled, the tiled and the wide (BLAS) paths."""
    batch = {"full": None, "batches": 50, "shuffled": 50}[batching]
    named = run_inputs(rng, d, h, k, n, dtype, batch=batch, shuffled=batching == "shuffled", out="identity")
    assert_run_matches_twin(*both("tanh", "identity", dtype, d, k, loop_for(named["batch"], d, h)), named, dtype)


def assert_run_matches_twin(kernel, twin, named, dtype):
    """A whole run of the kernel (BLAS on one thread) and of its twin on the same inputs: the same passes
    completed, and theta, the loss and the outputs within the dtype's tolerance; and the run trained."""
    with engine.single_threaded_blas:
        (done_k, loss_k), k_env = call_run(kernel, named)
    (done_r, loss_r), r_env = call_run(twin, named)
    assert done_k == done_r == named["passes"]
    tolerance = RTOL[np.float64] if dtype == np.float64 else RUN_RTOL32
    assert_near(k_env["theta"], r_env["theta"], tolerance)
    assert not np.allclose(k_env["theta"], named["theta"], rtol=1e-3)
    assert_near(loss_k, loss_r, tolerance)
    assert_near(k_env["P"], r_env["P"], tolerance)


# (d, h, k, n, batch, output, weighted): one block, tiles (weighted), a wide net of tiles, the wide BLAS path in
# batches of two tiles (weighted), identity outputs in tiles of more than one TILE and in weighted batches;
# each the variant another test compiles too.
RUNNING = [(2, 3, 2, 200, None, "softmax", False), (2, 3, 3, 2 * BLOCK + 60, None, "sigmoid", True),
           (5, 50, 3, 300, None, "sigmoid", False), (64, 17, 10, 600, 128, "softmax", True),
           (3, 4, 1, TILE + 300, None, "identity", False), (2, 3, 2, 200, 50, "identity", True)]


@pytest.mark.parametrize("d, h, k, n, batch, out, weighted", RUNNING,
                         ids=["d{}h{}k{}n{}b{}-{}-{}".format(*s) for s in RUNNING])
def test_running_loss(rng, d, h, k, n, batch, out, weighted):
    """Each pass's training loss as the pass computes it (scikit-learn's loss_curve_), against the twin; for
    the full batch, the loss of the parameters the pass started from."""
    passes = 4
    named = run_inputs(rng, d, h, k, n, batch=batch, passes=passes, shuffled=batch is not None, out=out, lr=0.05)
    named["X"] /= np.sqrt(d)
    named.update(running=np.full(passes, np.nan), reg=0.1)
    if weighted:
        named["weights"] = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.1, 3, n))
    loop = loop_for(named["batch"], d, h)
    kernel, twin = both("tanh", out, np.float64, d, k, loop, weighted=weighted)
    with engine.single_threaded_blas:
        _, k_env = call_run(kernel, named)
    _, r_env = call_run(twin, named)
    assert np.isfinite(k_env["running"]).all()
    assert_near(k_env["running"], r_env["running"], RTOL[np.float64])
    assert_near(k_env["theta"], r_env["theta"], RTOL[np.float64])
    if batch is None:  # pass e's loss is the loss of the parameters after e passes
        for e in range(passes):
            (_, exact), _ = call_run(kernel, dict(named, passes=e, running=np.empty(0)))
            assert_near(k_env["running"][e], exact, RTOL[np.float64])
    with engine.single_threaded_blas:  # tracking the loss changes nothing else, to the bit
        (_, loss_without), without = call_run(kernel, dict(named, running=np.empty(0)))
        (_, loss_with), _ = call_run(kernel, named)
    np.testing.assert_array_equal(without["theta"], k_env["theta"])
    assert loss_without == loss_with


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("batch", [None, 16], ids=["full", "batches"])
def test_run_reports_divergence_at_the_same_pass(rng, act, batch):
    """A step of 1e150 overflows within a few passes: both stop at the same pass and say which. Each pass's
    training loss is written before the pass's last step: with full batches, the diverging pass's too (the
    loss of the parameters it started from)."""
    named = run_inputs(rng, 2, 3, 2, 40, batch=batch, passes=50, lr=1e150, mean=False)
    named["running"] = np.full(named["passes"], -1.0)
    kernel, twin = both(act, loop=loop_for(named["batch"], 2, 3))
    (done_k, loss_k), k_env = call_run(kernel, named)
    (done_r, loss_r), r_env = call_run(twin, named)
    assert done_k == done_r < named["passes"]
    assert math.isnan(loss_k) and math.isnan(loss_r)
    assert not np.isfinite(k_env["theta"]).all()
    written = slice(done_k + 1)
    assert_near(k_env["running"][written], r_env["running"][written], RTOL[np.float64])
    if batch is None:
        assert k_env["running"][done_k] != -1
    assert (k_env["running"][done_k + 1:] == -1).all() and (r_env["running"][done_k + 1:] == -1).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("out", OUTPUTS)
def test_loss_with_large_logits(rng, out, dtype):
    """Logits of ~1e3: the loss is finite (log-sum-exp, never log(0)) and equal to the reference's."""
    named = run_inputs(rng, 2, 3, 3, 40, dtype, passes=0, out=out)
    W1, b1, W2, b2 = reference.split(named["theta"], 2, 3, 3)
    W2 *= LARGE_LOGIT / np.abs(W2).max()
    b2[:] = [LARGE_LOGIT, -LARGE_LOGIT, 0]
    kernel, twin = both(out=out, dtype=dtype, k=3)
    (_, value), k_env = call_run(kernel, named)
    (_, twin_value), _ = call_run(twin, named)
    assert np.isfinite(value) and value > 10  # some samples are wrong by hundreds of nats
    assert_near(value, twin_value, RTOL[dtype])
    assert np.isfinite(k_env["P"]).all()


@pytest.mark.parametrize("evaluate, outputs", [(False, True), (True, False), (False, False)])
def test_run_evaluates_only_what_it_is_asked(rng, evaluate, outputs):
    named = run_inputs(rng, 2, 3, 2, 50, passes=0, evaluate=evaluate, outputs=outputs)
    (done, value), env = call_run(both()[0], named)
    assert done == 0
    assert (value > 0) == evaluate
    np.testing.assert_array_equal(env["theta"], named["theta"])
    if outputs:
        assert np.isfinite(env["P"]).all()


# --- Variants: bit for bit one another, whatever the loop and the number of slots ---------------------------

N_PARALLEL = 2 * TILE + 77  # three tiles, the last one partial: more tiles than slots, and a remainder


@pytest.mark.parametrize("batching, slots", [("full", 1), ("full", 2), ("full", 3), ("shuffled", 1),
                                             ("shuffled", 2), ("shuffled", 3), ("weighted", 2)])
def test_parallel_run_is_bit_identical_to_serial(slots, batching):
    """weighted: mean gradients divided by the batches' weight sums, which once were summed in another order
    by each variant."""
    rng = np.random.default_rng(7)
    batch = TILE + 100 if batching != "full" else None  # batches of more than one tile, in a random order
    named = run_inputs(rng, 2, 2, 3, N_PARALLEL, batch=batch, passes=3, shuffled=batching != "full")
    weighted = batching == "weighted"
    if weighted:
        named["weights"] = rng.uniform(0.1, 3, N_PARALLEL)
    (done_s, loss_s), serial = call_run(both(d=2, k=3, loop="tiles", weighted=weighted)[0], named)
    named.update(work=np.empty((slots,) + named["work"].shape[1:]), labels=np.zeros((slots, BLOCK), np.int64))
    (done_p, loss_p), parallel = call_run(both(d=2, k=3, loop="tiles", parallel=True, weighted=weighted)[0], named)
    assert done_s == done_p == named["passes"]
    np.testing.assert_array_equal(parallel["theta"], serial["theta"])
    np.testing.assert_array_equal(parallel["P"], serial["P"])
    assert loss_p == loss_s
    assert not np.array_equal(serial["theta"], named["theta"])


@pytest.mark.parametrize("h", [5, 40], ids=ids("h"))  # 40: the evaluation's blocks are halved (_block_size)
@pytest.mark.parametrize("n", [3 * BLOCK, TILE + 2 * BLOCK + 5], ids=ids("n"))
@pytest.mark.parametrize("batch", [BLOCK, 37])
def test_one_block_loop_is_bit_identical_to_tiles(rng, batch, n, h):
    """The variant that compiles no loop over tiles computes what the tiled one computes for such batches,
    its evaluation too: a final pass through its training's calls that sums the losses tile by tile (serial),
    or tiles on threads (parallel)."""
    named = run_inputs(rng, 2, h, 2, n, batch=batch, passes=2, shuffled=True)
    (_, loss_t), tiles_env = call_run(both(loop="tiles")[0], named)
    (_, loss_b), block_env = call_run(both(loop="block")[0], named)
    named.update(work=np.empty((2,) + named["work"].shape[1:]), labels=np.zeros((2, BLOCK), np.int64))
    (_, loss_p), parallel_env = call_run(both(loop="block", parallel=True)[0], named)
    for env in (block_env, parallel_env):
        np.testing.assert_array_equal(env["theta"], tiles_env["theta"])
        np.testing.assert_array_equal(env["P"], tiles_env["P"])
    assert loss_b == loss_t == loss_p
    assert np.isfinite(tiles_env["P"]).all()


def test_one_block_loop_evaluates_heavy_samples_in_their_tiles(rng):
    """A full batch of heavy samples run by the one-block loop (the engine gives it tiles; a direct call may
    not): the training keeps its one block in the buffers from pass to pass, but the evaluation's blocks
    are the tiles (two of 112 and 88 samples here), which the final pass must load."""
    named = run_inputs(rng, 64, 16, 3, 200, passes=2)
    assert kernels.heavy(64, 16) and engine.tiles(200, 64, 16) == 2
    kernel, twin = both(d=64, k=3, loop="block", blas=True)
    (_, loss_k), env_k = call_run(kernel, named)
    (_, loss_t), env_t = call_run(twin, named)
    np.testing.assert_allclose(env_k["theta"], env_t["theta"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(env_k["P"], env_t["P"], rtol=1e-12, atol=1e-14)
    assert loss_k == pytest.approx(loss_t, rel=1e-12)


# --- Wide inputs: the matrix-product path (d > UNROLL) ---------------------------------------------------------
# One compilation serves every d > UNROLL; these shapes cross d in {5, 64, 784}, k in {2, 3, 10, 100} and h in
# {1, 17, 128, 500}, so that a leading dimension, a transposition or an offset of the products that is wrong
# for some shape shows; and (7, 9, 4) takes the loops' products (_combine, _dots: rows four at a time, then the
# rest) through every remainder: 7 inputs (4 + 2 + 1), 9 units (4 + 4 + 1), 4 classes (the hidden delta's 3
# after the first: 2 + 1).
WIDE = [(5, 500, 3), (64, 17, 10), (784, 128, 10), (64, 1, 100), (784, 17, 3), (64, 128, 2), (7, 9, 4)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("blas", [False, True], ids=["loops", "blas"])
@pytest.mark.parametrize("m", [1, 100, BLOCK], ids=ids("m"))
@pytest.mark.parametrize("d, h, k", WIDE, ids=["d{}h{}k{}".format(*s) for s in WIDE])
def test_wide_stages(rng, d, h, k, m, blas, dtype):
    """Both paths on every shape (the engine takes BLAS's for heavy samples, kernels.heavy); BLAS's with XB
    column-major, as run lays it out."""
    named = dict(block(rng, d, h, k, dtype), m=m)
    if blas:
        named["XB"] = np.asfortranarray(named["XB"])
    variant = dict(dtype=dtype, d=d, k=k, blas=blas)
    compare(*run_both("hidden_forward", named, ["A1", "Z2"], variant), ["A1", "Z2"], dtype)
    kernel, ref = run_both("backward", named, ["D2"], variant)
    compare(kernel, ref, ["D2", "G"], dtype)
    assert not np.allclose(kernel["G"], named["G"])


WIDE_RUNS = [(784, 128, 10, 300), (64, 17, 100, 600), (5, 500, 3, 200), (64, 1, 2, 130)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("batching", ["full", "batches", "shuffled"])
@pytest.mark.parametrize("d, h, k, n", WIDE_RUNS, ids=["d{}h{}k{}n{}".format(*s) for s in WIDE_RUNS])
def test_wide_run(rng, d, h, k, n, batching, reduction, dtype):
    """Whole runs of the wide path against the reference: full batch (tiles of a block, or two halves of a
    small batch) and mini-batches of 128 (two tiles each), in order and shuffled, with gradients of the
    batch's mean or sum (then a step as many times smaller, the same step size)."""
    batch = {"full": None, "batches": 128, "shuffled": 128}[batching]
    mean = reduction == "mean"
    lr = 0.05 if mean else 0.05 / (batch or n)
    named = run_inputs(rng, d, h, k, n, dtype, batch=batch, passes=3, shuffled=batching == "shuffled", lr=lr,
                       mean=mean)
    named["X"] /= np.sqrt(d)  # the tutorial's scale of pre-activations, not d times it
    assert_run_matches_twin(*both("tanh", "softmax", dtype, d, k, loop_for(named["batch"], d, h),
                                  blas=kernels.heavy(d, h)), named, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("n, batch", [(128, None), (3000, None), (1000, 128)], ids=["n128", "n3000", "batch128"])
def test_wide_parallel_run_is_bit_identical_to_serial(n, batch, dtype):
    """Tiles of wide inputs over 1, 2 or 3 slots: the same bits (BLAS runs single-threaded in the kernels,
    fastnn.engine.single_threaded_blas, as here)."""
    rng = np.random.default_rng(3)
    named = run_inputs(rng, 64, 17, 10, n, dtype, batch=batch, passes=2, shuffled=batch is not None)
    assert named["partials"].shape[0] >= 2  # the batches are split into tiles
    results = []
    with engine.single_threaded_blas:
        for slots, parallel in [(1, False), (1, True), (2, True), (3, True)]:
            named.update(work=np.empty((slots,) + named["work"].shape[1:], dtype),
                         labels=np.zeros((slots, BLOCK), np.int64))
            results.append(call_run(both(dtype=dtype, d=64, k=10, loop="tiles", parallel=parallel, blas=True)[0],
                                    named))
    (_, loss), first = results[0]
    for (_, other_loss), other in results[1:]:
        np.testing.assert_array_equal(other["theta"], first["theta"])
        np.testing.assert_array_equal(other["P"], first["P"])
        assert other_loss == loss


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_blas_gemm_products_of_row_and_column_major_views(rng, dtype):
    """C[:m, :n] = op(A) op(B) + beta C[:m, :n] for each transposition and layout of A and B, each the
    top-left corner of a larger array (as the kernels pass BLOCK-wide buffers of which a block fills m
    columns); C's other entries are left alone."""
    from numba import njit

    from fastnn.kernels.config import blas_gemm

    product = njit(lambda ta, tb, m, n, k, a, b, beta, c: blas_gemm(ta, tb, m, n, k, a, b, beta, c))
    m, n, k = 3, 5, 4
    for ta, tb, a_major, b_major in itertools.product([False, True], repeat=4):
        a_shape, b_shape = (k, m) if ta else (m, k), (n, k) if tb else (k, n)
        A, B = (np.asarray(rng.standard_normal((r + 2, c + 3)), dtype, order="F" if major else "C")
                for (r, c), major in ((a_shape, a_major), (b_shape, b_major)))
        C = rng.standard_normal((m + 1, n + 2)).astype(dtype)
        a, b = A[:a_shape[0], :a_shape[1]], B[:b_shape[0], :b_shape[1]]
        expected = C.copy()
        expected[:m, :n] = (a.T if ta else a) @ (b.T if tb else b) + 0.5 * C[:m, :n]
        product(ta, tb, m, n, k, A, B, 0.5, C)
        assert_near(C, expected, RTOL[dtype], err_msg=f"ta={ta} tb={tb} A {'CF'[a_major]} B {'CF'[b_major]}")


def test_blas_gemm_refuses_mixed_dtypes_and_strided_views():
    """BLAS's gemm takes one dtype (a float32 product into float64 would read float32 bits as float64) and
    matrices with unit stride along one axis."""
    from numba import njit
    from numba.core.errors import TypingError

    from fastnn.kernels.config import blas_gemm

    @njit
    def product(a, c):
        blas_gemm(False, False, 1, 1, 1, a, a, 0.0, c)

    with pytest.raises(TypingError, match="one dtype"):
        product(np.ones((1, 1), np.float32), np.zeros((1, 1)))
    with pytest.raises(TypingError, match="row- or column-major"):
        product(np.ones((4, 4))[::2, ::2], np.zeros((1, 1)))
    c = np.zeros((1, 1))
    product(np.full((1, 1), 3.0), c)
    assert c[0, 0] == 9.0
