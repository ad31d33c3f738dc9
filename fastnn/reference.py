"""The pure-NumPy twin of ``fastnn.kernels``: one function per kernel, same name, same arguments, same
results. It is the specification the kernels are tested against, and the ``backend="numpy"`` path.

Where a kernel works on one block of at most BLOCK samples, its twin works on any number of columns; the
loop twins pass the whole batch as one block, the way the textbook code does.
"""

import numpy as np


def sigmoid(x):
    """1 / (1 + e**-x), from e**-|x| so that it neither overflows nor loses the small tail."""
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


exp, tanh = np.exp, np.tanh
ACTIVATIONS = {0: tanh, 1: sigmoid, 2: lambda z: np.maximum(z, 0)}
DERIVATIVES = {0: lambda a: 1 - a * a, 1: lambda a: a * (1 - a)}  # f' in terms of a = f(z); relu below


def exp_array(x, out):
    out[:] = np.exp(x)


def tanh_array(x, out):
    out[:] = np.tanh(x)


def sigmoid_array(x, out):
    out[:] = sigmoid(x)


def split(theta, d, h, k):
    """Views (W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)) into the flat parameter vector theta."""
    return (theta[: d * h].reshape(d, h), theta[d * h: d * h + h],
            theta[d * h + h: d * h + h + h * k].reshape(h, k), theta[d * h + h + h * k:])


def load_block(X, y, order, start, m, XB, yb):
    """XB[:, :m], yb[:m] = X[i].T, y[i] for i = order[start:start+m] (order empty: start..start+m-1)."""
    i = order[start: start + m] if order.size else slice(start, start + m)
    XB[:, :m] = X[i].T
    yb[:m] = y[i]


def hidden_forward(XB, m, W1, b1, W2, b2, act, A1, Z2, dims):
    """A1 = f(W1^T XB + b1) and the logits Z2 = W2^T A1 + b2."""
    A1[:, :m] = ACTIVATIONS[act](W1.T @ XB[:, :m] + b1[:, None])
    Z2[:, :m] = W2.T @ A1[:, :m] + b2[:, None]


def output_forward(Z2, m, out, P, S):
    """P = softmax(Z2) (S = column max, column sum of exp(Z2 - max)) or sigmoid(Z2)."""
    if out == 1:
        P[:, :m] = sigmoid(Z2[:, :m])
        return
    S[0, :m] = Z2[:, :m].max(axis=0)
    with np.errstate(over="ignore"):  # float32 logits far apart: z - max = -inf, exp gives 0 as it should
        E = np.exp(Z2[:, :m] - S[0, :m])
    S[1, :m] = E.sum(axis=0)
    P[:, :m] = E / S[1, :m]


def _onehot(yb, k, m, dtype):
    return (np.arange(k)[:, None] == yb[:m]).astype(dtype)


def output_delta(P, yb, m, out, D3):
    """D3 = P - onehot(y) (softmax + cross-entropy) or (P - T) P (1 - P) (sigmoid + squared error)."""
    p = P[:, :m]
    t = _onehot(yb, P.shape[0], m, P.dtype)
    D3[:, :m] = p - t if out == 0 else (p - t) * p * (1 - p)


def hidden_delta(D3, m, W2, A1, act, D2):
    """D2 = (W2 D3) * f'(A1)."""
    back = W2 @ D3[:, :m]
    a = A1[:, :m]
    D2[:, :m] = np.where(a > 0, back, 0) if act == 2 else back * DERIVATIVES[act](a)


def accumulate(XB, A1, D3, D2, m, G):
    """G += [XB D2^T, sum D2, A1 D3^T, sum D3], summed in the data's dtype, added in float64."""
    gW1, gb1, gW2, gb2 = split(G, XB.shape[0], A1.shape[0], D3.shape[0])
    gb1 += D2[:, :m].sum(axis=1)
    gW1 += XB[:, :m] @ D2[:, :m].T
    gW2 += A1[:, :m] @ D3[:, :m].T
    gb2 += D3[:, :m].sum(axis=1)


