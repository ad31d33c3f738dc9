"""Peak memory of a large run (issue 3): no (n, h) array, so the data itself dominates.

Training n = 10,000,000, H = 64 in float64 must stay within 1.3x the size of X and y plus 200 MB. Run in a
subprocess, whose peak resident size (VmHWM) is reset once the data exists, so that what is measured is
training's own growth over everything before it (interpreter, libraries, compiled kernels, data).
"""

import json
import subprocess
import sys

CHILD = """
import json, numpy as np, fastnn
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
X, y = fastnn.make_moons(200, random_state=1)
fastnn.train(X, y, 64, passes=1, reduction="mean", loss_every=1)  # compile or load the kernels first
before = status("VmRSS:")
X, y = fastnn.make_moons({n}, random_state=1)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current resident size
model = fastnn.train(X, y, 64, passes=1, reduction="mean", loss_every=1)
print(json.dumps(dict(data=X.nbytes + y.nbytes, before=before, peak=status("VmHWM:"),
                      finite=bool(np.isfinite(model.theta).all()))))
"""


def test_large_run_stays_near_the_size_of_the_data():
    n = 10_000_000
    r = subprocess.run([sys.executable, "-c", CHILD.format(n=n)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m["finite"]
    grown = m["peak"] - m["before"]
    assert grown <= 1.3 * m["data"] + 200e6, f"peak grew {grown / 1e6:.0f} MB for {m['data'] / 1e6:.0f} MB of data"
