"""The pure-NumPy twin of ``fastnn.kernels``: the specification the kernels are tested against, and the
``backend="numpy"`` path.

``build(...)`` takes the arguments of ``kernels.build`` and returns functions of the same names and
signatures, with the same results. Where a kernel works on one block of at most BLOCK samples, its twin
works on any number of columns, and ``run`` passes the whole batch as one block, the way the textbook
code does. Its work buffers are accepted and left alone.
"""

import types

import numpy as np


def sigmoid(x):
    """1 / (1 + e**-x), from e**-|x| so that it neither overflows nor loses the small tail."""
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


def relu(x):
    return np.maximum(x, 0)


# Each hidden activation f beside its derivative, written in terms of a = f(z) as the kernels do.
ACTIVATIONS = {
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "sigmoid": (sigmoid, lambda a: a * (1 - a)),
    "relu": (relu, lambda a: (a > 0).astype(a.dtype)),
}
# softmax + cross-entropy; sigmoid + squared error; identity + squared error (regression: y holds real targets)
OUTPUTS = ("softmax", "sigmoid", "identity")
SOLVERS = ("sgd", "momentum", "adam")


def exp_array(x, out):
    out[:] = np.exp(x)


def tanh_array(x, out):
    out[:] = np.tanh(x)


def sigmoid_array(x, out):
    out[:] = sigmoid(x)


# SplitMix64's increment and finaliser (kernels' orders): NumPy's uint64 arrays wrap as the kernel's integers do.
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def orders(seed, first, out):
    """out[r] = pass first + r's order of the samples: Fisher and Yates's shuffle of 0..n-1, its draws from
    SplitMix64 started at a hash of (seed, pass) (kernels' orders). The draws are made as arrays, the swaps
    one by one."""
    n = out.shape[1]
    for r in range(out.shape[0]):
        start = _mix(_mix(np.array([seed], np.uint64) + _GOLDEN) + np.uint64(first + r))
        states = start + np.arange(1, n, dtype=np.uint64) * _GOLDEN  # the state at each draw, i = n - 1 .. 1
        draws = (_mix(states) % np.arange(n, 1, -1, dtype=np.uint64)).tolist()
        row = list(range(n))
        for i, j in zip(range(n - 1, 0, -1), draws):
            row[i], row[j] = row[j], row[i]
        out[r] = row


def size(d, h, k):
    """The number of parameters: W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)."""
    return d * h + h + h * k + k


def split(theta, d, h, k):
    """Views (W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)) into the flat parameter vector theta."""
    return (theta[: d * h].reshape(d, h), theta[d * h: d * h + h],
            theta[d * h + h: d * h + h + h * k].reshape(h, k), theta[d * h + h + h * k:])


def load_block(X, y, weights, order, e, start, m, XB, yb, wb):
    """XB[:, :m], yb[:m], wb[:m] = X[i].T, y[i], weights[i] for i = order[e, start:start+m] (order with no
    rows: start..); targets (y (n, k)) go to yb[:, :m] = y[i].T; y and weights may have no rows."""
    i = order[e, start: start + m] if order.shape[0] else slice(start, start + m)
    XB[:, :m] = X[i].T
    if y.shape[0]:
        if y.ndim == 2:
            yb[:, :m] = y[i].T
        else:
            yb[:m] = y[i]
    if weights.shape[0]:
        wb[:m] = weights[i]


def _onehot(yb, k, m, dtype):
    return (np.arange(k)[:, None] == yb[:m]).astype(dtype)


def accumulate(XB, A1, D3, D2, m, G, GW):
    """G += [XB D2^T, sum D2, A1 D3^T, sum D3], summed in the data's dtype, added in float64 (GW: the
    kernel's scratch, unused)."""
    gW1, gb1, gW2, gb2 = split(G, XB.shape[0], A1.shape[0], D3.shape[0])
    gb1 += D2[:, :m].sum(axis=1)
    gW1 += XB[:, :m] @ D2[:, :m].T
    gW2 += A1[:, :m] @ D3[:, :m].T
    gb2 += D3[:, :m].sum(axis=1)


