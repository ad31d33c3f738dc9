"""The exceptions fastnn raises besides ValueError and TypeError (which always name the bad argument)."""

from __future__ import annotations


class DivergenceError(ArithmeticError):
    """Training failed: the parameters or the loss stopped being finite, the loss exploded, or the run
    ended worse than it started (see ``fastnn.train``).

    Attributes ``at`` (the pass), ``lr``, ``reduction`` and ``n`` (samples) say where and with what.
    """

    def __init__(self, message, at=None, lr=None, reduction=None, n=None):
        super().__init__(message)
        self.at, self.lr, self.reduction, self.n = at, lr, reduction, n

    def __reduce__(self):  # keep the attributes across processes (a sweep on a Dask cluster)
        return type(self), (str(self), self.at, self.lr, self.reduction, self.n)


class Cancelled(Exception):
    """A run was stopped through its ``stop`` flag (``train(..., stop=event)``, or Ctrl-C in a sweep).

    ``at`` is the number of passes completed when it stopped.
    """

    def __init__(self, message, at=None):
        super().__init__(message)
        self.at = at

    def __reduce__(self):
        return type(self), (str(self), self.at)


class SweepError(RuntimeError):
    """A run of a sweep failed; ``config`` is its (hidden, reg, seed), the cause is chained."""

    def __init__(self, config: tuple[int, float, int], error: BaseException):
        self.config = config
        hidden, reg, seed = config
        super().__init__(f"run hidden={hidden}, reg={reg}, seed={seed} failed: {type(error).__name__}: {error}")
