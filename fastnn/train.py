"""train(): validate, initialise, run the kernels in chunks of passes while watching the loss, return a Model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from . import _validate as check
from . import engine, reference
from .errors import Cancelled, DivergenceError
from .model import Model

# A loss this many times the larger of its start and the trivial loss (see _trivial_loss), at any check,
# is divergence even while it is finite: relu runs with too large a step grow their weights geometrically
# and would otherwise run on for hours, and make_moons(1_000_000) with the summed gradient reaches 1e5 in
# a few passes. In a survey of 1,700 runs (make_moons, iris, digits, circles, blobs; every activation and
# output, both reductions, steps from 0.01 to 20 on the mean loss) the runs that went on to end below their
# start rose at most 220x that bound on the way. A run that merely stays above it (its units saturated)
# looks like those on the way to recovery, so it is judged at its end (see _Monitor.finish).
EXPLODED = 1000.0

# Work per kernel call, in multiply-adds (n (dh + hk + h + k) per pass) plus a fixed cost per update
# (about 1e4 multiply-adds' worth with theta.size extra): measured at 0.5 to 2.7 ns each on one core, a call
# then takes about 0.15 s at most, so that Ctrl-C, a stop flag and the progress bar are served between
# calls, while the tutorial case still does its 1000 passes between loss records in one call.
_CHUNK_WORK = 5e7
_UPDATE_WORK = 1e4


class Flag(Protocol):
    def is_set(self) -> bool: ...


class _Bar(tqdm):
    # No monitor thread: tqdm otherwise starts one on its first bar (even a disabled one) and leaves it
    # running for the life of the process; the bar is updated between chunks of passes anyway.
    monitor_interval = 0


def init_params(d: int, h: int, k: int, seed: int, dtype) -> np.ndarray:
    """The tutorial's initialisation, flat: W1 = randn(d, h)/sqrt(d), b1 = 0, W2 = randn(h, k)/sqrt(h), b2 = 0."""
    rng = np.random.RandomState(seed)
    W1 = rng.randn(d, h) / np.sqrt(d)
    W2 = rng.randn(h, k) / np.sqrt(h)
    return np.concatenate([W1.ravel(), np.zeros(h), W2.ravel(), np.zeros(k)]).astype(dtype)


def orders(seed: int, first: int, count: int, n: int) -> np.ndarray:
    """The sample orders of passes first..first+count-1 of a mini-batch run (count, n).

    Pass p visits the samples in the order of a hash of (seed, p, i) (the SplitMix64 finaliser), so
    any pass's order is known without drawing the ones before it: a run continued with init= goes on
    exactly as one long run would.
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + np.arange(first, first + count, dtype=np.uint64)[:, None] * np.uint64(0xD1B54A32D192ED03)
             + np.arange(n, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return np.argsort(z, axis=1).astype(np.int64)


@dataclass(frozen=True)
class Settings:
    """train()'s hyperparameters, validated."""

    hidden: int
    passes: int
    lr: float
    reg: float
    seed: int
    activation: str
    output: str
    reduction: str
    batch_size: int | None
    backend: str
    loss_every: int
    shuffle: bool
    n_threads: int | None
    solver: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8

    @property
    def kernel_solver(self) -> str:
        """The kernels' update (kernels.SOLVERS): plain "sgd" when there is no momentum."""
        return "adam" if self.solver == "adam" else "momentum" if self.momentum > 0 else "sgd"

    def optimiser(self) -> dict[str, Any]:
        """The optimiser's settings, as a Model keeps them beside its state."""
        return dict(solver=self.kernel_solver, momentum=self.momentum, nesterov=self.nesterov, beta_1=self.beta_1,
                    beta_2=self.beta_2, epsilon=self.epsilon)

    def stored(self, passes: int) -> dict[str, Any]:
        """The settings a Model keeps (and a model file stores), after ``passes`` passes in all."""
        return dict(activation=self.activation, output=self.output, reduction=self.reduction, lr=self.lr,
                    reg=self.reg, passes=passes, seed=self.seed, batch_size=self.batch_size, backend=self.backend)


