"""The ``fastnn`` command, run as a user runs it: a subprocess per command; bad arguments in-process."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

# Spectral's ends: the colours of class 0 and class 1 in every figure (fastnn.plot.class_colors(2))
CLASS_COLOURS = [(0.6196, 0.0039, 0.2588), (0.3686, 0.3098, 0.6353)]


def fastnn_cmd(*args, cwd):
    """Run ``python -m fastnn ARGS`` in cwd; (return code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "fastnn", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def assert_png_shows_both_classes(png):
    image = imread(png)[..., :3]
    for rgb in CLASS_COLOURS:
        assert np.all(np.abs(image - rgb) < 0.02, axis=-1).sum() >= 10, f"class colour {rgb} missing in {png}"


def test_train(tmp_path):
    code, out, err = fastnn_cmd("train", "--passes", 3000, "--activation", "relu", "--save", "m.npz",
                                "--plot", "m.png", cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("Loss after      0 passes:") and lines[3].startswith("Loss after   3000 passes:")
    assert lines[4].startswith("Training accuracy:")
    model = fastnn.load(tmp_path / "m.npz")
    assert model.settings["activation"] == "relu" and model.settings["passes"] == 3000
    X, y = fastnn.make_moons()
    expected = fastnn.train(X, y, 3, passes=3000, activation="relu")
    assert np.array_equal(model.theta, expected.theta)
    assert f"Training accuracy: {expected.score(X, y):.4f}" in lines
    assert_png_shows_both_classes(tmp_path / "m.png")
    assert err == ""  # no progress bar off a terminal


def test_sweep(tmp_path):
    code, out, err = fastnn_cmd("sweep", "--hidden", 1, 3, 5, "--passes", 500, "--seeds", 0, 1, "--test-size",
                                0.25, "--out", "runs", "--n-jobs", 2, cwd=tmp_path)
    assert code == 0, err
    table = out.splitlines()
    assert table[0].split()[:3] == ["hidden", "reg", "seed"] and len(table) >= 7
    with open(tmp_path / "runs" / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["hidden"], r["seed"]) for r in rows] == [(h, s) for h in "135" for s in "01"]
    X, y = fastnn.make_moons()
    expected = fastnn.sweep(X, y, (1, 3, 5), seeds=(0, 1), test=0.25, passes=500, progress=False)
    for row, want in zip(rows, expected.rows):
        assert float(row["test_accuracy"]) == want["test_accuracy"]
        assert float(row["train_loss"]) == want["train_loss"]
    assert json.loads((tmp_path / "runs" / "sweep.json").read_text())[0]["hidden"] == 1
    for name in ("sweep_grid.png", "accuracy_vs_hidden.png", "loss_curves.png"):
        assert (tmp_path / "runs" / name).stat().st_size > 0
    assert_png_shows_both_classes(tmp_path / "runs" / "sweep_grid.png")


def test_sweep_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--hidden", "2", "4", "--passes", "200", "--test-size", "0", "--json", "--out",
                     "o"]) == 0
    out, err = capsys.readouterr()
    records = json.loads(out)  # stdout holds only the JSON; the rest goes to stderr
    assert [r["hidden"] for r in records] == [2, 4] and records[0]["test_accuracy"] is None
    assert "Best train accuracy" in err


def test_demo(tmp_path):
    code, out, err = fastnn_cmd("demo", "--passes", 2000, "--quiet", cwd=tmp_path)
    assert code == 0, err
    assert "Loss after   1000 passes:" in out and "Loss after   2000 passes:" in out
    assert "Hidden layer sizes 1, 2, 3, 4, 5, 20, 50" in out
    demo = tmp_path / "fastnn-demo"
    with open(demo / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["hidden"]) for r in rows] == [1, 2, 3, 4, 5, 20, 50]
    assert all(r["test_accuracy"] for r in rows)
    for name in ("hidden_3.png", "sweep_grid.png"):
        assert_png_shows_both_classes(demo / name)
    assert (demo / "accuracy_vs_hidden.png").exists() and (demo / "loss_curves.png").exists()


def test_bad_argument_in_a_subprocess_is_one_line(tmp_path):
    code, out, err = fastnn_cmd("sweep", "--hidden", 0, "--passes", 10, "--out", "o", cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.splitlines() == ["fastnn sweep: error: hidden must be an integer >= 1; got 0"]


@pytest.mark.parametrize("argv, message", [
    (["train", "--passes", "0"], "fastnn train: error: passes must be an integer >= 1"),
    (["train", "--activation", "softplus"], "fastnn train: error: activation must be one of"),
    (["train", "--dtype", "float16"], "fastnn train: error: dtype must be"),
    (["sweep", "--test-size", "1.5"], "fastnn sweep: error: --test-size must be a fraction in [0, 1)"),
    (["sweep", "--reg", "-1"], "fastnn sweep: error: reg must be a finite number >= 0"),
    (["sweep", "--n-jobs", "0"], "fastnn sweep: error: n_jobs must be an integer >= 1"),
    (["sweep", "--hidden", "1", "50", "--passes", "300", "--lr", "10", "--activation", "relu"],
     "fastnn sweep: error: run hidden="),
    (["demo", "--passes", "0"], "fastnn demo: error: passes must be an integer >= 1"),
])
def test_bad_arguments_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv + (["--out", "o"] if argv[0] != "train" else [])) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith(message) and "Traceback" not in err, err


def test_bad_scheduler_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dask.distributed")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "--scheduler", "nonsense://host:1", "--passes", "10", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["fastnn sweep: error: cannot connect to the Dask scheduler at 'nonsense://host:1': "
                                "unknown address scheme 'nonsense' (known schemes: "
                                + err.split("(known schemes: ")[1].rstrip()]


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", "--hidden", "three"])
    assert info.value.code == 2 and "invalid int value" in capsys.readouterr().err
