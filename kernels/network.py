"""The network kernels: per-block stages and the loops that run them over tiles, passes and batches.

Layout. The parameters live in one flat vector ``theta = [W1 (d, h), b1 (h), W2 (h, k), b2 (k)]``
(row-major), so that an update, a gradient partial and a reduction are each one loop. A block of at most
BLOCK samples is transposed into ``work`` (rows x BLOCK): the inner loops then run over the samples of
the block, which vectorises for any hidden size, and no (n, h) array ever exists. ``work`` rows hold, in
order: XB (d), A1 (h), Z2, P, D3 (k each: logits, outputs, output delta), D2 (h), S (2: softmax max and
sum). The BLAS variants (heavy wide inputs) keep XB's rows untransposed, a sample per row (see _rows).

Inputs. Up to UNROLL inputs, the number of inputs D is a compile-time constant of the variant: the loop
over inputs unrolls inside the loop over the samples of a block, which then vectorises, and a hidden
unit's pre-activations take one pass over the block instead of d + 1 (about 1.7x on the tutorial's run).
Wider inputs share a compilation (D = 0) that reads d at run time, or two: heavy ones (_heavy) get BLAS
variants, whose input layer's products go to BLAS; the others' products (_combine, _dots) take rows of the
block four at a time, as a matrix product keeps values in registers.

Classes. Up to UNROLL classes, the number of classes K is a compile-time constant too: with up to UNROLL inputs,
a hidden unit's logits and its backward pass (with its d + k + 1 gradient sums) then each take one pass over
the block, a unit's weights in registers (3 classes, 4 inputs, 16 units: passes 1.2-1.3x faster than with the
loops over classes outside the loops over samples that more classes, or wider inputs, still run). Two classes,
the case to make fastest, take both probabilities from one quotient (one division, no exp).

What a pass costs besides arithmetic. For the tutorial's n = 200 a pass is about a microsecond of
arithmetic, so fixed costs matter: views (split, _rows) are made once per call, never per block or pass;
G is indexed flat; and a batch of one block runs its stages right in run's loop, with no loop over
blocks or tiles and no parallel region around them.

Variants. ``build(act, out, dtype, d, k, loop, parallel, ...)`` compiles every function marked ``@stage``
with the variant's choices as compile-time constants (ACT, OUT, D, WIDE, K, LOOP, PARALLEL, SOLVER,
WEIGHTED, BLAS, and the dtype's elementary functions): a branch such as ``if OUT == "softmax"`` is pruned
before typing, so the tutorial's run compiles tanh, the two-class softmax and the one-block loop only.
``run`` is the one kernel Python calls; the stages are subroutines compiled into it (config.subroutine).
Each variant is compiled on its first call and cached on disk (config.KernelCache).
"""

import functools
import math
import types

import numpy as np
from numba import prange
from numba.core import types as nbtypes

from . import config
from .config import (BLOCK, BLOCK_BYTES, MATH_FASTMATH, TILE, UNROLL, blas_gemm, kernel, specialise, stage,
                     subroutine)
from .elementwise import ACTIVATIONS, FUNCTIONS

# softmax + cross-entropy; sigmoid + squared error; identity + squared error (regression: y holds real targets)
OUTPUTS = ("softmax", "sigmoid", "identity")
SOLVERS = ("sgd", "momentum", "adam")  # see update()
LOOPS = ("block", "tiles")  # see build()
MAX_TILES, MIN_TILE = 32, 32  # tiles of wide inputs (see _tile_size)
GEMM_MIN = 1024  # see _heavy
LOAD_BYTES = 1 << 19  # load_block writes XB line by line beyond this size (about half of an L2)
LOAD = 16  # samples per step of load_block for wide inputs: a 64-byte line of float32 values
LOOP_KERNELS = ("run", "grad_tiles")  # compiled per loop; every other @stage function is shared by the loops

# A variant's choices, set as compile-time constants by build(): the activation f and its derivative, the
# output, the loop and whether it runs on threads, the optimiser, whether samples have weights, the number
# of inputs D (0: read at run time) and whether there are more than UNROLL (WIDE, D = 0: a stage that only
# tells wide from narrow reads WIDE, so that its compilation serves every narrow width, see config._reads),
# the number of classes K (0: more than UNROLL, read at run time), whether the input layer's products go to BLAS
# (BLAS; XB then holds a sample per row, see _rows), and the elementary functions of the dtype.
ACT = OUT = LOOP = PARALLEL = SOLVER = WEIGHTED = D = WIDE = K = BLAS = None
activate = derivative = exp = sigmoid = logistic_pair = None


def build(act, out, dtype, d, k, loop, parallel=False, solver="sgd", weighted=False, blas=False):
    """The kernels of one variant, as a namespace: the stages, ``train``, ``grad_tiles`` and ``forward``.

    act: one of ACTIVATIONS; out: one of OUTPUTS; dtype: "float64" or "float32"; d inputs (up to UNROLL,
    each d is compiled with a constant trip count for its loop over inputs, which then unrolls inside the
    loops over samples; wider inputs share one compilation); k classes (likewise up to UNROLL);
    loop: "block" (every batch is one block of at most BLOCK samples: the training loop over blocks and
    tiles is not compiled) or "tiles"; parallel: tiles spread over threads (bit-identical to serial);
    solver: one of SOLVERS (see update); weighted: samples have weights (run's weights has rows); blas: for
    d > UNROLL, the input layer's products by BLAS, for heavy samples (heavy(d, h); any other shape gets the
    same results up to rounding, more slowly). Variants are compiled on their first call and cached on disk.
    """
    if act not in ACTIVATIONS or out not in OUTPUTS or loop not in LOOPS or solver not in SOLVERS:
        raise ValueError(f"no kernel variant ({act!r}, {out!r}, {loop!r}, {solver!r})")
    return _build(act, out, np.dtype(dtype).name, d if d <= UNROLL else 0, k if k <= UNROLL else 0, loop,
                  bool(parallel), solver, bool(weighted), bool(blas) and d > UNROLL)


