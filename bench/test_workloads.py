"""pytest-benchmark suites for docs/DESIGN.md's named workloads: the Numba kernels and the NumPy reference
side by side in one group.  ``pytest bench --benchmark-only`` (FASTNN_LARGE_N sets large's n)."""

import os

import numpy as np
import pytest

import fastnn
from fastnn import engine, kernels, reference
from fastnn.train import init_params

LARGE_N = int(os.environ.get("FASTNN_LARGE_N", 1_000_000))
NO_ORDER = np.empty((0, 0), np.int64)


@pytest.fixture(scope="module")
def moons():
    return fastnn.make_moons()


@pytest.fixture(scope="module")
def large():
    return fastnn.make_moons(LARGE_N)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_seed(benchmark, moons, backend):
    """seed: make_moons(200), H = 3, 20000 passes, the whole fastnn.train call."""
    X, y = moons
    benchmark.group = "seed: n=200, H=3, 20000 passes"
    fastnn.train(X, y, 3, passes=10, backend=backend)  # compile (or load the cache) before timing
    rounds = 5 if backend == "numba" else 1
    model = benchmark.pedantic(fastnn.train, args=(X, y, 3), kwargs=dict(backend=backend),
                               rounds=rounds, iterations=1)
    assert model.score(X, y) >= 0.97  # both phases of the tutorial's period-2 orbit score 0.97-0.975


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_large_pass(benchmark, large, dtype, backend):
    """large / large32: one pass of full-batch gradient descent, H = 64, mean reduction."""
    X, y = large
    X = X.astype(dtype)
    benchmark.group = f"large pass: n={LARGE_N}, H=64, {dtype}"
    theta = init_params(2, 64, 2, 0, dtype)
    run = engine.plan(backend, "tanh", "softmax", dtype, 2, 64, 2, len(y), len(y))
    args = (X, y, NO_ORDER, theta, reference.split(theta, 2, 64, 2), 1, len(y), 0.01, 0.01, True, False,
            np.empty((0, 2), dtype))
    run(*args)  # compile before timing
    benchmark.pedantic(run, args=args, rounds=5 if backend == "numba" else 2, iterations=1)
    assert np.isfinite(theta).all()


STAGE_H = 64


@pytest.fixture(scope="module")
def block():
    """One full block of the large workload's shapes: buffers as the kernels lay them out."""
    d, h, k, B = 2, STAGE_H, 2, kernels.BLOCK
    rng = np.random.RandomState(0)
    theta = init_params(d, h, k, 0, np.float64)
    W1, b1, W2, b2 = reference.split(theta, d, h, k)
    D3 = rng.randn(k, B) * 0.1
    D3[1] = -D3[0]  # two-class softmax's deltas: opposite rows (output_delta)
    return dict(XB=rng.randn(d, B), A1=np.tanh(rng.randn(h, B)), Z2=rng.randn(k, B), P=np.full((k, B), 0.5),
                D3=D3, D2=rng.randn(h, B), S=np.ones((2, B)), yb=rng.randint(0, k, B),
                wb=np.ones(B), W1=W1, b1=b1, W2=W2, b2=b2, G=np.zeros(theta.size), GW=np.empty((0, 0)), m=B)


STAGES = {
    "hidden_forward": lambda b: (b["XB"], b["m"], b["W1"], b["b1"], b["W2"], b["b2"], b["A1"], b["Z2"]),
    "output_forward": lambda b: (b["Z2"], b["m"], b["P"], b["S"]),
    "output_delta": lambda b: (b["P"], b["yb"], b["wb"], b["m"], b["D3"]),
    "hidden_delta": lambda b: (b["D3"], b["m"], b["W2"], b["A1"], b["D2"]),
    "accumulate": lambda b: (b["XB"], b["A1"], b["D3"], b["D2"], b["m"], b["G"], b["GW"]),
    "backward": lambda b: (b["XB"], b["A1"], b["D3"], b["m"], b["W2"], b["D2"], b["G"], b["GW"]),
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_stage(benchmark, block, stage, backend):
    """Each stage kernel on one block (BLOCK samples, H = 64, tanh, softmax) against its NumPy twin."""
    benchmark.group = f"stage {stage}: one block of {kernels.BLOCK}, H={STAGE_H}"
    buffers = {key: (v.copy() if isinstance(v, np.ndarray) else v) for key, v in block.items()}
    impl = kernels if backend == "numba" else reference
    func = getattr(impl.build("tanh", "softmax", "float64", 2, 2, "block"), stage)
    args = STAGES[stage](buffers)
    func(*args)
    benchmark(func, *args)
    assert all(np.isfinite(v).all() for v in buffers.values() if isinstance(v, np.ndarray))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tanh(benchmark, dtype, backend):
    """The vectorised tanh on 4096 values (in cache) against np.tanh."""
    benchmark.group = f"tanh x4096 {dtype}"
    x = np.random.RandomState(0).uniform(-5, 5, 4096).astype(dtype)
    out = np.empty_like(x)
    func = kernels.tanh_array if backend == "numba" else reference.tanh_array
    func(x, out)
    benchmark(func, x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-6 if dtype == "float32" else 1e-15)
