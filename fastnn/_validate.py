"""Every check on user input, in one place, before any kernel runs.

Each failure is a ValueError (a bad value) or TypeError (a bad type) with a one-line message that starts
with the argument's name and says what would be accepted instead. ``train``, ``Model``, ``load``, the
sweep, the estimator and the CLI all call these, so that one input gets one message everywhere:

>>> from fastnn import _validate as check
>>> hidden = check.integer(hidden, "hidden")                 # a positive int (not bool, float or str)
>>> lr = check.real(lr, "lr", strict=True)                   # a finite float > 0
>>> activation = check.choice(activation, "activation", reference.ACTIVATIONS)   # one of the names
>>> X = check.features(X, check.dtype_of(dtype, X))          # C-contiguous, finite, 2-D, in dtype
>>> y, k = check.labels(y, X.shape[0])                        # int64 labels 0..k-1
>>> seed = check.seed(seed, "seed")                           # an int in RandomState's 0..2**32-1
>>> check.network(X.shape[1], hidden, k, X.dtype, slots)      # parameters + work buffers fit in memory
>>> check.memory(n * k * 8, f"X with {n} rows", "pass fewer rows")  # any other allocation, before it
"""

from __future__ import annotations

import numbers
import os
import sys
from typing import Iterable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import engine, reference

# The activations and outputs are named by reference.ACTIVATIONS and reference.OUTPUTS.
SOLVERS = ("sgd", "adam")
REDUCTIONS = ("sum", "mean")
BACKENDS = ("numba", "numpy")
DTYPES = {"float64": np.float64, "float32": np.float32}

# The most parameters one network may have (8 GB in float64): beyond it a typo such as hidden=10**9
# would not fail cleanly but swap or be killed by the OS while the arrays are first touched.
MAX_PARAMETERS = 10**9

SEED_MAX = 2**32 - 1  # numpy.random.RandomState's range

# How a model was trained: the keys of Model.settings, stored in model files.
SETTINGS = ("hidden", "activation", "output", "reduction", "lr", "reg", "passes", "seed", "batch_size",
            "backend")

# Below this many bytes an allocation is not checked against the memory available: reading /proc costs
# tens of microseconds, more than a small predict, and any machine that runs Python has this much free.
_UNCHECKED = 64 << 20


