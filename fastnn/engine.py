"""How a call reaches the kernels: the variant for its settings and shape, threads, work buffers, and the
notice printed before a variant is compiled."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numba
import numpy as np
import threadpoolctl
from numba._dispatcher import compute_fingerprint as _fingerprint

from . import kernels, reference

# Parallel kernels are entered one at a time: Numba's workqueue threading layer aborts when two threads
# enter parallel code at once, and a parallel kernel already uses every core.
_PARALLEL = threading.Lock()

log = logging.getLogger("fastnn")


class _Unlocked:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def tiles(n: int, d: int, h: int) -> int:
    """Tiles of n samples (d inputs, h hidden units): the unit of parallel work, and of the gradient and loss
    partials."""
    return -(-n // kernels.tile_size(n, d, h))


def work_bytes(n: int, d: int, h: int, k: int, batch: int, dtype, slots: int) -> int:
    """Bytes of the buffers a call allocates besides its inputs: per slot the transposed block and its
    activations, logits, outputs, deltas, softmax sums and weights (kernels.work_rows: d + 2h + 3k + 3 rows
    of BLOCK values, and a gradient scratch of d x h for wide inputs) and BLOCK labels; a float64 gradient
    partial per tile of a batch; a loss per tile of n; and a float64 copy of the parameters."""
    size = reference.size(d, h, k)
    return (slots * kernels.BLOCK * (kernels.work_rows(d, h, k) * np.dtype(dtype).itemsize + 8)
            + 8 * size * (tiles(batch, d, h) + 1) + 8 * tiles(n, d, h))


@dataclass(frozen=True)
class Engine:
    """The ``run`` kernel of one variant (or its NumPy twin), its work slots, and the lock to hold while it
    runs. Call it like ``kernels.build(...).run`` without the buffers, which it allocates."""

    run: Callable
    slots: int
    lock: Any
    describe: str  # the variant, for the compile notice
    alternate: Callable | None = None  # for an evaluation: the other loop's run, used if it is compiled already
    blas: bool = False  # the kernels call BLAS (wide inputs): run them with BLAS on one thread
    wide: bool = False  # more inputs than kernels.UNROLL: the shared wide variant (for the compile notice)

    def __call__(self, X, y, order, theta, params, passes, batch, lr, reg, mean, evaluate, P, optimiser=None,
                 weights=None, running=None, buffers=None):
        """optimiser: (state, settings) of a solver other than plain "sgd" (see optimiser_arrays); weights:
        the samples' (n,), for a weighted variant; running: (r,) float64 for the training losses of the first r
        passes (kernels' run); buffers: from make_buffers, for a caller that calls again and again."""
        args = arguments(X, y, order, theta, params, passes, batch, lr, reg, mean, evaluate, P, self.slots,
                         optimiser, weights, running, buffers)
        run = self.run
        if self.describe:  # a kernel, not the NumPy twin
            key = (run, self.alternate, _fingerprint(args))
            run = _CHOSEN.get(key)
            if run is None:  # first call with these kinds of arguments: Numba's types, compiled or not
                run = self.run
                types = tuple(run.typeof_pyval(a) for a in args)
                if self.alternate is not None and not _ready(run, types) and _ready(self.alternate, types):
                    run = self.alternate  # evaluates alike: no reason to compile the other
                _compile(run, types, self.describe, self.wide)
                _CHOSEN[key] = run
        with self.lock, single_threaded_blas if self.blas else contextlib.nullcontext():
            done, value = run(*args)
        if self.slots > 1:
            _FORK["parallel"] = True
        return int(done), float(value)


# The kernel each (kernel, alternate, kinds of arguments) was given: Numba's types of 20 arguments take about
# 0.3 ms to compute in Python, more than a small run's arithmetic, so they are computed once per kind of
# arguments. The kind is Numba's own fingerprint of the arguments (each array's dtype, dimensions, layout and
# whether it is writable; a tuple's items; a scalar's type), which its dispatcher computes in C to find a
# compiled kernel: 0.6 us for run's 20 arguments, where reading the same from Python took 7 us (measured), a
# quarter of what a kernel call cost the estimators, which call one per pass.
_CHOSEN: dict = {}


_FORK = {"parallel": False, "warned": False}  # whether a parallel kernel ran in this process; and warned


def _warn_before_fork() -> None:
    """Warn, in the parent of a fork() (multiprocessing's default start method on Linux), once, when parallel
    kernels ran on GNU OpenMP: that runtime does not survive fork(), and a forked child that runs parallel
    kernels is terminated by it, which leaves a multiprocessing pool waiting forever."""
    if not _FORK["parallel"] or _FORK["warned"]:
        return
    try:
        from numba.np.ufunc import omppool
        gnu = numba.threading_layer() == "omp" and omppool.openmp_vendor == "GNU"
    except (ImportError, AttributeError, ValueError):
        return
    if gnu:
        _FORK["warned"] = True
        warnings.warn("fastnn: this process ran parallel kernels on GNU OpenMP, which does not survive fork(): a "
                      "forked child that trains on many samples is terminated, and a multiprocessing pool then "
                      "waits forever. Start child processes with multiprocessing.get_context('spawn') or "
                      "'forkserver' (or set NUMBA_THREADING_LAYER=workqueue before the first parallel run).",
                      RuntimeWarning, stacklevel=2)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_warn_before_fork)


