"""The network kernels: per-block stages and the loops that run them over tiles, passes and batches.

Layout. The parameters live in one flat vector ``theta = [W1 (d, h), b1 (h), W2 (h, k), b2 (k)]``
(row-major), so that an update, a gradient partial and a reduction are each one loop. A block of at most
BLOCK samples is transposed into ``work`` (rows x BLOCK): the inner loops then run over the samples of
the block, which vectorises for any hidden size, and no (n, h) array ever exists. ``work`` rows hold, in
order: XB (d), A1 (h), Z2, P, D3 (k each: logits, outputs, output delta), D2 (h), S (2: softmax max and
sum).

``dims = kernels.dims(d)``: an empty array whose number of dimensions is d (for d <= UNROLL). Numba types
an array by its ndim, so each such d is compiled with a constant trip count: the loop over inputs unrolls
inside the loop over the samples of a block, which then vectorises, and a hidden unit's pre-activations
take one pass over the block instead of d + 1 (about 1.7x on the tutorial's run). Wider inputs share one
compilation that reads d at run time. (An array, not a tuple's length: a parallel region accepts arrays
and scalars only.) The loops over classes run outside the loops over samples, except for k = 2, the case
to make fastest, which has fused loops of its own (both logits in one pass; the backward pass of a hidden
unit, with its d + 3 gradient sums, in one pass).

What a pass costs besides arithmetic. For the tutorial's n = 200 a pass is about a microsecond of
arithmetic, so fixed costs matter: views (split, _rows) are made once per call, never per block or pass;
G is indexed flat; and a batch of one block runs its stages right in train's loop, with no loop over
blocks, no parallel region and no helper around them (passing arrays through a call that Numba does not
inline costs about 0.1 us; helpers that must take arrays are inline="always").

Codes: act 0 tanh, 1 sigmoid, 2 relu; out 0 softmax + cross-entropy, 1 sigmoid + squared error.
"""

import numpy as np
from numba import njit, prange

from .config import BLOCK, BLOCK_BYTES, JIT, TILE, UNROLL, variant
from .elementwise import exp, sigmoid, tanh


def dims(d):
    """The ``dims`` argument of the kernels for d inputs."""
    return np.empty((0,) * min(d, UNROLL + 1))


@njit(**JIT)
def split(theta, d, h, k):
    """Views (W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)) into the flat parameter vector theta."""
    W1 = theta[: d * h].reshape((d, h))
    b1 = theta[d * h: d * h + h]
    W2 = theta[d * h + h: d * h + h + h * k].reshape((h, k))
    b2 = theta[d * h + h + h * k:]
    return W1, b1, W2, b2


@njit(**JIT)
def load_block(X, y, order, start, m, XB, yb):
    """XB[:, j], yb[j] = X[i], y[i] with i = order[start + j] (order empty: i = start + j), j < m.

    X (n, d), y (n,), XB (d, BLOCK), yb (BLOCK,).
    """
    d = X.shape[1]
    for j in range(m):
        i = order[start + j] if order.size > 0 else start + j
        yb[j] = y[i]
        for c in range(d):
            XB[c, j] = X[i, c]


