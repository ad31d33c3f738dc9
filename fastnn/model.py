"""The trained network: parameters, settings, predictions, and .npz files that never use pickle."""

import hashlib
import json
import os
import secrets
import threading

import numba
import numpy as np

from . import _validate as check
from . import kernels, reference

FORMAT = "fastnn-model-1"
SETTINGS = ("hidden", "activation", "output", "reduction", "lr", "reg", "passes", "seed", "batch_size",
            "backend")
META = ("format", "n_features", "n_classes", "dtype", "settings", "sha256")
ARRAYS = ("loss_history", "meta", "theta")
_MAX_META = 1 << 16  # characters of the metadata string; a saved one is a few hundred

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
        All parameters, flat: W1 (d, h), b1 (h,), W2 (h, k), b2 (k,), row-major; float64 or float32.
    n_features, hidden : int
    settings : dict
        How it was trained (activation, output, reduction, lr, reg, passes, seed, batch_size, backend).
    loss_history : ndarray (m, 2), optional
        Rows of (passes completed, training loss).
    """

    def __init__(self, theta, n_features, hidden, settings, loss_history=None):
        if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.name not in check.DTYPES:
            raise TypeError(f"theta must be a 1-D float64 or float32 array; got {_describe(theta)}")
        n_features = check.integer(n_features, "n_features")
        hidden = check.integer(hidden, "hidden")
        k, rest = divmod(theta.size - n_features * hidden - hidden, hidden + 1)
        if rest or k < 2:
            raise ValueError(f"theta has {theta.size} values, which fits no network with {n_features} "
                             f"inputs, {hidden} hidden units and >= 2 classes")
        self.theta = theta
        self.n_features, self.hidden, self.n_classes = n_features, hidden, k
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

    def _dims(self):
        return kernels.dims(self.n_features)

    def _codes(self):
        return check.ACTIVATIONS[self.settings["activation"]], check.OUTPUTS[self.settings["output"]]

    def _X(self, X):
        return check.features(X, self.dtype, n_features=self.n_features)

    def _finite(self, value, X, what):
        # Finite weights and inputs can still overflow inside the network (|X W1| beyond the float range);
        # that is reported here rather than returned as NaN. The NumPy backend's warnings are silenced
        # for the same reason: the error says it once.
        if not np.isfinite(value).all():
            raise ValueError(f"X is too large for this model: its {what} overflow to NaN or inf "
                             f"(max |X| = {np.abs(X).max():.3g}); scale the features as in training")
        return value

    def _outputs(self, X):
        _, _, forward, slots, lock = engine(self.settings["backend"], X.shape[0])
        P = np.empty((X.shape[0], self.n_classes), self.dtype)
        with lock, np.errstate(all="ignore"):
            forward(X, self.theta, self.hidden, self._dims(), *self._codes(), slots, P)
        return self._finite(P, X, "outputs")

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
        with lock, np.errstate(all="ignore"):
            value = float(loss(X, y, self.theta, self.hidden, self._dims(), self.settings["reg"],
                               *self._codes(), slots))
        return self._finite(value, X, "loss")

    def score(self, X, y):
        """Accuracy: the fraction of rows whose predicted class is y."""
        X = self._X(X)
        y, _ = check.labels(y, X.shape[0], n_classes=self.n_classes)
        return float(np.mean(self.predict(X) == y))

    def save(self, path):
        """Write the parameters and settings to an .npz file (plain arrays and a JSON string, no pickle).

        The file is written under a temporary name in the same folder and renamed into place, so that an
        interrupted save leaves the previous file (or none), never a partial one.
        """
        try:  # fail here, not when the file is read back
            _settings(self.settings)
        except (TypeError, ValueError) as e:
            raise ValueError(f"settings cannot be saved: {e}") from None
        theta = np.ascontiguousarray(self.theta)
        history = np.ascontiguousarray(self.loss_history, dtype=np.float64)
        meta = dict(format=FORMAT, n_features=self.n_features, n_classes=self.n_classes,
                    dtype=theta.dtype.name, settings=self.settings)
        meta = json.dumps(dict(meta, sha256=_digest(meta, theta, history)), default=_plain)
        if hasattr(path, "write"):
            np.savez(path, theta=theta, loss_history=history, meta=np.array(meta))
            return
        path = os.fspath(path)
        tmp = f"{path}.{secrets.token_hex(6)}.tmp"
        try:
            with open(tmp, "xb") as f:  # an open file: np.savez would otherwise append .npz to the name
                np.savez(f, theta=theta, loss_history=history, meta=np.array(meta))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def _plain(value):
    """JSON for NumPy scalars in settings (an estimator may pass np.float64(0.01))."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"settings hold {type(value).__name__}, which a model file cannot store")