@functools.lru_cache(maxsize=None)
def _stages(act, out, dtype, inputs, classes, solver, weighted, blas):
    f = FUNCTIONS[dtype]
    constants = dict(ACT=act, OUT=out, D=inputs, WIDE=inputs == 0, K=classes, SOLVER=solver, WEIGHTED=weighted,
                     BLAS=blas, activate=f[act], derivative=f[act + "_grad"], exp=f["exp"], sigmoid=f["sigmoid"],
                     logistic_pair=f["logistic_pair"])
    names = [name for name, func in globals().items() if hasattr(func, "jit_options") and name not in LOOP_KERNELS]
    tag = (f"{act}_{out}_{dtype}_d{inputs or 'n'}_k{classes or 'n'}" + ("" if solver == "sgd" else f"_{solver}")
           + ("_weighted" if weighted else "") + ("_blas" if blas else ""))
    return constants, specialise(globals(), names, constants, tag), tag


@functools.lru_cache(maxsize=None)
def _build(act, out, dtype, inputs, classes, loop, parallel, solver, weighted, blas):
    constants, (stages, clones), tag = _stages(act, out, dtype, inputs, classes, solver, weighted, blas)
    # run allocates nothing and returns numbers only: without Numba's reference counting (_nrt=False) it
    # compiles no increments and decrements of its arrays' counts, 6-7% of the tutorial variant's compile
    # time (measured). A kernel that returns an array needs them (the callable stages: split).
    loops, _ = specialise(globals(), LOOP_KERNELS, dict(constants, LOOP=loop, PARALLEL=parallel, **stages),
                          f"{tag}_{loop}{'_parallel' if parallel else ''}", entries=("run",),
                          options={"run": dict(parallel=parallel, _nrt=False)})
    # The stages as kernels that Python can call too (the tests pair them with their twins); compiled only
    # when called, each into its own cache files.
    callable_stages = {name: kernel(clone, f"{tag}_callable") for name, clone in clones.items()
                       if not name.startswith("_")}
    loops["run"].variant = (act, out, dtype, inputs, classes, loop, parallel, solver, weighted, blas)  # for prepare
    return types.SimpleNamespace(**callable_stages, run=loops["run"])


def prepare(variant, calls):
    """Make these subroutines of a variant's run into the disk cache (config.prepare); variant: run.variant."""
    config.prepare(_build(*variant).run, calls)


@stage(inline="always")
def split(theta, d, h, k):
    """Views (W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)) into the flat parameter vector theta."""
    W1 = theta[: d * h].reshape((d, h))
    b1 = theta[d * h: d * h + h]
    W2 = theta[d * h + h: d * h + h + h * k].reshape((h, k))
    b2 = theta[d * h + h + h * k:]
    return W1, b1, W2, b2


@stage()
def load_block(X, y, weights, order, e, start, m, XB, yb, wb):
    """XB[:, j], yb[j], wb[j] = X[i], y[i], weights[i] with i = order[e, start + j] (order with no rows:
    i = start + j), j < m; for identity outputs yb[:, j] = y[i].

    X (n, d), y (n,) labels, or (n, k) targets for identity outputs, or no rows (yb is left alone); weights
    (n,) (WEIGHTED) or (0,), order (E, n) or (0, 0), XB (d, BLOCK) (BLAS: column-major, its columns rows of
    X copied whole), yb (BLOCK,) or (k, BLOCK), wb (BLOCK,).
    """
    # A compile-time constant up to UNROLL, as in hidden_forward: the copy of a sample's inputs unrolls and the
    # loop over samples vectorises.
    d = D if D > 0 else X.shape[1]
    labelled = y.shape[0] > 0
    shuffled = order.shape[0] > 0
    by_lines = WIDE and not BLAS and d * XB.shape[1] * XB.itemsize > LOAD_BYTES
    for j in range(m):
        i = order[e, start + j] if shuffled else start + j
        if labelled:
            if OUT == "identity":
                for v in range(y.shape[1]):
                    yb[v, j] = y[i, v]
            else:
                yb[j] = y[i]
        if WEIGHTED:
            wb[j] = weights[i]
        if not by_lines:
            for c in range(d):
                XB[c, j] = X[i, c]
    if by_lines:
        # Many inputs: a sample at a time, each value would go to another line of XB (its rows are BLOCK
        # values apart), and XB outgrows L2. A few samples at a time, each line is written whole while the
        # samples' rows are read in order (4x faster for d = 784; for d = 64, 1.5x slower: measured).
        for j0 in range(0, m, LOAD):
            j1 = min(j0 + LOAD, m)
            for c in range(d):
                for j in range(j0, j1):
                    XB[c, j] = X[order[e, start + j] if shuffled else start + j, c]


@stage()
def hidden_forward(XB, m, W1, b1, W2, b2, A1, Z2):
    """A1 = f(W1^T XB + b1) and the logits Z2 = W2^T A1 + b2, a hidden unit at a time, while its row is in L1
    (wider inputs' pre-activations first).

    Two-class softmax: the logits are kept shifted by z0 (Z2[0] = 0, Z2[1] = z1 - z0, from the differences of
    the weights): the outputs and the loss depend on the difference alone, and a unit's logits then take one
    multiply-add a sample instead of two.  XB (d, B), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,), A1 (h, B), Z2 (k, B).
    """
    d = D if D > 0 else XB.shape[0]  # a compile-time constant up to UNROLL
    h, k = W2.shape
    shifted = OUT == "softmax" and K == 2
    for v in range(k):
        for j in range(m):
            Z2[v, j] = b2[v] - b2[0] if shifted else b2[v]
    if D == 0:  # too many inputs to unroll: every pre-activation first
        for u in range(h):
            for j in range(m):
                A1[u, j] = b1[u]
        if BLAS:  # as one matrix product
            blas_gemm(True, False, h, m, d, W1, XB, 1.0, A1)
        else:
            _combine(W1, XB, m, A1)
    for u in range(h):
        if K > 0:
            # A unit's activations and logits in one pass over the block, its weights in registers. (Pairs of
            # units per pass, sharing the loads of XB and Z2, ran 5-8% slower at 20 and 64 units: two
            # activations' constants did not fit in the registers and were loaded again every iteration.)
            w0, w1, w2, w3 = _class_row(W2, u)
            if shifted:
                w1 -= w0
            for j in range(m):
                a = activate(_pre(XB, W1, b1, A1, u, j))
                A1[u, j] = a
                if not shifted:
                    Z2[0, j] += w0 * a
                if K > 1:
                    Z2[1, j] += w1 * a
                if K > 2:
                    Z2[2, j] += w2 * a
                if K > 3:
                    Z2[3, j] += w3 * a
        else:
            for j in range(m):
                A1[u, j] = activate(_pre(XB, W1, b1, A1, u, j))
            # Each logit while the unit's row is in L1, the block's logits (k rows) staying there too (by
            # _combine, A1 would be loaded k times: MNIST-shaped fits in batches of 128 ran 1.2-1.4x slower).
            for v in range(k):
                w = W2[u, v]
                for j in range(m):
                    Z2[v, j] += w * A1[u, j]


