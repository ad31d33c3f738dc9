"""sweep(): many independent trainings, on a thread pool or on any concurrent.futures.Executor.

Stopping. Every run gets a stop flag that train() checks between kernel calls (each at most about 0.15 s
of work). On Ctrl-C, a failed run or the caller's own ``stop``, the sweep sets that flag, cancels the runs
not started yet, and waits for the running ones to stop before it raises. The flag is a threading.Event
for threads of this process (the default pool, or any ThreadPoolExecutor) and a dask.distributed.Event for
a Dask cluster's executor; other executors have no channel to their workers, so there the runs not started
are cancelled and the running ones finish on their own.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import numbers
import os
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from . import _validate as check
from . import engine, reference
from .errors import Cancelled, DivergenceError, SweepError
from .model import call_bytes
from .train import train

__all__ = ["sweep", "SweepResult", "SweepError"]

COLUMNS = ("hidden", "reg", "seed", "passes", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
           "seconds")
# What best() looks for in each metric: losses and time are minimised, accuracies maximised.
METRICS = {"train_loss": min, "test_loss": min, "train_accuracy": max, "test_accuracy": max, "seconds": min}
# train() arguments that sweep() sets itself, per run or for every run, with what to do instead.
_OWN = {"seed": "pass seeds= instead", "n_threads": "every run uses the serial kernels (n_threads=1)",
        "init": "every run starts from the seeded initialisation"}


# How often the main thread looks at the caller's stop flag while it waits for runs, and how often a run
# on a Dask worker asks the scheduler whether its Event is set (each ask is a round trip): well within
# the second in which a sweep should stop.
_POLL = 0.1
# The longest wait for running threads to stop once their flag is set; they stop within a kernel call.
_STOP_WAIT = 10.0


class _Bar(tqdm):
    # No monitor thread: tqdm otherwise starts one with its first bar and keeps it for the process's life.
    monitor_interval = 0


class _Throttled:
    """A stop flag asked at most every ``interval`` seconds; once set, it stays set."""

    def __init__(self, flag, interval):
        self.flag, self.interval, self.next, self.set = flag, interval, 0.0, False

    def is_set(self):
        now = time.monotonic()
        if not self.set and now >= self.next:
            self.set, self.next = bool(self.flag.is_set()), now + self.interval
        return self.set


def _run(X, y, X_test, y_test, hidden, reg, seed, passes, kwargs, stop=None, poll=0.0):
    """One run of the grid, on a thread or a remote worker: train and score; plain arrays in, a row out.

    stop: the sweep's flag (None: no flag), asked at most every ``poll`` seconds if poll > 0.
    """
    if stop is not None and poll > 0:
        stop = _Throttled(stop, poll)
    if stop is not None and stop.is_set():  # a run that a worker took up after the sweep stopped
        raise Cancelled("the sweep was stopped before this run began", at=0)
    start = time.perf_counter()
    # n_threads=1: the serial nogil kernels, which many threads may run at once (docs/DESIGN.md)
    model = train(X, y, hidden, passes=passes, reg=reg, seed=seed, n_threads=1, stop=stop, **kwargs)
    seconds = time.perf_counter() - start
    tested = X_test is not None
    return dict(hidden=hidden, reg=reg, seed=seed, passes=passes,
                train_loss=model.loss(X, y), train_accuracy=model.score(X, y),
                test_loss=model.loss(X_test, y_test) if tested else None,
                test_accuracy=model.score(X_test, y_test) if tested else None,
                seconds=seconds, model=model)


class SweepResult:
    """The rows of a sweep, in grid order (hidden, then reg, then seed, each in the order given).

    Each row is a dict: hidden, reg, seed, passes, train_loss, train_accuracy, test_loss, test_accuracy
    (None without a test set), seconds (of training) and model (the trained ``fastnn.Model``).
    """

    def __init__(self, rows: Iterable[dict[str, Any]]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"SweepResult({len(self.rows)} runs)"

    @property
    def tested(self) -> bool:
        """Whether the runs were scored on a test set."""
        return bool(self.rows) and self.rows[0]["test_loss"] is not None

    def best(self, metric: str | None = None) -> dict[str, Any]:
        """The row with the best ``metric`` (default: test_loss, or train_loss without a test set).

        Losses and seconds are minimised, accuracies maximised; ties go to the first row in grid order.
        """
        if metric is None:
            metric = "test_loss" if self.tested else "train_loss"
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}; got {metric!r}")
        if metric.startswith("test_") and not self.tested:
            raise ValueError(f"metric {metric!r} needs a test set: sweep(..., test=0.3) or test=(X_test, y_test)")
        if not self.rows:
            raise ValueError("the sweep has no rows")
        return METRICS[metric](self.rows, key=lambda row: row[metric])

    def records(self) -> list[dict[str, Any]]:
        """The rows without their models: plain numbers, ready for JSON or a DataFrame."""
        return [{c: row[c] for c in COLUMNS} for row in self.rows]

    def table(self) -> str:
        """A text table of the rows, one line per run."""
        head = ("hidden", "reg", "seed", "passes", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
        fmt = ("{:d}", "{:g}", "{:d}", "{:d}", "{:.6f}", "{:.4f}", "{:.6f}", "{:.4f}", "{:.3f}")
        cells = [[("-" if row[c] is None else f.format(row[c])) for c, f in zip(COLUMNS, fmt)]
                 for row in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]
        return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [head, *cells])

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the rows, without the models, as CSV (empty cells for a missing test set)."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({c: ("" if v is None else v) for c, v in r.items()} for r in self.records())

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the rows, without the models, as a JSON list of objects (null for a missing test set)."""
        with open(path, "w") as f:
            json.dump(self.records(), f, indent=1)
            f.write("\n")


