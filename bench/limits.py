"""This machine's limit for each named workload: counted work over rates that microbenchmarks measure.

    python bench/limits.py [--repeat R] [--workloads seed,sweep,large,large32] [--no-fastnn]

The rates are the machine's, not fastnn's: the throughput of independent fused multiply-adds (FMA, the
better of a compiled loop of independent chains and NumPy's BLAS matrix product), of independent
divisions, and of streaming reads from memory, each on every thread. A workload's work is counted in
those operations: the flops of the matrix products (the output layer's as one column for two classes, whose
softmax needs only z1 - z0 and whose deltas' rows are opposite) and updates, the bytes of X and y a pass
reads, and each tanh and exp at the operations of the cheapest evaluation that meets the accuracy bound
(float64 tanh within 3 ulp: a range reduction and a degree-5 polynomial in r**2, 12 multiply-adds, and
one division; exp within 1 ulp: 10 multiply-adds and no division). The limit of a pass is the larger of
its compute time (multiply-adds at the FMA rate plus divisions at the divide rate) and its memory time;
it is optimistic on purpose (no loads and stores besides X and y, no synchronisation). The table gives
fastnn's time beside each limit; ``compute_limit(dtype)`` is what ``bench/peers.py`` reports for `large`.
"""
import argparse
import os
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

N, D, H, K = 1_000_000, 2, 64, 2  # the `large` workload (docs/DESIGN.md, Benchmarks)

# Operations of the cheapest tanh and exp that meet fastnn's accuracy bounds (per value; float32 uses
# degree-2 polynomials: 9 multiply-adds for tanh, 7 for exp).
TANH_OPS = {"float64": (12, 1), "float32": (9, 1)}  # (multiply-adds, divisions)
EXP_OPS = {"float64": (10, 0), "float32": (7, 0)}

# fastmath lets LLVM contract x * a + b into one FMA; error_model="numpy" keeps loops vectorisable.
_JIT = dict(fastmath=True, error_model="numpy", parallel=True)
# Independent chains per thread: at least FMA (or divide) latency x throughput, so the units never wait on
# a result, and few enough to stay in registers (16 of them with AVX2, 32 with AVX-512). Which count is
# fastest depends on the machine: each is measured and the best is the rate.
_CHAINS = 128
_FMA_CHAINS = (24, 32, 48, 64, 128)


def _fma_kernel(chains):
    @njit(**_JIT)
    def run(reps, a, b, acc):
        """acc[t, j] <- acc[t, j] * a + b, reps times; one row of acc (t) per thread."""
        for t in prange(acc.shape[0]):
            x = np.empty(chains, acc.dtype)  # private, so LLVM keeps it in registers across reps
            for j in range(chains):
                x[j] = acc[t, j]
            for _ in range(reps):
                for j in range(chains):
                    x[j] = x[j] * a + b
            for j in range(chains):
                acc[t, j] = x[j]
    return run


_FMA = {chains: _fma_kernel(chains) for chains in _FMA_CHAINS}


@njit(**_JIT)
def _divide_chains(reps, a, acc):
    """acc[t, j] <- a / (acc[t, j] + a), reps times: a division per step, chains independent."""
    for t in prange(acc.shape[0]):
        x = np.empty(_CHAINS, acc.dtype)
        for j in range(_CHAINS):
            x[j] = acc[t, j]
        for _ in range(reps):
            for j in range(_CHAINS):
                x[j] = a / (x[j] + a)
        for j in range(_CHAINS):
            acc[t, j] = x[j]


@njit(**_JIT)
def _stream(x, partial):
    """partial[t] = the sum of row block t of x: a read of every byte once."""
    rows = x.shape[0] // partial.size
    for t in prange(partial.size):
        s = 0.0
        for i in range(t * rows, (t + 1) * rows):
            s += x[i]
        partial[t] = s


