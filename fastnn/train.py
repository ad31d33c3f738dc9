"""train(): validate, initialise, run the kernels in chunks of passes, return a Model."""

import numpy as np
from tqdm.auto import tqdm

from . import _validate as check
from . import kernels
from .errors import Cancelled, DivergenceError
from .model import Model, engine


class _Bar(tqdm):
    # No monitor thread: tqdm otherwise starts one on its first bar (even a disabled one) and leaves it
    # running for the life of the process; the bar is updated between chunks of passes anyway.
    monitor_interval = 0


# A loss this many times its value at the start of the run (or than 1, if that is more) is taken as
# divergence even while it is still finite: relu runs with too large a step grow their weights
# geometrically (make_moons(20000), relu, "sum", lr 0.01 reaches a loss of 1e24 by pass 1000) and would
# otherwise run on for hours. Runs that went on to converge rose at most about 8x between checkpoints in a
# survey of make_moons, iris, digits and circles over activations, reductions and step sizes.
EXPLODED = 1e6

# A run from a fresh initialisation that ends with a loss this many times its initial one made the
# network worse than random weights: its step was too large (make_moons(20000) with "sum" and lr 0.01 ends
# near 10x, its tanh units saturated, finite forever). In the survey above and on noise labels, finished
# runs that were not too large ended at most 1.04x their initial loss.
ENDED_WORSE = 2.0
# ... judged only on runs this long: the first steps of a run that goes on to converge may overshoot
# (the tutorial's data with H = 50 is 2.05x its initial loss after 1 and 3 passes, fine after 10).
ENDED_WORSE_AFTER = 100


def init_params(d, h, k, seed, dtype):
    """The tutorial's initialisation, flat: W1 = randn(d, h)/sqrt(d), b1 = 0, W2 = randn(h, k)/sqrt(h), b2 = 0."""
    rng = np.random.RandomState(seed)
    W1 = rng.randn(d, h) / np.sqrt(d)
    W2 = rng.randn(h, k) / np.sqrt(h)
    return np.concatenate([W1.ravel(), np.zeros(h), W2.ravel(), np.zeros(k)]).astype(dtype)


