"""fastnn/_validate.py, as train(), Model and load() use it: bad input raises a one-line error that names
the argument before any kernel runs, and the inputs it accepts (any layout, integer, bool and float32
features) give the bits of their float64 C-contiguous copies.

Bad arguments to sweep(), the estimator and the command line are tested with those (test_sweep.py,
test_estimator.py, test_cli.py): there the message is the module's own. How train() behaves on valid input
that cannot be trained (divergence) is test_train.py's.
"""

import io
import types

import numpy as np
import pytest

import fastnn
from fastnn import _validate as check
from fastnn import engine, reference


def put(a, index, value):
    """A copy of a with a[index] = value, in a dtype that holds value."""
    a = np.array(a, dtype=np.result_type(a, np.asarray(value)))
    a[index] = value
    return a


# (arguments, error type, argument named first in the message). An argument given as a lambda is applied to
# the valid value of the same argument (the tutorial's data, hidden=3, passes=10); any other value replaces it.
TRAIN_CASES = {
    # X
    "X NaN": (dict(X=lambda X: put(X, (3, 1), np.nan)), ValueError, "X"),
    "X inf": (dict(X=lambda X: put(X, (7, 0), -np.inf)), ValueError, "X"),
    "X 1-D": (dict(X=lambda X: X[:, 0]), ValueError, "X"),
    "X 3-D": (dict(X=lambda X: X[:, :, None]), ValueError, "X"),
    "X empty rows": (dict(X=lambda X: X[:0], y=lambda y: y[:0]), ValueError, "X"),
    "X no features": (dict(X=lambda X: X[:, :0]), ValueError, "X"),
    "X strings": (dict(X=lambda X: X.astype(str)), TypeError, "X"),
    "X complex": (dict(X=lambda X: X + 0j), TypeError, "X"),
    "X None": (dict(X=None), TypeError, "X"),
    "X ragged list": (dict(X=[[1.0, 2.0], [3.0]], y=[0, 1]), ValueError, "X"),  # NumPy's own error otherwise
    "X beyond float32": (dict(X=lambda X: X * 1e300, dtype="float32"), ValueError, "X"),
    # y
    "y short": (dict(y=lambda y: y[:-1]), ValueError, "y"),
    "y long": (dict(y=lambda y: np.r_[y, 0]), ValueError, "y"),
    "y 2-D": (dict(y=lambda y: np.c_[y, y]), ValueError, "y"),
    "y fractional": (dict(y=lambda y: y + 0.5), ValueError, "y"),
    "y NaN": (dict(y=lambda y: put(y, 5, np.nan)), ValueError, "y"),
    "y strings": (dict(y=lambda y: y.astype(str)), TypeError, "y"),
    "y single class": (dict(y=lambda y: np.zeros_like(y)), ValueError, "y"),
    "y negative": (dict(y=lambda y: y - 1), ValueError, "y"),
    "y above n_classes": (dict(y=lambda y: y * 2, n_classes=2), ValueError, "y"),
    "y sparse labels": (dict(y=lambda y: y * 10**9), ValueError, "y"),  # else 10**9 classes: 8 GB of weights
    # integers
    **{f"{name} {v!r}": (dict([(name, v)]), ValueError if isinstance(v, int) and not isinstance(v, bool)
                         else TypeError, name)
       for name in ("hidden", "passes", "loss_every") for v in (0, -1, 2.5, True, "3", None)
       if (name, v) != ("loss_every", None)},  # loss_every=None is the default: about 100 records
    "batch_size 0": (dict(batch_size=0), ValueError, "batch_size"),
    "batch_size 1.5": (dict(batch_size=1.5), TypeError, "batch_size"),  # before the batches are laid out
    "stop without is_set": (dict(stop=object()), TypeError, "stop"),
    "seed -1": (dict(seed=-1), ValueError, "seed"),
    "seed 2**32": (dict(seed=2**32), ValueError, "seed"),  # fastnn's message, not RandomState's
    "seed 0.5": (dict(seed=0.5), TypeError, "seed"),
    "n_classes 1": (dict(n_classes=1), ValueError, "n_classes"),
    "n_threads 0": (dict(n_threads=0), ValueError, "n_threads"),
    "hidden 10**9": (dict(hidden=10**9), ValueError, "hidden"),  # not a MemoryError or the OOM killer
    # reals
    **{f"lr {v!r}": (dict(lr=v), TypeError if isinstance(v, (str, bool)) or v is None else ValueError, "lr")
       for v in (0, -1, 0.0, float("nan"), float("inf"), "x", True, None)},
    **{f"reg {v!r}": (dict(reg=v), TypeError if isinstance(v, str) else ValueError, "reg")
       for v in (-1e-3, float("nan"), float("inf"), "0.01")},
    # choices
    "activation unknown": (dict(activation="softplus"), ValueError, "activation"),
    "activation not str": (dict(activation=0), TypeError, "activation"),
    "activation case": (dict(activation="Tanh"), ValueError, "activation"),
    "output unknown": (dict(output="linear"), ValueError, "output"),
    "reduction unknown": (dict(reduction="avg"), ValueError, "reduction"),
    "backend unknown": (dict(backend="torch"), ValueError, "backend"),
    "backend None": (dict(backend=None), TypeError, "backend"),
    "dtype int32": (dict(dtype="int32"), ValueError, "dtype"),
    "dtype float16": (dict(dtype=np.float16), ValueError, "dtype"),
    "dtype nonsense": (dict(dtype="double precision please"), TypeError, "dtype"),
    "init not a Model": (dict(init={"W1": 0}), TypeError, "init"),
    "shuffle not bool": (dict(shuffle="no", batch_size=10), TypeError, "shuffle"),
    "judge_end not bool": (dict(judge_end="no"), TypeError, "judge_end"),
}


