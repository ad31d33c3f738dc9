"""The implementations that bench/peers.py compares, and the child process that times one of them.

``python bench/_peers_impl.py IMPL WORKLOAD DATA.npz REPEAT BUDGET SCALE`` prints one JSON line;
``python bench/_peers_impl.py limit DTYPE N`` prints ``limits.compute_limit(DTYPE, N)``. Every
implementation starts from the tutorial's initial weights (sklearn excepted: it draws its own) and
returns final weights in softmax form (W1, b1, W2, b2), so one loss function checks them all.
"""
import json
import sys
import time
import warnings

import numpy as np

LR, REG = 0.01, 0.01
SWEEP_H = (1, 2, 3, 4, 5, 20, 50)
# docs/DESIGN.md, Benchmarks; `large` times `passes` passes and reports per pass. `first`: passes of the
# untimed first call. 10 on the small data, because with the sum reduction the first steps of H = 50
# overshoot, and fastnn rejects a run that ends at over twice its initial loss (after 1 or 3 passes).
WORKLOADS = {
    "seed": dict(n=200, hidden=(3,), passes=20000, first=10, reduction="sum", dtype="float64"),
    "sweep": dict(n=200, hidden=SWEEP_H, passes=20000, first=10, reduction="sum", dtype="float64"),
    # an ensemble: one hidden size, 16 initialisations (the seeds 0..15 of the tutorial's init)
    "ensemble": dict(n=200, hidden=(20,), seeds=tuple(range(16)), passes=20000, first=10, reduction="sum",
                     dtype="float64"),
    "large": dict(n=1_000_000, hidden=(64,), passes=4, first=1, reduction="mean", dtype="float64"),
    "large32": dict(n=1_000_000, hidden=(64,), passes=4, first=1, reduction="mean", dtype="float32"),
}


def init(d, h, k, dtype, seed=0):
    """The tutorial's initial weights: np.random.seed(seed), W ~ randn / sqrt(fan_in), b = 0."""
    rng = np.random.RandomState(seed)  # draws what np.random.seed(seed); np.random.randn draws
    W1 = (rng.randn(d, h) / np.sqrt(d)).astype(dtype)
    W2 = (rng.randn(h, k) / np.sqrt(h)).astype(dtype)
    return W1, np.zeros((1, h), dtype), W2, np.zeros((1, k), dtype)


def loss_and_accuracy(params, X, y):
    """The tutorial's calculate_loss (data loss + reg/2 |W|^2, over N) and accuracy, in float64."""
    W1, b1, W2, b2 = (np.asarray(p, np.float64) for p in params)
    X = np.asarray(X, np.float64)
    z2 = np.tanh(X @ W1 + b1.ravel()) @ W2 + b2.ravel()
    z2 -= z2.max(axis=1, keepdims=True)
    logp = z2 - np.log(np.exp(z2).sum(axis=1, keepdims=True))
    data = -logp[np.arange(len(y)), y].sum()
    loss = (data + REG / 2 * (np.sum(W1 * W1) + np.sum(W2 * W2))) / len(y)
    return float(loss), float((z2.argmax(axis=1) == y).mean())


def runs(w):
    """The (hidden, seed) pairs of a workload, hidden sizes first."""
    return [(h, s) for h in w["hidden"] for s in w.get("seeds", (0,))]


def _fit_each(train_one):
    """Turn a one-model trainer into fit(data, runs, passes, reduction) -> [params per (hidden, seed)]."""
    return lambda data, pairs, passes, reduction: [train_one(data, h, s, passes, reduction) for h, s in pairs]


# ---- fastnn ---------------------------------------------------------------------------------------

def _fastnn(backend):
    import fastnn

    def prepare(X, y):
        return X, y

    # loss_every=passes: the peers record no loss history, so fastnn records only its first and last.
    def fit(data, pairs, passes, reduction):
        X, y = data
        kw = dict(passes=passes, lr=LR, reduction=reduction, backend=backend, loss_every=passes)
        hidden, seeds = tuple(dict.fromkeys(h for h, _ in pairs)), tuple(dict.fromkeys(s for _, s in pairs))
        if len(pairs) == 1:
            models = [fastnn.train(X, y, hidden[0], reg=REG, seed=seeds[0], **kw)]
        elif backend == "numba":  # the sweep API: models on threads, the way a user runs a sweep
            models = [r["model"] for r in fastnn.sweep(X, y, hidden, reg=REG, seeds=seeds, progress=False, **kw)]
        else:  # the reference is the plain one-after-another loop
            models = [fastnn.train(X, y, h, reg=REG, seed=s, **kw) for h, s in pairs]
        return [(m.W1, m.b1, m.W2, m.b2) for m in models]

    return prepare, fit


# ---- the tutorial's NumPy code --------------------------------------------------------------------

