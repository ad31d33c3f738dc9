"""fastnn.Model: its parameters, predict / predict_proba / loss / score against the formula written out in
NumPy, repr, and model files (save / load: exact round trips, interrupted saves, and every foreign or
tampered file rejected)."""

import functools
import hashlib
import io
import json
import os
import re
import stat
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
import sklearn.datasets
import tutorial_literal as literal
from helpers import FEW, RUNS, problems
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn import _validate as check
from fastnn import reference

SETTINGS = ("activation", "output", "reduction", "lr", "reg", "passes", "seed", "batch_size", "backend")


@pytest.fixture(scope="module", params=[("tanh", "softmax"), ("relu", "sigmoid"), ("sigmoid", "softmax")],
                ids=lambda p: "-".join(p))
def model(request, moons):
    activation, output = request.param
    return fastnn.train(*moons, 4, passes=1500, activation=activation, output=output, loss_every=500)


@pytest.fixture(scope="module")
def blobs3():
    """Three classes in five dimensions: predictions are not just a sign."""
    X, y = sklearn.datasets.make_blobs(90, n_features=5, centers=3, random_state=1)
    return X, y


def forward_by_hand(model, X):
    """The network's outputs, written out in NumPy: the formula of docs/DESIGN.md."""
    f = {"tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "relu": lambda z: np.maximum(z, 0)}
    z2 = f[model.settings["activation"]](X @ model.W1 + model.b1) @ model.W2 + model.b2
    if model.settings["output"] == "sigmoid":
        return 1 / (1 + np.exp(-z2))
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --- Parameters and outputs -----------------------------------------------------------------------------------

def test_model_attributes(moons, blobs3):
    X, y = blobs3
    m = fastnn.train(X, y, 7, passes=50, reduction="mean", lr=0.1, seed=2, batch_size=30)
    assert (m.n_features, m.hidden, m.n_classes, m.dtype) == (5, 7, 3, np.float64)
    assert [m.W1.shape, m.b1.shape, m.W2.shape, m.b2.shape] == [(5, 7), (7,), (7, 3), (3,)]
    assert m.theta.shape == (5 * 7 + 7 + 7 * 3 + 3,)
    np.testing.assert_array_equal(np.concatenate([m.W1.ravel(), m.b1, m.W2.ravel(), m.b2]), m.theta)
    assert {key: m.settings[key] for key in SETTINGS} == dict(
        activation="tanh", output="softmax", reduction="mean", lr=0.1, reg=0.01, passes=50, seed=2,
        batch_size=30, backend="numba")
    assert m.settings["hidden"] == 7
    assert fastnn.train(*moons, 3, passes=10, dtype="float32").dtype == np.float32


def test_repr_names_the_shape_and_the_network(blobs3):
    X, y = blobs3
    text = repr(fastnn.train(X, y, 6, passes=2, activation="relu", output="sigmoid", dtype="float32"))
    assert text.startswith("Model(") and text.endswith(")")
    for part in (r"\b5\b", r"\b6\b", r"\b3\b", "relu", "sigmoid", "float32"):  # d, h, k, the network
        assert re.search(part, text), f"{part} not in {text}"
    assert repr(fastnn.train(X, y, 7, passes=2)) != text


def test_predict_proba(model, moons):
    X, _ = moons
    P = model.predict_proba(X)
    assert P.shape == (len(X), 2)
    np.testing.assert_allclose(P.sum(axis=1), 1, rtol=1e-14)  # sigmoid outputs too: normalised per row
    expected = forward_by_hand(model, X)
    np.testing.assert_allclose(P, expected / expected.sum(axis=1, keepdims=True), rtol=1e-12, atol=1e-14)


def test_predict_and_score(model, moons, blobs3):
    X, y = moons
    labels = model.predict(X)
    assert labels.dtype == np.int64 and labels.shape == (len(X),)
    np.testing.assert_array_equal(labels, np.argmax(forward_by_hand(model, X), axis=1))
    assert model.score(X, y) == np.mean(labels == y) > 0.8  # the moons are learnable by 4 units
    X3, y3 = blobs3
    m3 = fastnn.train(X3, y3, 5, passes=300, reduction="mean", lr=0.1)
    assert set(m3.predict(X3)) == {0, 1, 2} and m3.score(X3, y3) == 1.0  # well separated blobs


def test_loss_is_the_tutorials_calculate_loss(moons):
    """tanh + softmax: the notebook's calculate_loss, verbatim (tests/tutorial_literal.py)."""
    X, y = moons
    m = fastnn.train(X, y, 3, passes=1500)
    by_hand = literal.calculate_loss({"W1": m.W1, "b1": m.b1, "W2": m.W2, "b2": m.b2}, X, y)
    assert m.loss(X, y) == pytest.approx(by_hand, rel=1e-12)


def test_loss_of_other_outputs(model, moons):
    """The same formula for any activation; squared error for sigmoid outputs (docs/DESIGN.md)."""
    X, y = moons
    P = forward_by_hand(model, X)
    onehot = np.eye(2)[y]
    data = (0.5 * ((P - onehot) ** 2).sum() if model.settings["output"] == "sigmoid"
            else -np.log(P[np.arange(len(y)), y]).sum())
    penalty = model.settings["reg"] / 2 * ((model.W1 ** 2).sum() + (model.W2 ** 2).sum())
    assert model.loss(X, y) == pytest.approx((data + penalty) / len(y), rel=1e-12)


def test_single_class_y_is_fine_for_a_trained_model(trained, moons):
    # The model knows its classes: scoring on a subset holding one class is legitimate.
    X, y = moons
    for label in (0, 1):
        Xc, yc = X[y == label], y[y == label]
        assert trained.score(Xc, yc) == np.mean(trained.predict(Xc) == label)
        P = trained.predict_proba(Xc)
        assert trained.loss(Xc, yc) == pytest.approx(
            -np.log(P[:, label]).mean() + trained.settings["reg"] / 2 / len(yc)
            * ((trained.W1 ** 2).sum() + (trained.W2 ** 2).sum()), rel=1e-10)


def test_model_never_returns_nan_for_huge_inputs(trained):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = np.array([[1e308, -1e308], [1e308, 1e308]])
        for backend in ("numba", "numpy"):
            m = fastnn.Model(trained.theta.copy(), 2, 3, dict(trained.settings, backend=backend))
            try:
                P = m.predict_proba(huge)
            except ValueError as e:
                assert str(e).startswith("X is too large")
            else:
                assert np.isfinite(P).all()


@pytest.mark.parametrize("order", [">f8", ">f4"])
def test_a_model_of_big_endian_parameters_is_the_native_one(trained, order, tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 2))
    native = fastnn.Model(trained.theta.astype("=" + order[1:]), 2, 3, trained.settings)
    big = fastnn.Model(trained.theta.astype(order), 2, 3, trained.settings)
    assert big.dtype == native.dtype and big.dtype.isnative
    np.testing.assert_array_equal(big.predict_proba(X), native.predict_proba(X))
    big.save(tmp_path / "big.npz")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "big.npz").theta, native.theta)


