"""This machine's compute limit for one `large` pass: counted work over measured rates.

``python bench/limits.py`` prints the FMA and tanh rates it measures, the work of one pass term by term,
and the limit in ms per pass for float64 and float32; ``compute_limit(dtype)`` is what
``bench/peers.py`` reports fastnn against. The limit is optimistic on purpose: every flop at the FMA
peak and every tanh at the best vectorised rate found, no memory or synchronisation cost.
"""
import argparse
import functools
import inspect
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

N, D, H, K = 1_000_000, 2, 64, 2  # the `large` workload (docs/DESIGN.md, Benchmarks)

# fastmath lets LLVM contract x * a + b into one FMA; error_model="numpy" keeps loops vectorisable.
_JIT = dict(fastmath=True, error_model="numpy", parallel=True)
# Independent accumulators per thread: 8 to 32 vector registers' worth, more chains than FMA latency x
# throughput needs, so the FMA units never wait (fewer, 16 or 32, ran at a quarter of the rate here).
_CHAINS = 128
# tanh inputs per thread and repetition: in and out stay in L2 (64 KiB in float64), so the arithmetic is
# what is timed, and NumPy's per-call overhead stays small next to 4096 evaluations.
_TANH_BLOCK = 4096


@njit(**_JIT)
def _fma_chains(reps, a, b, acc):
    """acc[t, j] <- acc[t, j] * a + b, reps times; one row of acc (t) per thread."""
    for t in prange(acc.shape[0]):
        x = np.empty(_CHAINS, acc.dtype)  # private, so LLVM keeps it in registers across reps
        for j in range(_CHAINS):
            x[j] = acc[t, j]
        for _ in range(reps):
            for j in range(_CHAINS):
                x[j] = x[j] * a + b
        for j in range(_CHAINS):
            acc[t, j] = x[j]


@njit(error_model="numpy")
def _libm_tanh(x):
    """Numba's math.tanh: a scalar libm call here (llvmlite has no SVML), the baseline to beat."""
    return math.tanh(x)


def _tanh_loop(f):
    """Compile out[t, i] = f(x[t, i]) over a (threads, block) array, reps times; f is inlined by LLVM."""

    @njit(**_JIT)
    def run(reps, x, out):
        for t in prange(x.shape[0]):
            for _ in range(reps):
                for i in range(x.shape[1]):
                    out[t, i] = f(x[t, i])

    return run


_LIBM_LOOP = _tanh_loop(_libm_tanh)