@stage(inline="always")
def _class_row(W, u):
    """W[u, :K] (K > 0) as four (UNROLL) values, the last repeated where K < 4: loaded ahead of a loop over
    samples, whose stores LLVM could not otherwise tell from W's. (Indexed in the loop, a tuple of them made
    the two-class pass at 50 units 10% slower: measured.)"""
    return W[u, 0], W[u, min(1, K - 1)], W[u, min(2, K - 1)], W[u, min(3, K - 1)]


@stage()
def _combine(W, IN, m, OUT):
    """OUT[r, j] += sum_c W[c, r] IN[c, j] (j < m): OUT's rows plus combinations of IN's rows.  W (c, r),
    IN (c, B), OUT (r, B).

    Wide inputs (WIDE): four rows of IN per pass over a row of OUT, whose loads and stores are then shared
    by four products (loads bound these loops: about 1.5x faster at 16 inputs, 32 units, 4 classes, measured),
    the rest in at most two passes. Up to UNROLL inputs, a row of IN per pass: the layers are small, and the
    blocked loops would lengthen every such variant's compile (docs/DESIGN.md, facts).
    """
    nc = IN.shape[0]
    fours = nc - nc % 4 if WIDE else 0
    pair = WIDE and nc % 4 >= 2
    for r in range(OUT.shape[0]):
        if WIDE:
            for c in range(0, fours, 4):
                w0, w1, w2, w3 = W[c, r], W[c + 1, r], W[c + 2, r], W[c + 3, r]
                for j in range(m):
                    OUT[r, j] += (w0 * IN[c, j] + w1 * IN[c + 1, j]) + (w2 * IN[c + 2, j] + w3 * IN[c + 3, j])
            if pair:
                w0, w1 = W[fours, r], W[fours + 1, r]
                for j in range(m):
                    OUT[r, j] += w0 * IN[fours, j] + w1 * IN[fours + 1, j]
        for c in range(fours + 2 * pair, nc):
            w = W[c, r]
            for j in range(m):
                OUT[r, j] += w * IN[c, j]


@stage(returns=lambda XB, *rest: XB.dtype)
def _pre(XB, W1, b1, A1, u, j):
    """Unit u's pre-activation at sample j: computed here for D > 0 inputs, else already in A1 (hidden_forward).

    Decided by D, a compile-time constant: a branch on the run-time d would stay inside the loops over
    samples and stop them from vectorising (5x slower on d = 64, measured).
    """
    if D == 0:
        return A1[u, j]
    z = b1[u]
    for c in range(D):
        z += W1[c, u] * XB[c, j]
    return z


@stage()
def output_forward(Z2, m, P, S):
    """P = softmax(Z2) over classes, with S = (max, sum of exp(Z2 - max)) per sample (S is left alone for
    two classes), P = sigmoid(Z2), or P = Z2 (identity).

    Z2, P (k, B), S (2, B). The max is subtracted so that exp never overflows.
    """
    k = P.shape[0]
    one = P.dtype.type(1)
    if OUT == "sigmoid":
        for v in range(k):
            for j in range(m):
                P[v, j] = sigmoid(Z2[v, j])
    elif OUT == "identity":
        for v in range(k):
            for j in range(m):
                P[v, j] = Z2[v, j]
    elif K == 2:
        # Two classes: both probabilities from one quotient (logistic_pair), and no S: _block_loss takes the
        # loss from P and the logits (the stores of S were a fifth of this loop's time, measured).
        for j in range(m):
            z0, z1 = Z2[0, j], Z2[1, j]
            big, small = logistic_pair(z1 - z0)
            P[0, j] = big if z0 >= z1 else small
            P[1, j] = small if z0 >= z1 else big
    elif K > 0:
        # Up to UNROLL classes: a sample's softmax in one pass, its classes unrolled, and one division.
        for j in range(m):
            top = Z2[0, j]
            for v in range(1, K):
                top = max(top, Z2[v, j])
            total = P.dtype.type(0)
            for v in range(K):
                P[v, j] = exp(Z2[v, j] - top)
                total += P[v, j]
            r = one / total
            for v in range(K):
                P[v, j] *= r
            S[0, j] = top
            S[1, j] = total
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


@stage()
def output_delta(P, yb, wb, m, D3):
    """D3 = dLoss/dZ2: P - onehot(y) (softmax + cross-entropy), (P - T) P (1 - P) (sigmoid + SE, T =
    onehot(y)), P - yb (identity + SE), times the sample's weight wb when WEIGHTED.

    For softmax with cross-entropy the softmax Jacobian and the derivative of -log p_y collapse to
    P - onehot(y). With two classes the rows are opposite, p0 - [y = 0] = -(p1 - [y = 1]): row 0 is taken as
    -p1 for y = 0 (p0 - 1 would lose p1's digits, for p0 near 1) and p0 for y = 1, row 1 as its negation, exactly,
    so that the backward pass may read row 0 alone. P, D3 (k, B) (may be the same array), yb (B,) labels or
    (k, B) targets, wb (B,) weights.
    """
    k = P.shape[0]
    one, zero = P.dtype.type(1), P.dtype.type(0)
    if OUT == "softmax" and K == 2:
        for j in range(m):
            delta = -P[1, j] if yb[j] == 0 else P[0, j]
            if WEIGHTED:
                delta *= wb[j]
            D3[0, j] = delta
            D3[1, j] = -delta
        return
    for v in range(k):
        if OUT == "softmax":
            for j in range(m):
                D3[v, j] = P[v, j] - (one if yb[j] == v else zero)
        elif OUT == "identity":
            for j in range(m):
                D3[v, j] = P[v, j] - yb[v, j]
        else:
            for j in range(m):
                p = P[v, j]
                D3[v, j] = (p - (one if yb[j] == v else zero)) * p * (one - p)
        if WEIGHTED:
            for j in range(m):
                D3[v, j] *= wb[j]