def build(act, out, dtype, d, k, loop, parallel=False, solver="sgd", weighted=False, blas=False):
    """The twins of ``kernels.build(act, out, dtype, d, k, loop, parallel, solver, weighted, blas)``: the same
    names and signatures.

    d, k, loop, parallel and blas change how the kernels run, not what they compute; they are accepted so
    that a test can call both builds with the same arguments. (With blas, a kernel's XB is column-major, a
    sample per column; NumPy's operations here read any layout.)
    """
    if act not in ACTIVATIONS or out not in OUTPUTS or solver not in SOLVERS:
        raise ValueError(f"no kernel variant ({act!r}, {out!r}, {solver!r})")
    f, df = ACTIVATIONS[act]

    def update(theta, partials, ntiles, d, h, k, lr, reg, scale, state, optimiser):
        """One step along g = (G + reg * W) * scale, G = partials[0] + ... + partials[ntiles - 1] (then
        zeroed), the L2 term on the weights only: theta -= lr g (sgd), with momentum (Nesterov's or not),
        or Adam, as scikit-learn's MLP optimisers step (kernels' update says how); state and optimiser are
        updated in place. Returns whether theta is finite."""
        g = partials[0].copy()
        for t in range(1, ntiles):
            g += partials[t]
        partials[:ntiles] = 0.0
        W1, _, W2, _ = split(theta, d, h, k)
        gW1, _, gW2, _ = split(g, d, h, k)
        gW1 += reg * W1
        gW2 += reg * W2
        mu, nesterov, beta1, beta2, epsilon = optimiser[:5]
        if solver == "sgd":
            theta[:] = theta - lr * (g * scale)
        elif solver == "momentum":
            g *= scale
            state[0] = mu * state[0] - lr * g
            theta[:] = theta + (mu * state[0] - lr * g if nesterov else state[0])
        else:
            g *= scale
            optimiser[5] += 1
            t = optimiser[5]
            state[0] = beta1 * state[0] + (1 - beta1) * g
            state[1] = beta2 * state[1] + (1 - beta2) * (g * g)
            step = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            theta[:] = theta - step * state[0] / (np.sqrt(state[1]) + epsilon)
        return bool(np.isfinite(theta).all())

    def hidden_forward(XB, m, W1, b1, W2, b2, A1, Z2):
        """A1 = f(W1^T XB + b1) and the logits Z2 = W2^T A1 + b2; for two-class softmax shifted by z0, Z2[0] = 0 and
        Z2[1] = z1 - z0 from the differences of the weights (the kernel's)."""
        A1[:, :m] = f(W1.T @ XB[:, :m] + b1[:, None])
        if out == "softmax" and W2.shape[1] == 2:
            Z2[0, :m] = 0
            Z2[1, :m] = (W2[:, 1] - W2[:, 0]) @ A1[:, :m] + (b2[1] - b2[0])
        else:
            Z2[:, :m] = W2.T @ A1[:, :m] + b2[:, None]

    def output_forward(Z2, m, P, S):
        """P = softmax(Z2) (S = column max, column sum of exp(Z2 - max); left alone for two classes, whose loss
        needs neither), sigmoid(Z2) or Z2 (identity)."""
        if out != "softmax":
            P[:, :m] = sigmoid(Z2[:, :m]) if out == "sigmoid" else Z2[:, :m]
            return
        top = Z2[:, :m].max(axis=0)
        with np.errstate(over="ignore"):  # float32 logits far apart: z - max = -inf, exp gives 0 as it should
            E = np.exp(Z2[:, :m] - top)
        total = E.sum(axis=0)
        P[:, :m] = E / total
        if P.shape[0] > 2:
            S[0, :m], S[1, :m] = top, total

    def output_delta(P, yb, wb, m, D3):
        """D3 = P - onehot(y) (softmax + cross-entropy; two classes: row 0 as -p1 for y = 0, p0 for y = 1, and
        row 1 its negation), (P - T) P (1 - P) (sigmoid + squared error, T = onehot(y)) or P - yb (identity +
        squared error, yb: targets), times the samples' weights wb if weighted."""
        p = P[:, :m]
        if out == "softmax" and P.shape[0] == 2:  # opposite rows, row 0 without cancellation (the kernel's)
            D3[0, :m] = np.where(yb[:m] == 0, -p[1], p[0])
            D3[1, :m] = -D3[0, :m]
        else:
            t = yb[:, :m] if out == "identity" else _onehot(yb, P.shape[0], m, P.dtype)
            D3[:, :m] = (p - t) * p * (1 - p) if out == "sigmoid" else p - t
        if weighted:
            D3[:, :m] *= wb[:m]

    def hidden_delta(D3, m, W2, A1, D2):
        """D2 = (W2 D3) * f'(A1)."""
        D2[:, :m] = (W2 @ D3[:, :m]) * df(A1[:, :m])

    def backward(XB, A1, D3, m, W2, D2, G, GW):
        """hidden_delta, then accumulate."""
        hidden_delta(D3, m, W2, A1, D2)
        accumulate(XB, A1, D3, D2, m, G, GW)

    def forward(X, y, weights, order, e, start, m, params):
        """The forward stages on samples start..start+m-1 (of order[e]) as one block."""
        W1, b1, W2, b2 = params
        (d, h), k = W1.shape, W2.shape[1]
        XB, A1, Z2, P, S = (np.empty((rows, m), X.dtype) for rows in (d, h, k, k, 2))
        yb = np.zeros((k, m), X.dtype) if out == "identity" else np.zeros(m, np.int64)
        wb = np.ones(m, X.dtype)
        load_block(X, y, weights, order, e, start, m, XB, yb, wb)
        hidden_forward(XB, m, W1, b1, W2, b2, A1, Z2)
        output_forward(Z2, m, P, S)
        return XB, A1, Z2, P, S, yb, wb

    def sample_losses(Z2, P, S, yb, wb, m):
        """The sum of the per-sample losses of columns 0..m-1, each times its weight if weighted, in float64."""
        cols = np.arange(m)
        if out == "softmax" and P.shape[0] == 2:  # log(1 + e**-|z1 - z0|) + (z_other - z_y if positive)
            z = Z2[:, :m].astype(np.float64)
            gap = z[1 - yb[:m], cols] - z[yb[:m], cols]
            per_sample = np.log1p(np.exp(-np.abs(gap))) + np.maximum(gap, 0)
        elif out == "softmax":
            per_sample = np.log(S[1, :m].astype(np.float64)) - (Z2[yb[:m], cols] - S[0, :m])
        else:
            T = yb[:, :m].astype(np.float64) if out == "identity" else _onehot(yb, P.shape[0], m, np.float64)
            per_sample = 0.5 * np.sum((P[:, :m].astype(np.float64) - T) ** 2, axis=0)
        return np.sum(per_sample * wb[:m].astype(np.float64)) if weighted else np.sum(per_sample)

    def penalty(params, reg):
        """reg/2 (|W1|^2 + |W2|^2) in float64; 0 when reg = 0 (never 0 * inf)."""
        if reg == 0:
            return 0.0
        return reg / 2 * (np.sum(params[0].astype(np.float64) ** 2) + np.sum(params[2].astype(np.float64) ** 2))

    def run(X, y, weights, order, theta, params, passes, batch, lr, reg, mean, evaluate, work, labels, partials,
            losses, running, P, state, optimiser):
        """Train theta in place for `passes` epochs (the training losses of the first len(running) epochs into
        running), then evaluate; returns (epochs completed, L)."""
        n, d = X.shape
        h, k = params[2].shape
        count = np.sum(weights, dtype=np.float64) if weighted else n
        with np.errstate(all="ignore"):  # a diverging run is reported by its result, not by warnings
            for e in range(passes):
                epoch_loss = 0.0
                for b in range(0, n, batch):
                    m = min(batch, n - b)
                    XB, A1, Z2, Pb, S, yb, wb = forward(X, y, weights, order, e, b, m, params)
                    if e < running.shape[0]:
                        epoch_loss += sample_losses(Z2, Pb, S, yb, wb, m) + penalty(params, reg)
                    output_delta(Pb, yb, wb, m, Pb)
                    G = np.zeros((1, theta.size))  # the batch's one partial
                    backward(XB, A1, Pb, m, params[2], np.empty_like(A1), G[0], None)
                    if e < running.shape[0] and b + m == n:  # before the last step, which may stop the run
                        running[e] = epoch_loss / count
                    size = np.sum(wb, dtype=np.float64) if weighted else m
                    scale = (1.0 / size if size > 0 else 0.0) if mean else 1.0  # no weight: no step (run's)
                    if not update(theta, G, 1, d, h, k, lr, reg, scale, state, optimiser):
                        return e, np.nan
            if not evaluate and P.shape[0] == 0:
                return passes, 0.0
            XB, A1, Z2, Pn, S, yb, wb = forward(X, y, weights, order[:0], 0, 0, n, params)
            if P.shape[0]:
                P[:] = Pn.T
            if not (evaluate and y.shape[0]):
                return passes, 0.0
            return passes, (sample_losses(Z2, Pn, S, yb, wb, n) + penalty(params, reg)) / count

    return types.SimpleNamespace(split=split, load_block=load_block, hidden_forward=hidden_forward,
                                 output_forward=output_forward, output_delta=output_delta,
                                 hidden_delta=hidden_delta, accumulate=accumulate, backward=backward,
                                 update=update, run=run)