def _best_of(repeat, fn):
    """Seconds of fn(): the best and the median of repeat runs (this VM's cores are sometimes shared)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def fma_rate(dtype, threads, repeat=7):
    """GFLOP/s (an FMA is 2 flops) of independent FMA chains on `threads` threads: (best, median)."""
    dtype = np.dtype(dtype)
    acc = np.ones((threads, _CHAINS), dtype)
    a, b = dtype.type(0.999999), dtype.type(1e-6)  # x -> b / (1 - a) = 1: stays finite and normal
    reps = int(3e9 / (2 * _CHAINS)) if dtype == np.float64 else int(6e9 / (2 * _CHAINS))  # ~50 ms a run
    prev = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        _fma_chains(1, a, b, acc)
        best, med = _best_of(repeat, lambda: _fma_chains(reps, a, b, acc))
    finally:
        numba.set_num_threads(prev)
    flops = 2.0 * reps * _CHAINS * threads
    return flops / best / 1e9, flops / med / 1e9


@functools.lru_cache(maxsize=None)
def fastnn_tanh():
    """fastnn's scalar tanh, compiled into the timing loop, as (name, loop); None if `fastnn.kernels` has none.

    A function in `fastnn.kernels` (or a submodule it imports) qualifies when its name contains "tanh" and
    a kernel calling it on scalars computes tanh: that is how fastnn's own loops use it (inlined).
    """
    try:
        from fastnn import kernels
    except ImportError:
        return None
    modules = [kernels] + [m for m in vars(kernels).values()
                           if inspect.ismodule(m) and m.__name__.startswith(kernels.__name__ + ".")]
    x = np.linspace(-5.0, 5.0, 16).reshape(1, -1)
    out = np.empty_like(x)
    for module in modules:
        for name, f in sorted(vars(module).items()):
            if "tanh" not in name.lower() or not callable(f):
                continue
            loop = _tanh_loop(f)
            try:
                loop(1, x, out)
            except (numba.core.errors.NumbaError, TypeError):  # not a scalar function kernels can call
                continue
            if np.allclose(out, np.tanh(x), rtol=0, atol=1e-6):
                return f"{module.__name__}.{name}", loop
    return None


def tanh_rates(dtype, threads=None, repeat=7):
    """Nanoseconds per tanh on `threads` threads (all by default), {source: (best, median)}.

    Sources: fastnn's kernel tanh (if any), NumPy's own SIMD ufunc, Numba's scalar libm tanh. The
    per-tanh time is wall time / count, so with T threads it is T times shorter than one thread's.
    """
    dtype = np.dtype(dtype)
    threads = threads or numba.get_num_threads()
    # Hidden pre-activations of a trained `large` model fall in a few units around 0.
    x = np.random.RandomState(0).uniform(-5, 5, (threads, _TANH_BLOCK)).astype(dtype)
    out = np.empty_like(x)
    reps = 2000
    count = reps * x.size
    loops = [("numba math.tanh (libm)", _LIBM_LOOP)]
    found = fastnn_tanh()
    if found:
        loops.insert(0, found)
    rates = {}
    prev = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for name, loop in loops:
            loop(1, x, out)
            best, med = _best_of(repeat, lambda: loop(reps, x, out))
            rates[name] = (best / count * 1e9, med / count * 1e9)
    finally:
        numba.set_num_threads(prev)

    def numpy_rows(t):
        for _ in range(reps):
            np.tanh(x[t], out=out[t])

    with ThreadPoolExecutor(threads) as pool:  # ufuncs release the GIL: one row per thread

        def numpy_all():
            list(pool.map(numpy_rows, range(threads)))

        numpy_all()
        best, med = _best_of(repeat, numpy_all)
    rates["numpy.tanh (SIMD ufunc)"] = (best / count * 1e9, med / count * 1e9)
    return rates


def pass_work(n=N, d=D, h=H, k=K):
    """Work of one training pass, term by term: ({term: flops}, {term: transcendental evaluations}).

    A fused multiply-add counts 2 flops; comparisons and index arithmetic count nothing.
    """
    params = d * h + h * k  # weights that get the L2 term
    flops = {
        "forward  z1 = X W1": 2 * n * d * h,
        "forward  z1 += b1": n * h,
        "forward  z2 = a1 W2": 2 * n * h * k,
        "forward  z2 += b2": n * k,
        "softmax  z2 - max": n * k,
        "softmax  sum exp": n * k,
        "softmax  p = e / sum (reciprocal, K products)": n * (k + 1),
        "backward d3 = p - onehot(y)": n,
        "backward dW2 = a1^T d3": 2 * n * h * k,
        "backward db2 = sum d3": n * k,
        "backward d3 W2^T": 2 * n * h * k,
        "backward f' = 1 - a1^2": 2 * n * h,
        "backward d2 = (d3 W2^T) f'": n * h,
        "backward dW1 = X^T d2": 2 * n * d * h,
        "backward db1 = sum d2": n * h,
        "update   dW += reg W; W -= lr dW (mean: and / N)": 5 * params + 3 * (h + k),
    }
    transcendentals = {"tanh(z1)": n * h, "exp(z2)": n * k}
    return flops, transcendentals


def compute_limit(dtype="float64", n=N, repeat=7):
    """The fastest a `large` pass (of `n` samples) can run here in `dtype` on all threads.

    Returns a dict: ``limit_ms`` = flops / FMA rate + transcendentals x tanh time, with the counts
    (``flops``, ``tanh``, ``exp``), the rates used (``fma_gflops``, ``tanh_ns``, best of `repeat`), which
    tanh set the rate (``tanh_source``), the median rates (``*_median``, this VM's cores are sometimes
    shared, so they drift) and the single-thread FMA rate. exp is charged at the tanh rate: the two
    cost about the same and exp is 3% of the count.
    """
    dtype = np.dtype(dtype)
    threads = numba.get_num_threads()
    fma1, _ = fma_rate(dtype, 1, repeat)
    fma, fma_med = fma_rate(dtype, threads, repeat)
    rates = tanh_rates(dtype, threads, repeat)
    vectorised = {s: r for s, r in rates.items() if "libm" not in s}
    source = min(vectorised, key=lambda s: vectorised[s][0])
    tanh_ns, tanh_med = vectorised[source]
    flops, trans = pass_work(n)
    nflops, ntrans = sum(flops.values()), sum(trans.values())
    return dict(
        dtype=dtype.name,
        threads=threads,
        flops=nflops,
        tanh=trans["tanh(z1)"],
        exp=trans["exp(z2)"],
        fma_gflops=fma,
        fma_gflops_median=fma_med,
        fma_gflops_1thread=fma1,
        tanh_ns=tanh_ns,
        tanh_ns_median=tanh_med,
        tanh_source=source,
        tanh_rates=rates,
        flops_ms=nflops / fma / 1e6,
        tanh_ms=ntrans * tanh_ns / 1e6,
        limit_ms=nflops / fma / 1e6 + ntrans * tanh_ns / 1e6,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per rate; the best is used")
    args = parser.parse_args()
    flops, trans = pass_work()
    print(f"load average {os.getloadavg()[0]:.2f} (other work on the machine lowers every rate)")
    print(f"one `large` pass: N={N:,} D={D} H={H} K={K}")
    for term, n in {**flops, **trans}.items():
        print(f"  {term:<52} {n / 1e6:9.1f} M")
    print(f"  {'flops':<52} {sum(flops.values()) / 1e9:9.3f} G")
    for dtype in ("float64", "float32"):
        lim = compute_limit(dtype, repeat=args.repeat)
        print(f"\n{dtype}, {lim['threads']} threads (best of {args.repeat}; median in brackets)")
        print(f"  FMA rate, 1 thread   {lim['fma_gflops_1thread']:7.1f} GFLOP/s")
        print(f"  FMA rate, {lim['threads']} threads  {lim['fma_gflops']:7.1f} GFLOP/s  "
              f"({lim['fma_gflops_median']:.1f})")
        for source, (best, med) in lim["tanh_rates"].items():
            print(f"  tanh, {source:<28} {best:6.3f} ns  ({med:.3f})  = {lim['tanh'] * best / 1e6:6.1f} ms a pass")
        print(f"  limit: {lim['flops_ms']:.1f} ms flops + {lim['tanh_ms']:.1f} ms tanh/exp ({lim['tanh_source']})"
              f" = {lim['limit_ms']:.1f} ms a pass")


if __name__ == "__main__":
    main()
