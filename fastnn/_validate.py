"""Every check on user input, in one place, before any kernel runs.

Each failure is a ValueError (a bad value) or TypeError (a bad type) with a one-line message that starts
with the argument's name and says what would be accepted instead. ``train``, ``Model``, ``load``, the
sweep, the estimator and the CLI all call these, so that one input gets one message everywhere:

>>> from fastnn import _validate as check
>>> hidden = check.integer(hidden, "hidden")                 # a positive int (not bool, float or str)
>>> lr = check.real(lr, "lr", strict=True)                   # a finite float > 0
>>> act = check.ACTIVATIONS[check.choice(activation, "activation", check.ACTIVATIONS)]
>>> X = check.features(X, check.dtype_of(dtype, X))          # C-contiguous, finite, 2-D, in dtype
>>> y, k = check.labels(y, X.shape[0])                        # int64 labels 0..k-1
>>> check.network(X.shape[1], hidden, k)                      # a parameter count that fits in memory
"""

import numbers

import numpy as np

ACTIVATIONS = {"tanh": 0, "sigmoid": 1, "relu": 2}
OUTPUTS = {"softmax": 0, "sigmoid": 1}
REDUCTIONS = ("sum", "mean")
BACKENDS = ("numba", "numpy")
DTYPES = {"float64": np.float64, "float32": np.float32}

# The most parameters one network may have (8 GB in float64): beyond it a typo such as hidden=10**9
# would not fail cleanly but swap or be killed by the OS while the arrays are first touched.
MAX_PARAMETERS = 10**9


def choice(value, name, choices):
    """``value`` if it is one of ``choices`` (strings); TypeError for a non-string, ValueError otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(choices)}; got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def integer(value, name, minimum=1, maximum=None):
    """``value`` as an int in [minimum, maximum]; bools, floats (even 3.0) and strings are TypeErrors."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


def real(value, name, minimum=0.0, strict=False):
    """``value`` as a finite float >= minimum (> minimum if strict); bools and strings are TypeErrors."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    bound = f"> {minimum}" if strict else f">= {minimum}"
    if not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}")
    return value


def dtype_of(dtype, X=None):
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


def features(X, dtype, name="X", n_features=None):
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
    with np.errstate(over="ignore"):  # a float64 value beyond float32's range becomes inf, reported below
        X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        bad = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{name} must be finite: {name}[{bad[0]}, {bad[1]}] is {X[tuple(bad)]}"
                         + (" in float32" if X.dtype == np.float32 else "")
                         + "; drop or impute such rows first")
    return X


def labels(y, n, name="y", n_classes=None):
    """y as int64 labels in 0..K-1, and K.

    K is ``n_classes`` if given; otherwise max(y) + 1, where y must hold at least two classes and K may
    not exceed n (labels that sparse are not 0..K-1 codes: encode them, or pass n_classes).
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,); got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but X has {n} samples")
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


def network(d, h, k):
    """The parameter count d*h + h + h*k + k, if it is at most MAX_PARAMETERS."""
    size = d * h + h + h * k + k
    if size > MAX_PARAMETERS:
        raise ValueError(f"hidden={h} with {d} features and {k} classes makes {size} parameters, more than "
                         f"{MAX_PARAMETERS}: use fewer hidden units (or fewer classes)")
    return size