def _best(repeat, fn):
    """(best, median) seconds of fn() over `repeat` runs: the best is the machine's rate, the median shows
    how much other work and frequency drift took from it."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def rates(dtype, threads=None, repeat=7):
    """The machine's rates on `threads` threads: FMA GFLOP/s (an FMA is 2 flops), divisions per ns, and
    streaming read GB/s, each (best, median)."""
    dtype = np.dtype(dtype)
    threads = threads or numba.get_num_threads()
    prev = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        acc = np.ones((threads, _CHAINS), dtype)
        a, b = dtype.type(0.999999), dtype.type(1e-6)  # x -> b / (1 - a) = 1: stays finite and normal
        fma = (0.0, 0.0)
        for chains, kernel in _FMA.items():
            reps = int(3e9 / (2 * chains)) if dtype == np.float64 else int(6e9 / (2 * chains))
            kernel(1, a, b, acc)
            best, median = _best(repeat, lambda: kernel(reps, a, b, acc))
            flops = 2.0 * reps * chains * threads
            fma = max(fma, (flops / best / 1e9, flops / median / 1e9))
        # A large matrix product in NumPy's BLAS: tuned assembly that often gets closer to the FMA peak than
        # a compiled loop does; the faster of the two is the rate.
        m = np.random.RandomState(0).rand(1536, 1536).astype(dtype)
        gemm = _best(repeat, lambda: m @ m)
        fma = max(fma, tuple(2.0 * 1536**3 / t / 1e9 for t in gemm))
        div_reps = int(3e9 / (2 * _CHAINS)) // 16
        _divide_chains(1, dtype.type(0.5), acc)
        div = _best(repeat, lambda: _divide_chains(div_reps, dtype.type(0.5), acc))
        big = np.ones(1 << 26, dtype)  # 512 MB in float64: far beyond every cache
        partial = np.zeros(threads * 8)
        _stream(big, partial)
        stream = _best(repeat, lambda: _stream(big, partial))
    finally:
        numba.set_num_threads(prev)
    divisions = div_reps * _CHAINS * threads
    return dict(threads=threads,
                fma_gflops=fma,
                div_per_ns=tuple(divisions / t / 1e9 for t in div),
                read_gbs=tuple(big.nbytes / t / 1e9 for t in stream))


def pass_work(n=N, d=D, h=H, k=K, dtype="float64"):
    """The work of one full-batch training pass of n samples: flops (products, updates, the multiply-adds
    of tanh and exp), divisions and bytes read, as {term: count} dicts."""
    dtype = np.dtype(dtype).name
    itemsize = np.dtype(dtype).itemsize
    params = d * h + h * k
    tanh_fma, tanh_div = TANH_OPS[dtype]
    exp_fma, _ = EXP_OPS[dtype]
    exps = n * (1 if k == 2 else k)  # the two-class softmax takes one exp per sample
    # Two classes: softmax and its loss depend on z1 - z0 alone and the deltas' rows are opposite, so the output
    # layer is one column forward and backward (docs/DESIGN.md, the model).
    columns = 1 if k == 2 else k
    flops = {
        "forward  X W1 + b1": 2 * n * d * h + n * h,
        "forward  a1 W2 + b2": 2 * n * h * columns + n * columns,
        "tanh     multiply-adds": 2 * n * h * tanh_fma,
        "softmax  exp multiply-adds, sums": 2 * exps * exp_fma + 2 * n * k,
        "backward p - onehot(y), db2": 2 * n * k,
        "backward a1^T d3, d3 W2^T": 4 * n * h * columns,
        "backward f' and d2": 3 * n * h,
        "backward X^T d2, db1": 2 * n * d * h + n * h,
        "update   W -= lr (dW + reg W)": 4 * params + 2 * (h + k),
    }
    divisions = {"tanh": n * h * tanh_div, "softmax 1 / sum": n}
    reads = {"X and y": n * (d * itemsize + 8)}
    return flops, divisions, reads


def limit_ms(work, r):
    """(compute ms, memory ms, limit ms) of a pass's work at the rates r (best)."""
    flops, divisions, reads = work
    compute = sum(flops.values()) / r["fma_gflops"][0] / 1e6 + sum(divisions.values()) / r["div_per_ns"][0] / 1e6
    memory = sum(reads.values()) / r["read_gbs"][0] / 1e6
    return compute, memory, max(compute, memory)


def compute_limit(dtype="float64", n=N, repeat=7):
    """The limit of a `large` pass in dtype on every thread, with the rates and counts behind it."""
    r = rates(dtype, repeat=repeat)
    work = pass_work(n, dtype=dtype)
    compute, memory, limit = limit_ms(work, r)
    return dict(r, dtype=np.dtype(dtype).name, flops=sum(work[0].values()), divisions=sum(work[1].values()),
                bytes=sum(work[2].values()), compute_ms=compute, memory_ms=memory, limit_ms=limit)


# Named workloads: (n, H list, passes, dtype, runs spread over the threads (sweep) or one run on all).
WORKLOADS = {
    "seed": (200, [3], 20000, "float64"),
    "sweep": (200, [1, 2, 3, 4, 5, 20, 50], 20000, "float64"),
    "ensemble": (200, [20] * 16, 20000, "float64"),  # 16 seeds of one hidden size
    "large": (N, [64], 1, "float64"),
    "large32": (N, [64], 1, "float32"),
}


