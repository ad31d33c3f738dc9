"""train(): validate, initialise, run the kernels in chunks of passes while watching the loss, return a Model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from . import _validate as check
from . import engine, kernels, reference
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


class _NoBar:
    """The bar of a run without progress: a disabled tqdm still costs 0.2 ms to make (it scans every bar of
    the process), more than a one-pass call of a small network, which the estimator makes each pass."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass

    def set_postfix(self, **kwargs):
        pass


INIT_SCHEMES = ("tutorial", "glorot")


def init_params(d: int, h: int, k: int, seed: int, dtype, scheme: str = "tutorial",
                activation: str = "tanh") -> np.ndarray:
    """Initial parameters, flat, drawn from ``RandomState(seed)``.

    "tutorial": W1 = randn(d, h)/sqrt(d), b1 = 0, W2 = randn(h, k)/sqrt(h), b2 = 0.
    "glorot": scikit-learn's MLP initialisation, every weight and bias of a layer of fan_in inputs and fan_out
    units uniform in +-sqrt(c / (fan_in + fan_out)), c = 2 for sigmoid hidden units and 6 otherwise, drawn
    in the order W1, b1, W2, b2.
    """
    rng = np.random.RandomState(seed)
    if scheme == "glorot":
        factor = 2 if activation == "sigmoid" else 6
        parts = []
        for fan_in, fan_out in ((d, h), (h, k)):
            bound = np.sqrt(factor / (fan_in + fan_out))
            parts += [rng.uniform(-bound, bound, fan_in * fan_out), rng.uniform(-bound, bound, fan_out)]
        return np.concatenate(parts).astype(dtype)
    W1 = rng.randn(d, h) / np.sqrt(d)
    W2 = rng.randn(h, k) / np.sqrt(h)
    return np.concatenate([W1.ravel(), np.zeros(h), W2.ravel(), np.zeros(k)]).astype(dtype)


def orders(seed: int, first: int, count: int, n: int, backend: str = "numba") -> np.ndarray:
    """The sample orders of passes first..first+count-1 of a mini-batch run (count, n): each a uniformly
    random permutation, drawn from a generator started at a hash of (seed, pass) (kernels.orders, or its
    NumPy twin for the numpy backend), so any pass's order is known without drawing the ones before it: a run
    continued with init= goes on exactly as one long run would.
    """
    out = np.empty((count, n), np.int64)
    (reference if backend == "numpy" else kernels).orders(seed, first, out)
    return out


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
    init_scheme: str = "tutorial"
    running_loss: bool = False

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
          sample_weight: ArrayLike | None = None, init_scheme: str = "tutorial",
          running_loss: bool = False, judge_end: bool = True) -> Model:
    """Train a one-hidden-layer network by gradient descent.

    Parameters
    ----------
    X : array (n, d)
        Features; any real dtype, any memory order (converted once to C order in ``dtype``).
    y : array (n,) or (n, K)
        Integer class labels 0..K-1; with ``output="identity"``, real targets (one column each).
    hidden : int
        Hidden units.
    passes : int
        Passes over the data (epochs); with ``batch_size`` each pass makes ceil(n / batch_size) updates.
    lr, reg : float
        Learning rate and L2 strength (the tutorial's epsilon = 0.01 and reg_lambda = 0.01).
    seed : int
        Seeds the initialisation (the tutorial's ``np.random.seed(0)``) and the mini-batch shuffles.
    activation : {"tanh", "sigmoid", "relu"}
    output : {"softmax", "sigmoid", "identity"}
        Softmax with cross-entropy, sigmoid outputs with squared error, or identity outputs with squared
        error (regression: a sample's loss is half its summed squared error over the K targets).
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
        K, when y need not show every class (default: max(y) + 1, and y must hold two classes); for
        identity outputs, the number of targets if given (y's columns). With ``init``, init's (a different
        number is a ValueError).
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
    init_scheme : {"tutorial", "glorot"}
        How a fresh run draws its parameters from ``seed`` (see ``init_params``): the tutorial's (zero biases)
        or scikit-learn's MLP initialisation (Glorot-uniform weights and biases).
    running_loss : bool
        Record (and check) each pass's training loss as the pass itself computes it, as scikit-learn's MLPs
        do for ``loss_curve_``: the samples' losses of each batch and the L2 term at the batch's start,
        summed over the batches, over n. For a full batch this is the loss of the parameters the pass started
        from. Default: the loss on all the data after the pass. With mini-batches (or shuffled full batches)
        that costs a forward pass over the data per record (half a pass's arithmetic; for MNIST-shaped data
        and a record each pass, a third of the time). A full batch in the order of X computes it in the
        next pass's forward, to the same bits, so only the run's last loss costs an evaluation.
    judge_end : bool
        Apply the rule on where the run ended (see Raises): False returns the model of a run that ended at
        or above the trivial loss and above its start, as the tutorial's code returns whatever its passes
        made (a run of a pass or a few with large steps may end there on its way down). The rules on the
        run's course apply either way.

    Returns
    -------
    Model

    Raises
    ------
    DivergenceError
        When the run failed: its parameters stopped being finite (checked after every update); its loss
        stopped being finite or rose above EXPLODED (1000) times the larger of its starting loss and the
        trivial loss, that of predicting the class frequencies (identity outputs: the targets' means)
        (checked after passes 1, 2, 4, 8, ... and then every ``loss_every`` passes, so a diverging run stops
        within a few passes; with full batches, the loss after pass p comes with the passes up to the next
        checkpoint); or it ended at or above the trivial loss and above its starting loss (with
        ``init``, the loss of init's parameters on this data). The message gives the pass, lr and reduction,
        and what to try.
    Cancelled
        When ``stop`` was set.
    """
    s = _settings(hidden, passes, lr, reg, seed, activation, output, reduction, batch_size, backend, loss_every,
                  shuffle, n_threads, init, stop, solver, momentum, nesterov, beta_1, beta_2, epsilon, init_scheme,
                  running_loss)
    judge_end = check.flag(judge_end, "judge_end")
    session = Session(X, y, s, dtype, n_classes, init, stop, sample_weight)
    session.advance(s.passes, progress=progress)
    return session.finish(judge=judge_end)