def names_argument(message, name):
    return message.split()[0].rstrip(":,").startswith(name)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=str)
def test_train_rejects_bad_input(case, moons, monkeypatch):
    changes, error, name = TRAIN_CASES[case]
    kwargs = dict(X=moons[0], y=moons[1], hidden=3, passes=10)
    for key, value in changes.items():
        kwargs[key] = value(kwargs[key]) if isinstance(value, types.FunctionType) else value

    def no_kernel(*args):
        raise AssertionError("a kernel ran before validation finished")

    monkeypatch.setattr(engine.Engine, "__call__", no_kernel)  # every kernel and twin is called through it
    with pytest.raises(error) as info:
        fastnn.train(kwargs.pop("X"), kwargs.pop("y"), kwargs.pop("hidden"), **kwargs)
    message = str(info.value)
    assert names_argument(message, name), message
    assert "\n" not in message


# (call on a trained model m and the tutorial's data, error type, argument named first in the message)
MODEL_CASES = {
    "predict wrong features": (lambda m, X, y: m.predict(X[:, :1]), ValueError, "X"),
    "predict_proba wrong features": (lambda m, X, y: m.predict_proba(np.c_[X, X]), ValueError, "X"),
    "predict NaN": (lambda m, X, y: m.predict(put(X, (3, 1), np.nan)), ValueError, "X"),
    "predict 1-D": (lambda m, X, y: m.predict(X[0]), ValueError, "X"),
    "predict empty": (lambda m, X, y: m.predict(X[:0]), ValueError, "X"),
    "predict strings": (lambda m, X, y: m.predict(X.astype(str)), TypeError, "X"),
    "loss wrong features": (lambda m, X, y: m.loss(X[:, :1], y), ValueError, "X"),
    "loss y short": (lambda m, X, y: m.loss(X, y[:-1]), ValueError, "y"),
    "loss y out of range": (lambda m, X, y: m.loss(X, y + 1), ValueError, "y"),
    "loss y fractional": (lambda m, X, y: m.loss(X, y / 2), ValueError, "y"),
    "score y negative": (lambda m, X, y: m.score(X, -y), ValueError, "y"),
    "score inf": (lambda m, X, y: m.score(put(X, (7, 0), -np.inf), y), ValueError, "X"),
    "load int": (lambda m, X, y: fastnn.load(3), TypeError, "path"),
    "load garbage": (lambda m, X, y: fastnn.load(io.BytesIO(b"not a model")), ValueError, "path"),
}


@pytest.mark.parametrize("case", MODEL_CASES)
def test_model_rejects_bad_input(trained, moons, case):
    bad_call, error, name = MODEL_CASES[case]
    with pytest.raises(error) as info:
        bad_call(trained, *moons)
    assert names_argument(str(info.value), name), str(info.value)