@njit(**JIT)
def hidden_forward(XB, m, W1, b1, W2, b2, act, A1, Z2, dims):
    """A1 = f(W1^T XB + b1) and the logits Z2 = W2^T A1 + b2, per hidden unit while its row is in L1.

    XB (d, B), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,), A1 (h, B), Z2 (k, B).
    """
    d = dims.ndim if dims.ndim <= UNROLL else XB.shape[0]  # a compile-time constant up to UNROLL
    h, k = W2.shape
    zero = A1.dtype.type(0)
    for v in range(k):
        for j in range(m):
            Z2[v, j] = b2[v]
    pairs = h // 2 if k == 2 and d <= UNROLL else 0
    for u in range(0, 2 * pairs, 2):
        # Two units per pass over the block: XB and the logits are loaded and stored once for both (the
        # helper is inlined, act a constant at each call: a branch on it in the loop would not vectorise).
        if act == 0:
            _forward_pair(XB, W1, b1, W2, 0, A1, Z2, u, m, dims)
        elif act == 1:
            _forward_pair(XB, W1, b1, W2, 1, A1, Z2, u, m, dims)
        else:
            _forward_pair(XB, W1, b1, W2, 2, A1, Z2, u, m, dims)
    for u in range(2 * pairs, h):
        if d > UNROLL:  # too many inputs to unroll: the pre-activations first, one pass per input
            for j in range(m):
                A1[u, j] = b1[u]
            for c in range(d):
                for j in range(m):
                    A1[u, j] += W1[c, u] * XB[c, j]
        # One loop per activation: a branch on act inside the loop would stop it from vectorising.
        if act == 0:
            for j in range(m):
                A1[u, j] = tanh(_pre(XB, W1, b1, A1, u, j, dims))
        elif act == 1:
            for j in range(m):
                A1[u, j] = sigmoid(_pre(XB, W1, b1, A1, u, j, dims))
        else:
            for j in range(m):
                A1[u, j] = max(_pre(XB, W1, b1, A1, u, j, dims), zero)
        if k == 2:  # both logits in one pass over the row
            w0, w1 = W2[u, 0], W2[u, 1]
            for j in range(m):
                a = A1[u, j]
                Z2[0, j] += w0 * a
                Z2[1, j] += w1 * a
        else:
            for v in range(k):
                w = W2[u, v]
                for j in range(m):
                    Z2[v, j] += w * A1[u, j]


@njit(**JIT, inline="always")
def _forward_pair(XB, W1, b1, W2, act, A1, Z2, u, m, dims):
    """hidden_forward for units u and u + 1, k = 2, d <= UNROLL."""
    zero = A1.dtype.type(0)
    w00, w01, w10, w11 = W2[u, 0], W2[u, 1], W2[u + 1, 0], W2[u + 1, 1]
    for j in range(m):
        a = _activate(_pre(XB, W1, b1, A1, u, j, dims), act, zero)
        c = _activate(_pre(XB, W1, b1, A1, u + 1, j, dims), act, zero)
        A1[u, j] = a
        A1[u + 1, j] = c
        Z2[0, j] += w00 * a + w10 * c
        Z2[1, j] += w01 * a + w11 * c


@njit(**JIT)
def _activate(z, act, zero):
    """f(z) for the activation code act."""
    if act == 0:
        return tanh(z)
    if act == 1:
        return sigmoid(z)
    return max(z, zero)


@njit(**JIT)
def _pre(XB, W1, b1, A1, u, j, dims):
    """Unit u's pre-activation at sample j: computed here for d = dims.ndim <= UNROLL, else already in A1.

    Decided by dims.ndim, a compile-time constant: a branch on the run-time d would stay inside the loops
    over samples and stop them from vectorising (5x slower on d = 64, measured).
    """
    if dims.ndim > UNROLL:
        return A1[u, j]
    z = b1[u]
    for c in range(dims.ndim):
        z += W1[c, u] * XB[c, j]
    return z


@njit(**JIT)
def output_forward(Z2, m, out, P, S):
    """P = softmax(Z2) over classes, with S = (max, sum of exp(Z2 - max)) per sample, or P = sigmoid(Z2).

    Z2, P (k, B), S (2, B). The max is subtracted so that exp never overflows.
    """
    k = P.shape[0]
    one = P.dtype.type(1)
    if out == 1:
        for v in range(k):
            for j in range(m):
                P[v, j] = sigmoid(Z2[v, j])
    elif k == 2:
        # Two classes: one exp per sample instead of two, p = (1, e) / (1 + e), e = exp(-|z1 - z0|).
        for j in range(m):
            z0, z1 = Z2[0, j], Z2[1, j]
            e = exp(-abs(z1 - z0))
            r = one / (one + e)
            S[0, j] = max(z0, z1)
            S[1, j] = one + e
            P[0, j] = r if z0 >= z1 else e * r
            P[1, j] = e * r if z0 >= z1 else r
    else:
        for j in range(m):
            S[0, j] = Z2[0, j]
            S[1, j] = 0
        for v in range(1, k):
            for j in range(m):
                S[0, j] = max(S[0, j], Z2[v, j])
        for v in range(k):
            for j in range(m):
                P[v, j] = exp(Z2[v, j] - S[0, j])
                S[1, j] += P[v, j]
        for v in range(k):
            for j in range(m):
                P[v, j] /= S[1, j]


