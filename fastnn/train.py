"""train(): validate, initialise, run the kernels in chunks of passes, return a Model."""

import numpy as np
from tqdm.auto import tqdm

from . import _validate as check
from .model import Model, engine


class DivergenceError(ArithmeticError):
    """The training loss became NaN or inf."""


def init_params(d, h, k, seed, dtype):
    """The tutorial's initialisation, flat: W1 = randn(d, h)/sqrt(d), b1 = 0, W2 = randn(h, k)/sqrt(h), b2 = 0."""
    rng = np.random.RandomState(seed)
    W1 = rng.randn(d, h) / np.sqrt(d)
    W2 = rng.randn(h, k) / np.sqrt(h)
    return np.concatenate([W1.ravel(), np.zeros(h), W2.ravel(), np.zeros(k)]).astype(dtype)


# Work per kernel call, in sample x unit products: a call then takes well under a second, so that Ctrl-C
# and the progress bar are served between calls, while small runs still do thousands of passes per call.
_CHUNK_WORK = 5e7


def train(X, y, hidden=3, *, passes=20000, lr=0.01, reg=0.01, seed=0, activation="tanh",
          output="softmax", reduction="sum", batch_size=None, dtype=None, backend="numba",
          loss_every=1000, progress=False, n_classes=None, n_threads=None, init=None):
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
    loss_every : int
        Record the training loss every this many passes (``Model.loss_history``).
    progress : bool
        Show a progress bar.
    n_classes : int, optional
        K, when y need not show every class (default: max(y) + 1, and y must hold two classes).
    n_threads : int, optional
        Threads for large n (default: all of Numba's); 1 runs the serial kernel.
    init : Model, optional
        Start from this model's parameters instead of a fresh initialisation.

    Returns
    -------
    Model

    Raises
    ------
    DivergenceError
        When the parameters or the loss stop being finite.
    """
    hidden = check.integer(hidden, "hidden")
    passes = check.integer(passes, "passes")
    loss_every = check.integer(loss_every, "loss_every")
    lr = check.real(lr, "lr", strict=True)
    reg = check.real(reg, "reg")
    seed = check.integer(seed, "seed", minimum=0)
    act = check.ACTIVATIONS[check.choice(activation, "activation", check.ACTIVATIONS)]
    out = check.OUTPUTS[check.choice(output, "output", check.OUTPUTS)]
    check.choice(reduction, "reduction", check.REDUCTIONS)
    check.choice(backend, "backend", check.BACKENDS)
    if n_threads is not None:
        n_threads = check.integer(n_threads, "n_threads")
    if init is not None and not isinstance(init, Model):
        raise TypeError(f"init must be a fastnn.Model or None; got {type(init).__name__}")
    dtype = check.dtype_of(dtype if init is None or dtype is not None else init.dtype, X)
    X = check.features(X, dtype)
    n, d = X.shape
    y, k = check.labels(y, n, n_classes=n_classes if init is None else init.n_classes)
    batch = n if batch_size is None else min(check.integer(batch_size, "batch_size"), n)
    if init is not None:
        if (init.n_features, init.hidden) != (d, hidden):
            raise ValueError(f"init has {init.n_features} features and {init.hidden} hidden units; "
                             f"X has {d} features and hidden={hidden}")
        theta, offset, history = init.theta.astype(dtype), init.settings["passes"], [init.loss_history]
    else:
        theta, offset, history = init_params(d, hidden, k, seed, dtype), 0, []

    run, loss, _, slots, lock = engine(backend, batch, n_threads)
    _, full_loss, _, loss_slots, loss_lock = engine(backend, n, n_threads)
    shuffle = np.random.RandomState([seed, 1]) if batch_size is not None else None
    no_order = np.empty((0, 0), np.int64)
    chunk = max(1, int(_CHUNK_WORK // (n * (d + hidden + k))))

    def current_loss():
        with loss_lock:
            return full_loss(X, y, theta, hidden, reg, act, out, loss_slots)

    def diverged(at, value):
        hint = (f"with reduction='sum' the step grows with the number of samples (n={n}): use "
                f"reduction='mean' or an lr about {n}x smaller" if reduction == "sum" and batch > 1
                else "try a smaller lr")
        raise DivergenceError(f"training diverged at pass {at}: the {value} became NaN or inf "
                              f"(lr={lr}, reduction={reduction!r}); {hint}")

    rows = [] if history else [(0, current_loss())]
    done = 0
    with tqdm(total=passes, unit="pass", disable=not progress, desc=f"train h={hidden}") as bar:
        while done < passes:
            step = min(chunk, passes - done, loss_every - (done % loss_every))
            order = (np.stack([shuffle.permutation(n) for _ in range(step)])
                     if shuffle is not None else no_order)
            with lock:
                completed = run(X, y, order, theta, hidden, step, batch, lr, reg, reduction == "mean",
                                act, out, slots)
            if completed < step:
                diverged(offset + done + completed + 1, "parameters")
            done += step
            bar.update(step)
            if done % loss_every == 0 or done == passes:
                rows.append((offset + done, current_loss()))
                if not np.isfinite(rows[-1][1]):
                    diverged(offset + done, "loss")
    settings = dict(activation=activation, output=output, reduction=reduction, lr=lr, reg=reg,
                    passes=offset + passes, seed=seed, batch_size=batch_size, backend=backend)
    history.append(np.array(rows, float).reshape(-1, 2))
    return Model(theta, d, hidden, settings, np.concatenate(history))