class Session:
    """A run between its kernel calls: the data validated, the kernels chosen, the parameters, the optimiser's
    state, the divergence rules and the loss records.

    train() makes one and advances it by all its passes. The estimators advance theirs a pass at a time, their
    stopping rules and learning-rate schedules deciding between passes, so a pass costs a kernel call and not
    a whole train() call's validation and set-up.
    """

    def __init__(self, X, y, s: Settings, dtype=None, n_classes=None, init: Model | None = None,
                 stop: Flag | None = None, sample_weight=None):
        dtype = check.dtype_of(dtype if init is None or dtype is not None else init.dtype, X)
        X = check.features(X, dtype)
        n, d = X.shape
        if init is not None and n_classes is not None and check.integer(n_classes, "n_classes") != init.n_classes:
            raise ValueError(f"n_classes={n_classes}, but init has {init.n_classes} outputs: leave n_classes out "
                             "to continue init, or train afresh")
        y, k = check.outcomes(y, n, s.output, X.dtype, n_classes=n_classes if init is None else init.n_classes)
        weights = check.weights(sample_weight, n, X.dtype)
        if init is not None and (init.n_features, init.hidden) != (d, s.hidden):
            raise ValueError(f"init has {init.n_features} features and {init.hidden} hidden units; "
                             f"X has {d} features and hidden={s.hidden}")
        self.batch = n if s.batch_size is None else min(s.batch_size, n)
        self.shuffled = s.batch_size is not None and s.shuffle  # each pass visits the samples in a drawn order
        self.run = engine.plan(s.backend, s.activation, s.output, X.dtype, d, s.hidden, k, n, self.batch,
                               s.n_threads, s.kernel_solver, weights is not None)
        _check_memory(n, d, s.hidden, k, self.batch, X.dtype, self.run.slots,
                      shuffled=self.shuffled, moments=0 if s.kernel_solver == "sgd" else 2)
        self.theta = (init_params(d, s.hidden, k, s.seed, X.dtype, s.init_scheme, s.activation) if init is None
                      else init.theta.astype(X.dtype))
        self.s, self.X, self.y, self.k, self.weights, self.stop, self.init = s, X, y, k, weights, stop, init
        self.done = 0 if init is None else init.settings["passes"]  # passes before this run
        self.at = 0  # passes of this run
        self.optimiser = _optimiser(s, self.theta.size, init)
        self.params = reference.split(self.theta, d, s.hidden, k)
        self.chunk = _passes_per_call(n, d, s.hidden, k, self.batch)
        self.monitor = _Monitor(s, X, self.done, _trivial_loss(y, k, s.output, weights))
        self.records = []
        self._evaluators = {}  # engines of evaluations by outputs(), by number of rows
        self._buffers = engine.make_buffers(X, y, self.theta, self.params, self.batch, self.run.slots, weights)
        self._no_outputs = np.empty((0, k), X.dtype)
        # With full batches, a pass's forward computes the loss of the parameters it starts from, so the loss
        # of the starting parameters comes with the first call (with running_loss: 8% of an MNIST-shaped
        # full-batch fit, measured). In the order of X it is, to the bit, their evaluation (kernels'
        # grad_tiles), so every checkpoint but an advance's last takes its loss from the next call's first pass
        # (fused; pending: the pass whose loss that call gives). An evaluation costs three quarters of a pass
        # (34 against 44 ms, 1,000,000 samples, H = 64), and a run of fewer than 200 passes checks every pass.
        self.fused = self.batch == n and not s.running_loss and not self.shuffled
        self.pending = self.done if self.fused else None
        if self.batch < n or not (s.running_loss or self.fused):
            self._start(self._call(0, True, s.lr)[1])

    def _start(self, initial: float) -> None:
        """The loss of the starting parameters, to the divergence rules and (a fresh run) the records."""
        self.monitor.start(initial)
        if not self.done:
            self.records.append((0, initial))

    def _call(self, passes, evaluate, lr, track=0):
        """The next `passes` passes at rate lr, then (evaluate) the loss: (passes completed, loss, the training
        losses of the first `track` passes or None)."""
        s, n = self.s, self.X.shape[0]
        order = orders(s.seed, self.done + self.at, passes, n, s.backend) if self.shuffled and passes else _NO_ORDER
        running = np.empty(track) if track else None
        done, loss = self.run(self.X, self.y, order, self.theta, self.params, passes, self.batch, lr, s.reg,
                              s.reduction == "mean", evaluate, self._no_outputs, self.optimiser, self.weights, running,
                              self._buffers)
        return done, loss, running

    def _reached(self, at, loss, bar, last=False):
        """The loss after `at` passes (of the whole history): checked, and recorded every loss_every passes
        and at the end of an advance (last)."""
        self.monitor.check(at, loss)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if at % self.s.loss_every == 0 or last:
            self.records.append((at, loss))

    def advance(self, passes: int, lr: float | None = None, progress: bool = False) -> float:
        """Run `passes` more passes (at rate lr, default the settings'), in chunks, checking the loss at the
        checkpoints (see _checkpoints) and recording it every loss_every passes of the whole history and after
        the last; returns the last loss. With running_loss, the loss is the last pass's training loss, and
        nothing is evaluated."""
        s, start = self.s, self.at
        lr = s.lr if lr is None else lr
        bar = _Bar(total=passes, unit="pass", desc=f"train h={s.hidden}") if progress else _NoBar()
        with bar:
            for point in _checkpoints(self.done + start, passes, s.loss_every):
                last = point == passes
                while self.at < start + point:
                    if self.stop is not None and self.stop.is_set():
                        raise Cancelled(f"training stopped after {self.done + self.at} passes", at=self.done + self.at)
                    step = min(self.chunk, start + point - self.at)
                    evaluate = self.at + step == start + point and (last or not self.fused) and not s.running_loss
                    track = step if s.running_loss else 1 if self.pending is not None else 0
                    completed, loss, running = self._call(step, evaluate, lr, track)
                    if running is not None:  # running[0] is written even when the first pass diverged
                        if self.monitor.initial is None:  # full batches: the loss of the starting parameters
                            self._start(float(running[0]))
                        elif self.pending is not None:
                            self._reached(self.pending, float(running[0]), bar)
                        self.pending = None
                        if s.running_loss:
                            loss = running[-1] if completed == step else np.nan
                    if completed < step:
                        self.monitor.diverged(self.done + self.at + completed + 1, "the parameters became NaN or inf")
                    self.at += step
                    bar.update(step)
                if self.fused and not last:
                    self.pending = self.done + self.at
                else:
                    self._reached(self.done + self.at, loss, bar, last)
        return self.records[-1][1]

    def outputs(self, X: np.ndarray, P: np.ndarray) -> np.ndarray:
        """The network's outputs on X (checked: C-ordered, the run's dtype) into P (n, k), with the parameters
        as they are now: an evaluation by the kernels, with no checks or allocations of a Model's predict."""
        s, (n, d) = self.s, X.shape
        run = self._evaluators.get(n)
        if run is None:
            run = self._evaluators[n] = engine.plan(s.backend, s.activation, s.output, X.dtype, d, s.hidden, self.k,
                                                    n, n_threads=s.n_threads)
        no_y = np.empty((0, self.k), X.dtype) if s.output == "identity" else np.empty(0, np.int64)
        with np.errstate(all="ignore"):
            run(X, no_y, _NO_ORDER, self.theta, self.params, 0, n, 1.0, s.reg, False, False, P)
        return P

    def model(self, copy: bool = False) -> Model:
        """The Model of the parameters now (copy: of copies of them and the optimiser's state, which later
        passes leave alone; else sharing them)."""
        theta, state = self.theta, self.optimiser[0]
        if copy:
            theta, state = theta.copy(), state.copy()
        previous = [self.init.loss_history] if self.init is not None else []
        model = Model(theta, self.X.shape[1], self.s.hidden, self.s.stored(self.done + self.at),
                      np.concatenate(previous + [np.array(self.records, float).reshape(-1, 2)]))
        model.optimiser = dict(self.s.optimiser(), state=state, steps=int(self.optimiser[1][5]))
        return model

    def finish(self, judge: bool = True) -> Model:
        """The trained Model, once the run's end passes the divergence rule on where it ended (the loss of the
        parameters it ended with: with running_loss, evaluated here, as the last pass's training loss is that
        of parameters it went on to change). judge=False: no such rule (the estimators' continuations)."""
        if judge:
            loss = self._call(0, True, self.s.lr)[1] if self.s.running_loss else self.records[-1][1]
            self.monitor.finish(self.done + self.at, loss)
        return self.model()