@stage()
def hidden_delta(D3, m, W2, A1, D2):
    """D2 = (W2 D3) * f'(A1), with f' written in terms of the activation A1.  D3 (k, B), D2 (h, B)."""
    for u in range(W2.shape[0]):
        w = W2[u, 0]
        for j in range(m):
            D2[u, j] = w * D3[0, j]
    _combine(W2[:, 1:].T, D3[1:], m, D2)
    for u in range(W2.shape[0]):
        for j in range(m):
            D2[u, j] *= derivative(A1[u, j])


@stage()
def accumulate(XB, A1, D3, D2, m, G, GW):
    """G += this block's gradient sums: [XB D2^T, sum D2, A1 D3^T, sum D3] (flat, theta's layout).

    Each sum over the block runs in the data's dtype, then is added into the float64 G: a float32 run then
    rounds once per block of BLOCK samples instead of once per sample. G is indexed flat (offsets of
    split()): views made per block would cost more than a small block's arithmetic. XB D2^T by BLAS (BLAS)
    is one matrix product into GW (d, h), the data's dtype, then added into G.
    """
    d, h, k = XB.shape[0], A1.shape[0], D3.shape[0]
    zero = XB.dtype.type(0)
    if BLAS:
        blas_gemm(False, True, d, h, m, XB, D2, 0.0, GW)
        for c in range(d):
            for u in range(h):
                G[c * h + u] += GW[c, u]
    for u in range(h):
        s = zero
        for j in range(m):
            s += D2[u, j]
        G[d * h + u] += s
    if not BLAS:
        _dots(XB, D2, m, G, 0, h)
    _dots(A1, D3, m, G, d * h + h, k)
    _accumulate_b2(D3, m, G, d * h + h + h * k)


@stage()
def _dots(A, B, m, G, at, stride):
    """G[at + c * stride + u] += sum_j A[c, j] B[u, j] (j < m): the dot products of A's rows with B's rows,
    each sum in the data's dtype (as in accumulate).

    Wide inputs (WIDE): four rows of B per pass over a row of A, whose loads are then shared by four sums
    (as in _combine); up to UNROLL inputs, a row of B per pass.
    """
    nb = B.shape[0]
    zero = A.dtype.type(0)
    fours = nb - nb % 4 if WIDE else 0
    for c in range(A.shape[0]):
        if WIDE:
            for u in range(0, fours, 4):
                s0 = s1 = s2 = s3 = zero
                for j in range(m):
                    a = A[c, j]
                    s0 += a * B[u, j]
                    s1 += a * B[u + 1, j]
                    s2 += a * B[u + 2, j]
                    s3 += a * B[u + 3, j]
                G[at + c * stride + u] += s0
                G[at + c * stride + u + 1] += s1
                G[at + c * stride + u + 2] += s2
                G[at + c * stride + u + 3] += s3
        for u in range(fours, nb):
            s = zero
            for j in range(m):
                s += A[c, j] * B[u, j]
            G[at + c * stride + u] += s


@stage(inline="always")
def _heavy(d, h):
    """Whether samples of d inputs and h hidden units are heavy: their input layer goes to BLAS (the BLAS
    variants, which the engine chooses by this; a tile of them is worth a thread even in an evaluation).
    Below GEMM_MIN weights a BLAS call's fixed cost outweighs what blocking gains (d = 16, h = 32: 14% slower
    than the loops over samples, measured; d = 64, h = 32: 2.4x faster)."""
    return d > UNROLL and d * h >= GEMM_MIN


@stage(inline="always")
def _accumulate_b2(D3, m, G, at):
    """G[at + v] += sum_j D3[v, j]; for the two-class softmax's opposite rows (output_delta), row 0's sum and
    its negation."""
    opposite = OUT == "softmax" and K == 2
    for v in range(1 if opposite else D3.shape[0]):
        s = D3.dtype.type(0)
        for j in range(m):
            s += D3[v, j]
        G[at + v] += s
        if opposite:
            G[at + 1] -= s


@stage()
def backward(XB, A1, D3, m, W2, D2, G, GW):
    """hidden_delta, then accumulate: D2 = (W2 D3) * f'(A1), G += [XB D2^T, sum D2, A1 D3^T, sum D3].

    For up to UNROLL inputs and classes in one pass over the block per hidden unit, its d + k + 1 sums in
    registers: separate passes would load two rows for every multiply-add. (D2 is written there too, though
    nothing reads it: without its stores, passes were about 2% faster, but LLVM vectorised the sums of the
    inlined stage differently in serial and parallel variants, whose results then differed in the last bit;
    kept apart from its callers (noinline), the stage lost the 2%: measured.) XB (d, B), A1, D2 (h, B), D3
    (k, B), GW: accumulate's scratch.
    """
    h, k = W2.shape
    if K > 0 and D > 0:
        _backward_unrolled(XB, A1, D3, m, W2, D2, G)
    else:
        hidden_delta(D3, m, W2, A1, D2)
        accumulate(XB, A1, D3, D2, m, G, GW)