class _SingleThreadedBLAS:
    """BLAS on one thread while kernels that call it run (a context manager; calls may overlap, from any
    threads: the first sets the limit, the last restores it). BLAS's own threads would split some products
    differently by their number (float32 results then change in the last bits with the thread count), and
    would compete with the kernels' threads: the kernels run their tiles in parallel themselves."""

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._limit = None
        self._controller = None

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._controller is None:  # finding the libraries takes a millisecond: once per process
                    import scipy.linalg.cython_blas  # noqa: F401  the BLAS the kernels call, loaded before it is found
                    self._controller = threadpoolctl.ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._users += 1

    def __exit__(self, *exc):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limit.restore_original_limits()
        return False


single_threaded_blas = _SingleThreadedBLAS()


def optimiser_arrays(solver: str, size: int, momentum=0.0, nesterov=False, beta_1=0.9, beta_2=0.999,
                     epsilon=1e-8) -> tuple[np.ndarray, np.ndarray]:
    """A fresh optimiser for ``run`` (kernels' update): its state (velocity, or Adam's two moments; zero) and
    its settings with the step count."""
    state = np.zeros((0 if solver == "sgd" else 2, size))
    return state, np.array([momentum, float(nesterov), beta_1, beta_2, epsilon, 0.0])


def make_buffers(X, y, theta, params, batch, slots, weights=None, train=True) -> tuple:
    """run's read-only inputs (X, y, weights) and its buffers for calls on them in batches of ``batch``: the
    work slots, the labels, the gradient partials (zero; a row per tile of a batch, or one when train is
    False: an evaluation) and the losses.

    A training session makes them once and passes them to each of its calls (once per checkpoint, or per pass
    for the estimators): the kernels and their twins leave the partials zero, as a call expects them. Made
    at every call, they took 5 us of it, a third of what a small call costs (measured).
    """
    n, d = X.shape
    h, k = params[2].shape
    batch_tiles = tiles(min(batch, n), d, h)
    return (_readonly(X), _readonly(y), _readonly(np.empty(0, X.dtype) if weights is None else weights),
            aligned((slots, kernels.work_rows(d, h, k), kernels.BLOCK), X.dtype), label_buffer(y, slots, X.dtype),
            np.zeros((batch_tiles if train else 1, theta.size)), np.zeros(max(tiles(n, d, h), batch_tiles)))


def arguments(X, y, order, theta, params, passes, batch, lr, reg, mean, evaluate, P, slots, optimiser=None,
              weights=None, running=None, buffers=None):
    """The arguments of ``run``: buffers, if given, from make_buffers for the same X, y, weights, theta,
    batch and slots; else made here."""
    if buffers is None:
        buffers = make_buffers(X, y, theta, params, batch, slots, weights, passes > 0)
    Xr, yr, wr, work, labels, partials, losses = buffers
    state, settings = optimiser_arrays("sgd", theta.size) if optimiser is None else optimiser
    running = _NO_RUNNING if running is None else running
    return (Xr, yr, wr, order, theta, params, int(passes), int(batch), float(lr), float(reg), bool(mean),
            bool(evaluate), work, labels, partials, losses, running, P, state, settings)


_NO_RUNNING = np.empty(0)


def label_buffer(y: np.ndarray, slots: int, dtype) -> np.ndarray:
    """``run``'s labels buffer: a block's labels per work slot, or for identity outputs (y (n, k)) a block's
    targets, in the data's dtype."""
    if y.ndim == 2:
        return aligned((slots, y.shape[1], kernels.BLOCK), dtype, zero=True)
    return aligned((slots, kernels.BLOCK), np.int64, zero=True)