def train(X: ArrayLike, y: ArrayLike, hidden: int = 3, *, passes: int = 20000, lr: float = 0.01,
          reg: float = 0.01, seed: int = 0, activation: str = "tanh", output: str = "softmax",
          reduction: str = "sum", batch_size: int | None = None, dtype=None, backend: str = "numba",
          loss_every: int | None = None, progress: bool = False, n_classes: int | None = None,
          n_threads: int | None = None, init: Model | None = None, shuffle: bool = True,
          stop: Flag | None = None, solver: str = "sgd", momentum: float = 0.0, nesterov: bool = False,
          beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
          sample_weight: ArrayLike | None = None) -> Model:
    """Train a one-hidden-layer network by gradient descent.

    Parameters
    ----------
    X : array (n, d)
        Features; any real dtype, any memory order (converted once to C order in ``dtype``).
    y : array (n,)
        Integer class labels 0..K-1.
    hidden : int
        Hidden units.
    passes : int
        Passes over the data (epochs); with ``batch_size`` each pass makes ceil(n / batch_size) updates.
    lr, reg : float
        Learning rate and L2 strength (the tutorial's epsilon = 0.01 and reg_lambda = 0.01).
    seed : int
        Seeds the initialisation (the tutorial's ``np.random.seed(0)``) and the mini-batch shuffles.
    activation : {"tanh", "sigmoid", "relu"}
    output : {"softmax", "sigmoid"}
        Softmax with cross-entropy, or sigmoid outputs with squared error.
    reduction : {"sum", "mean"}
        "sum" steps along the summed gradient, as the tutorial does (the step grows with n); "mean"
        divides it by the number of samples in the batch (use it for large n).
    batch_size : int, optional
        Mini-batch size, over a seeded shuffle each pass; None for full-batch gradient descent.
    dtype : {None, "float64", "float32"}
        Precision of data, weights and kernels; None keeps float32 X in float32, else float64.
    backend : {"numba", "numpy"}
        The Numba kernels, or the pure-NumPy reference (same numbers, slower).
    loss_every : int, optional
        Record the training loss every this many passes (``Model.loss_history``); default: about 100
        records over the run (max(1, passes // 100)).
    progress : bool
        Show a progress bar, with the last loss.
    n_classes : int, optional
        K, when y need not show every class (default: max(y) + 1, and y must hold two classes).
    n_threads : int, optional
        Threads for large n (default: all of Numba's); 1 runs the serial kernel.
    init : Model, optional
        Start from this model's parameters instead of a fresh initialisation.
    shuffle : bool
        With ``batch_size``: draw a fresh seeded order of the samples every pass (default), or take the
        mini-batches in the order of X (False).
    stop : threading.Event or any object with ``is_set()``, optional
        Checked between kernel calls (at least every ~0.15 s); when set, the run raises ``Cancelled``.
    solver : {"sgd", "adam"}
        How each gradient becomes a step, as scikit-learn's MLPs take it: "sgd" (the tutorial's plain
        step ``lr * g`` when momentum is 0) or "adam" (``lr`` is Adam's step size, scikit-learn's
        ``learning_rate_init``; its default there is 0.001).
    momentum : float in [0, 1)
        "sgd" only: velocity ``v = momentum * v - lr * g``, step ``v`` (or ``momentum * v - lr * g`` with
        ``nesterov=True``). scikit-learn's default is 0.9 with Nesterov's; fastnn's 0 is the tutorial's.
    beta_1, beta_2 : float in [0, 1); epsilon : float > 0
        "adam" only: the decay rates of the moment estimates and the denominator's guard.

        The optimiser's state (velocity, moments, step count) stays with the Model in memory: ``init=``
        continues a run with it exactly, as one long run would. Model files do not store it (a loaded
        model continues with a fresh optimiser).
    sample_weight : array (n,), optional
        Weights of the samples, as scikit-learn's: each sample's gradient and loss are times its weight,
        and with ``reduction="mean"`` a batch's gradient and the loss are divided by the sum of its weights
        instead of its size (a weight of 0 then drops the sample; a weight of 2 counts it twice).

    Returns
    -------
    Model

    Raises
    ------
    DivergenceError
        When the run failed: its parameters stopped being finite (checked after every update); its loss
        stopped being finite or rose above EXPLODED (1000) times the larger of its starting loss and the
        loss of predicting the class frequencies (checked after passes 1, 2, 4, 8, ... and then every
        ``loss_every`` passes, so a diverging run stops within a few passes); or it ended at or above the
        loss of predicting the class frequencies and above its starting loss (with ``init``, the loss
        of init's parameters on this data). The message gives the pass, lr and reduction, and what to try.
    Cancelled
        When ``stop`` was set.
    """
    s = _settings(hidden, passes, lr, reg, seed, activation, output, reduction, batch_size, backend, loss_every,
                  shuffle, n_threads, init, stop, solver, momentum, nesterov, beta_1, beta_2, epsilon)
    dtype = check.dtype_of(dtype if init is None or dtype is not None else init.dtype, X)
    X = check.features(X, dtype)
    n, d = X.shape
    y, k = check.labels(y, n, n_classes=n_classes if init is None else init.n_classes)
    weights = check.weights(sample_weight, n, X.dtype)
    if init is not None and (init.n_features, init.hidden) != (d, s.hidden):
        raise ValueError(f"init has {init.n_features} features and {init.hidden} hidden units; "
                         f"X has {d} features and hidden={s.hidden}")
    batch = n if s.batch_size is None else min(s.batch_size, n)
    run = engine.plan(s.backend, s.activation, s.output, X.dtype, d, s.hidden, k, n, batch, s.n_threads,
                      s.kernel_solver, weights is not None)
    _check_memory(n, d, s.hidden, k, batch, X.dtype, run.slots, shuffled=s.batch_size is not None and s.shuffle,
                  moments=0 if s.kernel_solver == "sgd" else 2)
    theta = init_params(d, s.hidden, k, s.seed, X.dtype) if init is None else init.theta.astype(X.dtype)
    done = 0 if init is None else init.settings["passes"]
    optimiser = _optimiser(s, theta.size, init)
    history = _fit(run, X, y, theta, k, s, batch, done, progress, stop, optimiser, weights)
    previous = [init.loss_history] if init is not None else []
    model = Model(theta, d, s.hidden, s.stored(done + s.passes), np.concatenate(previous + [history]))
    model.optimiser = dict(s.optimiser(), state=optimiser[0], steps=int(optimiser[1][5]))
    return model