def test_validators_are_reusable():
    # The sweep, the estimator and the CLI call these directly: the same input gets the same message.
    assert check.integer(np.int32(4), "hidden") == 4
    assert check.real(np.float32(0.5), "lr", strict=True) == 0.5
    assert check.dtype_of(None, np.ones((2, 2), np.float32)) == np.float32
    assert check.dtype_of("float64") == np.float64
    Xc = check.features([[1, 2], [3, 4]], np.float64)
    assert Xc.flags.c_contiguous and Xc.dtype == np.float64
    labels, k = check.labels(np.array([[0], [2], [1]]), 3)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 2, 1] and k == 3
    assert check.labels([1, 1], 2, n_classes=3)[1] == 3
    assert check.network(2, 3, 2) == 17
    with pytest.raises(ValueError, match="^n_classes"):
        check.labels([0, 1], 2, n_classes=1)
    with pytest.raises(ValueError, match="^features"):
        check.features(np.ones((2, 3)), np.float64, name="features", n_features=2)


LAYOUTS = {
    "Fortran": lambda X: np.asfortranarray(X),
    "strided rows": lambda X: np.repeat(X, 2, axis=0)[::2],
    "strided columns": lambda X: np.repeat(X, 2, axis=1)[:, ::2],
    "transposed view": lambda X: np.ascontiguousarray(X.T).T,
    "list": lambda X: X.tolist(),
    "big-endian": lambda X: X.astype(">f8"),
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_give_identical_results(moons, layout, backend):
    X, y = moons
    base = fastnn.train(X, y, 3, passes=200, backend=backend)
    other = fastnn.train(LAYOUTS[layout](X), y, 3, passes=200, backend=backend)
    assert other.theta.tobytes() == base.theta.tobytes()
    np.testing.assert_array_equal(base.predict_proba(LAYOUTS[layout](X)), base.predict_proba(X))


def test_integer_and_bool_features_equal_their_float64_values():
    rng = np.random.RandomState(1)
    Xi = rng.randint(-3, 4, size=(60, 2))  # 2 features: the kernels compiled for (d, k) = (2, 2) already
    yi = (Xi.sum(axis=1) > 0).astype(np.int8)
    a = fastnn.train(Xi, yi, 4, passes=200)
    b = fastnn.train(Xi.astype(np.float64), yi.astype(np.int64), 4, passes=200)
    assert a.theta.tobytes() == b.theta.tobytes()
    a = fastnn.train(Xi > 0, yi, 4, passes=200)
    b = fastnn.train((Xi > 0).astype(np.float64), yi, 4, passes=200)
    assert a.theta.tobytes() == b.theta.tobytes()


def test_float32_features(moons):
    X, y = moons
    X32 = X.astype(np.float32)
    # Asked to compute in float64, float32 X is converted exactly: the same bits as its float64 copy.
    a = fastnn.train(X32, y, 3, passes=500, dtype="float64")
    b = fastnn.train(X32.astype(np.float64), y, 3, passes=500)
    assert a.theta.tobytes() == b.theta.tobytes()
    # Left to itself it computes in float32. Each pass rounds to float32's 6e-8, and gradient descent here
    # is contracting (the loss falls steadily over 500 passes), so the rounding does not compound: the
    # weights stay within 1e-4 relative of float64, and the models agree on every training point's class
    # and on the loss to 1e-5.
    c = fastnn.train(X32, y, 3, passes=500)
    assert c.dtype == np.float32
    np.testing.assert_allclose(c.theta, b.theta, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(c.predict(X32), b.predict(X))
    assert c.loss(X32, y) == pytest.approx(b.loss(X, y), rel=1e-5)


# --- Seeds ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, error", [(-1, ValueError), (2**32, ValueError), (True, TypeError),
                                          (1.0, TypeError), ("0", TypeError)])
def test_seed_is_an_int_in_randomstates_range(value, error):
    assert check.seed(0, "seed") == 0 and check.seed(np.uint32(2**32 - 1), "seeds") == 2**32 - 1
    with pytest.raises(error, match=r"^seeds must be an integer"):
        check.seed(value, "seeds")


# --- Memory ---------------------------------------------------------------------------------------------------

GB = 10**9


@pytest.fixture
def memory(monkeypatch):
    """Pretend this machine has 8 GB available; returns a function that sets another amount."""
    def set_available(nbytes):
        monkeypatch.setattr(check, "available_memory", lambda: nbytes)

    set_available(8 * GB)
    return set_available


def test_a_copy_of_X_is_counted_before_it_is_made(memory):
    """A view of 3e9 rows (no memory of its own) needs a 48 GB copy in float64: refused before the copy, as
    are other dtypes; a C-contiguous array of the dtype is taken as it is, with no copy to count."""
    X = np.broadcast_to(np.ones((1, 2), np.float32), (3 * 10**9, 2))
    for dtype in (np.float64, np.float32):
        with pytest.raises(ValueError, match="X with 3000000000 rows, copied into a C-ordered"):
            check.features(X, dtype)
    memory(1000)
    small = np.ones((200, 2))
    assert check.features(small, np.float64) is small