def choice(value: object, name: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (strings); TypeError for a non-string, ValueError otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def integer(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]; bools, floats (even 3.0) and strings are TypeErrors."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


def real(value: object, name: str, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite float >= minimum (> minimum if strict); bools and strings are TypeErrors."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    bound = f"> {minimum}" if strict else f">= {minimum}"
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return value


def flag(value: object, name: str) -> bool:
    """``value`` as a bool; only True or False (NumPy's too) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def fraction(value: object, name: str) -> float:
    """``value`` as a float in [0, 1) (a momentum, a decay rate)."""
    value = real(value, name)
    if value >= 1:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return value


def dtype_of(dtype: DTypeLike, X: object = None) -> np.dtype:
    """The float dtype to compute in: float64 or float32 (None: float32 if X is float32, else float64)."""
    if dtype is None:
        try:
            single = X is not None and np.asarray(X).dtype == np.float32
        except Exception:  # not an array: features() will say so
            single = False
        return np.dtype(np.float32 if single else np.float64)
    try:
        resolved = np.dtype(dtype)
    except Exception:  # np.dtype raises TypeError, ValueError or others for arbitrary objects
        raise TypeError(f"dtype must be 'float64', 'float32' or None; got {dtype!r}") from None
    if resolved.name not in DTYPES:
        raise ValueError(f"dtype must be 'float64', 'float32' or None; got {dtype!r}")
    return resolved


def features(X: ArrayLike, dtype: DTypeLike, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """X as a C-contiguous 2-D finite array of dtype (copied only when it must be).

    Any memory order, strides and real dtype (bool, integer, float) are accepted; the values are checked
    for finiteness after conversion, so a float64 value beyond float32's range is reported, not made inf.
    """
    if not (hasattr(X, "__array__") or isinstance(X, (list, tuple))):
        raise TypeError(f"{name} must be a 2-D array of numbers; got {type(X).__name__}")
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise ValueError(f"{name} must be a 2-D array of numbers: {e}") from None
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got {X.ndim}-D with shape {X.shape}"
                         + ("; use X.reshape(-1, 1) for a single feature" if X.ndim == 1 else ""))
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {X.shape}; need at least one sample and one feature")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but the model was trained on {n_features}")
    if not (X.flags.c_contiguous and X.dtype == np.dtype(dtype)):  # a copy: counted before it is made
        memory(X.shape[0] * X.shape[1] * np.dtype(dtype).itemsize,
               f"{name} with {X.shape[0]} rows, copied into a C-ordered {np.dtype(dtype).name} array",
               f"pass {name} as a C-contiguous {np.dtype(dtype).name} array, or fewer rows at a time")
    with np.errstate(over="ignore"):  # a float64 value beyond float32's range becomes inf, reported below
        X = np.ascontiguousarray(X, dtype=dtype)
    # min and max are NaN or inf exactly when a value is, and allocate nothing (isfinite(X) would: n x d)
    if not (np.isfinite(X.min()) and np.isfinite(X.max())):
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{name} must be finite: {name}[{bad[0]}, {bad[1]}] is {X[tuple(bad)]}"
                         + (" in float32" if X.dtype == np.float32 else "")
                         + "; drop or impute such rows first")
    return X


def weights(sample_weight: ArrayLike | None, n: int, dtype) -> np.ndarray | None:
    """sample_weight as a C-ordered (n,) array of the data's dtype: finite, none negative, some positive."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "iuf":
        raise TypeError(f"sample_weight must hold real numbers; got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), one weight per row of X; got {w.shape}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    if not w.any():
        raise ValueError("sample_weight must have a positive weight; every weight is zero")
    return w


def labels(y: ArrayLike, n: int, name: str = "y", n_classes: int | None = None,
           x_name: str = "X") -> tuple[np.ndarray, int]:
    """y as int64 labels in 0..K-1, and K (x_name: the features' argument, for the message on n).

    K is ``n_classes`` if given; otherwise max(y) + 1, where y must hold at least two classes and K may
    not exceed n (labels that sparse are not 0..K-1 codes: encode them, or pass n_classes).
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,); got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {x_name} has {n} samples")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold integer class labels 0..K-1; got dtype {y.dtype} "
                        "(fastnn.NeuralNetClassifier accepts any labels)")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(f"{name} must be integer-valued class labels 0..K-1; got non-integer values")
    if y.min() < 0:
        raise ValueError(f"{name} must be class labels 0..K-1; got {y.min()} (out of range)")
    top = int(y.max())
    if n_classes is None:
        if np.unique(y).size < 2:
            raise ValueError(f"{name} has a single class ({top}); a classifier needs at least two")
        if top >= max(n, 2):
            raise ValueError(f"{name} has labels up to {top} for {n} samples: encode them as 0..K-1 "
                             "(fastnn.NeuralNetClassifier does) or pass n_classes")
        n_classes = top + 1
    else:
        n_classes = integer(n_classes, "n_classes", minimum=2)
        if top >= n_classes:
            raise ValueError(f"{name} must be class labels 0..{n_classes - 1}; got {top} (out of range)")
    return np.ascontiguousarray(y, dtype=np.int64), n_classes


def targets(y: ArrayLike, n: int, dtype, name: str = "y", n_outputs: int | None = None,
            x_name: str = "X") -> tuple[np.ndarray, int]:
    """y as a C-ordered (n, k) finite array of real targets in dtype (a 1-D y is one target), and k; k must
    be ``n_outputs`` if given (a model's)."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real-valued targets; got dtype {y.dtype}")
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] == 0:
        raise ValueError(f"{name} must be 1-D (n_samples,) or 2-D (n_samples, n_targets); got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but {x_name} has {n} samples")
    if n_outputs is not None and y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {y.shape[1]} targets, but the model has {n_outputs} outputs")
    with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below
        y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y).all():
        raise ValueError(f"{name} must be finite: it holds NaN or inf" + (" in float32" if y.dtype == np.float32
                                                                          else ""))
    return y, y.shape[1]


def outcomes(y: ArrayLike, n: int, output: str, dtype, name: str = "y", n_classes: int | None = None,
             x_name: str = "X") -> tuple[np.ndarray, int]:
    """What the network learns from: targets (identity outputs, see ``targets``; n_classes is then the number
    of outputs) or class labels (``labels``); and their number of outputs k."""
    if output == "identity":
        return targets(y, n, dtype, name, n_classes, x_name)
    return labels(y, n, name, n_classes, x_name)


def seed(value: object, name: str = "seed") -> int:
    """``value`` as an int seed in 0..SEED_MAX (RandomState's range); bools, floats and strings are TypeErrors."""
    return integer(value, name, minimum=0, maximum=SEED_MAX)


def settings(s: object) -> dict:
    """A model's settings dict, each value checked as train() checks it."""
    if not isinstance(s, dict) or set(s) != set(SETTINGS):
        raise ValueError(f"settings {sorted(s) if isinstance(s, dict) else s!r}, expected {sorted(SETTINGS)}")
    integer(s["hidden"], "hidden")
    choice(s["activation"], "activation", reference.ACTIVATIONS)
    choice(s["output"], "output", reference.OUTPUTS)
    choice(s["reduction"], "reduction", REDUCTIONS)
    choice(s["backend"], "backend", BACKENDS)
    real(s["lr"], "lr", strict=True)
    real(s["reg"], "reg")
    integer(s["passes"], "passes", minimum=0)
    seed(s["seed"], "seed")
    if s["batch_size"] is not None:
        integer(s["batch_size"], "batch_size")
    return s


def network(d: int, h: int, k: int, dtype: DTypeLike = np.float64, slots: int = 1) -> int:
    """The parameter count d*h + h + h*k + k, if it is at most MAX_PARAMETERS and the parameters and a
    kernel call's buffers for ``slots`` work slots (engine.work_bytes) fit in the memory available.

    A network's work buffers grow with h and k as its parameters do, but 256 times faster: hidden=10**7
    has 400 MB of parameters and 41 GB of buffers per slot.
    """
    size = reference.size(d, h, k)
    # Named by the larger of the two, which is what a typo made large.
    what, reduce = ((f"n_classes={k} with {d} features and hidden={h}", "use fewer classes") if k > h else
                    (f"hidden={h} with {d} features and {k} classes", "use fewer hidden units"))
    if size > MAX_PARAMETERS:
        raise ValueError(f"{what} makes {size} parameters, more than {MAX_PARAMETERS}: {reduce}")
    nbytes = size * np.dtype(dtype).itemsize + engine.work_bytes(0, d, h, k, 1, dtype, slots)
    memory(nbytes, f"{what} ({size} parameters, their gradient and the kernels' work buffers)", reduce)
    return size


def memory(nbytes: int, what: str, reduce: str) -> int:
    """``nbytes`` if that much memory is available now; else a ValueError: ``what`` needs so much, ``reduce``.

    what: the allocation, starting with the argument that sizes it ("X with 10000000 rows");
    reduce: what to do instead ("predict in chunks of rows"). Estimates are checked before anything is
    allocated, so that a call too large for the machine fails cleanly instead of swapping, being killed by
    the OS, or raising MemoryError halfway.
    """
    nbytes = int(nbytes)
    if nbytes < _UNCHECKED:
        return nbytes
    free = available_memory()
    if free is not None and nbytes > free:
        raise ValueError(f"{what} needs {_size(nbytes)} of memory, more than the {_size(free)} available: {reduce}")
    return nbytes


def available_memory() -> int | None:
    """Bytes of memory this process may still allocate, or None where that cannot be told.

    Linux: MemAvailable from /proc/meminfo, or the room left under this process's cgroup limit (v2
    memory.max, v1 memory.limit_in_bytes, less the usage) when that is smaller. Elsewhere: free physical
    memory from sysconf or, on Windows, GlobalMemoryStatusEx.
    """
    found = [v for v in (_meminfo(), _cgroup_room()) if v is not None]
    return min(found) if found else _portable_free()


def _meminfo(root="/"):
    try:
        with open(os.path.join(root, "proc/meminfo"), "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) or anything unexpected: no number


def _cgroup_room(root="/"):
    """The cgroup memory limit less the usage, for the tightest limit found (None: no limit found).

    The group's own folder is read where it is visible, else the hierarchy's root (a container usually
    sees its own group as the root).
    """
    try:
        with open(os.path.join(root, "proc/self/cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, group = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, names = os.path.join(root, "sys/fs/cgroup"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, names = os.path.join(root, "sys/fs/cgroup/memory"), ("memory.limit_in_bytes",
                                                                       "memory.usage_in_bytes")
        else:
            continue
        for folder in (os.path.join(base, group.strip("/")), base):
            limit = _read_int(os.path.join(folder, names[0]))
            if limit is None or limit >= 1 << 60:  # v1 writes "no limit" as a huge number
                continue
            usage = _read_int(os.path.join(folder, names[1])) or 0
            rooms.append(max(limit - usage, 0))
            break
    return min(rooms) if rooms else None


def _portable_free():
    if hasattr(os, "sysconf"):
        for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has only the total
            try:
                return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
            except (ValueError, OSError):
                continue
    if sys.platform == "win32":
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                        ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                        ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                        ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                        ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

        status = Status(dwLength=ctypes.sizeof(Status))
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.ullAvailPhys)
    return None


def _size(nbytes):
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} bytes"