_NO_ORDER = np.empty((0, 0), np.int64)


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
              beta_2=0.999, epsilon=1e-8, init_scheme="tutorial", running_loss=False) -> Settings:
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
        beta_2=check.fraction(beta_2, "beta_2"), epsilon=check.real(epsilon, "epsilon", strict=True),
        init_scheme=check.choice(init_scheme, "init_scheme", INIT_SCHEMES),
        running_loss=check.flag(running_loss, "running_loss"))


def _check_memory(n, d, h, k, batch, dtype, slots, shuffled, moments=0):
    """Every allocation of the run, checked against the memory available before any is made (moments: the
    optimiser's float64 arrays of one value per parameter)."""
    check.network(d, h, k, dtype, slots)
    size = reference.size(d, h, k)
    nbytes = engine.work_bytes(n, d, h, k, batch, dtype, slots) + size * (np.dtype(dtype).itemsize + 8 * moments)
    if shuffled:  # a chunk's sample orders: n int64 a pass
        nbytes += 8 * n * max(1, _passes_per_call(n, d, h, k, batch))
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


def _trivial_loss(y, k, output, weights=None):
    """The data loss of predicting the class frequencies (identity outputs: the targets' means), weighted
    with weights, for every sample: what a network with zero weights and the best biases gets, so a run that
    ends above it has done worse than learning nothing."""
    if output == "identity":
        w = np.ones(len(y)) if weights is None else weights.astype(np.float64)
        mean = w @ y / np.sum(w)
        return float(0.5 * np.sum(w @ (y - mean) ** 2) / np.sum(w))
    f = np.bincount(y, weights, minlength=k) / (len(y) if weights is None else np.sum(weights, dtype=np.float64))
    if output == "softmax":
        return float(-np.sum(f[f > 0] * np.log(f[f > 0])))
    return float(0.5 * np.sum(f * (1 - f)))