# The work and label buffers start on a cache line, and so does each of their rows (BLOCK values: 1 or 2 KiB),
# so that a vector load or store of 64 bytes touches one line, not two. NumPy's allocator aligns to 16 bytes,
# and the same buffer came out at one address or another from process to process: the tutorial's pass took
# 1.10 us on a work buffer at 0 or 32 bytes past a line and 1.22-1.28 us at 8, 16 or 48 (12.6 against 14.7-14.9
# us at H = 50, float32 alike: a 2-core AMD EPYC, Zen 4, whose 512-bit accesses are two 256-bit halves; on
# CPUs whose 512-bit loads are whole, Intel's, every offset splits them).
ALIGN = 64


def aligned(shape, dtype, zero=False) -> np.ndarray:
    """An empty (zero: zeroed) C-contiguous array whose data starts at a multiple of ALIGN bytes."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = (np.zeros if zero else np.empty)(size + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + size].view(dtype).reshape(shape)


# An evaluation alone (predict, loss) runs on threads from this many samples: below it a serial pass takes
# well under 0.1 s, and using the variant a training run has compiled already saves seconds of compiling
# the first time (a plot's grid of 160,000 points would otherwise compile a parallel variant of its own).
EVALUATE_PARALLEL = 1 << 18


def plan(backend: str, activation: str, output: str, dtype, d: int, h: int, k: int, n: int,
         batch: int | None = None, n_threads: int | None = None, solver: str = "sgd",
         weighted: bool = False) -> Engine:
    """The engine for a call on n samples (d inputs, h hidden units, k classes) in batches of ``batch`` (None:
    an evaluation only, no training).

    Training runs serially unless n is at least 2 x TILE samples and more than one thread is allowed
    (evaluations alone from EVALUATE_PARALLEL samples, or two tiles of heavy samples: kernels.heavy); a batch of one
    tile of at most one block, or no training, gets the variant without the loop over tiles. The choice
    never changes a result's bits.
    """
    dtype = np.dtype(dtype).name
    if backend == "numpy":
        return Engine(reference.build(activation, output, dtype, d, k, "block", False, solver, weighted).run, 1,
                      _Unlocked(), "")
    threads = numba.get_num_threads() if n_threads is None else min(n_threads, numba.get_num_threads())
    heavy = kernels.heavy(d, h)
    if heavy:  # a tile, a block or less, is worth a thread even in an evaluation
        parallel = threads > 1 and tiles(n, d, h) > 1
    else:
        parallel = threads > 1 and n >= (2 * kernels.TILE if batch is not None else EVALUATE_PARALLEL)
    loop = "block" if batch is None or (batch <= kernels.BLOCK and tiles(min(batch, n), d, h) == 1) else "tiles"
    describe = (f"{activation} hidden units, {output} outputs, {dtype}, {d} input{'s' * (d > 1)}, "
                f"{k} {'targets' if output == 'identity' else 'classes'}"
                + (f", {solver}" if solver != "sgd" else "") + (", weighted" if weighted else "")
                + (", parallel" if parallel else ""))
    alternate = (kernels.build(activation, output, dtype, d, k, "tiles", parallel, blas=heavy).run
                 if batch is None else None)
    return Engine(kernels.build(activation, output, dtype, d, k, loop, parallel, solver, weighted, heavy).run,
                  threads if parallel else 1, _PARALLEL if parallel else _Unlocked(), describe, alternate, blas=heavy,
                  wide=d > kernels.UNROLL)


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view of an input array: the kernels read inputs only, and Numba compiles read-only and
    writable arrays apart, so passing every input read-only serves read-only, memory-mapped and writable
    data with the same machine code."""
    view = a.view(np.ndarray)
    view.flags.writeable = False
    return view


# Seconds one variant took to compile from an empty cache on the 2-core AMD EPYC development machine
# (2026-12-07), by (parallel, wide): the tutorial's 3.4, wine's 6.3, `large`'s parallel 8.6, 16 inputs'
# parallel 10.4. Less where other variants compiled subroutines it shares (kernels.config.SubroutineCache),
# and with a compile helper (_start_helper): the tutorial's 2.2-2.4 s, the estimator on digits' 7.5-7.8 s
# instead of 10.7 (whole processes).
_COMPILE_SECONDS = {(False, False): 3, (False, True): 6, (True, False): 9, (True, True): 10}


def _ready(dispatcher, types) -> bool:
    """Whether the kernel for these argument types is compiled in this process or cached on disk."""
    return types in dispatcher.overloads or _cached(dispatcher, types)