def _tutorial():
    def prepare(X, y):
        return X, y

    def build_model(data, nn_hdim, seed, num_passes, reduction):
        """The tutorial's build_model, line for line; `mean` scales the gradients by 1 / N."""
        X, y = data
        num_examples, nn_input_dim = X.shape
        nn_output_dim = int(y.max()) + 1
        # The sum reduction's step grows with N and diverges on `large`: the mean keeps lr = 0.01 stable.
        scale = 1.0 / num_examples if reduction == "mean" else 1.0
        W1, b1, W2, b2 = init(nn_input_dim, nn_hdim, nn_output_dim, X.dtype, seed)
        for i in range(num_passes):
            z1 = X.dot(W1) + b1
            a1 = np.tanh(z1)
            z2 = a1.dot(W2) + b2
            exp_scores = np.exp(z2)
            probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
            delta3 = probs
            delta3[range(num_examples), y] -= 1
            if scale != 1.0:
                delta3 *= scale
            dW2 = (a1.T).dot(delta3)
            db2 = np.sum(delta3, axis=0, keepdims=True)
            delta2 = delta3.dot(W2.T) * (1 - np.power(a1, 2))
            dW1 = np.dot(X.T, delta2)
            db1 = np.sum(delta2, axis=0)
            dW2 += REG * scale * W2
            dW1 += REG * scale * W1
            W1 += -LR * dW1
            b1 += -LR * db1
            W2 += -LR * dW2
            b2 += -LR * db2
        return W1, b1, W2, b2

    return prepare, _fit_each(build_model)


# ---- JAX: the whole loop in one jit(fori_loop) ----------------------------------------------------

def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)  # before any array exists, or float64 silently becomes float32
    import jax.numpy as jnp
    from jax import lax

    def step(X, Y, scale, params):
        W1, b1, W2, b2 = params
        a1 = jnp.tanh(X @ W1 + b1)
        exp_scores = jnp.exp(a1 @ W2 + b2)
        delta3 = (exp_scores / exp_scores.sum(axis=1, keepdims=True) - Y) * scale
        dW2 = a1.T @ delta3 + REG * scale * W2
        db2 = delta3.sum(axis=0, keepdims=True)
        delta2 = (delta3 @ W2.T) * (1 - a1 * a1)
        dW1 = X.T @ delta2 + REG * scale * W1
        db1 = delta2.sum(axis=0, keepdims=True)
        return W1 - LR * dW1, b1 - LR * db1, W2 - LR * dW2, b2 - LR * db2

    @jax.jit
    def fit(X, Y, scale, passes, params):
        # passes is traced, so one compilation per shape serves the warm-up and the timed run.
        return lax.fori_loop(0, passes, lambda i, p: step(X, Y, scale, p), params)

    def prepare(X, y):
        return jnp.asarray(X), jax.nn.one_hot(y, int(y.max()) + 1, dtype=X.dtype), X.dtype

    def one(data, h, seed, passes, reduction):
        X, Y, dtype = data
        scale = dtype.type(1.0 / X.shape[0] if reduction == "mean" else 1.0)
        params = fit(X, Y, scale, passes, init(X.shape[1], h, Y.shape[1], dtype, seed))
        return [np.asarray(p) for p in params]  # np.asarray waits for the result

    return prepare, _fit_each(one)


# ---- PyTorch eager, two threads -------------------------------------------------------------------

def _torch(autograd):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)

    def prepare(X, y):
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        return Xt, yt, F.one_hot(yt).to(Xt.dtype)

    def manual(data, h, seed, passes, reduction):
        X, y, Y = data
        scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
        W1, b1, W2, b2 = (torch.from_numpy(p) for p in init(X.shape[1], h, Y.shape[1], X.numpy().dtype, seed))
        for _ in range(passes):
            a1 = torch.tanh(X @ W1 + b1)
            exp_scores = torch.exp(a1 @ W2 + b2)
            delta3 = (exp_scores / exp_scores.sum(dim=1, keepdim=True) - Y) * scale
            dW2 = a1.T @ delta3 + REG * scale * W2
            db2 = delta3.sum(dim=0, keepdim=True)
            delta2 = (delta3 @ W2.T) * (1 - a1 * a1)
            dW1 = X.T @ delta2 + REG * scale * W1
            db1 = delta2.sum(dim=0, keepdim=True)
            W1 -= LR * dW1
            b1 -= LR * db1
            W2 -= LR * dW2
            b2 -= LR * db2
        return [p.numpy() for p in (W1, b1, W2, b2)]

    def with_autograd(data, h, seed, passes, reduction):
        X, y, Y = data
        scale = 1.0 / X.shape[0] if reduction == "mean" else 1.0
        params = [torch.from_numpy(p).requires_grad_()
                  for p in init(X.shape[1], h, Y.shape[1], X.numpy().dtype, seed)]
        W1, b1, W2, b2 = params
        for _ in range(passes):
            logits = torch.tanh(X @ W1 + b1) @ W2 + b2
            # The tutorial's loss times N: its gradient is exactly the tutorial's sum-reduction gradient.
            loss = F.cross_entropy(logits, y, reduction="sum") + REG / 2 * (W1.square().sum() + W2.square().sum())
            (loss * scale).backward()
            with torch.no_grad():
                for p in params:
                    p -= LR * p.grad
                    p.grad = None
        return [p.detach().numpy() for p in params]

    return prepare, _fit_each(with_autograd if autograd else manual)