def test_memory_names_the_allocation_and_what_to_reduce(memory):
    assert check.memory(7 * GB, "X with 10 rows", "pass fewer rows") == 7 * GB
    with pytest.raises(ValueError) as info:
        check.memory(9 * GB, "X with 10 rows", "pass fewer rows")
    assert str(info.value) == ("X with 10 rows needs 9 GB of memory, more than the 8 GB available: "
                               "pass fewer rows")
    memory(None)  # a platform that cannot tell: nothing is refused
    assert check.memory(10**15, "X", "less") == 10**15


def test_small_allocations_are_not_checked(memory):
    memory(0)  # reading /proc costs more than a small predict: small estimates are never refused
    assert check.memory(1 << 20, "X", "less") == 1 << 20
    with pytest.raises(ValueError):
        check.memory(1 << 30, "X", "less")


@pytest.mark.parametrize("d, h, k, named", [(2, 10**7, 2, "hidden=10000000"), (2, 3, 10**7, "n_classes=10000000"),
                                            (2, 10**8, 2, "hidden=100000000")])
def test_network_counts_the_work_buffers(memory, d, h, k, named):
    # hidden=10**7 has 400 MB of parameters: under the cap on their number, but each work slot needs
    # 256 columns of 2h values (41 GB).
    with pytest.raises(ValueError) as info:
        check.network(d, h, k)
    assert str(info.value).startswith(named) and "memory" in str(info.value)
    memory(10**15)
    assert check.network(d, h, k) == reference.size(d, h, k)


def test_network_counts_every_slot(memory):
    memory(6 * GB)
    check.network(2, 10**6, 2, np.float64, slots=1)  # about 4.1 GB of buffers
    with pytest.raises(ValueError, match=r"^hidden=1000000 .* needs 8\.3\d* GB"):
        check.network(2, 10**6, 2, np.float64, slots=2)


def test_train_too_large_for_memory_raises_value_error_at_once(memory, moons):
    # previously failed: MemoryError (or the OS killing the process) while the buffers were allocated
    for kwargs in (dict(hidden=10**7), dict(hidden=3, n_classes=10**7)):
        with pytest.raises(ValueError, match="memory"):
            fastnn.train(*moons, passes=10, **kwargs)


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("files, room", [
    ({"proc/self/cgroup": "0::/job\n", "sys/fs/cgroup/job/memory.max": "1000000\n",
      "sys/fs/cgroup/job/memory.current": "250000\n"}, 750000),  # v2, the group's own folder
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "max\n",
      "sys/fs/cgroup/memory.current": "5\n"}, None),  # v2 without a limit
    ({"proc/self/cgroup": "0::/not/visible\n", "sys/fs/cgroup/memory.max": "800\n"}, 800),  # a container's root
    ({"proc/self/cgroup": "4:memory:/job\n3:cpu:/job\n", "sys/fs/cgroup/memory/job/memory.limit_in_bytes": "600\n",
      "sys/fs/cgroup/memory/job/memory.usage_in_bytes": "100\n"}, 500),  # v1
    ({"proc/self/cgroup": "4:memory:/\n",
      "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1 without a limit
    ({}, None),  # not Linux
], ids=["v2", "v2-max", "v2-root", "v1", "v1-unlimited", "none"])
def test_cgroup_limit(tmp_path, files, room):
    write(tmp_path, files)
    assert check._cgroup_room(str(tmp_path)) == room


def test_available_memory_is_the_smaller_of_meminfo_and_cgroup(tmp_path, monkeypatch):
    write(tmp_path, {"proc/meminfo": "MemTotal: 100 kB\nMemAvailable:    2000 kB\n"})
    assert check._meminfo(str(tmp_path)) == 2048000
    monkeypatch.setattr(check, "_meminfo", lambda: 2048000)
    monkeypatch.setattr(check, "_cgroup_room", lambda: 1000)
    assert check.available_memory() == 1000
    monkeypatch.setattr(check, "_cgroup_room", lambda: None)
    assert check.available_memory() == 2048000
    monkeypatch.setattr(check, "_meminfo", lambda: None)
    monkeypatch.setattr(check, "_portable_free", lambda: 77)
    assert check.available_memory() == 77
