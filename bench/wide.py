"""Wide inputs and many classes: fastnn's estimator beside scikit-learn's MLPClassifier, PyTorch eager and JAX
jit, with the GEMM limit of each workload.

``python bench/wide.py [--repeat 3] [--only mnist digits synthetic] [--dtypes float64 float32]``

Every library trains the same model with the same settings: one tanh hidden layer, softmax outputs,
cross-entropy with an L2 term of 1e-4 (MLPClassifier's alpha: the gradient of a batch of m samples is
(X^T D + alpha W) / m), plain gradient steps of a constant lr (MLPClassifier: solver="sgd", momentum=0,
no early stopping), a fixed number of passes, mini-batches in a shuffled order or the full batch, in the
data's dtype. Each time is the best of ``repeat`` fits after an untimed one (compiling, JAX's tracing) and
covers what ``fit`` does: fastnn and MLPClassifier also check the input and record each pass's training loss
(both sum the batches' losses as they train); the PyTorch and JAX loops only train. The accuracy is on a
held-out fifth of the data.

Workloads (docs/DESIGN.md, Benchmarks):
- mnist: MNIST's shape, 20,000 x 784, 10 classes (ten noisy class templates: MNIST is not downloaded),
  hidden 128, 5 passes, lr 0.05, mini-batches of 128 and the full batch;
- digits: scikit-learn's 8x8 digits, 1,797 x 64 (standardised), 10 classes, hidden 32, lr 0.1: 50 passes
  in mini-batches of 32, and 1,000 full-batch passes at lr 0.5;
- synthetic: 1,000,000 x 16, 4 classes (Gaussian blobs), hidden 32, lr 0.05: one pass in mini-batches of
  256, and 3 full-batch passes.

GEMM limit: the floating-point work of a pass's matrix products (2 n d h for X W1 and as much for
X^T D2, plus 6 n h k for the output layer's three), at the rate this machine's BLAS reaches on a large
square product of the dtype on every core: what a pass would take if it were nothing but well-fed matrix
products.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from limits import cpu_model  # noqa: E402

REG = 1e-4
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def mnist_like(rng):
    n, d, k = 20_000, 784, 10
    y = rng.integers(0, k, n)
    templates = rng.standard_normal((k, d))
    return templates[y] * 0.3 + rng.standard_normal((n, d)), y


def digits(rng):
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9), y


def blobs(rng):
    n, d, k = 1_000_000, 16, 4
    y = rng.integers(0, k, n)
    return rng.standard_normal((k, d))[y] * 0.7 + rng.standard_normal((n, d)), y


# name: (data, hidden, [(label, batch or None, passes, lr)])
WORKLOADS = {
    "mnist": (mnist_like, 128, [("batch 128", 128, 5, 0.05), ("full batch", None, 5, 0.05)]),
    "digits": (digits, 32, [("batch 32", 32, 50, 0.1), ("full batch", None, 1000, 0.5)]),
    "synthetic": (blobs, 32, [("batch 256", 256, 1, 0.05), ("full batch", None, 3, 0.05)]),
}


# ---- the libraries: fit(X, y, hidden, batch, passes, lr, seed) -> predict(X) -------------------------------

def fastnn_fit(X, y, hidden, batch, passes, lr, seed):
    from fastnn import NeuralNetClassifier
    clf = NeuralNetClassifier(hidden, lr=lr, reg=REG, passes=passes, batch_size=batch, dtype=None,
                              random_state=seed).fit(X, y)
    return clf.predict


def sklearn_fit(X, y, hidden, batch, passes, lr, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier((hidden,), activation="tanh", solver="sgd", alpha=REG, learning_rate="constant",
                        learning_rate_init=lr, momentum=0.0, batch_size=len(y) if batch is None else batch,
                        max_iter=passes, tol=0.0, n_iter_no_change=passes + 1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point
        clf.fit(X, y)
    return clf.predict


def _init(d, h, k, dtype, seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((d, h)) / np.sqrt(d)).astype(dtype), np.zeros(h, dtype),
            (rng.standard_normal((h, k)) / np.sqrt(h)).astype(dtype), np.zeros(k, dtype)]


def torch_fit(X, y, hidden, batch, passes, lr, seed):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(THREADS)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    n, batch = len(y), batch or len(y)
    params = [torch.from_numpy(p).requires_grad_() for p in _init(X.shape[1], hidden, int(y.max()) + 1, X.dtype, seed)]
    W1, b1, W2, b2 = params
    generator = torch.Generator().manual_seed(seed)
    for _ in range(passes):
        order = torch.randperm(n, generator=generator) if batch < n else torch.arange(n)
        for start in range(0, n, batch):
            rows = order[start: start + batch]
            xb, yb = Xt[rows], yt[rows]
            logits = torch.tanh(xb @ W1 + b1) @ W2 + b2
            loss = F.cross_entropy(logits, yb) + REG / (2 * len(rows)) * (W1.square().sum() + W2.square().sum())
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
                    p.grad = None
    with torch.no_grad():
        weights = [p.detach().numpy() for p in params]
    return lambda Z: (np.tanh(Z @ weights[0] + weights[1]) @ weights[2] + weights[3]).argmax(axis=1)


def jax_fit(X, y, hidden, batch, passes, lr, seed):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax
    step = _jax_step()
    n, batch = len(y), batch or len(y)
    k = int(y.max()) + 1
    params = [jnp.asarray(p) for p in _init(X.shape[1], hidden, k, X.dtype, seed)]
    Xj, Yj = jnp.asarray(X), jax.nn.one_hot(jnp.asarray(y), k, dtype=X.dtype)
    rng = np.random.default_rng(seed)
    full = n // batch * batch
    for _ in range(passes):
        order = jnp.asarray(rng.permutation(n) if batch < n else np.arange(n))
        params = _jax_epoch(step, Xj[order[:full]].reshape(n // batch, batch, -1),
                            Yj[order[:full]].reshape(n // batch, batch, -1), params, lr)
        if full < n:
            params = step(params, (Xj[order[full:]], Yj[order[full:]]), lr)
    weights = [np.asarray(p) for p in params]
    del lax
    return lambda Z: (np.tanh(Z @ weights[0] + weights[1]) @ weights[2] + weights[3]).argmax(axis=1)


_JAX = {}


def _jax_step():
    """One jitted gradient step (params, (xb, Yb), lr) -> params, made once per process."""
    if "step" not in _JAX:
        import jax
        import jax.numpy as jnp

        def loss(params, xb, Yb):
            W1, b1, W2, b2 = params
            logits = jnp.tanh(xb @ W1 + b1) @ W2 + b2
            data = -jnp.mean(jnp.sum(Yb * jax.nn.log_softmax(logits), axis=1))
            return data + REG / (2 * xb.shape[0]) * (jnp.sum(W1 * W1) + jnp.sum(W2 * W2))

        @jax.jit
        def step(params, batch, lr):
            grads = jax.grad(loss)(params, *batch)
            return [p - lr * g for p, g in zip(params, grads)]

        _JAX["step"] = step
    return _JAX["step"]


def _jax_epoch(step, XB, YB, params, lr):
    import jax
    if "epoch" not in _JAX:
        _JAX["epoch"] = jax.jit(lambda XB, YB, params, lr: jax.lax.scan(
            lambda p, batch: (step(p, batch, lr), None), params, (XB, YB))[0])
    return _JAX["epoch"](XB, YB, params, lr)


LIBRARIES = {"fastnn": (None, fastnn_fit), "MLPClassifier": ("sklearn", sklearn_fit),
             "torch eager": ("torch", torch_fit), "JAX jit": ("jax", jax_fit)}


def available(module):
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


# ---- the GEMM limit ------------------------------------------------------------------------------------------

def gemm_rate(dtype, size=2000):
    """FLOP/s of this machine's BLAS on a size x size product of the dtype, every core, best of 3."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * size ** 3 / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def limit_seconds(n, d, h, k, passes, rate):
    forward = 2 * n * d * h + 2 * n * h * k  # X W1, A1 W2
    backward = 2 * n * d * h + 4 * n * h * k  # X^T D2; A1^T D3 and D3 W2^T
    return passes * (forward + backward) / rate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--dtypes", nargs="*", default=["float64", "float32"], choices=["float64", "float32"])
    args = parser.parse_args(argv)
    print(f"# CPU: {cpu_model()}; {THREADS} threads; numpy {np.__version__}")
    print("# OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s" % (os.environ.get("OPENBLAS_CORETYPE", "-"),
                                                          os.environ.get("OPENBLAS_L2_SIZE", "-")))
    libraries = {name: fit for name, (module, fit) in LIBRARIES.items() if available(module)}
    print(f"# libraries: {', '.join(libraries)} (missing ones are skipped)")
    rng = np.random.default_rng(0)
    for name in args.only:
        make, hidden, settings = WORKLOADS[name]
        X64, y = make(rng)
        split = rng.permutation(len(y))
        train, test = split[: len(y) * 4 // 5], split[len(y) * 4 // 5:]
        n, d, k = len(train), X64.shape[1], int(y.max()) + 1
        for dtype in args.dtypes:
            X = X64.astype(dtype)
            rate = gemm_rate(dtype)
            for label, batch, passes, lr in settings:
                limit = limit_seconds(n, d, hidden, k, passes, rate)
                print(f"\n## {name}: n={n} d={d} k={k} hidden={hidden}, {label}, {passes} passes, lr {lr}, {dtype}"
                      f" (GEMM limit {limit * 1e3:.0f} ms at {rate / 1e9:.0f} GFLOP/s)")
                print(f"{'library':<14} {'fit ms':>9} {'vs fastnn':>10} {'vs limit':>9} {'accuracy':>9}")
                base = None
                for library, fit in libraries.items():
                    fit(X[train], y[train], hidden, batch, passes, lr, 0)  # compile, trace, warm caches
                    times, predict = [], None
                    for r in range(args.repeat):
                        start = time.perf_counter()
                        predict = fit(X[train], y[train], hidden, batch, passes, lr, r)
                        times.append(time.perf_counter() - start)
                    best = min(times)
                    base = base or best
                    accuracy = float((predict(X[test]) == y[test]).mean())
                    print(f"{library:<14} {best * 1e3:>9.0f} {best / base:>9.2f}x {best / limit:>8.2f}x "
                          f"{accuracy:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