def backward(XB, A1, D3, m, W2, act, D2, G, dims):
    """hidden_delta, then accumulate."""
    hidden_delta(D3, m, W2, A1, act, D2)
    accumulate(XB, A1, D3, D2, m, G)


def update(theta, G, d, h, k, lr, reg, scale):
    """theta -= lr * (G + reg * W) * scale, the L2 term on the weights only."""
    g = G.copy()
    W1, _, W2, _ = split(theta, d, h, k)
    gW1, _, gW2, _ = split(g, d, h, k)
    gW1 += reg * W1
    gW2 += reg * W2
    theta[:] = theta - lr * (g * scale)


def _classes(theta, d, h):
    return (theta.size - d * h - h) // (h + 1)


def _block(X, theta, d, h, k, m):
    rows = np.empty((d + 2 * h + 2 * k + 2, m), X.dtype)
    ends = np.cumsum([d, h, k, k, h])
    return np.split(rows, ends), np.empty(m, np.int64)


def _forward(X, y, order, start, m, theta, h, dims, act, out):
    d, k = X.shape[1], _classes(theta, X.shape[1], h)
    (XB, A1, Z2, P, D2, S), yb = _block(X, theta, d, h, k, m)
    W1, b1, W2, b2 = split(theta, d, h, k)
    load_block(X, y, order, start, m, XB, yb)
    hidden_forward(XB, m, W1, b1, W2, b2, act, A1, Z2, dims)
    output_forward(Z2, m, out, P, S)
    return XB, A1, Z2, P, D2, S, yb


def train(X, y, order, theta, hidden, dims, passes, batch, lr, reg, mean, act, out, nslots):
    """Run `passes` epochs of gradient descent on theta in place; return the epochs completed."""
    n = X.shape[0]
    d, h = X.shape[1], hidden
    k = _classes(theta, d, h)
    with np.errstate(all="ignore"):  # a diverging run is reported by the return value, not by warnings
        for e in range(passes):
            order_e = order[e] if len(order) else order.ravel()
            for b in range(0, n, batch):
                m = min(batch, n - b)
                XB, A1, Z2, P, D2, S, yb = _forward(X, y, order_e, b, m, theta, h, dims, act, out)
                output_delta(P, yb, m, out, P)
                G = np.zeros(theta.size)
                backward(XB, A1, P, m, split(theta, d, h, k)[2], act, D2, G, dims)
                update(theta, G, d, h, k, lr, reg, 1.0 / m if mean else 1.0)
                if not np.isfinite(theta).all():
                    return e
    return passes


def loss(X, y, theta, hidden, dims, reg, act, out, nslots):
    """L = (sum of per-sample losses + reg/2 (|W1|^2 + |W2|^2)) / n."""
    n = X.shape[0]
    d, h = X.shape[1], hidden
    k = _classes(theta, d, h)
    XB, A1, Z2, P, D2, S, yb = _forward(X, y, np.empty(0, np.int64), 0, n, theta, h, dims, act, out)
    cols = np.arange(n)
    if out == 0:
        data = np.sum(np.log(S[1].astype(np.float64)) - (Z2[yb, cols] - S[0]))
    else:
        data = 0.5 * np.sum((P.astype(np.float64) - _onehot(yb, k, n, np.float64)) ** 2)
    W1, _, W2, _ = split(theta, d, h, k)
    penalty = np.sum(W1.astype(np.float64) ** 2) + np.sum(W2.astype(np.float64) ** 2)
    return (data + (reg / 2 * penalty if reg > 0 else 0.0)) / n  # no 0 * inf when reg = 0


def forward(X, theta, hidden, dims, act, out, nslots, P):
    """P = the network's outputs (softmax probabilities, or sigmoid outputs)."""
    n = X.shape[0]
    labels = np.zeros(n, np.int64)
    P[:] = _forward(X, labels, np.empty(0, np.int64), 0, n, theta, hidden, dims, act, out)[3].T


train_serial = train_parallel = train
loss_serial = loss_parallel = loss
forward_serial = forward_parallel = forward
