"""sweep(): many independent trainings, on a thread pool or on any concurrent.futures.Executor."""

import csv
import itertools
import json
import numbers
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from tqdm.auto import tqdm

from . import _validate as check
from .train import DivergenceError, train

COLUMNS = ("hidden", "reg", "seed", "passes", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
           "seconds")
# What best() looks for in each metric: losses and time are minimised, accuracies maximised.
METRICS = {"train_loss": min, "test_loss": min, "train_accuracy": max, "test_accuracy": max, "seconds": min}
# train() arguments that sweep() sets itself, per run or for every run, with what to do instead.
_OWN = {"seed": "pass seeds= instead", "n_threads": "every run uses the serial kernels (n_threads=1)",
        "init": "every run starts from the seeded initialisation"}


class SweepError(RuntimeError):
    """A run of a sweep failed; ``config`` is its (hidden, reg, seed), the cause is chained."""

    def __init__(self, config, error):
        self.config = config
        hidden, reg, seed = config
        super().__init__(f"run hidden={hidden}, reg={reg}, seed={seed} failed: {type(error).__name__}: {error}")


def _run(X, y, X_test, y_test, hidden, reg, seed, passes, kwargs):
    """One run of the grid, on a thread or a remote worker: train and score; plain arrays in, a row out."""
    start = time.perf_counter()
    # n_threads=1: the serial nogil kernels, which many threads may run at once (DESIGN.md)
    model = train(X, y, hidden, passes=passes, reg=reg, seed=seed, n_threads=1, **kwargs)
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

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self):
        return f"SweepResult({len(self.rows)} runs)"

    @property
    def tested(self):
        """Whether the runs were scored on a test set."""
        return bool(self.rows) and self.rows[0]["test_loss"] is not None

    def best(self, metric=None):
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

    def records(self):
        """The rows without their models: plain numbers, ready for JSON or a DataFrame."""
        return [{c: row[c] for c in COLUMNS} for row in self.rows]

    def table(self):
        """A text table of the rows, one line per run."""
        head = ("hidden", "reg", "seed", "passes", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
        fmt = ("{:d}", "{:g}", "{:d}", "{:d}", "{:.6f}", "{:.4f}", "{:.6f}", "{:.4f}", "{:.3f}")
        cells = [[("-" if row[c] is None else f.format(row[c])) for c, f in zip(COLUMNS, fmt)]
                 for row in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]
        return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in [head, *cells])

    def to_csv(self, path):
        """Write the rows, without the models, as CSV (empty cells for a missing test set)."""
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({c: ("" if v is None else v) for c, v in r.items()} for r in self.records())

    def to_json(self, path):
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


def _seed(value, name):
    value = check.integer(value, name, minimum=0)
    if value >= 2**32:  # RandomState's range
        raise ValueError(f"{name} must be integers in 0..{2**32 - 1}; got {value}")
    return value


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def sweep(X, y, hidden=(1, 2, 3, 4, 5, 20, 50), *, reg=(0.01,), seeds=(0,), test=None, passes=20000,
          executor=None, n_jobs=None, progress=True, **train_kwargs):
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
    """
    hidden = _grid_values(hidden, "hidden", check.integer)
    regs = _grid_values(reg, "reg", check.real)
    seeds = _grid_values(seeds, "seeds", _seed)
    passes = check.integer(passes, "passes")
    for name in train_kwargs:
        if name in _OWN:
            raise TypeError(f"sweep() sets {name} itself: {_OWN[name]}")
    if executor is not None and n_jobs is not None:
        raise ValueError("n_jobs sizes the built-in thread pool: give executor or n_jobs, not both")
    n_jobs = _cores() if n_jobs is None else check.integer(n_jobs, "n_jobs")

    dtype = check.dtype_of(train_kwargs.get("dtype"), X)
    X = check.features(X, dtype)
    y, k = check.labels(y, X.shape[0], n_classes=train_kwargs.get("n_classes"))
    X_test = y_test = None
    if isinstance(test, (tuple, list)) and len(test) == 2:
        X_test = check.features(test[0], dtype, name="X_test", n_features=X.shape[1])
        y_test, _ = check.labels(test[1], X_test.shape[0], name="y_test", n_classes=k)
    elif isinstance(test, numbers.Real) and not isinstance(test, (bool, np.bool_)):
        if not 0 < test < 1:
            raise ValueError(f"test must be a fraction in (0, 1) or an (X_test, y_test) pair; got {test!r}")
        from sklearn.model_selection import train_test_split

        X, X_test, y, y_test = train_test_split(X, y, test_size=float(test), stratify=y, random_state=seeds[0])
    elif test is not None:
        raise TypeError(f"test must be None, a fraction in (0, 1) or an (X_test, y_test) pair; got {test!r}")
    kwargs = dict(train_kwargs, n_classes=k)  # the split may leave a class out of y; the models keep K

    # One pass of the first run, here: bad train_kwargs raise train's own error before anything is sent
    # out, and the kernels are compiled (or loaded) once, not by every thread at the same time. Whether a
    # run diverges is that run's result, which one pass does not tell.
    try:
        train(X, y, hidden[0], passes=1, reg=regs[0], seed=seeds[0], n_threads=1, **kwargs)
    except DivergenceError:
        pass

    grid = list(itertools.product(hidden, regs, seeds))
    # A run costs about hidden x passes: the largest go first so that the workers finish together.
    order = sorted(range(len(grid)), key=lambda i: -grid[i][0])
    pool = ThreadPoolExecutor(min(n_jobs, len(grid)), thread_name_prefix="fastnn-sweep") if executor is None else None
    runner = executor if executor is not None else pool
    rows, futures = [None] * len(grid), {}
    try:
        with tqdm(total=len(grid), unit="run", desc="sweep", disable=None if progress else True) as bar:
            for i in order:
                h, r, s = grid[i]
                futures[runner.submit(_run, X, y, X_test, y_test, h, r, s, passes, kwargs)] = i
            for future in as_completed(futures):
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as e:
                    raise SweepError(grid[i], e) from e
                bar.update()
    except BaseException:  # a failed run or Ctrl-C: drop the runs not started yet
        for future in futures:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown()
    return SweepResult(rows)
