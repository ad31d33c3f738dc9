"""fastnn against the code a user would otherwise run: one table, measured side by side in one run.

    python bench/peers.py [--workloads seed,sweep,large,large32] [--repeat R] [--large-n N] [--wait-quiet S]

Rows: fastnn (Numba, the baseline of the ratios), fastnn's NumPy reference backend, the tutorial's own
NumPy code, and where installed (``pip install -e ".[peers]"``) JAX with the loop in jit(fori_loop),
PyTorch eager (manual gradients, autograd) and scikit-learn's MLPClassifier. Every row runs in a fresh
process, one after another, so no library's threads or caches touch another's timing. The
implementations live in bench/_peers_impl.py; the compute limit of the `large` footers in
bench/limits.py. Linux only: memory and CPU use are read from /proc.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from _peers_impl import EAGER, IMPLS, WORKLOADS
from limits import cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "_peers_impl.py")


def _version(dist):
    """The installed version of a distribution, without importing it (torch and jax take seconds)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment():
    """The lines that say what ran where: CPU, library versions, thread and BLAS settings."""
    import numba

    model = cpu_model()
    return [
        f"{time.strftime('%Y-%m-%d %H:%M')}  {model}, {len(os.sched_getaffinity(0))} CPUs usable"
        f" (os.cpu_count {os.cpu_count()}), Python {platform.python_version()}",
        f"numpy {np.__version__}, numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
        f"torch {_version('torch')} (run on 2 threads), jax {_version('jax')}, "
        f"scikit-learn {_version('scikit-learn')}",
        "  ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                                   "OPENBLAS_NUM_THREADS", "NUMBA_CACHE_DIR")),
    ]


def legend(args):
    """What each column means and how it was measured."""
    large = WORKLOADS["large"]
    return [
        f"time: median of up to {args.repeat} runs (none that would take a row past {args.budget:g} s); the "
        f"whole run for seed and sweep, a pass for large ((a {large['passes']}-pass run - a 1-pass run) / "
        f"{large['passes'] - 1}, medians of each, so fixed costs cancel); x fastnn = time / fastnn's time",
        f"1st call: the untimed call before ({WORKLOADS['seed']['first']} passes; large: {large['first']}): "
        "Numba compile or disk-cache load, JAX trace and XLA compile (once per hidden size)",
        "peak MB: growth of the row's peak RSS (VmHWM, reset after the 1st call) over its RSS before the "
        "timed runs; sees every allocator (NumPy, Numba, BLAS, torch, XLA), not the data",
        "loss, acc: the tutorial's loss and the accuracy of the final weights, computed alike for every row "
        "(sweep: mean over its models)",
        "others: CPUs kept busy by other processes while the row ran (above ~0.1 the row is skewed); "
        f"load average at start {os.getloadavg()[0]:.2f}",
    ]


def _cpu_seconds():
    """(CPU seconds all processes have used, CPU seconds our finished children have used)."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, children.ru_utime + children.ru_stime


def _wait_quiet(limit):
    """Wait up to `limit` seconds for other processes to use under 0.1 CPU (over 2-second windows)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        busy0, _ = _cpu_seconds()
        time.sleep(2)
        if _cpu_seconds()[0] - busy0 < 0.2:
            return


def _child(args, timeout):
    """Run bench/_peers_impl.py with args in a fresh process: its JSON result, or an error string.

    The result gains `others`: the CPUs that other processes kept busy meanwhile, a sign of a skewed row.
    """
    busy0, ours0 = _cpu_seconds()
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, CHILD, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout} s"
    busy1, ours1 = _cpu_seconds()
    if p.returncode:
        lines = p.stderr.strip().splitlines() or [f"exit {p.returncode}"]
        return f"failed: {lines[-1][:90]}"
    result = json.loads(p.stdout.strip().splitlines()[-1])
    result["others"] = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (time.perf_counter() - t0)
    return result


def _measure(impl, workload, data_file, args):
    """One row, in a fresh process; with --wait-quiet, on idle CPUs and again if another process intervened."""
    scale = args.sweep_scale if workload in ("sweep", "ensemble") and impl in EAGER else 1
    for _ in range(3 if args.wait_quiet else 1):
        _wait_quiet(args.wait_quiet)
        r = _child([impl, workload, data_file, args.repeat, args.budget, scale], args.timeout)
        if isinstance(r, str) or r["others"] < 0.1:
            break
    return r


def _datasets(workloads, large_n, folder):
    """Write each workload's data once (fastnn.make_moons, seed 0), so that every row trains on the same."""
    import fastnn

    files = {}
    for name in workloads:
        w = WORKLOADS[name]
        n = large_n if name.startswith("large") else w["n"]
        X, y = fastnn.make_moons(n_samples=n, noise=0.20, random_state=0, dtype=np.dtype(w["dtype"]))
        files[name] = os.path.join(folder, f"{name}.npz")
        np.savez(files[name], X=X, y=y)
    return files


