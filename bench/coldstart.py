"""What the first call costs: each entry point as a whole process, with an empty Numba cache and a warm one.

    python bench/coldstart.py [--repeat R] [--only train,demo,...]

Every row runs its command in a fresh process twice over: "cold" with ``NUMBA_CACHE_DIR`` pointing at a new
empty folder (nothing compiled), "warm" right after with the same folder (everything cached). "after
tutorial" rows start from a cache that holds only what ``fastnn train`` compiled, as a user who ran the
tutorial and then moved to other data would. "first line" is the time until the process printed anything
(the compile notice, on a cold start). Times are medians over ``--repeat`` rounds, each round with new
folders. Set FASTNN_COMPILE_HELPER=0 to measure compiles without the helper process (see the README).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ESTIMATOR = """
import numpy as np, sys
from sklearn.datasets import load_{name}
from sklearn.preprocessing import StandardScaler
from fastnn import NeuralNetClassifier
X, y = load_{name}(return_X_y=True)
X = StandardScaler().fit_transform(X)
print(NeuralNetClassifier(hidden=16, passes=200, random_state=0).fit(X, y).score(X, y))
"""
READONLY = """
import numpy as np, fastnn
X, y = fastnn.make_moons()
X.flags.writeable = False; y.flags.writeable = False
print(fastnn.train(X, y, 3, passes=2000).score(X, y))
"""

# name: (command, cache the row starts from: None = empty, else the row whose cache it copies)
ROWS = {
    "train": (["fastnn", "train", "--quiet"], None),
    "demo": (["fastnn", "demo", "--quiet", "--out", "{tmp}/demo"], None),
    "sweep": (["fastnn", "sweep", "--quiet", "--passes", "2000", "--out", "{tmp}/sweep"], None),
    "iris": ([sys.executable, "-c", ESTIMATOR.format(name="iris")], None),
    "digits": ([sys.executable, "-c", ESTIMATOR.format(name="digits")], None),
    "iris after tutorial": ([sys.executable, "-c", ESTIMATOR.format(name="iris")], "train"),
    "read-only after tutorial": ([sys.executable, "-c", READONLY], "train"),
}


def timed(command, cache, tmp):
    """(seconds to the first byte of output, seconds in all) of one process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    start = time.perf_counter()
    proc = subprocess.Popen([part.format(tmp=tmp) for part in command], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    first = proc.stdout.read(1)
    first_at = time.perf_counter() - start
    rest = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{(first + rest).decode()[-2000:]}")
    return first_at, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default=",".join(ROWS), help="comma-separated rows")
    args = parser.parse_args()
    names = args.only.split(",")
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    helper = {"0": "off", "1": "on"}.get(os.environ.get("FASTNN_COMPILE_HELPER", ""), "unless the machine is busy")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}  {cpu}, {len(os.sched_getaffinity(0))} CPUs, "
          f"compile helper (FASTNN_COMPILE_HELPER): {helper}")
    results = {name: [] for name in names}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            caches = {}
            for name in sorted(names, key=lambda n: ROWS[n][1] is not None):  # base rows first
                command, base = ROWS[name]
                cache = os.path.join(tmp, "cache-" + name.replace(" ", "-"))
                if base is None:
                    os.makedirs(cache)
                else:
                    if base not in caches:
                        caches[base] = os.path.join(tmp, "cache-base-" + base)
                        os.makedirs(caches[base])
                        timed(ROWS[base][0], caches[base], tmp)
                    shutil.copytree(caches[base], cache)
                cold = timed(command, cache, tmp)
                warm = timed(command, cache, tmp)
                if base is None:
                    caches.setdefault(name, cache)
                results[name].append((cold, warm))
    print(f"{'entry point':26} {'cold s':>8} {'warm s':>8} {'cold/warm':>9} {'compile s':>9} {'cold 1st line s':>16}")
    for name in names:
        cold = statistics.median(r[0][1] for r in results[name])
        warm = statistics.median(r[1][1] for r in results[name])
        first = statistics.median(r[0][0] for r in results[name])
        print(f"{name:26} {cold:8.2f} {warm:8.2f} {cold / warm:9.1f} {cold - warm:9.2f} {first:16.2f}")


if __name__ == "__main__":
    main()