@njit(**JIT)
def output_delta(P, yb, m, out, D3):
    """D3 = dLoss/dZ2: P - onehot(y) (softmax + cross-entropy), (P - T) P (1 - P) (sigmoid + SE).

    For softmax with cross-entropy the softmax Jacobian and the derivative of -log p_y collapse to
    P - onehot(y). P, D3 (k, B) (may be the same array), yb (B,) labels.
    """
    k = P.shape[0]
    one, zero = P.dtype.type(1), P.dtype.type(0)
    for v in range(k):
        if out == 0:
            for j in range(m):
                D3[v, j] = P[v, j] - (one if yb[j] == v else zero)
        else:
            for j in range(m):
                p = P[v, j]
                D3[v, j] = (p - (one if yb[j] == v else zero)) * p * (one - p)


@njit(**JIT)
def hidden_delta(D3, m, W2, A1, act, D2):
    """D2 = (W2 D3) * f'(A1), with f' written in terms of the activation A1.  D3 (k, B), D2 (h, B)."""
    h, k = W2.shape
    one, zero = A1.dtype.type(1), A1.dtype.type(0)
    for u in range(h):
        w = W2[u, 0]
        for j in range(m):
            D2[u, j] = w * D3[0, j]
        for v in range(1, k):
            w = W2[u, v]
            for j in range(m):
                D2[u, j] += w * D3[v, j]
        if act == 0:
            for j in range(m):
                D2[u, j] *= one - A1[u, j] * A1[u, j]
        elif act == 1:
            for j in range(m):
                D2[u, j] *= A1[u, j] * (one - A1[u, j])
        else:
            for j in range(m):
                D2[u, j] = D2[u, j] if A1[u, j] > zero else zero


@njit(**JIT)
def accumulate(XB, A1, D3, D2, m, G):
    """G += this block's gradient sums: [XB D2^T, sum D2, A1 D3^T, sum D3] (flat, theta's layout).

    Each sum over the block runs in the data's dtype, then is added into the float64 G: a float32 run then
    rounds once per block of BLOCK samples instead of once per sample. G is indexed flat (offsets of
    split()): views made per block would cost more than a small block's arithmetic.
    """
    d, h, k = XB.shape[0], A1.shape[0], D3.shape[0]
    zero = XB.dtype.type(0)
    for u in range(h):
        s = zero
        for j in range(m):
            s += D2[u, j]
        G[d * h + u] += s
        for c in range(d):
            s = zero
            for j in range(m):
                s += XB[c, j] * D2[u, j]
            G[c * h + u] += s
        for v in range(k):
            s = zero
            for j in range(m):
                s += A1[u, j] * D3[v, j]
            G[d * h + h + u * k + v] += s
    _accumulate_b2(D3, m, G, d * h + h + h * k)


@njit(**JIT)
def _accumulate_b2(D3, m, G, at):
    """G[at + v] += sum_j D3[v, j]."""
    for v in range(D3.shape[0]):
        s = D3.dtype.type(0)
        for j in range(m):
            s += D3[v, j]
        G[at + v] += s


@njit(**JIT)
def _delta(back, a, act, one, zero):
    """back * f'(z), f' in terms of a = f(z)."""
    if act == 0:
        return back * (one - a * a)
    if act == 1:
        return back * (a * (one - a))
    return back if a > zero else zero


@njit(**JIT)
def backward(XB, A1, D3, m, W2, act, D2, G, dims):
    """hidden_delta, then accumulate: D2 = (W2 D3) * f'(A1), G += [XB D2^T, sum D2, A1 D3^T, sum D3].

    For k = 2 and d <= UNROLL in one pass over the block per hidden unit, its d + 3 sums in registers:
    separate passes would load two rows for every multiply-add.  XB (d, B), A1, D2 (h, B), D3 (k, B).
    """
    d = dims.ndim if dims.ndim <= UNROLL else XB.shape[0]
    h, k = W2.shape
    if k != 2 or d > UNROLL:
        hidden_delta(D3, m, W2, A1, act, D2)
        accumulate(XB, A1, D3, D2, m, G)
        return
    for u in range(h):
        # act as a constant at each call (the helper is inlined): one loop per activation, no selects
        if act == 0:
            _backward_unit(XB, A1, D3, m, W2, 0, D2, G, u, d)
        elif act == 1:
            _backward_unit(XB, A1, D3, m, W2, 1, D2, G, u, d)
        else:
            _backward_unit(XB, A1, D3, m, W2, 2, D2, G, u, d)
    _accumulate_b2(D3, m, G, d * h + h + h * k)