def workload_limit(name, r):
    """ms of a workload at rates r: a sweep's runs share the threads (each runs on one), the others use all."""
    n, hidden, passes, dtype = WORKLOADS[name]
    total = sum(limit_ms(pass_work(n, h=h, dtype=dtype), r)[2] * passes for h in hidden)
    if name in ("sweep", "ensemble"):  # r is measured on all threads: a run on one thread is `threads` times slower
        total = max(total, max(limit_ms(pass_work(n, h=h, dtype=dtype), r)[2] * passes * r["threads"]
                               for h in hidden))
    elif n < 2 * 8192:  # small runs use one thread (one tile)
        total *= r["threads"]
    return total


def fastnn_ms(name, repeat=5):
    """fastnn's time for a workload (median ms; `large` per pass)."""
    import fastnn

    n, hidden, passes, dtype = WORKLOADS[name]
    X, y = fastnn.make_moons(n)
    if len(hidden) > 1:
        grid = dict(hidden=tuple(dict.fromkeys(hidden)), seeds=range(len(hidden)) if name == "ensemble" else (0,))
        fastnn.sweep(X, y, passes=10, progress=False, **grid)
        run = lambda: fastnn.sweep(X, y, passes=passes, loss_every=passes, progress=False, **grid)  # noqa: E731
    elif passes > 1:
        fastnn.train(X, y, hidden[0], passes=10, dtype=dtype)
        run = lambda: fastnn.train(X, y, hidden[0], passes=passes, loss_every=passes, dtype=dtype)  # noqa: E731
    else:  # a training pass of the kernel, as a long run makes them (train() adds a loss check now and then)
        from fastnn import engine, reference
        from fastnn.train import init_params

        X = X.astype(dtype)
        theta = init_params(2, hidden[0], 2, 0, dtype)
        params = reference.split(theta, 2, hidden[0], 2)
        run = engine.plan("numba", "tanh", "softmax", dtype, D, H, K, n, n)
        none, no_outputs = np.empty((0, 0), np.int64), np.empty((0, 2), dtype)
        step = lambda: run(X, y, none, theta, params, 1, n, 0.5, 0.01, True, False, no_outputs)  # noqa: E731
        step()
        return _best(repeat, step)[1] * 1e3
    return _best(repeat, run)[1] * 1e3


def cpu_model():
    """The CPU, its widest vector extension, the CPU LLVM compiles for, and the vector width of fastnn's kernels
    (which prefer 512-bit vectors where there are any, kernels.config.WIDE_VECTORS): the head of every table."""
    import llvmlite.binding as llvm

    with open("/proc/cpuinfo") as f:
        text = f.read()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    width, bits = ("AVX-512", 512) if " avx512f" in flags else ("AVX2", 256) if " avx2" in flags else ("SSE", 128)
    features = os.environ.get("NUMBA_CPU_FEATURES")
    settings = f"NUMBA_CPU_FEATURES={features}" if features else "the host's features"
    return (f"{model} ({width}; LLVM targets {llvm.get_host_cpu_name()} with {settings}; "
            f"fastnn's kernels {bits}-bit vectors)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per rate; the best is the rate")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--no-fastnn", action="store_true", help="the limits only")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    measured = {}
    for dtype in ("float64", "float32"):
        r = measured[dtype] = rates(dtype, repeat=args.repeat)
        print(f"{dtype} on {r['threads']} threads (best; median in brackets): "
              f"FMA {r['fma_gflops'][0]:.1f} GFLOP/s ({r['fma_gflops'][1]:.1f}), "
              f"division {r['div_per_ns'][0]:.2f}/ns ({r['div_per_ns'][1]:.2f}), "
              f"read {r['read_gbs'][0]:.1f} GB/s ({r['read_gbs'][1]:.1f})")
    flops, divisions, reads = pass_work()
    print(f"\none `large` pass, N={N:,} D={D} H={H} K={K}, float64:")
    for term, count in {**flops, **divisions, **reads}.items():
        print(f"  {term:<40} {count / 1e6:10.1f} M")
    compute, memory, _ = limit_ms((flops, divisions, reads), measured["float64"])
    print(f"  compute {compute:.1f} ms, memory {memory:.1f} ms a pass")
    print(f"\n{'workload':10} {'limit ms':>10} {'fastnn ms':>10} {'ratio':>7}")
    for name in args.workloads.split(","):
        limit = workload_limit(name, measured[WORKLOADS[name][3]])
        own = None if args.no_fastnn else fastnn_ms(name)
        unit = " (a pass)" if WORKLOADS[name][2] == 1 else ""
        print(f"{name:10} {limit:10.2f} {'' if own is None else f'{own:10.1f}'} "
              f"{'' if own is None else f'{own / limit:6.2f}x'}{unit}")


if __name__ == "__main__":
    main()
