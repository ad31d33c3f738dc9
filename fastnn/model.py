"""The trained network: parameters, settings and predictions. Its file format is fastnn/modelfile.py."""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validate as check
from . import engine, modelfile, reference

SETTINGS = check.SETTINGS
_NO_ORDER, _NO_LABELS = np.empty((0, 0), np.int64), np.empty(0, np.int64)

class Model:
    """A one-hidden-layer network: ``p = out(f(X W1 + b1) W2 + b2)``, a classifier (softmax or sigmoid
    outputs) or a regressor (identity outputs; ``n_classes`` is then its number of targets).

    Parameters
    ----------
    theta : ndarray (d*h + h + h*k + k,)
        All parameters, flat: W1 (d, h), b1 (h,), W2 (h, k), b2 (k,), row-major; float64 or float32.
    n_features, hidden : int
    settings : dict
        How it was trained (activation, output, reduction, lr, reg, passes, seed, batch_size, backend).
    loss_history : ndarray (m, 2), optional
        Rows of (passes completed, training loss).
    """

    def __init__(self, theta: NDArray[np.floating], n_features: int, hidden: int, settings: dict[str, Any],
                 loss_history: ArrayLike | None = None):
        if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.name not in check.DTYPES:
            raise TypeError(f"theta must be a 1-D float64 or float32 array; got {_describe(theta)}")
        if not theta.dtype.isnative:  # big-endian values, say: the kernels and model files take native order
            theta = theta.astype(theta.dtype.newbyteorder("="))
        n_features = check.integer(n_features, "n_features")
        hidden = check.integer(hidden, "hidden")
        k, rest = divmod(theta.size - n_features * hidden - hidden, hidden + 1)
        fewest = 1 if settings.get("output") == "identity" else 2
        if rest or k < fewest:
            raise ValueError(f"theta has {theta.size} values, which fits no network with {n_features} "
                             f"inputs, {hidden} hidden units and >= {fewest} "
                             f"{'outputs' if fewest == 1 else 'classes'}")
        self.theta = theta
        self.n_features, self.hidden, self.n_classes = n_features, hidden, k
        # Checked as a model file's are: a missing or misspelt setting (backend="jax") fails here, by name.
        self.settings = check.settings(dict(settings, hidden=hidden))
        self.loss_history = np.zeros((0, 2)) if loss_history is None else np.asarray(loss_history, float)
        # The optimiser's settings and state after training (train sets it; None: plain "sgd" or unknown, as
        # for a loaded model): a run continued with init= goes on with it.
        self.optimiser: dict[str, Any] | None = None

    W1 = property(lambda self: self._parts()[0], doc="Input-to-hidden weights (d, h).")
    b1 = property(lambda self: self._parts()[1], doc="Hidden biases (h,).")
    W2 = property(lambda self: self._parts()[2], doc="Hidden-to-output weights (h, k).")
    b2 = property(lambda self: self._parts()[3], doc="Output biases (k,).")
    dtype = property(lambda self: self.theta.dtype)

    def __getattr__(self, name):
        if name in SETTINGS and name in self.__dict__.get("settings", {}):
            return self.settings[name]
        raise AttributeError(f"'Model' object has no attribute {name!r}")

    def __repr__(self) -> str:
        s = self.settings
        parts = [f"{self.n_features} -> {self.hidden} {s.get('activation', '?')} -> {self.n_classes} "
                 f"{s.get('output', '?')}", self.dtype.name, f"{self.theta.size} parameters"]
        parts += [f"{name}={s[name]:g}" for name in ("lr", "reg") if isinstance(s.get(name), (int, float))]
        if s.get("reduction", "sum") != "sum":
            parts.append(f"reduction={s['reduction']!r}")
        if s.get("batch_size") is not None:
            parts.append(f"batch_size={s['batch_size']}")
        if "passes" in s:
            parts.append(f"{s['passes']} passes")
        if "seed" in s:
            parts.append(f"seed {s['seed']}")
        if s.get("backend", "numba") != "numba":
            parts.append(f"backend={s['backend']!r}")
        return f"Model({', '.join(parts)})"

    def _parts(self):
        return reference.split(self.theta, self.n_features, self.hidden, self.n_classes)

    def _engine(self, n):
        s = self.settings
        return engine.plan(s["backend"], s["activation"], s["output"], self.dtype, self.n_features, self.hidden,
                           self.n_classes, n)

    @property
    def regressor(self) -> bool:
        """Whether the outputs are real values (identity outputs), not class scores."""
        return self.settings.get("output") == "identity"

    def _y(self, y, n):
        """y checked as this model's targets or labels."""
        return check.outcomes(y, n, self.settings["output"], self.dtype, n_classes=self.n_classes)[0]

    def _evaluate(self, run, X, y, P):
        """The loss on (X, y) (y may be empty: no loss) and the outputs into P (may have no rows)."""
        theta = self.theta if self.theta.flags.writeable else self.theta.copy()  # one compiled signature
        with np.errstate(all="ignore"):
            return run(X, y, _NO_ORDER, theta, self._parts(), 0, X.shape[0], 1.0, self.settings["reg"], False,
                       y.shape[0] > 0, P)[1]

    def _X(self, X):
        return check.features(X, self.dtype, n_features=self.n_features)

    def _finite(self, value, X, what):
        # Finite weights and inputs can still overflow inside the network (|X W1| beyond the float range);
        # that is reported here rather than returned as NaN. The NumPy backend's warnings are silenced
        # for the same reason: the error says it once.
        if not np.isfinite(value).all():
            if not np.isfinite(self.theta).all():  # set by hand (W1, coefs_ are views of theta): not X's doing
                raise ValueError("this model's parameters are not all finite (NaN or inf): it cannot compute "
                                 f"{what}")
            raise ValueError(f"X is too large for this model: its {what} overflow to NaN or inf "
                             f"(max |X| = {np.abs(X).max():.3g}); scale the features as in training")
        return value

    def _budget(self, X, slots, extra, labels=False):
        """Check that a call on X fits in memory: ``extra`` bytes per row besides the kernels' own needs."""
        (n, d), h, k, backend = X.shape, self.hidden, self.n_classes, self.settings["backend"]
        nbytes = n * extra + call_bytes(n, d, h, k, self.dtype, backend, slots, labels)
        fixed = call_bytes(0, d, h, k, self.dtype, backend, slots, labels)  # what fewer rows cannot reduce
        check.memory(nbytes, f"X with {n} rows, for a model of {h} hidden units and {k} classes,",
                     "pass fewer rows at a time" if 2 * fixed < nbytes else
                     f"the model's work buffers alone need {fixed / 1e9:.3g} GB: use a machine with more memory")

    def _outputs(self, X, extra=0):
        run = self._engine(X.shape[0])
        self._budget(X, run.slots, self.n_classes * (self.dtype.itemsize + 1) + extra)
        P = np.empty((X.shape[0], self.n_classes), self.dtype)
        no_y = np.empty((0, self.n_classes), self.dtype) if self.regressor else _NO_LABELS
        self._evaluate(run, X, no_y, P)
        return self._finite(P, X, "outputs")

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """Class probabilities (n, k); sigmoid outputs are normalised to sum to 1 per row."""
        if self.regressor:
            raise ValueError("a model with identity outputs (a regressor) has no class probabilities: "
                             "use predict")
        P = self._outputs(self._X(X), extra=2 * self.dtype.itemsize)
        if self.settings["output"] == "sigmoid":
            P /= np.maximum(P.sum(axis=1, keepdims=True), np.finfo(P.dtype).tiny)
        return P

    def predict(self, X: ArrayLike) -> NDArray:
        """Most probable class per row (n,), int64; a regressor's outputs (n, k)."""
        if self.regressor:
            return self._outputs(self._X(X))
        return np.argmax(self._outputs(self._X(X), extra=8), axis=1)

    def loss(self, X: ArrayLike, y: ArrayLike) -> float:
        """The training objective: (data loss + reg/2 (|W1|^2 + |W2|^2)) / n (the tutorial's calculate_loss)."""
        X = self._X(X)
        y = self._y(y, X.shape[0])
        run = self._engine(X.shape[0])
        self._budget(X, run.slots, 0, labels=True)
        value = self._evaluate(run, X, y, np.empty((0, self.n_classes), self.dtype))
        return self._finite(value, X, "loss")

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy: the fraction of rows whose predicted class is y; for a regressor, the coefficient of
        determination R^2, averaged over the targets (scikit-learn's ``r2_score``)."""
        X = self._X(X)
        y = self._y(y, X.shape[0])
        if self.regressor:
            return r2_score(y, self._outputs(X))
        return float(np.mean(np.argmax(self._outputs(X, extra=9), axis=1) == y))

    def save(self, path: modelfile.Path | IO[bytes]) -> None:
        """Write the parameters and settings to an .npz file (plain arrays and a JSON string, no pickle).

        The file is written under a temporary name in the same folder and renamed into place, so that an
        interrupted save leaves the previous file (or none), never a partial one; saving over a file keeps
        its permissions. A model with non-finite parameters is refused (ValueError): it could not be used.
        """
        modelfile.save(self, path)


def call_bytes(n: int, d: int, h: int, k: int, dtype: np.dtype, backend: str, slots: int, labels: bool) -> int:
    """Bytes that an evaluation over n rows (forward, or with labels the loss) allocates besides its output.

    The engine's buffers for an evaluation (engine.work_bytes with no gradient partials), a copy of read-only parameters, and the
    labels. The NumPy twin also computes the whole batch as one block (d + 2h + 2k + 2 rows of n) with, at
    its peak, a few (h, n) or (k, n) temporaries: counted as eight in float64, and a few per-row vectors.
    """
    itemsize = np.dtype(dtype).itemsize
    nbytes = engine.work_bytes(n, d, h, k, 1, dtype, slots) + reference.size(d, h, k) * itemsize  # no batches
    nbytes += n * 8 * (2 if labels else 0)
    if backend == "numpy":
        nbytes += n * ((d + 2 * h + 2 * k + 2) * itemsize + 8 * max(h, k) * 8 + 8 * 8)
    return nbytes


def r2_score(y: NDArray, prediction: NDArray, sample_weight: NDArray | None = None) -> float:
    """1 - (squared error) / (squared deviation from the mean) per column of y (n, k), averaged over the
    columns, as scikit-learn's ``r2_score``: a constant column scores 1 if predicted exactly, else 0."""
    y, prediction = np.asarray(y, np.float64), np.asarray(prediction, np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    residual = w @ (y - prediction) ** 2
    total = w @ (y - w @ y / w.sum()) ** 2
    scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), (residual == 0) * 1.0)
    return float(scores.mean())


def load(path: modelfile.Path | IO[bytes]) -> Model:
    """Read a Model written by Model.save.

    Nothing is unpickled, and every array's name, dtype and shape (from its header, before it is read),
    every setting and a SHA-256 of the contents are checked: a truncated, tampered or foreign file raises
    ValueError, a missing one FileNotFoundError; a model too large for the memory available raises
    ValueError before it is read.
    """
    theta, d, h, settings, history = modelfile.read(path)
    return Model(theta, d, h, settings, history)


def _describe(a):
    return (f"{type(a).__name__} of dtype {a.dtype} and shape {a.shape}" if isinstance(a, np.ndarray)
            else type(a).__name__)