@njit(**JIT, inline="always")
def _backward_unit(XB, A1, D3, m, W2, act, D2, G, u, d):
    """backward for hidden unit u, k = 2, d <= UNROLL (a compile-time constant: unused sums vanish)."""
    h = W2.shape[0]
    one, zero = XB.dtype.type(1), XB.dtype.type(0)
    w0, w1 = W2[u, 0], W2[u, 1]
    sb = s0 = s1 = s2 = s3 = t0 = t1 = zero
    for j in range(m):
        a, e0, e1 = A1[u, j], D3[0, j], D3[1, j]
        g = _delta(w0 * e0 + w1 * e1, a, act, one, zero)
        D2[u, j] = g
        sb += g
        s0 += XB[0, j] * g
        if d > 1:
            s1 += XB[1, j] * g
        if d > 2:
            s2 += XB[2, j] * g
        if d > 3:
            s3 += XB[3, j] * g
        t0 += a * e0
        t1 += a * e1
    G[d * h + u] += sb  # G flat, as in accumulate
    G[u] += s0
    if d > 1:
        G[h + u] += s1
    if d > 2:
        G[2 * h + u] += s2
    if d > 3:
        G[3 * h + u] += s3
    G[d * h + h + 2 * u] += t0
    G[d * h + h + 2 * u + 1] += t1


@njit(**JIT)
def update(theta, G, d, h, k, lr, reg, scale):
    """theta -= lr * (G + reg * W) * scale: gradient step, with the L2 term on the weights only."""
    b1, W2, b2 = d * h, d * h + h, d * h + h + h * k
    for i in range(theta.size):
        g = G[i]
        if i < b1 or W2 <= i < b2:
            g += reg * theta[i]
        theta[i] -= lr * (g * scale)


@njit(**JIT)
def _work(nslots, d, h, k, dtype):
    """Per work slot: the block buffers (rows of BLOCK values) and the block's labels."""
    return np.empty((nslots, d + 2 * h + 3 * k + 2, BLOCK), dtype), np.zeros((nslots, BLOCK), np.int64)


@njit(**JIT)
def _rows(work, d, h, k):
    """The block buffers inside one work array: XB (d), A1 (h), Z2, P, D3 (k each), D2 (h), S (2).

    D3 has rows of its own: written in place over P, the loops would not vectorise (the compiler cannot
    prove that two views of one buffer do not overlap, and falls back to scalar code).
    """
    a1, z2, p, d3, d2, s = d, d + h, d + h + k, d + h + 2 * k, d + h + 3 * k, d + 2 * h + 3 * k
    return work[:a1], work[a1:z2], work[z2:p], work[p:d3], work[d3:d2], work[d2:s], work[s:]


@njit(**JIT, inline="always")
def _forward_block(X, y, order, start, m, params, dims, act, out, rows, yb):
    """Load a block and run the forward stages on it.

    params: the views (W1, b1, W2, b2) of theta; rows: _rows of a work slot. Both are made once per call or
    pass, not per block: making a view costs about as much as a small block's arithmetic.
    """
    W1, b1, W2, b2 = params
    XB, A1, Z2, P, D3, D2, S = rows
    load_block(X, y, order, start, m, XB, yb)
    hidden_forward(XB, m, W1, b1, W2, b2, act, A1, Z2, dims)
    output_forward(Z2, m, out, P, S)