def _digest(meta, theta, history):
    """SHA-256 of the metadata (canonical JSON, without the digest), theta and loss_history bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=_plain).encode())
    for a in (theta, history):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _describe(a):
    return (f"{type(a).__name__} of dtype {a.dtype} and shape {a.shape}" if isinstance(a, np.ndarray)
            else type(a).__name__)


def _header(f, name):
    """(shape, dtype) from an .npy member's header, read before its data so that no size is trusted."""
    with f.zip.open(name + ".npy") as member:
        version = np.lib.format.read_magic(member)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"{name} has .npy version {version}")
        shape, _, dtype = read[version](member)
    return shape, dtype


def _read(file):
    """The three arrays of a model file, each checked for dtype and shape before its data is read."""
    start = file.read(4)
    file.seek(-len(start), os.SEEK_CUR)
    if start != b"PK\x03\x04":  # np.load would take anything else for a pickle or an .npy file
        raise ValueError(f"not an .npz archive (it starts with {start!r})")
    with np.load(file, allow_pickle=False) as f:
        if sorted(f.files) != sorted(ARRAYS):
            raise ValueError(f"arrays {sorted(f.files)}, expected {', '.join(ARRAYS)}")
        expect = dict(theta=lambda s, t: len(s) == 1 and t.name in check.DTYPES and t.isnative
                      and s[0] <= check.MAX_PARAMETERS,
                      loss_history=lambda s, t: len(s) == 2 and s[1] == 2 and t == np.float64 and t.isnative
                      and s[0] <= check.MAX_PARAMETERS,
                      meta=lambda s, t: s == () and t.kind == "U" and t.itemsize <= 4 * _MAX_META)
        for name, ok in expect.items():
            shape, dtype = _header(f, name)
            if not ok(shape, dtype):
                raise ValueError(f"{name} has dtype {dtype} and shape {shape}")
        return f["theta"], f["loss_history"], str(f["meta"][()])


def _settings(s):
    """The stored settings, each checked as train() checks it."""
    if not isinstance(s, dict) or set(s) != set(SETTINGS):
        raise ValueError(f"settings {sorted(s) if isinstance(s, dict) else s!r}, expected {sorted(SETTINGS)}")
    check.integer(s["hidden"], "hidden")
    check.choice(s["activation"], "activation", check.ACTIVATIONS)
    check.choice(s["output"], "output", check.OUTPUTS)
    check.choice(s["reduction"], "reduction", check.REDUCTIONS)
    check.choice(s["backend"], "backend", check.BACKENDS)
    check.real(s["lr"], "lr", strict=True)
    check.real(s["reg"], "reg")
    check.integer(s["passes"], "passes", minimum=0)
    check.integer(s["seed"], "seed", minimum=0, maximum=2**32 - 1)
    if s["batch_size"] is not None:
        check.integer(s["batch_size"], "batch_size")
    return s


def load(path):
    """Read a Model written by Model.save.

    Nothing is unpickled, and every array's name, dtype and shape, every setting and a SHA-256 of the
    contents are checked: a truncated, tampered or foreign file raises ValueError, a missing one
    FileNotFoundError.
    """
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as file:  # a missing or unreadable file raises its own OSError here
            return _load(file, repr(os.fspath(path)))
    if not hasattr(path, "read"):
        raise TypeError(f"path must be a file name or an open binary file; got {type(path).__name__}")
    return _load(path, repr(path))


def _load(file, name):
    try:
        theta, history, text = _read(file)
        if len(text) > _MAX_META:
            raise ValueError(f"metadata of {len(text)} characters")
        meta = json.loads(text)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"no {FORMAT} metadata")
        if set(meta) != set(META):
            raise ValueError(f"metadata keys {sorted(meta)}, expected {sorted(META)}")
        s = _settings(meta["settings"])
        d, h = check.integer(meta["n_features"], "n_features"), s["hidden"]
        k = check.integer(meta["n_classes"], "n_classes", minimum=2)
        if theta.dtype.name != meta["dtype"] or theta.size != d * h + h + h * k + k:
            raise ValueError(f"theta has dtype {theta.dtype} and {theta.size} values; the metadata says "
                             f"{meta['dtype']!s:.20} and {d * h + h + h * k + k} ({d} inputs, {h} hidden, "
                             f"{k} classes)")
        if not (np.isfinite(theta).all() and np.isfinite(history).all()):
            raise ValueError("theta or loss_history is not finite")
        digest = meta.pop("sha256")
        if digest != _digest(meta, theta, history):
            raise ValueError("its contents do not match their SHA-256 (the file was altered or damaged)")
    except Exception as e:  # any failure to parse a foreign file is that file's fault, reported as one
        raise ValueError(f"path {name} is not a valid fastnn model file: "
                         f"{type(e).__name__}: {_one_line(e)}") from None
    return Model(np.ascontiguousarray(theta), d, h, s, history)


def _one_line(e):
    return " ".join(str(e).split())[:300]