def orders(seed, first, count, n):
    """The sample orders of passes first..first+count-1 of a mini-batch run (count, n).

    Pass p visits the samples in the order of a hash of (seed, p, i) (the SplitMix64 finaliser), so
    any pass's order is known without drawing the ones before it: a run continued with init= goes on
    exactly as one long run would.
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
             + np.arange(first, first + count, dtype=np.uint64)[:, None] * np.uint64(0xD1B54A32D192ED03)
             + np.arange(n, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return np.argsort(z, axis=1).astype(np.int64)


# Work per kernel call, in multiply-adds (n (dh + hk + h + k) per pass) plus a fixed cost per update
# (about 1e4 multiply-adds' worth with theta.size extra): measured at 0.5 to 2.7 ns each on one core, a call
# then takes about 0.15 s at most, so that Ctrl-C and the progress bar are served between calls, while the
# tutorial case still does its 1000 passes between loss records in one call.
_CHUNK_WORK = 5e7
_UPDATE_WORK = 1e4


def _passes_per_call(n, d, h, k, batch):
    work = n * (d * h + h * k + h + k) + -(-n // batch) * (d * h + h + h * k + k + _UPDATE_WORK)
    return max(1, int(_CHUNK_WORK // work))


def train(X, y, hidden=3, *, passes=20000, lr=0.01, reg=0.01, seed=0, activation="tanh",
          output="softmax", reduction="sum", batch_size=None, dtype=None, backend="numba",
          loss_every=1000, progress=False, n_classes=None, n_threads=None, init=None, shuffle=True):
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
    shuffle : bool
        With ``batch_size``: draw a fresh seeded order of the samples every pass (default), or take the
        mini-batches in the order of X (False).

    Returns
    -------
    Model

    Raises
    ------
    DivergenceError
        When the parameters stop being finite (checked after every update); when the loss stops being
        finite or exceeds EXPLODED (1e6) times max(its value at the start of the run, 1) (checked every
        ``loss_every`` passes); or when a run of at least 100 passes from a fresh initialisation ends
        with a loss above ENDED_WORSE (2) times its initial one, worse than random weights. The message gives the pass,
        lr and reduction, and what to try.
    """
    hidden = check.integer(hidden, "hidden")
    passes = check.integer(passes, "passes")
    loss_every = check.integer(loss_every, "loss_every")
    lr = check.real(lr, "lr", strict=True)
    reg = check.real(reg, "reg")
    seed = check.integer(seed, "seed", minimum=0, maximum=2**32 - 1)  # RandomState's range
    act = check.ACTIVATIONS[check.choice(activation, "activation", check.ACTIVATIONS)]
    out = check.OUTPUTS[check.choice(output, "output", check.OUTPUTS)]
    check.choice(reduction, "reduction", check.REDUCTIONS)
    check.choice(backend, "backend", check.BACKENDS)
    if batch_size is not None:
        batch_size = check.integer(batch_size, "batch_size")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
    if n_threads is not None:
        n_threads = check.integer(n_threads, "n_threads")
    if init is not None and not isinstance(init, Model):
        raise TypeError(f"init must be a fastnn.Model or None; got {type(init).__name__}")
    dtype = check.dtype_of(dtype if init is None or dtype is not None else init.dtype, X)
    X = check.features(X, dtype)
    n, d = X.shape
    y, k = check.labels(y, n, n_classes=n_classes if init is None else init.n_classes)
    check.network(d, hidden, k)
    batch = n if batch_size is None else min(batch_size, n)
    if init is not None:
        if (init.n_features, init.hidden) != (d, hidden):
            raise ValueError(f"init has {init.n_features} features and {init.hidden} hidden units; "
                             f"X has {d} features and hidden={hidden}")
        theta, offset, history = init.theta.astype(dtype), init.settings["passes"], [init.loss_history]
    else:
        theta, offset, history = init_params(d, hidden, k, seed, dtype), 0, []

    run, _, _, slots, lock = engine(backend, batch, n_threads)
    _, full_loss, _, loss_slots, loss_lock = engine(backend, n, n_threads)
    shuffled = batch_size is not None and shuffle
    no_order = np.empty((0, 0), np.int64)
    dims = kernels.dims(d)
    chunk = _passes_per_call(n, d, hidden, k, batch)

    def current_loss():
        # The NumPy twin would warn on overflow; a non-finite loss is reported by DivergenceError instead.
        with loss_lock, np.errstate(all="ignore"):
            return float(full_loss(X, y, theta, hidden, dims, reg, act, out, loss_slots))

    def diverged(at, what):
        if at == 0:
            hint = f"the inputs overflow the network (max |X| = {np.abs(X).max():.3g}): scale the features"
        elif reduction == "sum" and batch > 1:
            hint = (f"with reduction='sum' the step grows with the number of samples (n={n}): use "
                    f"reduction='mean' or an lr about {n}x smaller")
        else:
            hint = "try a smaller lr"
        raise DivergenceError(f"training diverged at pass {at}: {what} (lr={lr}, reduction={reduction!r}); "
                              f"{hint}", at=at, lr=lr, reduction=reduction, n=n)

    def record(at):
        value = current_loss()
        if not np.isfinite(value):
            diverged(at, f"the loss became {value}")
        if value > EXPLODED * max(start, 1.0):
            diverged(at, f"the loss grew from {start:.4g} to {value:.4g}")
        rows.append((at, value))

    rows = []
    # The loss the run starts from: measured on a fresh start, else the last one init recorded (maybe on
    # other data, as a partial_fit's is: the floor of 1 in record() keeps that from mattering).
    start = init.loss_history[-1, 1] if init is not None and len(init.loss_history) else 0.0
    if init is None:
        start = np.inf  # no limit while the initial loss itself is measured
        record(0)
        start = rows[0][1]
    done = 0
    with _Bar(total=passes, unit="pass", disable=not progress, desc=f"train h={hidden}") as bar:
        while done < passes:
            step = min(chunk, passes - done, loss_every - (done % loss_every))
            order = orders(seed, offset + done, step, n) if shuffled else no_order
            with lock:
                completed = run(X, y, order, theta, hidden, dims, step, batch, lr, reg, reduction == "mean",
                                act, out, slots)
            if completed < step:
                diverged(offset + done + completed + 1, "the parameters became NaN or inf")
            done += step
            bar.update(step)
            if done % loss_every == 0 or done == passes:
                record(offset + done)
    if init is None and passes >= ENDED_WORSE_AFTER and rows[-1][1] > ENDED_WORSE * start:
        diverged(offset + done, f"the loss ended at {rows[-1][1]:.4g}, {rows[-1][1] / start:.3g}x its initial "
                 f"{start:.4g}")
    settings = dict(activation=activation, output=output, reduction=reduction, lr=lr, reg=reg,
                    passes=offset + passes, seed=seed, batch_size=batch_size, backend=backend)
    history.append(np.array(rows, float).reshape(-1, 2))
    return Model(theta, d, hidden, settings, np.concatenate(history))