@njit(**JIT, inline="always")
def _grad_range(X, y, order, start, stop, params, dims, act, out, rows, yb, G):
    """G += the gradient sums of the samples start..stop-1 (of order, if it is not empty), block by block."""
    XB, A1, Z2, P, D3, D2, S = rows
    size = _block_size(A1, stop - start)
    for b in range(start, stop, size):
        m = min(size, stop - b)
        _forward_block(X, y, order, b, m, params, dims, act, out, rows, yb)
        output_delta(P, yb, m, out, D3)
        backward(XB, A1, D3, m, params[2], act, D2, G, dims)


@njit(**JIT)
def _loss_range(X, y, start, stop, params, dims, act, out, rows, yb):
    """Sum of the per-sample data losses of samples start..stop-1 (no L2 term)."""
    XB, A1, Z2, P, D3, D2, S = rows
    k = P.shape[0]
    empty = np.empty(0, np.int64)
    total = 0.0
    size = _block_size(A1, stop - start)
    for b in range(start, stop, size):
        m = min(size, stop - b)
        _forward_block(X, y, empty, b, m, params, dims, act, out, rows, yb)
        for j in range(m):
            if out == 0:
                # -log p_y as log-sum-exp: exact, and never log(0) even when p_y underflows.
                total += np.log(S[1, j]) - (Z2[yb[j], j] - S[0, j])
            else:
                for v in range(k):
                    t = P[v, j] - (1.0 if yb[j] == v else 0.0)
                    total += 0.5 * t * t
    return total


@njit(**JIT)
def _block_size(A1, n):
    """Samples per block for a range of n samples: BLOCK, halved while the block's hidden activations A1
    would take more than BLOCK_BYTES, unless all n fit in one block (splitting so few samples costs more
    than it saves). Depends on n, h and the dtype, never on the thread count."""
    size = BLOCK
    while n > BLOCK and size > 64 and A1.shape[0] * size * A1.itemsize > BLOCK_BYTES:
        size //= 2
    return size


@njit(**JIT)
def _classes(theta, d, h):
    return (theta.size - d * h - h) // (h + 1)


@njit(**JIT)
def _n_tiles(n):
    return (n + TILE - 1) // TILE


def train(X, y, order, theta, hidden, dims, passes, batch, lr, reg, mean, act, out, nslots):
    """Run `passes` epochs of gradient descent on theta in place; return the epochs completed.

    Each epoch visits order[e] (or 0..n-1 if order has no rows) in batches of `batch` samples, one update
    per batch; the full batch is batch = n. Gradients are summed per tile in parallel over `nslots` work
    slots, then over tiles in tile order. mean: scale gradients by 1/batch size. Stops early, returning
    the epoch index, when the parameters stop being finite.  X (n, d), y (n,), order (E, n) or (0, 0).
    """
    n = X.shape[0]
    d, h = X.shape[1], hidden
    k = _classes(theta, d, h)
    works, ybs = _work(nslots, d, h, k, X.dtype)
    partials = np.zeros((_n_tiles(min(batch, n)), theta.size))
    params = split(theta, d, h, k)
    W1, b1, W2, b2 = params
    G, yb = partials[0], ybs[0]
    XB, A1, Z2, P, D3, D2, S = _rows(works[0], d, h, k)
    reload = order.shape[0] > 0 or batch < n  # else the one block stays in the buffers from pass to pass
    identity = np.empty(0, np.int64)
    for e in range(passes):
        order_e = order[e] if order.shape[0] > 0 else identity
        for b in range(0, n, batch):
            stop = min(b + batch, n)
            ntiles = _n_tiles(stop - b)
            if stop - b <= BLOCK:
                # A batch of one block (the small-n case): its stages called right here, with no loop over
                # blocks, no views made and no parallel region around them. Each of those, and even the
                # stages reached through an inlined helper, cost 4-12% of the tutorial's run (measured).
                m = stop - b
                if reload or e == 0:
                    load_block(X, y, order_e, b, m, XB, yb)
                hidden_forward(XB, m, W1, b1, W2, b2, act, A1, Z2, dims)
                output_forward(Z2, m, out, P, S)
                output_delta(P, yb, m, out, D3)
                backward(XB, A1, D3, m, W2, act, D2, G, dims)
            else:
                grad_tiles(X, y, order_e, b, stop, params, dims, act, out, works, ybs, partials, nslots)
            for t in range(1, ntiles):
                for i in range(theta.size):
                    G[i] += partials[t, i]
            update(theta, G, d, h, k, lr, reg, 1.0 / (stop - b) if mean else 1.0)
            # Zeroed now, long before the next batch adds to them: zeroed just before, the first block's
            # loads of G would follow the vector stores closely (0.1 us a pass slower, measured).
            for t in range(ntiles):
                for i in range(theta.size):
                    partials[t, i] = 0.0
            for i in range(theta.size):
                if not np.isfinite(theta[i]):
                    return e
    return passes