class _Monitor:
    """The divergence rules of train(), applied to the losses at the checkpoints."""

    def __init__(self, s: Settings, X, done, trivial):
        self.s, self.X, self.done, self.trivial = s, X, done, trivial
        self.initial = None  # until start()

    def start(self, initial):
        self.initial = initial
        if not math.isfinite(initial):
            self.diverged(self.done, f"the loss of the starting parameters is {initial}")

    def check(self, at, loss):
        if not math.isfinite(loss):
            self.diverged(at, f"the loss became {loss}")
        worst = max(self.initial, self.trivial)
        if loss > EXPLODED * worst:
            self.diverged(at, f"the loss grew from {self.initial:.4g} to {loss:.4g}")

    def finish(self, at, loss):
        if loss >= self.trivial and loss > self.initial:
            trivial = "the targets' means" if self.s.output == "identity" else "the class frequencies"
            self.diverged(at, f"the loss ended at {loss:.4g}, above its start ({self.initial:.4g}) and no better "
                              f"than predicting {trivial} ({self.trivial:.4g})")

    def diverged(self, at, what):
        s, n = self.s, self.X.shape[0]
        scale = float(np.abs(self.X).max())
        if at == self.done:
            hint = f"the inputs overflow the network (max |X| = {scale:.3g}): scale the features"
        elif scale > 1e4:
            hint = f"the inputs are large (max |X| = {scale:.3g}): scale the features (e.g. StandardScaler)"
        elif s.solver == "adam":  # its step is about lr whatever the gradient's scale: the reduction is no cause
            hint = "try a smaller lr (Adam's steps are about lr in size, whatever the reduction)"
        elif s.reduction == "sum" and (s.batch_size or n) > 1:
            hint = (f"with reduction='sum' the step grows with the number of samples in a batch "
                    f"({min(n, s.batch_size or n)}): use reduction='mean' or an lr that many times smaller")
        else:
            hint = "try a smaller lr"
        if s.output == "identity":  # the step also grows with the targets' scale
            hint += "; with identity outputs, standardise the targets too (their errors set the step)"
        raise DivergenceError(f"training diverged at pass {at}: {what} (lr={s.lr}, reduction={s.reduction!r}); "
                              f"{hint}", at=at, lr=s.lr, reduction=s.reduction, n=n)