@stage(inline="always")
def _backward_unrolled(XB, A1, D3, m, W2, D2, G):
    """backward for d = D and k = K, both up to UNROLL: one pass over the block per hidden unit."""
    d = D
    h, k = W2.shape
    zero = XB.dtype.type(0)
    # Two-class softmax: D3[1] = -D3[0] (output_delta), so a unit's back-propagated error is (w0 - w1) D3[0]
    # and its second output weight's gradient the negation of its first: a multiply-add and a load fewer per
    # sample and unit (passes at H = 50 about 1.07x faster, measured).
    opposite = OUT == "softmax" and K == 2
    for u in range(h):
        # d = D and k = K, compile-time constants here: the sums of inputs and classes the data lacks vanish.
        w0, w1, w2, w3 = _class_row(W2, u)
        if opposite:
            w0 -= w1
        sb = s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = zero
        for j in range(m):
            a = A1[u, j]
            back = w0 * D3[0, j]
            if K > 1 and not opposite:
                back += w1 * D3[1, j]
            if K > 2:
                back += w2 * D3[2, j]
            if K > 3:
                back += w3 * D3[3, j]
            g = back * derivative(a)
            D2[u, j] = g
            sb += g
            s0 += XB[0, j] * g
            if d > 1:
                s1 += XB[1, j] * g
            if d > 2:
                s2 += XB[2, j] * g
            if d > 3:
                s3 += XB[3, j] * g
            t0 += a * D3[0, j]
            if K > 1 and not opposite:
                t1 += a * D3[1, j]
            if K > 2:
                t2 += a * D3[2, j]
            if K > 3:
                t3 += a * D3[3, j]
        G[d * h + u] += sb  # G flat, as in accumulate
        G[u] += s0
        if d > 1:
            G[h + u] += s1
        if d > 2:
            G[2 * h + u] += s2
        if d > 3:
            G[3 * h + u] += s3
        at = d * h + h + K * u
        G[at] += t0
        if opposite:
            G[at + 1] -= t0
        elif K > 1:
            G[at + 1] += t1
        if K > 2:
            G[at + 2] += t2
        if K > 3:
            G[at + 3] += t3
    _accumulate_b2(D3, m, G, d * h + h + h * k)


@stage(returns=nbtypes.boolean)
def update(theta, partials, ntiles, d, h, k, lr, reg, scale, state, optimiser):
    """One step along the gradient g = (G + reg * W) * scale (the L2 term on the weights only), where G is the
    sum of the batch's tile partials, partials[0] + partials[1] + ... + partials[ntiles - 1] in that order;
    the partials are left zero for the next batch. Returns whether theta is finite after the step. The step
    is scikit-learn's MLP optimisers':

    - "sgd": theta -= lr g;
    - "momentum" (mu = optimiser[0], Nesterov's when optimiser[1] = 1; velocity v = state[0]):
      v = mu v - lr g, then theta += v, or theta += mu v - lr g (Nesterov);
    - "adam" (beta_1, beta_2, epsilon = optimiser[2:5]; moments m, s = state[0], state[1]; optimiser[5]
      counts the steps, t): t += 1, m = beta_1 m + (1 - beta_1) g, s = beta_2 s + (1 - beta_2) g^2,
      theta -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m / (sqrt(s) + epsilon).

    state (2, theta.size) float64 ((0, theta.size) for "sgd"), optimiser (6,) float64: both carried from
    call to call, so that a run in chunks (or continued with init=) steps as one long run would.

    Summing, stepping, zeroing and checking are two passes over the partials and theta, not four: for
    MNIST's shape (100k parameters, float64 partials of 0.8 MB, two tiles) the four took 155 us a batch,
    a seventh of a float32 pass in batches of 128, and the two take 112 us (measured).
    """
    G = partials[0]
    for t in range(1, ntiles):  # row by row: a pass may have a hundred tiles
        for i in range(theta.size):
            G[i] += partials[t, i]
            partials[t, i] = 0.0
    b1, W2, b2 = d * h, d * h + h, d * h + h + h * k
    mu, nesterov = optimiser[0], optimiser[1] != 0
    beta1, beta2, epsilon = optimiser[2], optimiser[3], optimiser[4]
    step = lr
    if SOLVER == "adam":
        optimiser[5] += 1
        step = lr * math.sqrt(1.0 - beta2 ** optimiser[5]) / (1.0 - beta1 ** optimiser[5])
    check = 0.0
    for i in range(theta.size):
        g = G[i]
        G[i] = 0.0
        if i < b1 or W2 <= i < b2:
            g += reg * theta[i]
        if SOLVER == "sgd":
            theta[i] -= lr * (g * scale)
        elif SOLVER == "momentum":
            g *= scale
            v = mu * state[0, i] - lr * g
            state[0, i] = v
            theta[i] += mu * v - lr * g if nesterov else v
        else:
            g *= scale
            m = beta1 * state[0, i] + (1.0 - beta1) * g
            s = beta2 * state[1, i] + (1.0 - beta2) * (g * g)
            state[0, i] = m
            state[1, i] = s
            theta[i] -= step * m / (math.sqrt(s) + epsilon)
        # 0 for a finite value, NaN for inf or NaN (kept: FASTMATH has no 'nnan' or 'ninf'), and a sum
        # rather than a branch, which would stop the loop from vectorising.
        check += theta[i] * 0.0
    return check == 0.0