def grad_tiles(X, y, order, start, stop, params, dims, act, out, works, ybs, partials, nslots):
    """partials[t] += the gradient sums of tile t of samples start..stop-1, tiles spread over nslots.

    A function of its own (the serial and parallel train call their own variant), so that train's loop
    holds only the one-block batch's stage calls: a second, inlined copy of the block code there cost 3-6%
    on small n.
    """
    d, h, k = X.shape[1], params[0].shape[1], params[2].shape[1]
    ntiles = _n_tiles(stop - start)
    for s in prange(nslots):
        rows = _rows(works[s], d, h, k)
        for t in range(s, ntiles, nslots):
            _grad_range(X, y, order, start + t * TILE, min(start + (t + 1) * TILE, stop), params, dims, act,
                        out, rows, ybs[s], partials[t])


def loss(X, y, theta, hidden, dims, reg, act, out, nslots):
    """L = (sum of per-sample losses + reg/2 (|W1|^2 + |W2|^2)) / n.  X (n, d), y (n,)."""
    n = X.shape[0]
    d, h = X.shape[1], hidden
    k = _classes(theta, d, h)
    works, ybs = _work(nslots, d, h, k, X.dtype)
    params = split(theta, d, h, k)
    ntiles = _n_tiles(n)
    partials = np.zeros(ntiles)
    for s in prange(nslots):
        rows = _rows(works[s], d, h, k)
        for t in range(s, ntiles, nslots):
            partials[t] = _loss_range(X, y, t * TILE, min((t + 1) * TILE, n), params, dims, act, out, rows,
                                      ybs[s])
    W1, b1, W2, b2 = params
    penalty = 0.0
    for w in W1.ravel():
        penalty += w * w
    for w in W2.ravel():
        penalty += w * w
    return (partials.sum() + (reg / 2 * penalty if reg > 0 else 0.0)) / n  # no 0 * inf when reg = 0


def forward(X, theta, hidden, dims, act, out, nslots, P):
    """P = the network's outputs (softmax probabilities, or sigmoid outputs).  X (n, d), P (n, k)."""
    n = X.shape[0]
    d, h = X.shape[1], hidden
    k = _classes(theta, d, h)
    works, ybs = _work(nslots, d, h, k, X.dtype)
    params = split(theta, d, h, k)
    no_labels = np.zeros(n, np.int64)
    empty = np.empty(0, np.int64)
    ntiles = _n_tiles(n)
    for s in prange(nslots):
        rows = _rows(works[s], d, h, k)
        Pb, size = rows[3], _block_size(rows[1], n)
        for t in range(s, ntiles, nslots):
            for b in range(t * TILE, min((t + 1) * TILE, n), size):
                m = min(size, n - b)
                _forward_block(X, no_labels, empty, b, m, params, dims, act, out, rows, ybs[s])
                for j in range(m):
                    for v in range(k):
                        P[b + j, v] = Pb[v, j]


# Each loop kernel compiled twice from one source: serial (for small n and for threads of a sweep) and
# parallel over tiles. Both run the same tiles in the same order, so their results are bit-identical.
grad_tiles_serial, grad_tiles_parallel = (variant(grad_tiles, "_serial"),
                                          variant(grad_tiles, "_parallel", parallel=True))
train_serial = variant(train, "_serial", calls=dict(grad_tiles=grad_tiles_serial))
train_parallel = variant(train, "_parallel", calls=dict(grad_tiles=grad_tiles_parallel), parallel=True)
loss_serial, loss_parallel = variant(loss, "_serial"), variant(loss, "_parallel", parallel=True)
forward_serial, forward_parallel = variant(forward, "_serial"), variant(forward, "_parallel", parallel=True)