def _optimiser(s: Settings, size: int, init: Model | None):
    """The optimiser's arrays for run: init's state when it was trained with the same optimiser, else fresh."""
    state, settings = engine.optimiser_arrays(s.kernel_solver, size, s.momentum, s.nesterov, s.beta_1, s.beta_2,
                                              s.epsilon)
    carried = getattr(init, "optimiser", None)
    if carried is not None and carried["solver"] == s.kernel_solver and carried["state"].shape == state.shape:
        state[:] = carried["state"]
        settings[5] = carried["steps"]
    return state, settings


def _settings(hidden, passes, lr, reg, seed, activation, output, reduction, batch_size, backend, loss_every,
              shuffle, n_threads, init, stop, solver="sgd", momentum=0.0, nesterov=False, beta_1=0.9,
              beta_2=0.999, epsilon=1e-8) -> Settings:
    """The hyperparameters, each checked (ValueError/TypeError naming it) before anything is allocated."""
    passes = check.integer(passes, "passes")
    if init is not None and not isinstance(init, Model):
        raise TypeError(f"init must be a fastnn.Model or None; got {type(init).__name__}")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(f"stop must be None or have an is_set() method (threading.Event); got {type(stop).__name__}")
    return Settings(
        hidden=check.integer(hidden, "hidden"), passes=passes,
        lr=check.real(lr, "lr", strict=True), reg=check.real(reg, "reg"), seed=check.seed(seed, "seed"),
        activation=check.choice(activation, "activation", reference.ACTIVATIONS),
        output=check.choice(output, "output", reference.OUTPUTS),
        reduction=check.choice(reduction, "reduction", check.REDUCTIONS),
        batch_size=None if batch_size is None else check.integer(batch_size, "batch_size"),
        backend=check.choice(backend, "backend", check.BACKENDS),
        loss_every=max(1, passes // 100) if loss_every is None else check.integer(loss_every, "loss_every"),
        shuffle=check.flag(shuffle, "shuffle"),
        n_threads=None if n_threads is None else check.integer(n_threads, "n_threads"),
        solver=check.choice(solver, "solver", check.SOLVERS), momentum=check.fraction(momentum, "momentum"),
        nesterov=check.flag(nesterov, "nesterov"), beta_1=check.fraction(beta_1, "beta_1"),
        beta_2=check.fraction(beta_2, "beta_2"), epsilon=check.real(epsilon, "epsilon", strict=True))


def _check_memory(n, d, h, k, batch, dtype, slots, shuffled, moments=0):
    """Every allocation of the run, checked against the memory available before any is made (moments: the
    optimiser's float64 arrays of one value per parameter)."""
    check.network(d, h, k, dtype, slots)
    size = reference.size(d, h, k)
    nbytes = engine.work_bytes(n, d, h, k, batch, dtype, slots) + size * (np.dtype(dtype).itemsize + 8 * moments)
    if shuffled:  # a chunk's sample orders and the hashes they are sorted from: at most 3 arrays of n int64
        nbytes += 3 * 8 * n * max(1, _passes_per_call(n, d, h, k, batch))
    check.memory(nbytes, f"training on X with {n} rows (hidden={h}, {k} classes)",
                 "use fewer samples, a smaller batch_size, or fewer hidden units")


def _passes_per_call(n, d, h, k, batch):
    work = n * (d * h + h * k + h + k) + -(-n // batch) * (reference.size(d, h, k) + _UPDATE_WORK)
    return max(1, int(_CHUNK_WORK // work))


def _checkpoints(start, passes, loss_every):
    """The passes (counted from the run's start) after which the loss is checked: 1, 2, 4, ... while below
    loss_every, then every loss_every passes of the whole history, and the last pass."""
    points = {p for p in (2**i for i in range(passes.bit_length())) if p < loss_every and p <= passes}
    first = loss_every - start % loss_every
    points.update(range(first, passes + 1, loss_every))
    points.add(passes)
    return sorted(points)


def _fit(run, X, y, theta, k, s: Settings, batch, done, progress, stop, optimiser, weights):
    """Run the passes in chunks, checking the loss at the checkpoints; returns the (pass, loss) records."""
    n, d = X.shape
    params = reference.split(theta, d, s.hidden, k)
    shuffled = s.batch_size is not None and s.shuffle
    no_order, no_outputs = np.empty((0, 0), np.int64), np.empty((0, k), X.dtype)
    chunk = _passes_per_call(n, d, s.hidden, k, batch)

    def call(first, passes, evaluate):
        """Passes first..first+passes-1 of this run, then (evaluate) the loss: (passes completed, loss)."""
        order = orders(s.seed, done + first, passes, n) if shuffled and passes else no_order
        return run(X, y, order, theta, params, passes, batch, s.lr, s.reg, s.reduction == "mean", evaluate,
                   no_outputs, optimiser, weights)

    monitor = _Monitor(s, X, done, _trivial_loss(y, k, s.output, weights), call(0, 0, True)[1])
    records = [] if done else [(0, monitor.initial)]
    at = 0
    with _Bar(total=s.passes, unit="pass", disable=not progress, desc=f"train h={s.hidden}") as bar:
        for point in _checkpoints(done, s.passes, s.loss_every):
            while at < point:
                if stop is not None and stop.is_set():
                    raise Cancelled(f"training stopped after {done + at} passes", at=done + at)
                step = min(chunk, point - at)
                completed, loss = call(at, step, at + step == point)
                if completed < step:
                    monitor.diverged(done + at + completed + 1, "the parameters became NaN or inf")
                at += step
                bar.update(step)
            monitor.check(done + at, loss)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            if (done + at) % s.loss_every == 0 or at == s.passes:
                records.append((done + at, loss))
    monitor.finish(done + at, records[-1][1])
    return np.array(records, float).reshape(-1, 2)


def _trivial_loss(y, k, output, weights=None):
    """The data loss of predicting the class frequencies (weighted, with weights) for every sample: what a
    network with zero weights and the best biases gets, so a run that ends above it has done worse than
    learning nothing."""
    f = np.bincount(y, weights, minlength=k) / (len(y) if weights is None else np.sum(weights, dtype=np.float64))
    if output == "softmax":
        return float(-np.sum(f[f > 0] * np.log(f[f > 0])))
    return float(0.5 * np.sum(f * (1 - f)))


class _Monitor:
    """The divergence rules of train(), applied to the losses at the checkpoints."""

    def __init__(self, s: Settings, X, done, trivial, initial):
        self.s, self.X, self.done, self.trivial, self.initial = s, X, done, trivial, initial
        if not math.isfinite(initial):
            self.diverged(done, f"the loss of the starting parameters is {initial}")

    def check(self, at, loss):
        if not math.isfinite(loss):
            self.diverged(at, f"the loss became {loss}")
        worst = max(self.initial, self.trivial)
        if loss > EXPLODED * worst:
            self.diverged(at, f"the loss grew from {self.initial:.4g} to {loss:.4g}")

    def finish(self, at, loss):
        if loss >= self.trivial and loss > self.initial:
            self.diverged(at, f"the loss ended at {loss:.4g}, above its start ({self.initial:.4g}) and no better "
                              f"than predicting the class frequencies ({self.trivial:.4g})")

    def diverged(self, at, what):
        s, n = self.s, self.X.shape[0]
        scale = float(np.abs(self.X).max())
        if at == self.done:
            hint = f"the inputs overflow the network (max |X| = {scale:.3g}): scale the features"
        elif scale > 1e4:
            hint = f"the inputs are large (max |X| = {scale:.3g}): scale the features (e.g. StandardScaler)"
        elif s.reduction == "sum" and (s.batch_size or n) > 1:
            hint = (f"with reduction='sum' the step grows with the number of samples in a batch "
                    f"({min(n, s.batch_size or n)}): use reduction='mean' or an lr that many times smaller")
        else:
            hint = "try a smaller lr"
        raise DivergenceError(f"training diverged at pass {at}: {what} (lr={s.lr}, reduction={s.reduction!r}); "
                              f"{hint}", at=at, lr=s.lr, reduction=s.reduction, n=n)