def test_a_model_of_non_finite_parameters_says_so(trained):
    X = np.zeros((3, 2))
    for backend in ("numba", "numpy"):
        m = fastnn.Model(trained.theta.copy(), 2, 3, dict(trained.settings, backend=backend))
        m.W1[0, 0] = np.nan  # a view of theta, as coefs_ are
        for call in (m.predict_proba, lambda X: m.loss(X, np.zeros(3, int))):
            with pytest.raises(ValueError, match="parameters are not all finite"):
                call(X)


def model_of(theta, d, h, act, out, backend):
    s = dict(activation=act, output=out, reduction="sum", lr=0.01, reg=0.01, passes=0, seed=0, batch_size=None,
             backend=backend)
    return fastnn.Model(theta, d, h, s)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@FEW
@given(problem=problems(), n=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_predictions_do_not_depend_on_sample_order(backend, problem, n, seed):
    # n up to 700 spans several blocks of samples, so a sample moves between blocks and lanes.
    X0, _, theta, h, act, out, _ = problem
    d = X0.shape[1]
    k = (theta.size - d * h - h) // (h + 1)
    rng = np.random.RandomState(seed)
    X = rng.uniform(-3, 3, (n, d))
    y = rng.randint(0, k, n)
    order = rng.permutation(n)
    m = model_of(theta, d, h, act, out, backend)
    P = m.predict_proba(X)
    Q = m.predict_proba(X[order])
    np.testing.assert_allclose(Q, P[order], rtol=1e-12, atol=1e-15)
    sure = np.sort(P, axis=1)
    sure = sure[:, -1] - sure[:, -2] > 1e-9  # argmax is only defined up to rounding for near ties
    np.testing.assert_array_equal(m.predict(X[order])[sure[order]], m.predict(X)[order][sure[order]])
    assert m.loss(X[order], y[order]) == pytest.approx(m.loss(X, y), rel=1e-12)


# --- Model files: round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["model.npz", "model.bin", "model"])
def test_save_load_round_trip(tmp_path, blobs3, name):
    X, y = blobs3
    m = fastnn.train(X, y, 6, passes=120, activation="relu", output="sigmoid", reduction="mean", lr=0.05,
                     batch_size=25, dtype="float32", seed=5, loss_every=40)
    path = tmp_path / name
    m.save(path)
    assert os.listdir(tmp_path) == [name]  # written where asked: no .npz appended
    back = fastnn.load(path)
    assert back.theta.dtype == m.theta.dtype == np.float32
    np.testing.assert_array_equal(back.theta, m.theta)
    np.testing.assert_array_equal(back.loss_history, m.loss_history)
    assert back.settings == m.settings
    assert (back.n_features, back.hidden, back.n_classes) == (5, 6, 3)
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    assert back.loss(X, y) == m.loss(X, y)
    np.testing.assert_array_equal(fastnn.load(str(path)).theta, m.theta)  # a str works as a path too


@pytest.mark.parametrize("targets", [1, 3])
def test_regressor_round_trip(tmp_path, targets):
    """Identity outputs: one target (a network of k = 1 outputs, which a classifier cannot have) or three."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4))
    Y = np.tanh(X @ rng.standard_normal((4, targets)))
    m = fastnn.train(X, Y, 5, passes=50, lr=0.1, reduction="mean", output="identity")
    m.save(tmp_path / "r.npz")
    back = fastnn.load(tmp_path / "r.npz")
    assert back.n_classes == targets and back.settings == m.settings
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    assert back.score(X, Y) == m.score(X, Y) and back.loss(X, Y) == m.loss(X, Y)
    with pytest.raises(ValueError, match="targets"):
        back.score(X, Y[:, :1] if targets == 3 else np.c_[Y, Y])
    settings = dict(m.settings, output="softmax")
    if targets == 1:
        with pytest.raises(ValueError, match=">= 2 classes"):  # a softmax needs two outputs
            fastnn.Model(m.theta, 4, 5, settings)


@pytest.mark.parametrize("run", RUNS)
def test_save_load_round_trips_exactly(run, moons, tmp_path):
    X, y = moons
    m = fastnn.train(X, y, **RUNS[run])
    m.save(tmp_path / "m.npz")
    back = fastnn.load(tmp_path / "m.npz")
    assert back.theta.dtype == m.theta.dtype and back.theta.tobytes() == m.theta.tobytes()
    assert back.loss_history.tobytes() == m.loss_history.tobytes()
    assert back.settings == m.settings
    assert (back.n_features, back.hidden, back.n_classes) == (m.n_features, m.hidden, m.n_classes)
    assert back.predict_proba(X).tobytes() == m.predict_proba(X).tobytes()
    buffer = io.BytesIO()  # open files work too
    m.save(buffer)
    buffer.seek(0)
    assert fastnn.load(buffer).theta.tobytes() == m.theta.tobytes()


def test_interrupted_save_leaves_the_old_file(trained, moons, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    trained.save(path)
    before = path.read_bytes()
    real = np.savez

    def interrupted(file, **arrays):
        real(file, **arrays)
        file.truncate(100)  # half written when Ctrl-C arrives
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastnn.train(*moons, 2, passes=10).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]
    fresh = tmp_path / "fresh.npz"
    with pytest.raises(KeyboardInterrupt):
        trained.save(fresh)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_to_a_folder_fails_cleanly(trained, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError):
        trained.save(tmp_path / "taken")
    assert os.listdir(tmp_path) == ["taken"]


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastnn.load(tmp_path / "missing.npz")


# --- Model files: whatever is not a file save() wrote is rejected ---------------------------------------------

def arrays_of(path):
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def with_meta(arrays, edit):
    meta = json.loads(str(arrays["meta"][()]))
    edit(meta)
    return dict(arrays, meta=np.array(json.dumps(meta)))


def tampered(arrays):
    """Foreign or altered archives, each a dict of arrays that load() must reject."""
    theta = arrays["theta"]
    return {
        "no arrays": {},
        "wrong names": dict(weights=theta, meta=arrays["meta"]),
        "extra array": dict(arrays, extra=np.zeros(3)),
        "missing meta": dict(theta=theta, loss_history=arrays["loss_history"]),
        "object array": dict(arrays, theta=np.array([1.0, "x", None], dtype=object)),
        "theta 2-D": dict(arrays, theta=theta[None]),
        "theta int": dict(arrays, theta=theta.astype(np.int64)),
        "theta float16": dict(arrays, theta=theta.astype(np.float16)),
        "theta big-endian": dict(arrays, theta=theta.astype(">f8")),
        "theta short": dict(arrays, theta=theta[:-1]),
        "theta NaN": dict(arrays, theta=np.where(np.arange(theta.size) == 0, np.nan, theta)),
        "theta changed": dict(arrays, theta=theta + 1e-12),
        "history 1-D": dict(arrays, loss_history=arrays["loss_history"].ravel()),
        "history float32": dict(arrays, loss_history=arrays["loss_history"].astype(np.float32)),
        "meta bytes": dict(arrays, meta=np.array(b"{}")),
        "meta 1-D": dict(arrays, meta=arrays["meta"][None]),
        "meta not JSON": dict(arrays, meta=np.array("{not json")),
        "meta JSON list": dict(arrays, meta=np.array("[1, 2]")),
        "meta deep JSON": dict(arrays, meta=np.array("[" * 5000 + "]" * 5000)),
        "meta huge": dict(arrays, meta=np.array(" " * 200_000 + "{}")),
        "format": with_meta(arrays, lambda m: m.update(format="fastnn-model-0")),
        "missing key": with_meta(arrays, lambda m: m.pop("n_classes")),
        "extra key": with_meta(arrays, lambda m: m.update(pickle="yes")),
        "digest": with_meta(arrays, lambda m: m.update(sha256="0" * 64)),
        "digest missing": with_meta(arrays, lambda m: m.pop("sha256")),
        "dtype": with_meta(arrays, lambda m: m.update(dtype="float32")),
        "n_features str": with_meta(arrays, lambda m: m.update(n_features="2")),
        "n_classes 1": with_meta(arrays, lambda m: m.update(n_classes=1)),
        # theta's 17 values also fit d=2, h=1, k=7: consistent shapes, caught by n_classes and the digest
        "hidden 1": with_meta(arrays, lambda m: m["settings"].update(hidden=1)),
        "hidden and classes": with_meta(arrays, lambda m: (m["settings"].update(hidden=1),
                                                           m.update(n_classes=7))),
        "settings list": with_meta(arrays, lambda m: m.update(settings=[1, 2])),
        "activation": with_meta(arrays, lambda m: m["settings"].update(activation="softplus")),
        "backend": with_meta(arrays, lambda m: m["settings"].update(backend="os.system")),
        "lr": with_meta(arrays, lambda m: m["settings"].update(lr=-1)),
        "lr str": with_meta(arrays, lambda m: m["settings"].update(lr="0.01")),
        "reg": with_meta(arrays, lambda m: m["settings"].update(reg=float("nan"))),
        "passes": with_meta(arrays, lambda m: m["settings"].update(passes=1.5)),
        "batch_size": with_meta(arrays, lambda m: m["settings"].update(batch_size=0)),
        "setting added": with_meta(arrays, lambda m: m["settings"].update(extra=1)),
        "setting removed": with_meta(arrays, lambda m: m["settings"].pop("seed")),
    }


def write_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def assert_rejected(path):
    with pytest.raises(ValueError) as info:
        fastnn.load(path)
    message = str(info.value)
    assert message.startswith("path ") and "not a valid fastnn model file" in message and "\n" not in message, \
        f"{path.name}: {message}"


def test_load_rejects_tampered_and_foreign_archives(trained, tmp_path):
    good = tmp_path / "good.npz"
    trained.save(good)
    for name, content in tampered(arrays_of(good)).items():
        path = tmp_path / f"{name}.npz"
        write_npz(path, content)
        assert_rejected(path)


def test_load_rejects_other_files(tmp_path):
    cases = {
        "empty": b"",
        "text": b"hello",
        "pickle": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94.",
    }
    buffer = io.BytesIO()
    np.save(buffer, np.arange(17.0))
    cases["npy"] = buffer.getvalue()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("theta.npy", "not an array")
        z.writestr("meta.npy", "x")
        z.writestr("loss_history.npy", "x")
    cases["zip of text"] = buffer.getvalue()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<f8", fortran_order=False, shape=(10**15,)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name in ("theta", "meta", "loss_history"):
            z.writestr(f"{name}.npy", header.getvalue() + b"\0" * 64)
    cases["zip with a huge declared array"] = buffer.getvalue()
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert_rejected(path)


def test_load_fuzz(trained, tmp_path):
    # Random bytes, real files cut at many offsets, and real files with random bytes overwritten: load()
    # must raise ValueError, or (a byte in a part of the zip nobody reads) return the original model.
    good = tmp_path / "good.npz"
    trained.save(good)
    data = good.read_bytes()
    rng = np.random.RandomState(0)
    path = tmp_path / "fuzz.npz"
    samples = [rng.bytes(rng.randint(0, 2000)) for _ in range(100)]
    samples += [b"PK\x03\x04" + rng.bytes(rng.randint(0, 2000)) for _ in range(100)]
    samples += [data[:cut] for cut in range(0, len(data), 7)]
    for _ in range(300):
        flipped = bytearray(data)
        for i in rng.randint(0, len(data), size=rng.randint(1, 4)):
            flipped[i] = rng.randint(256)
        samples.append(bytes(flipped))
    accepted = 0
    for content in samples:
        path.write_bytes(content)
        try:
            back = fastnn.load(path)
        except ValueError as e:
            assert str(e).startswith("path ") and "\n" not in str(e)
        else:
            accepted += 1
            assert back.theta.tobytes() == trained.theta.tobytes()
            assert back.settings == trained.settings
    assert accepted < len(samples) // 4


# --- Model files: bounds, checked before anything is read -----------------------------------------------------

def npz_declaring(path, arrays, name, shape):
    """An .npz of `arrays` whose member `name` declares a float64 array of `shape` and holds its zeros,
    deflated (about 4.5 kB a MB): a small file that claims a large array, consistent in itself."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, dict(descr="<f8", fortran_order=False, shape=shape))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for key, a in arrays.items():
            if key != name:
                member = io.BytesIO()
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
                z.writestr(f"{key}.npy", member.getvalue())
        with z.open(f"{name}.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            left, zeros = int(np.prod(shape)) * 8, bytes(1 << 20)
            while left:
                f.write(zeros[:min(left, len(zeros))])
                left -= min(left, len(zeros))


@pytest.mark.parametrize("name, shape", [("theta", (12_500_000,)), ("loss_history", (5_000_000, 2))])
def test_load_reads_no_array_larger_than_its_metadata_allows(trained, tmp_path, name, shape):
    # previously failed: a 1 MB file whose theta header said 125M values made load() allocate 1 GB for
    # seconds before comparing it with the metadata. The same file, with 100 MB declared, is rejected from
    # the headers alone (a model of 17 parameters and 300 passes).
    good = tmp_path / "good.npz"
    trained.save(good)
    path = tmp_path / "crafted.npz"
    npz_declaring(path, arrays_of(good), name, shape)
    assert path.stat().st_size < 1e6
    tracemalloc.start()
    try:
        assert_rejected(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5e6, f"load() allocated {peak / 1e6:.0f} MB for a rejected file"


@pytest.mark.parametrize("change", [-8, 8])
def test_load_checks_each_member_size_against_its_header(trained, tmp_path, change):
    good = tmp_path / "good.npz"
    trained.save(good)
    members = {}
    with zipfile.ZipFile(good) as z:
        for info in z.infolist():
            members[info.filename] = z.read(info)
    theta = members["theta.npy"]
    members["theta.npy"] = theta[:change] if change < 0 else theta + bytes(change)
    path = tmp_path / "short.npz"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    assert_rejected(path)


def test_load_refuses_a_model_larger_than_the_memory_available(trained, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    trained.save(path)
    monkeypatch.setattr(check, "_UNCHECKED", 0)
    monkeypatch.setattr(check, "available_memory", lambda: 100)
    with pytest.raises(ValueError, match=r"^path .*m\.npz' \(a model of 17 parameters\) needs .* memory"):
        fastnn.load(path)


def test_a_file_written_in_the_documented_format_loads(moons, tmp_path):
    # The format as the first version wrote it, spelled out here rather than through fastnn's code: any
    # file written since must keep loading.
    X, y = moons
    m = fastnn.train(X, y, 3, passes=20)
    settings = dict(activation="tanh", output="softmax", reduction="sum", lr=0.01, reg=0.01, passes=20, seed=0,
                    batch_size=None, backend="numba", hidden=3)
    meta = dict(format="fastnn-model-1", n_features=2, n_classes=2, dtype="float64", settings=settings)
    history = m.loss_history.astype(np.float64)
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for a in (m.theta, history):
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    path = tmp_path / "v1.npz"
    with open(path, "wb") as f:
        np.savez(f, theta=m.theta, loss_history=history,
                 meta=np.array(json.dumps(dict(meta, sha256=digest.hexdigest()))))
    back = fastnn.load(path)
    assert back.theta.tobytes() == m.theta.tobytes() and back.settings == m.settings
    saved = tmp_path / "again.npz"
    back.save(saved)
    assert saved.read_bytes() == path.read_bytes()  # and save() still writes exactly that


# --- Model files: saving ----------------------------------------------------------------------------------------

needs_posix = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@needs_posix
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_save_over_a_file_keeps_its_permissions(trained, tmp_path, mode):
    # previously failed: saving over a 0600 file left it 0644
    path = tmp_path / "m.npz"
    trained.save(path)
    os.chmod(path, mode)
    trained.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


@needs_posix
def test_a_new_file_gets_the_umask_default(trained, tmp_path):
    old = os.umask(0o027)
    try:
        trained.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o640


@needs_posix
def test_save_through_a_link_writes_its_target(trained, tmp_path):
    (tmp_path / "m.npz").write_bytes(b"old")
    os.symlink("m.npz", tmp_path / "link.npz")
    trained.save(tmp_path / "link.npz")
    assert os.path.islink(tmp_path / "link.npz")
    assert fastnn.load(tmp_path / "m.npz").theta.tobytes() == trained.theta.tobytes()


@pytest.mark.parametrize("break_it, match", [
    (lambda m: m.theta.__setitem__(4, np.nan), r"non-finite parameters \(theta\[4\] is nan\)"),
    (lambda m: m.theta.__setitem__(0, -np.inf), r"non-finite parameters \(theta\[0\] is -inf\)"),
    (lambda m: m.loss_history.__setitem__((0, 1), np.inf), "loss_history is not finite"),
    (lambda m: setattr(m, "loss_history", np.zeros(3)), r"loss_history must have shape \(m, 2\)"),
])
def test_save_refuses_what_could_not_be_loaded(trained, tmp_path, break_it, match):
    # previously failed: a model with NaN weights saved, and the file could not be loaded
    m = fastnn.Model(trained.theta.copy(), 2, 3, trained.settings, trained.loss_history.copy())
    break_it(m)
    with pytest.raises(ValueError, match=match):
        m.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_a_failed_save_names_the_path_given(trained, tmp_path):
    # previously failed: the error named the internal temporary file
    path = tmp_path / "missing" / "m.npz"
    with pytest.raises(FileNotFoundError) as info:
        trained.save(path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        trained.save(tmp_path / "taken")
    assert info.value.filename == str(tmp_path / "taken") and ".tmp" not in str(info.value)


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, OSError])
def test_no_temporary_file_outlives_a_failed_save(trained, tmp_path, monkeypatch, error):
    def fails(file, **arrays):
        file.write(b"PK partial")
        raise error()

    monkeypatch.setattr(np, "savez", fails)
    with pytest.raises(error):
        trained.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_save_removes_temporary_files_that_a_killed_save_left(trained, tmp_path):
    # A kill -9 during a save cannot clean up at that moment: the next save into the folder removes what
    # such saves left, once it is an hour old (a younger one may be another process's save in progress).
    stale = [".m.npz.fastnn-0123456789ab.tmp", ".other.npz.fastnn-abcdefabcdef.tmp",
             "m.npz.0123456789ab.tmp"]  # the last: the name earlier versions gave their temporary files
    kept = [".m.npz.fastnn-fedcba987654.tmp",  # young
            "notes.0123456789ab.tmp", ".m.npz.fastnn-xyz.tmp", "m.npz.tmp"]  # not names save() gives
    hour_ago = time.time() - 3700
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
        if name != kept[0]:
            os.utime(tmp_path / name, (hour_ago, hour_ago))
    trained.save(tmp_path / "m.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["m.npz"])


# --- Memory -----------------------------------------------------------------------------------------------------

def test_predictions_too_large_for_memory_raise_value_error(trained, moons, monkeypatch):
    X, y = moons
    monkeypatch.setattr(check, "available_memory", lambda: 50 << 20)
    rows = np.zeros((5_000_000, 2))  # predictions: 130 MB of outputs; the loss: 80 MB of labels
    for call in (trained.predict, trained.predict_proba, lambda X: trained.loss(X, np.zeros(len(X), int))):
        with pytest.raises(ValueError, match="^X with 5000000 rows.*: pass fewer rows at a time$"):
            call(rows)
    big = fastnn.Model(np.zeros(reference.size(2, 10**6, 2)), 2, 10**6, trained.settings)
    with pytest.raises(ValueError, match="work buffers alone need"):  # fewer rows would not help
        big.predict(X)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype, hidden, classes", [("float64", 16, 2), ("float32", 3, 10)])
def test_memory_estimates_bound_what_a_call_allocates(backend, dtype, hidden, classes, monkeypatch):
    X, y = sklearn.datasets.make_blobs(40_000, n_features=2, centers=classes, random_state=0)
    m = fastnn.train(X[:300], y[:300], hidden, passes=2, dtype=dtype, backend=backend, n_classes=classes,
                     activation="sigmoid", output="sigmoid")
    estimates = []
    real = check.memory
    monkeypatch.setattr(check, "memory", lambda nbytes, *a: estimates.append(nbytes) or real(nbytes, *a))
    for name in ("predict", "predict_proba", "loss", "score"):
        call = functools.partial(getattr(m, name), X, y) if name in ("loss", "score") else \
            functools.partial(getattr(m, name), X)
        call()  # compiled first
        estimates.clear()
        tracemalloc.start()
        try:
            call()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= estimates[-1], f"{name}: allocated {peak} bytes, estimated {estimates[-1]}"


def test_repr_reads_as_the_network(moons):
    m = fastnn.train(*moons, 3, passes=20)
    assert repr(m) == ("Model(2 -> 3 tanh -> 2 softmax, float64, 17 parameters, lr=0.01, reg=0.01, 20 passes, "
                       "seed 0)")
    m = fastnn.train(*moons, 4, passes=3, reduction="mean", batch_size=16, lr=0.1, dtype="float32",
                     backend="numpy")
    assert repr(m) == ("Model(2 -> 4 tanh -> 2 softmax, float32, 22 parameters, lr=0.1, reg=0.01, "
                       "reduction='mean', batch_size=16, 3 passes, seed 0, backend='numpy')")
