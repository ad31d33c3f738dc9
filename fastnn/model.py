"""The trained network: parameters, settings, predictions, and .npz files that never use pickle."""

import json
import os
import threading
import zipfile

import numba
import numpy as np

from . import _validate as check
from . import kernels, reference

FORMAT = "fastnn-model-1"
SETTINGS = ("hidden", "activation", "output", "reduction", "lr", "reg", "passes", "seed", "batch_size",
            "backend")

# Parallel kernels are entered one at a time: Numba's workqueue threading layer aborts when two threads
# enter parallel code at once, and a parallel kernel already uses every core.
_PARALLEL = threading.Lock()


class _Serial:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def engine(backend, n, n_threads=None):
    """(train, loss, forward) for a backend and n samples, the number of work slots, and a lock to hold."""
    if backend == "numpy":
        return reference.train, reference.loss, reference.forward, 1, _Serial()
    threads = numba.get_num_threads() if n_threads is None else min(n_threads, numba.get_num_threads())
    if threads > 1 and n >= 2 * kernels.TILE:
        return kernels.train_parallel, kernels.loss_parallel, kernels.forward_parallel, threads, _PARALLEL
    return kernels.train_serial, kernels.loss_serial, kernels.forward_serial, 1, _Serial()


class Model:
    """A one-hidden-layer network: ``p = out(f(X W1 + b1) W2 + b2)``.

    Parameters
    ----------
    theta : ndarray (d*h + h + h*k + k,)
        All parameters, flat: W1 (d, h), b1 (h,), W2 (h, k), b2 (k,), row-major.
    n_features, hidden : int
    settings : dict
        How it was trained (activation, output, reduction, lr, reg, passes, seed, batch_size, backend).
    loss_history : ndarray (m, 2), optional
        Rows of (passes completed, training loss).
    """

    def __init__(self, theta, n_features, hidden, settings, loss_history=None):
        self.theta = theta
        self.n_features, self.hidden = n_features, hidden
        self.n_classes = (theta.size - n_features * hidden - hidden) // (hidden + 1)
        self.settings = dict(settings, hidden=hidden)
        self.loss_history = np.zeros((0, 2)) if loss_history is None else np.asarray(loss_history, float)

    W1 = property(lambda self: self._parts()[0], doc="Input-to-hidden weights (d, h).")
    b1 = property(lambda self: self._parts()[1], doc="Hidden biases (h,).")
    W2 = property(lambda self: self._parts()[2], doc="Hidden-to-output weights (h, k).")
    b2 = property(lambda self: self._parts()[3], doc="Output biases (k,).")
    dtype = property(lambda self: self.theta.dtype)

    def __getattr__(self, name):
        if name in SETTINGS and name in self.__dict__.get("settings", {}):
            return self.settings[name]
        raise AttributeError(f"'Model' object has no attribute {name!r}")

    def __repr__(self):
        s = self.settings
        return (f"Model(n_features={self.n_features}, hidden={self.hidden}, n_classes={self.n_classes}, "
                f"activation={s['activation']!r}, output={s['output']!r}, dtype={self.dtype.name})")

    def _parts(self):
        return reference.split(self.theta, self.n_features, self.hidden, self.n_classes)

    def _codes(self):
        return check.ACTIVATIONS[self.settings["activation"]], check.OUTPUTS[self.settings["output"]]

    def _X(self, X):
        return check.features(X, self.dtype, n_features=self.n_features)

    def _outputs(self, X):
        _, _, forward, slots, lock = engine(self.settings["backend"], X.shape[0])
        P = np.empty((X.shape[0], self.n_classes), self.dtype)
        with lock:
            forward(X, self.theta, self.hidden, *self._codes(), slots, P)
        return P

    def predict_proba(self, X):
        """Class probabilities (n, k); sigmoid outputs are normalised to sum to 1 per row."""
        P = self._outputs(self._X(X))
        if self.settings["output"] == "sigmoid":
            P /= np.maximum(P.sum(axis=1, keepdims=True), np.finfo(P.dtype).tiny)
        return P

    def predict(self, X):
        """Most probable class per row (n,), int64."""
        return np.argmax(self._outputs(self._X(X)), axis=1)

    def loss(self, X, y):
        """The training objective: (data loss + reg/2 (|W1|^2 + |W2|^2)) / n (the tutorial's calculate_loss)."""
        X = self._X(X)
        y, _ = check.labels(y, X.shape[0], n_classes=self.n_classes)
        _, loss, _, slots, lock = engine(self.settings["backend"], X.shape[0])
        with lock:
            return float(loss(X, y, self.theta, self.hidden, self.settings["reg"], *self._codes(), slots))

    def score(self, X, y):
        """Accuracy: the fraction of rows whose predicted class is y."""
        X = self._X(X)
        y, _ = check.labels(y, X.shape[0], n_classes=self.n_classes)
        return float(np.mean(self.predict(X) == y))

    def save(self, path):
        """Write the parameters and settings to an .npz file (plain arrays and a JSON string, no pickle)."""
        meta = json.dumps(dict(format=FORMAT, n_features=self.n_features, settings=self.settings))
        with open(path, "wb") as f:  # an open file: np.savez would otherwise append .npz to the name
            np.savez(f, theta=self.theta, loss_history=self.loss_history, meta=np.array(meta))


def load(path):
    """Read a Model written by Model.save; anything else raises ValueError, nothing is unpickled."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if sorted(f.files) != ["loss_history", "meta", "theta"]:
                raise ValueError(f"arrays {sorted(f.files)}, expected loss_history, meta, theta")
            theta, history, meta = f["theta"], f["loss_history"], f["meta"]
        meta = json.loads(str(meta[()]) if meta.dtype.kind == "U" and meta.ndim == 0 else "null")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError("no fastnn metadata")
        d, s = meta["n_features"], meta["settings"]
        if not isinstance(s, dict) or set(s) != set(SETTINGS):
            raise ValueError(f"settings {sorted(s) if isinstance(s, dict) else s!r}")
        h = check.integer(s["hidden"], "hidden")
        d = check.integer(d, "n_features")
        check.choice(s["activation"], "activation", check.ACTIVATIONS)
        check.choice(s["output"], "output", check.OUTPUTS)
        check.choice(s["reduction"], "reduction", check.REDUCTIONS)
        check.choice(s["backend"], "backend", check.BACKENDS)
        check.real(s["reg"], "reg")
        if theta.dtype not in (np.float64, np.float32) or theta.ndim != 1:
            raise ValueError(f"theta has dtype {theta.dtype} and shape {theta.shape}")
        k, rest = divmod(theta.size - d * h - h, h + 1)
        if rest or k < 2:
            raise ValueError(f"theta has {theta.size} values, which fits no network with {d} inputs, "
                             f"{h} hidden units and >= 2 classes")
        if not np.isfinite(theta).all():
            raise ValueError("theta is not finite")
        if history.dtype != np.float64 or history.ndim != 2 or history.shape[1] != 2:
            raise ValueError(f"loss_history has dtype {history.dtype} and shape {history.shape}")
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{os.fspath(path)!r} is not a valid fastnn model file: {e}") from None
    return Model(np.ascontiguousarray(theta), d, h, s, history)