def _grid_values(values, name, convert):
    if isinstance(values, (numbers.Number, np.number)):
        values = (values,)
    elif isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {values!r}")
    values = tuple(convert(v, name) for v in values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    return values


def _flags(executor):
    """(the flag the sweep sets, what each run is given to read it, seconds between a run's asks).

    Threads of this process share a threading.Event; a Dask executor's runs get a dask.distributed.Event
    by name, asked through the scheduler; any other executor gets none (see the module's docstring).
    """
    if executor is None or isinstance(executor, ThreadPoolExecutor):
        flag = threading.Event()
        return flag, flag, 0.0
    client = getattr(executor, "_client", None)
    if type(executor).__module__.split(".")[0] == "distributed" and client is not None:
        from distributed import Event

        flag = Event(f"fastnn-sweep-{secrets.token_hex(8)}", client=client)
        return flag, flag, _POLL
    return None, None, 0.0


def _stop(futures, flag, pool):
    """Set the runs' flag, cancel the runs not started, and wait (briefly) for this process's running
    threads to stop."""
    if flag is not None:
        try:
            flag.set()
        except Exception:  # a scheduler gone away: the error being raised says more than this one
            pass
    for future in futures:
        future.cancel()
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    if isinstance(flag, threading.Event):
        wait([f for f in futures if not f.done()], timeout=_STOP_WAIT)


def _budget(X, X_test, k, hidden, grid, jobs, kwargs, local):
    """Check that the models of every run, and the runs working at the same time here, fit in memory."""
    d, dtype = X.shape[1], X.dtype
    n = max(X.shape[0], 0 if X_test is None else X_test.shape[0])
    kept = sum(reference.size(d, h, k) * dtype.itemsize for h, _, _ in grid)
    h = max(hidden)
    batch = min(kwargs.get("batch_size") or X.shape[0], X.shape[0])
    # A run: its parameters and the engine's buffers for training, then for scoring, and the outputs.
    run = (reference.size(d, h, k) * dtype.itemsize + engine.work_bytes(X.shape[0], d, h, k, batch, dtype, 1)
           + call_bytes(n, d, h, k, dtype, kwargs.get("backend", "numba"), 1, True) + n * k * (dtype.itemsize + 1))
    runs = f"{len(grid)} runs, {jobs} at a time, and their models" if local else f"the models of {len(grid)} runs"
    what = f"hidden={list(hidden)} ({runs})"
    if k > h:  # named by the larger of the two, which is what a typo made large
        what = f"n_classes={k} with {what}"
    check.memory(kept + (jobs * run if local else 0), what,
                 "sweep fewer or smaller networks" + (", or set n_jobs lower" if local else ""))


def sweep(X: ArrayLike, y: ArrayLike, hidden: int | Sequence[int] = (1, 2, 3, 4, 5, 20, 50), *,
          reg: float | Sequence[float] = (0.01,), seeds: int | Sequence[int] = (0,),
          test: float | tuple[ArrayLike, ArrayLike] | None = None, passes: int = 20000,
          executor: Executor | None = None, n_jobs: int | None = None, progress: bool = True,
          stop: Any = None, **train_kwargs: Any) -> SweepResult:
    """Train every combination of hidden size, L2 strength and seed, and score each model.

    Parameters
    ----------
    X : array (n, d)
    y : array (n,)
        Integer class labels 0..K-1.
    hidden, reg, seeds : int/float or sequences of them
        The grid: every combination is one run of ``fastnn.train``.
    test : None, float in (0, 1), or (X_test, y_test)
        A held-out test set, or the fraction of (X, y) to hold out by a stratified split seeded with
        ``seeds[0]`` (``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seeds[0])``);
        the runs then train on the rest.
    passes : int
        Passes of every run.
    executor : concurrent.futures.Executor, optional
        Where the runs go, e.g. ``dask.distributed.Client(address).get_executor()``; each task is a
        picklable top-level function of plain arrays and an explicit seed. Default: a thread pool here.
    n_jobs : int, optional
        Threads of the default pool (default: all cores); each runs the serial nogil kernels.
    progress : bool
        A progress bar over the runs (shown only on a terminal).
    stop : object with ``is_set()``, optional
        A flag (threading.Event) that stops the sweep when set: checked every 0.1 s while runs are going.
    **train_kwargs
        Passed to every ``fastnn.train`` call (lr, activation, output, reduction, batch_size, dtype,
        backend, loss_every, n_classes).

    Returns
    -------
    SweepResult
        Rows in grid order, equal bit for bit to a loop of ``train(..., n_threads=1)`` calls whatever
        ``n_jobs``, the executor and the order in which runs finish.

    Raises
    ------
    SweepError
        When a run fails: names its (hidden, reg, seed), with the worker's error as the cause.
    Cancelled
        When ``stop`` is set. On Ctrl-C the sweep stops its runs (see the module's docstring) and
        re-raises KeyboardInterrupt.
    """
    hidden = _grid_values(hidden, "hidden", check.integer)
    regs = _grid_values(reg, "reg", check.real)
    seeds = _grid_values(seeds, "seeds", check.seed)
    passes = check.integer(passes, "passes")
    if stop is not None and not callable(getattr(stop, "is_set", None)):
        raise TypeError(f"stop must have an is_set() method, as threading.Event has; got {type(stop).__name__}")
    for name in train_kwargs:
        if name in _OWN:
            raise TypeError(f"sweep() sets {name} itself: {_OWN[name]}")
    if executor is not None and n_jobs is not None:
        raise ValueError("n_jobs sizes the built-in thread pool: give executor or n_jobs, not both")
    n_jobs = engine.cores() if n_jobs is None else check.integer(n_jobs, "n_jobs")

    if train_kwargs.get("output") == "identity":
        raise ValueError("sweep() studies classifiers (it scores accuracy and plots decision boundaries): for "
                         "identity outputs, call fastnn.train in a loop or use NeuralNetRegressor with "
                         "scikit-learn's GridSearchCV")
    dtype = check.dtype_of(train_kwargs.get("dtype"), X)
    X = check.features(X, dtype)
    y, k = check.labels(y, X.shape[0], n_classes=train_kwargs.get("n_classes"))
    X_test = y_test = None
    if isinstance(test, (tuple, list)) and len(test) == 2:
        X_test = check.features(test[0], dtype, name="X_test", n_features=X.shape[1])
        y_test, _ = check.labels(test[1], X_test.shape[0], name="y_test", n_classes=k, x_name="X_test")
    elif isinstance(test, numbers.Real) and not isinstance(test, (bool, np.bool_)):
        if not 0 < test < 1:
            raise ValueError(f"test must be a fraction in (0, 1) or an (X_test, y_test) pair; got {test!r}")
        # What the stratified split needs, said here in fastnn's terms rather than by scikit-learn's split.
        n, counts = X.shape[0], np.bincount(y)
        held, present = math.ceil(float(test) * n), int(np.count_nonzero(counts))
        if min(held, n - held) < present:
            raise ValueError(f"test={test} of {n} samples holds out {held} and trains on {n - held}: a split "
                             f"stratified by class needs at least {present} (one per class) on each side")
        if counts[counts > 0].min() < 2:
            raise ValueError(f"test={test}: a split stratified by class needs 2 samples of each class; class "
                             f"{int(np.flatnonzero(counts == 1)[0])} has 1")
        from sklearn.model_selection import train_test_split

        X, X_test, y, y_test = train_test_split(X, y, test_size=float(test), stratify=y, random_state=seeds[0])
    elif test is not None:
        what = f"a {type(test).__name__} of {len(test)}" if isinstance(test, (tuple, list)) else repr(test)
        raise TypeError(f"test must be None, a fraction in (0, 1) or an (X_test, y_test) pair; got {what}")
    kwargs = dict(train_kwargs, n_classes=k)  # the split may leave a class out of y; the models keep K
    grid = list(itertools.product(hidden, regs, seeds))
    local = executor is None or isinstance(executor, ThreadPoolExecutor)
    jobs = min(n_jobs if executor is None else getattr(executor, "_max_workers", n_jobs), len(grid))
    _budget(X, X_test, k, hidden, grid, jobs, kwargs, local)

    # One pass of the first run, here: bad train_kwargs raise train's own error before anything is sent
    # out, and the kernels are compiled (or loaded) once, not by every thread at the same time. Whether a
    # run diverges is that run's result, which one pass does not tell.
    try:
        train(X, y, hidden[0], passes=1, reg=regs[0], seed=seeds[0], n_threads=1, **kwargs)
    except DivergenceError:
        pass

    # A run costs about hidden x passes: the largest go first so that the workers finish together.
    order = sorted(range(len(grid)), key=lambda i: -grid[i][0])
    flag, remote, poll = _flags(executor)
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="fastnn-sweep") if executor is None else None
    runner = executor if executor is not None else pool
    rows, futures = [None] * len(grid), {}
    try:
        with _Bar(total=len(grid), unit="run", desc="sweep", disable=None if progress else True) as bar:
            for i in order:
                h, r, s = grid[i]
                flagged = (remote, poll) if remote is not None else ()
                futures[runner.submit(_run, X, y, X_test, y_test, h, r, s, passes, kwargs, *flagged)] = i
            pending = set(futures)
            while pending:
                # A timed wait, so that Ctrl-C and the caller's stop are seen at once on every platform
                done, pending = wait(pending, timeout=_POLL, return_when=FIRST_COMPLETED)
                for future in done:
                    i = futures[future]
                    try:
                        rows[i] = future.result()
                    except Exception as e:
                        raise SweepError(grid[i], e) from e
                    bar.update()
                if stop is not None and stop.is_set():
                    finished = sum(row is not None for row in rows)
                    raise Cancelled(f"the sweep was stopped after {finished} of {len(grid)} runs")
    except BaseException:  # a failed run, the caller's stop or Ctrl-C: stop every run before raising
        _stop(futures, flag, pool)
        raise
    if pool is not None:
        pool.shutdown()
    return SweepResult(rows)