COLUMNS = f"{'workload':<8} {'implementation':<21} {'time ms':>10} {'x fastnn':>9} {'1st call ms':>11} " \
          f"{'peak MB':>8} {'loss':>8} {'acc':>6} {'runs':>4} {'others':>6}"


def _row(workload, impl, r, base):
    """One line of the table; `base` is fastnn's time, None when fastnn failed."""
    if isinstance(r, str):
        return f"{workload:<8} {impl:<21} {r}"
    mark = "*" if r["passes"] < WORKLOADS[workload]["passes"] else " "
    ratio = f"{r['ms'] / base:8.2f}x" if base else f"{'-':>9}"
    return (f"{workload:<8} {impl:<21} {r['ms']:9.1f}{mark} {ratio} {r['first_ms']:11.1f} {r['peak_mb']:8.1f} "
            f"{r['loss']:8.5f} {r['acc']:6.3f} {r['runs']:4d} {r['others']:6.2f}")


def _limit_footer(dtype, n, fastnn_ms, timeout):
    """The compute limit of a `large` pass, measured in a fresh process, and fastnn's distance to it."""
    lim = _child(["limit", dtype, n], timeout)
    if isinstance(lim, str):
        return f"  compute limit ({dtype}): {lim}"
    line = (f"  limit ({dtype}, bench/limits.py, measured now on {lim['threads']} threads): {lim['limit_ms']:.1f} ms "
            f"a pass = {lim['flops'] / 1e9:.2f} GFLOP at {lim['fma_gflops'][0]:.0f} GFLOP/s + "
            f"{lim['divisions'] / 1e6:.0f} M divisions at {lim['div_per_ns'][0]:.2f}/ns ({lim['compute_ms']:.1f} ms"
            f" compute), {lim['bytes'] / 1e6:.0f} MB at {lim['read_gbs'][0]:.0f} GB/s ({lim['memory_ms']:.1f} ms "
            f"memory); others {lim['others']:.2f}")
    if fastnn_ms:
        line += (f"\n  fastnn: {fastnn_ms:.1f} ms a pass = {fastnn_ms / lim['limit_ms']:.2f}x the limit"
                 f" ({lim['limit_ms'] / fastnn_ms:.0%} of the limit's speed)")
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="seed,sweep,ensemble,large,large32",
                        help="comma-separated, from " + ",".join(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per row; the median is shown")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds of timed runs a row may take: no further run once one more would "
                             "overrun (at least one)")
    parser.add_argument("--sweep-scale", type=int, default=10,
                        help="eager rows of `sweep` run 1/S of the passes, time scaled by S (1: all passes)")
    parser.add_argument("--large-n", type=int, default=1_000_000, help="samples of the large workloads")
    parser.add_argument("--timeout", type=int, default=900, help="seconds before a row is given up")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                        help="before each row, wait up to S seconds for other processes to leave the CPUs "
                             "idle, and run a disturbed row (others >= 0.1) up to twice more")
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    if importlib.util.find_spec("fastnn") is None:
        sys.exit("fastnn is not importable: run `pip install -e .` (and `.[peers]` for the peers) first")

    print("\n".join(environment() + legend(args)))
    with tempfile.TemporaryDirectory() as folder:
        files = _datasets(workloads, args.large_n, folder)
        print()
        print(COLUMNS)
        for workload in workloads:
            base = None
            for impl, (module, _) in IMPLS.items():
                if importlib.util.find_spec(module) is None:
                    r = "not installed"
                else:
                    r = _measure(impl, workload, files[workload], args)
                if impl == "fastnn" and not isinstance(r, str):
                    base = r["ms"]
                print(_row(workload, impl, r, base), flush=True)
            if workload.startswith("large"):
                _wait_quiet(args.wait_quiet)
                print(_limit_footer(WORKLOADS[workload]["dtype"], args.large_n, base, args.timeout), flush=True)
    if ("sweep" in workloads or "ensemble" in workloads) and args.sweep_scale > 1:
        print(f"* ran {WORKLOADS['sweep']['passes'] // args.sweep_scale} of {WORKLOADS['sweep']['passes']} passes "
              f"per model, time x {args.sweep_scale} (an eager pass costs the same every time; the loss is after "
              "the shorter run); --sweep-scale 1 runs them all")
    if "seed" in workloads or "sweep" in workloads:
        print("seed ends on a period-2 orbit: losses 0.07076 and 0.07132 are its two phases, both right; in the "
              "sweep, H = 2 and 4 are chaotic (docs/DESIGN.md), so correct rows differ in the mean loss; sklearn "
              "draws its own initial weights and has one logistic output")


if __name__ == "__main__":
    main()