def _compile(dispatcher, types, describe: str, wide: bool = False) -> None:
    """Compile (or load from the disk cache) the kernel for these argument types, with a notice first if it
    must be compiled: a first call otherwise sits silent for seconds."""
    if types in dispatcher.overloads:
        return
    compiling = not _cached(dispatcher, types)
    if compiling:
        parallel = dispatcher.targetoptions.get("parallel", False)
        notice(f"fastnn: compiling kernels for {describe} (first use only, then cached on disk; about "
               f"{_COMPILE_SECONDS[bool(parallel), wide]} s)")
    start = time.perf_counter()
    helper = _start_helper(dispatcher) if compiling else None
    try:
        with _interrupt_deferred():
            dispatcher.compile(types)
    finally:
        if helper is not None:
            kernels.config.TYPED.pop(dispatcher.py_func, None)
            _stop_helper(helper)
    if compiling:
        log.debug("compiled %s in %.1f s", describe, time.perf_counter() - start)


def _start_helper(dispatcher):
    """Start a helper process that makes the subroutines of the kernel being compiled into the disk cache, the
    last called first, while this process compiles the kernel and then links them, the first called first,
    loading those the helper has made by then (kernels.config.prepare). The helper imports fastnn while this
    process types the kernel, which then tells it which subroutines to make (_send). The subroutines are about
    two fifths of a variant's compile time.

    Only where this process may use a second core and a disk cache is there; FASTNN_COMPILE_HELPER="0" never
    starts one, "1" wherever it can, and by default not while the machine is busy (_busy: a test suite's
    workers, say), where the helper would take a core from other work. Returns the process, or None."""
    variant = getattr(dispatcher, "variant", None)
    setting = os.environ.get("FASTNN_COMPILE_HELPER", "").strip()
    if setting not in ("", "0", "1"):
        warnings.warn(f"FASTNN_COMPILE_HELPER={setting!r} is neither 0 (no compile helper) nor 1 (a helper whatever "
                      "the load): the default applies (a helper unless the machine is busy)", RuntimeWarning,
                      stacklevel=2)
    if (variant is None or cores() < 2 or setting == "0" or (setting != "1" and _busy())
            or not isinstance(dispatcher._cache, kernels.KernelCache) or dispatcher.py_func in kernels.config.TYPED
            or not sys.executable or getattr(sys, "frozen", False)):  # no interpreter that runs "-c"
        return None
    try:  # the helper imports fastnn from where this process found it
        helper = subprocess.Popen([sys.executable, "-c", _HELPER], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:  # no interpreter to start (an embedded Python)
        return None
    try:
        pickle.dump((sys.path, variant), helper.stdin)
        helper.stdin.flush()
    except OSError:  # it stopped at once
        _stop_helper(helper)
        return None
    kernels.config.TYPED[dispatcher.py_func] = functools.partial(_send, helper)
    log.debug("compile helper started (process %d)", helper.pid)
    return helper


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _busy() -> bool:
    """Whether the machine's load average over the last minute is at least its number of cores (both of the
    whole machine: in a container limited to some of its cores, the load is still the host's)."""
    try:
        return os.getloadavg()[0] >= (os.cpu_count() or 1)
    except (AttributeError, OSError):  # no load average (Windows)
        return False


_HELPER = ("import pickle, sys; path, variant = pickle.load(sys.stdin.buffer); sys.path[:] = path; "
           "from fastnn import engine; engine._help(variant)")


def _send(helper, calls) -> None:
    """Tell the helper which subroutines to make (called once the kernel is typed)."""
    try:
        with helper.stdin:
            pickle.dump(calls, helper.stdin)
    except OSError:  # it stopped
        pass


def _help(variant) -> None:
    """The helper process's work (_start_helper)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # see _stop_helper
    numba.core.registry.cpu_target.target_context.refresh()  # Numba's first compile in a process loads these
    try:
        calls = pickle.load(sys.stdin.buffer)
    except EOFError:  # the kernel compiled without telling
        return
    kernels.network.prepare(variant, calls)


def _stop_helper(helper) -> None:
    """Stop the helper, which exits between two Python statements (a file it writes is finished or removed),
    and collect its exit in a thread of its own: this process does not wait for it."""
    with contextlib.suppress(OSError):
        helper.terminate()
    with contextlib.suppress(OSError):
        helper.stdin.close()
    threading.Thread(target=helper.wait, daemon=True).start()


@contextlib.contextmanager
def _interrupt_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise KeyboardInterrupt.

    While Numba compiles or loads a kernel, LLVM calls back into Python through ctypes, where an exception is
    printed and dropped: a Ctrl-C landing there was lost, and the call went on to run its passes (hours, for a
    long run; seen as hangs of the Ctrl-C tests when a busy machine slowed the loading). Only in the main
    thread, and only over Python's own handler: a handler of the caller's is left alone.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _cached(dispatcher, types) -> bool:
    cache = dispatcher._cache
    return isinstance(cache, kernels.KernelCache) and cache.has(types, dispatcher.targetctx.codegen())


def notice(message: str) -> None:
    """Tell the user something worth waiting for: through the ``fastnn`` logger (level INFO) when logging is
    configured, else on stderr. ``logging.getLogger("fastnn").setLevel(logging.WARNING)`` silences it."""
    if log.level > logging.INFO:
        return
    if log.hasHandlers():
        log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def compile(activations=("tanh",), outputs=("softmax",), dtypes=("float64", "float32"), inputs=(2,), classes=(2,),
            processes: int | None = None) -> list[dict]:
    """Compile the kernels of every combination of these settings into the on-disk cache, in parallel
    processes, so that later processes (a Docker image's, a cluster's workers) start without compiling.

    Each combination gets every loop a call can use: one block or tiles, serial or parallel, and for inputs
    above kernels.UNROLL, with the input layer's products by BLAS (for heavy samples, kernels.heavy) and
    without. Numbers of inputs above kernels.UNROLL share those compilations, and so do numbers of classes
    above it (for identity outputs, the classes are the targets).
    processes=1 compiles in this process (default: one process per core). Returns one dict per compiled
    variant: its settings, ``seconds`` and ``status`` ("compiled" or "cached").
    """
    import concurrent.futures
    import itertools
    import multiprocessing

    from . import _validate as check

    activations = [check.choice(a, "activations", reference.ACTIVATIONS) for a in activations]
    outputs = [check.choice(o, "outputs", reference.OUTPUTS) for o in outputs]
    dtypes = [check.dtype_of(t) for t in dtypes]
    inputs = [check.integer(d, "inputs") for d in inputs]
    classes = [check.integer(k, "classes") for k in classes]
    if processes is not None:
        processes = check.integer(processes, "processes")
    variants = {}
    for act, out, dtype, d, k in itertools.product(activations, outputs, dtypes, inputs, classes):
        d, k = min(d, kernels.UNROLL + 1), min(k, kernels.UNROLL + 1)  # the same compiled variant above these
        for loop, parallel, blas in itertools.product(("block", "tiles"), (False, True),
                                                      (False, True) if d > kernels.UNROLL else (False,)):
            variants[(act, out, np.dtype(dtype).name, d, k, loop, parallel, blas)] = None
    if processes is None:
        processes = cores()
    if processes == 1:  # in this process: a Dask worker, say, may not start processes of its own
        return [_compile_variant(v) for v in variants]
    context = multiprocessing.get_context("spawn")  # Numba's threading layer is not fork-safe
    with concurrent.futures.ProcessPoolExecutor(min(processes, len(variants)), mp_context=context) as pool:
        return list(pool.map(_compile_variant, variants))


def _compile_variant(variant) -> dict:
    """Compile (or find cached) the ``run`` kernel of one variant for the arguments the engine passes."""
    act, out, dtype, d, k, loop, parallel, blas = variant
    kernels.orders(0, 0, np.empty((1, 1), np.int64))  # shuffled mini-batches' orders: shared, compiled once
    run = kernels.build(act, out, dtype, d, k, loop, parallel, blas=blas).run
    h = 1
    theta = np.zeros(reference.size(d, h, k), dtype)
    X = np.zeros((1, d), dtype)
    y = np.zeros((1, k), dtype) if out == "identity" else np.zeros(1, np.int64)
    args = arguments(X, y, np.empty((0, 0), np.int64), theta, reference.split(theta, d, h, k), 0, 1, 0.01, 0.0,
                     False, True, np.empty((0, k), dtype), 1)
    types = tuple(run.typeof_pyval(a) for a in args)
    start = time.perf_counter()
    status = "cached" if _cached(run, types) else "compiled"
    run.compile(types)
    return dict(activation=act, output=out, dtype=dtype, inputs=d, classes=k, loop=loop, parallel=parallel,
                blas=blas, seconds=time.perf_counter() - start, status=status)


def cache_dir() -> str:
    """Where the compiled kernels are cached: ``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside the
    kernels' sources, or, where that cannot be written (a read-only install), Numba's folder in the user's
    cache directory."""
    return kernels.build("tanh", "softmax", "float64", 2, 2, "block").run._cache.cache_path