def work_rows(d, h, k):
    """Rows of BLOCK values in one work slot (see _rows)."""
    return d + 2 * h + 3 * k + 3 + (-(-d * h // BLOCK) if d > UNROLL else 0)


@stage(inline="always")
def _rows(work, d, h, k):
    """The block buffers inside one work array (work_rows(d, h, k) rows): XB (d), A1 (h), Z2, P, D3 (k each),
    D2 (h), S (2), the samples' weights WB (1), and for wide inputs (WIDE) accumulate's scratch GW (d, h) in
    the rows after them.

    D3 has rows of its own: written in place over P, the loops would not vectorise (the compiler cannot
    prove that two views of one buffer do not overlap, and falls back to scalar code). For BLAS, XB's rows
    hold (BLOCK, d), a sample per row, seen through its transpose: load_block then copies rows of X whole,
    which BLAS reads as they are (transposing them into lines of samples cost a tenth of a float64 pass of
    MNIST's shape and a quarter of a float32 one, measured).
    """
    a1, z2, p, d3, d2, s = d, d + h, d + h + k, d + h + 2 * k, d + h + 3 * k, d + 2 * h + 3 * k
    # Reshapes only where a variant needs them: each compiles a helper of Numba's (0.1-0.15 s).
    GW = work[:0]
    if WIDE:
        GW = work[s + 3:].reshape(-1)[: d * h].reshape((d, h))
    XB = work[:a1].reshape((work.shape[1], d)).T if BLAS else work[:a1]
    return XB, work[a1:z2], work[z2:p], work[p:d3], work[d3:d2], work[d2:s], work[s:s + 2], work[s + 2], GW


@stage(inline="always")
def _forward_block(X, y, weights, order, e, start, m, params, rows, yb):
    """Load a block and run the forward stages on it.

    params: the views (W1, b1, W2, b2) of theta; rows: _rows of a work slot. Both are made once per call or
    pass, not per block: making a view costs about as much as a small block's arithmetic.
    """
    W1, b1, W2, b2 = params
    XB, A1, Z2, P, D3, D2, S, WB, GW = rows
    load_block(X, y, weights, order, e, start, m, XB, yb, WB)
    hidden_forward(XB, m, W1, b1, W2, b2, A1, Z2)
    output_forward(Z2, m, P, S)


@stage(inline="always")
def _grad_range(X, y, weights, order, e, start, stop, size, params, rows, yb, G, track, final, out):
    """G += the gradient sums of the samples start..stop-1 (of order[e], if order has rows), in blocks of
    `size`; returns the sum of their losses (_block_loss) when track, else 0. final: the forward stages only,
    with the outputs into out when it has rows."""
    XB, A1, Z2, P, D3, D2, S, WB, GW = rows
    total = 0.0
    for b in range(start, stop, size):
        m = min(size, stop - b)
        _forward_block(X, y, weights, order, e, b, m, params, rows, yb)
        if track:
            total += _block_loss(Z2, P, S, yb, WB, m)
        if final:
            _copy_outputs(P, m, out, b)
        else:
            output_delta(P, yb, WB, m, D3)
            backward(XB, A1, D3, m, params[2], D2, G, GW)
    return total


@stage(inline="always")
def _copy_outputs(P, m, out, at):
    """out[at + j] = P[:, j] for j < m, if out has rows (P (k, B), out (n, k))."""
    if out.shape[0] > 0:
        for j in range(m):
            for v in range(P.shape[0]):
                out[at + j, v] = P[v, j]


@stage(returns=nbtypes.float64)
def _block_loss(Z2, P, S, yb, wb, m):
    """Sum of the per-sample data losses of a block (no L2 term), each times its weight when WEIGHTED, in
    float64."""
    k = P.shape[0]
    total = 0.0
    for j in range(m):
        loss = 0.0
        if OUT == "softmax" and K == 2:
            # -log p_y = log(1 + e) + max(z_other - z_y, 0), e = e**-|z1 - z0| = small / big (output_forward):
            # log1p keeps a tiny loss's digits, and it never takes log(0).
            y = yb[j]
            big, small = max(P[0, j], P[1, j]), min(P[0, j], P[1, j])
            loss = math.log1p(float(small) / float(big)) + max(float(Z2[1 - y, j]) - float(Z2[y, j]), 0.0)
        elif OUT == "softmax":
            # -log p_y as log-sum-exp: exact, and never log(0) even when p_y underflows.
            loss = math.log(S[1, j]) - (Z2[yb[j], j] - S[0, j])
        elif OUT == "identity":
            for v in range(k):
                t = float(P[v, j]) - float(yb[v, j])
                loss += 0.5 * t * t
        else:
            for v in range(k):
                t = P[v, j] - (1.0 if yb[j] == v else 0.0)
                loss += 0.5 * t * t
        total += loss * wb[j] if WEIGHTED else loss
    return total


@stage(inline="always")
def _block_size(A1, n):
    """Samples per block for a range of n samples: BLOCK, halved while the block's hidden activations A1
    would take more than BLOCK_BYTES, unless all n fit in one block (splitting so few samples costs more
    than it saves), or the inputs are wide (WIDE: BLAS's products gain from long rows; on the loops of light
    wide inputs, 6 inputs and 150 units, whole blocks measured no slower than halved ones). Depends on n, h,
    the dtype and WIDE, never on the thread count."""
    size = BLOCK
    while not WIDE and n > BLOCK and size > 64 and A1.shape[0] * size * A1.itemsize > BLOCK_BYTES:
        size //= 2
    return size


@stage(inline="always")
def _tile_size(n, d, h):
    """Samples per tile when n samples are split into tiles, the unit of parallel work: TILE.

    Wide samples (more than UNROLL inputs) cost tens to hundreds of times more: a tile is then a block
    (more once n has over MAX_TILES blocks: a batch holds a gradient partial per tile), and fewer than two
    blocks are split in two, so that a mini-batch of 128 samples runs on two threads (fits of 200,000 rows
    in batches of 256 ran 1.3-1.8x faster than in tiles of TILE samples at 6 to 32 inputs, measured).
    Never depends on the number of threads.
    """
    if d <= UNROLL:
        return TILE
    if n <= 2 * MIN_TILE:  # one tile: halves would cost more to sum than they save
        return 2 * MIN_TILE
    if n < 2 * BLOCK:  # two tiles, a multiple of 16 samples each but the last
        return -(-n // 32) * 16
    return BLOCK * -(-n // (BLOCK * MAX_TILES))


@stage(inline="always")
def _n_tiles(n, d, h):
    size = _tile_size(n, d, h)
    return (n + size - 1) // size, size


@stage()
def run(X, y, weights, order, theta, params, passes, batch, lr, reg, mean, evaluate, work, labels, partials,
        losses, running, P, state, optimiser):
    """Train theta in place for `passes` epochs, then evaluate; returns (epochs completed, L).

    Training: each epoch visits order[e] (or 0..n-1 if order has no rows) in batches of `batch` samples, one update
    per batch (the full batch is batch = n); mean: scale gradients by 1/batch size (by 0 for a batch of weight 0).
    It stops early, returning (the epoch, NaN), when the parameters stop being finite. For the first len(running)
    epochs (all, or the first only), the training loss of epoch e goes to running[e], computed by the training
    itself (scikit-learn's MLPs' loss_curve_): (sum over its batches of their samples' losses and reg/2 (|W1|^2 +
    |W2|^2) at the batch's start) / n; for the full batch in natural order, the loss of the parameters the epoch
    started from, the bits of their evaluation (grad_tiles). It is written before the epoch's last step, so
    that it is there even when that step stops the run. Evaluation: L = (sum of per-sample losses + reg/2 (|W1|^2 +
    |W2|^2)) / n when evaluate (else 0), and the outputs into P when it has rows. WEIGHTED: each sample's delta and
    loss are times its weight, and the batch size and n above are the sums of the weights (scikit-learn's
    sample_weight). Both run tile by tile, tiles over the work slots (over threads in the parallel variant), and sum
    the tiles' gradients and losses in tile order: results do not depend on the number of threads.

    X (n, d); y (n,) labels (identity outputs: (n, k) targets of X's dtype), with no rows when only P is asked
    for; weights (n,) (WEIGHTED) or (0,); order (E, n) or (0, 0); params: the views (W1 (d, h), b1 (h,),
    W2 (h, k), b2 (k,)) of the flat theta; work (slots, work_rows(d, h, k), BLOCK) and labels (slots, BLOCK)
    (identity: (slots, k, BLOCK) of X's dtype): buffers; partials (tiles of a batch, theta.size),
    zero; losses (at least the tiles of n and of a batch); running (r,) float64, r <= passes; P (n, k) or
    (0, k); state, optimiser: the optimiser's, updated in place (see update).
    """
    n, d = X.shape
    W1, b1, W2, b2 = params
    h, k = W2.shape
    G, yb = partials[0], labels[0]
    rows0 = _rows(work[0], d, h, k)
    XB, A1, Z2, Pb, D3, D2, S, WB, GW = rows0
    reload = order.shape[0] > 0 or batch < n  # else the one block stays in the buffers from pass to pass
    labelled, outputs = evaluate and y.shape[0] > 0, P.shape[0] > 0
    ntiles, T = _n_tiles(n, d, h)
    # The evaluation is one more pass (final) through the training's own calls of the forward stages, in
    # natural order, tile by tile (blocks of at most `size` samples, none across a tile's end): at call sites
    # of their own (and in a parallel loop of their own, for the tiles) they took about a quarter of a
    # variant's compile time, serial or parallel (measured). The block loop runs on one thread: its parallel
    # variant evaluates after training, on threads. (Branches on the constants LOOP and PARALLEL are written
    # apart from others, so that they are pruned before typing.)
    size = min(_block_size(A1, n), T)
    last = passes
    if LOOP == "tiles" or not PARALLEL:
        if labelled or outputs:
            last = passes + 1
    for e in range(last):
        final = e == passes
        track = e < running.shape[0]
        epoch_loss = 0.0
        if final:
            for t in range(ntiles):
                losses[t] = 0.0
        step = (size if LOOP == "block" else n) if final else batch
        visit = order[:0] if final else order
        losses_now = labelled if final else track
        for b in range(0, n, step):
            stop = min(b + step, n)
            ntiles_batch = 1 if LOOP == "block" else _n_tiles(stop - b, d, h)[0]  # "block": G is the only partial
            if LOOP == "block":
                # Every batch is one block: its stages are called right here, with no loop over blocks or
                # tiles around them (that costs 4-12% of the tutorial's run, measured).
                m = stop - b
                # The one block a run keeps (all n samples, in order) serves a final pass in one block too;
                # not one in smaller blocks (heavy samples' tiles may be smaller than a block).
                if reload or e == 0 or step < n:
                    load_block(X, y, weights, visit, e, b, m, XB, yb, WB)
                hidden_forward(XB, m, W1, b1, W2, b2, A1, Z2)
                output_forward(Z2, m, Pb, S)
                if losses_now:
                    loss = _block_loss(Z2, Pb, S, yb, WB, m)
                    if final:  # summed per tile, as the tiles loop sums them
                        losses[b // T] += loss
                    else:
                        epoch_loss += loss
                if final:
                    _copy_outputs(Pb, m, P, b)
                    continue
                output_delta(Pb, yb, WB, m, D3)
                backward(XB, A1, D3, m, W2, D2, G, GW)
            else:
                grad_tiles(X, y, weights, visit, e, b, stop, params, work, labels, partials, losses, losses_now, final,
                           P)
                if final:
                    continue
                if track:
                    epoch_loss += _ordered_sum(losses, order[:0], 0, 0, ntiles_batch, False)
            if track:
                epoch_loss += _penalty(theta, d, h, k, reg, order)
                if stop == n:  # complete before the epoch's last step, and kept if that step diverges
                    running[e] = _per_sample(epoch_loss, _weight_sum(weights, order[:0], 0, 0, n) if WEIGHTED else n)
            scale = 1.0
            if mean:
                # (Not named size: that is the evaluation's block size, used after the training's last batch.)
                weight = _weight_sum(weights, order, e, b, stop) if WEIGHTED else stop - b
                # A batch whose samples all weigh 0 has no mean gradient: its gradient counts as zero, as if
                # they were dropped (its L2 term and all: 0 / 0 would make theta NaN).
                scale = 1.0 / weight if weight > 0 else 0.0
            # The partials are zeroed by the update, long before the next batch adds to them: zeroed just
            # before, the first block's loads of G would follow the vector stores closely (0.1 us a pass
            # slower, measured).
            if not update(theta, partials, ntiles_batch, d, h, k, lr, reg, scale, state, optimiser):
                return e, np.nan
    if LOOP == "block":
        # The evaluation, tiles over threads: _grad_range's final path, written out because Numba would inline
        # and type its training path here too (through _grad_range: 0.5-1 s slower to compile, through
        # grad_tiles 1.7 s; measured).
        if PARALLEL:
            if labelled or outputs:
                nslots = work.shape[0]
                for s in prange(nslots):
                    rows = _rows(work[s], d, h, k)
                    for t in range(s, ntiles, nslots):
                        total = 0.0
                        end = min((t + 1) * T, n)
                        for b in range(t * T, end, size):
                            m = min(size, end - b)
                            _forward_block(X, y, weights, order[:0], 0, b, m, params, rows, labels[s])
                            if labelled:
                                total += _block_loss(rows[2], rows[3], rows[6], labels[s], rows[7], m)
                            _copy_outputs(rows[3], m, P, b)
                        losses[t] = total
    if not labelled:
        return passes, 0.0
    total = _ordered_sum(losses, order[:0], 0, 0, ntiles, False)
    count = _weight_sum(weights, order[:0], 0, 0, n) if WEIGHTED else n
    return passes, _per_sample(total + _penalty(theta, d, h, k, reg, order), count)


@stage(returns=nbtypes.float64, fastmath=MATH_FASTMATH)
def _per_sample(total, count):
    """total / count, compiled without run's 'arcp' (which lets LLVM divide by a multiply with the
    reciprocal): inlined as run's own code, the training's loss (in the loop over epochs) and the evaluation's
    came out 1 ulp apart (measured), and train() takes one for the other."""
    return total / count


@stage(inline="always")
def _penalty(theta, d, h, k, reg, order):
    """reg/2 (|W1|^2 + |W2|^2) in float64; 0 when reg = 0 (never 0 * inf). order: any (0, 0) array."""
    if reg == 0:
        return 0.0
    empty = order[:0]
    return reg / 2 * (_ordered_sum(theta, empty, 0, 0, d * h, True)
                      + _ordered_sum(theta, empty, 0, d * h + h, d * h + h + h * k, True))


@stage(inline="always")
def _weight_sum(weights, order, e, start, stop):
    """The sum of the weights of samples start..stop-1 (of order[e], if order has rows), in float64."""
    return _ordered_sum(weights, order, e, start, stop, False)


@stage(returns=nbtypes.float64, fastmath=MATH_FASTMATH)
def _ordered_sum(values, order, e, start, stop, squared):
    """The sum of values[i] (squared: of their squares) for i = start..stop-1, or i = order[e, j] for j =
    start..stop-1 if order has rows, in float64: four interleaved partial sums, added in a fixed order.

    Compiled without reassociation ('reassoc'), with which LLVM vectorises such a sum as it sees fit in each
    variant: inlined into run, the serial and the parallel variants summed a batch's weights in other orders,
    and weighted runs with mean gradients differed in the last bits with the number of threads. run's other
    sums (the L2 term, the tiles' losses) are taken alike, so that none depends on LLVM's choices.
    """
    # The groups of four rotate the partial sums (the term j - start goes to s0, the next to s1, ...), so that
    # _term is typed and lowered twice rather than once per partial sum (0.1 s of every variant's compile).
    s0 = s1 = s2 = s3 = 0.0
    fours = stop - (stop - start) % 4  # start <= stop
    for j in range(start, fours):
        s0, s1, s2, s3 = s1, s2, s3, s0 + _term(values, order, e, j, squared)
    for j in range(fours, stop):
        s0 += _term(values, order, e, j, squared)
    return (s0 + s1) + (s2 + s3)


@stage(inline="always")
def _term(values, order, e, j, squared):
    v = float(values[order[e, j] if order.shape[0] > 0 else j])
    return v * v if squared else v


@stage(inline="always")
def grad_tiles(X, y, weights, order, e, start, stop, params, work, labels, partials, losses, track, final, out):
    """partials[t] += the gradient sums of tile t of samples start..stop-1, tiles spread over the slots, and
    losses[t] = the sum of its samples' losses when track; final: the forward stages only (_grad_range).

    Every tile's blocks are those of the whole range (_block_size of stop - start), its last tile's too: so a
    full batch's training pass and the evaluation (the final pass over 0..n-1) make the same blocks and sum
    the same losses in the same order, and a pass's training loss is, to the bit, the evaluation of the
    parameters it started from (train()'s checkpoints take one for the other)."""
    d, h, k = X.shape[1], params[0].shape[1], params[2].shape[1]
    nslots = work.shape[0]
    ntiles, T = _n_tiles(stop - start, d, h)
    for s in prange(nslots):
        rows = _rows(work[s], d, h, k)
        size = _block_size(rows[1], stop - start)
        for t in range(s, ntiles, nslots):
            G = partials[0] if final else partials[t]  # final: no gradient, and fewer partials than n's tiles
            losses[t] = _grad_range(X, y, weights, order, e, start + t * T, min(start + (t + 1) * T, stop), size,
                                    params, rows, labels[s], G, track, final, out)


# SplitMix64 (Steele, Lea and Flood, 2014): the increment of its state, and its finaliser's multipliers.
GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z):
    """SplitMix64's finaliser: a bijection of 64-bit integers, each output bit depending on every input bit."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


_mix = subroutine(_mix, nbtypes.uint64)


@kernel
def orders(seed, first, out):
    """out[r] = the order in which pass first + r of a shuffled mini-batch run visits the samples: a uniformly
    random permutation of 0..n-1 (out (passes, n) int64) by Fisher and Yates's shuffle, drawing from SplitMix64
    started at a hash of (seed, pass). Any pass's order is known without drawing the ones before it, so a run
    continued with init= goes on as one long run would.

    Sorting n hashes took 80-100 ms a pass for 800,000 to 1,000,000 samples, 3 to 4 times the pass itself on
    make_moons' shape; this takes 6 ms (measured).
    """
    n = out.shape[1]
    for r in range(out.shape[0]):
        state = _mix(_mix(np.uint64(seed) + GOLDEN) + np.uint64(first + r))
        for i in range(n):
            out[r, i] = i
        for i in range(n - 1, 0, -1):
            state += GOLDEN
            j = np.int64(_mix(state) % np.uint64(i + 1))  # the bias of a 64-bit draw mod i + 1 is below 2**-32
            out[r, i], out[r, j] = out[r, j], out[r, i]