# ---- scikit-learn MLPClassifier, sgd on the full batch --------------------------------------------

def _sklearn():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def prepare(X, y):
        return X, y

    def one(data, h, seed, passes, reduction):
        X, y = data
        n = X.shape[0]
        # sklearn minimises the mean loss plus alpha / (2 N) |W|^2, so its step is lr_sk / N times the
        # tutorial's sum gradient (+ reg W). lr_sk = lr * N (2.0 on seed) takes the tutorial's step;
        # for the mean reduction lr_sk = lr. alpha = reg either way.
        clf = MLPClassifier(hidden_layer_sizes=(h,), activation="tanh", solver="sgd", alpha=REG,
                            batch_size=n, learning_rate="constant",
                            learning_rate_init=LR * n if reduction == "sum" else LR, momentum=0.0,
                            max_iter=passes, n_iter_no_change=passes, shuffle=False, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point, not a failure
            clf.fit(X, y)
        (W1, W2), (b1, b2) = clf.coefs_, clf.intercepts_
        # Two classes get one logistic output: softmax over the logits (0, z) is the same model.
        return W1, b1, np.hstack([np.zeros_like(W2), W2]), np.concatenate([np.zeros_like(b2), b2])

    return prepare, _fit_each(one)


IMPLS = {  # name shown in the table -> (module it needs, factory of (prepare, fit))
    "fastnn": ("fastnn", lambda: _fastnn("numba")),
    "fastnn numpy ref": ("fastnn", lambda: _fastnn("numpy")),
    "tutorial NumPy": ("numpy", _tutorial),
    "JAX jit(fori_loop)": ("jax", _jax),
    "torch eager manual": ("torch", lambda: _torch(autograd=False)),
    "torch eager autograd": ("torch", lambda: _torch(autograd=True)),
    "sklearn MLP sgd": ("sklearn", _sklearn),
}
EAGER = {"fastnn numpy ref", "tutorial NumPy", "torch eager manual", "torch eager autograd", "sklearn MLP sgd"}


def _status(field):
    """A field of /proc/self/status in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak seen next belongs to what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _timed(fit, *args):
    t0 = time.perf_counter()
    params = fit(*args)
    return time.perf_counter() - t0, params


def measure(impl, workload, data_file, repeat, budget, scale):
    """Time `impl` on `workload` in this process and return the row as a dict.

    A short call first (`first_ms`: compilation, caches), then up to `repeat` timed runs of
    passes / `scale` passes (fewer where one more would take the row past `budget` seconds); `ms` is the
    median run, scaled to the workload's passes. For `large`, `ms` is a pass: (median of the P-pass runs
    - median of 1-pass runs made alongside) / (P - 1), so that fixed costs (fastnn's loss at the start
    and end of train(), validation) cancel. `peak_mb`: peak RSS growth over the timed runs.
    """
    w = WORKLOADS[workload]
    per_pass = workload.startswith("large")
    with np.load(data_file) as f:
        X, y = f["X"], f["y"]
    prepare, fit = IMPLS[impl][1]()
    data = prepare(X, y)
    passes = w["passes"] // scale
    first, _ = _timed(fit, data, runs(w), w["first"], w["reduction"])
    _reset_peak()
    base = _status("VmRSS")
    times, singles, spent, last = [], [], 0.0, 0.0
    while len(times) < repeat and spent + last <= budget:  # stop before a run that would overrun
        t, params = _timed(fit, data, runs(w), passes, w["reduction"])
        times.append(t)
        if per_pass:
            singles.append(_timed(fit, data, runs(w), 1, w["reduction"])[0])
        last = t + (singles[-1] if per_pass else 0.0)
        spent += last
    peak = max(0, _status("VmHWM") - base)  # RSS can shrink below the base: no growth
    checks = np.array([loss_and_accuracy(p, X, y) for p in params])
    if per_pass:
        ms = (np.median(times) - np.median(singles)) / (passes - 1) * 1e3
    else:
        ms = np.median(times) / passes * w["passes"] * 1e3
    return dict(ms=float(ms), first_ms=first * 1e3, peak_mb=peak / 2**20, loss=float(checks[:, 0].mean()),
                acc=float(checks[:, 1].mean()), runs=len(times), passes=passes)


def main(argv):
    if argv[0] == "limit":
        from limits import compute_limit  # bench/ is sys.path[0] when this file runs as a script

        print(json.dumps(compute_limit(argv[1], int(argv[2]))))
        return
    impl, workload, data_file, repeat, budget, scale = argv
    print(json.dumps(measure(impl, workload, data_file, int(repeat), float(budget), int(scale))))


if __name__ == "__main__":
    main(sys.argv[1:])
