"""The repository's basics: one version, the type-hint marker, the licence, the changelog, the design
document and every reference to it (its import boundaries: test_layout.py)."""

import importlib.metadata
import re
from pathlib import Path

import pytest

import fastnn

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(fastnn.__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_one_version():
    """pyproject.toml reads the version from fastnn.__version__; the installed metadata says the same
    (an install older than the source fails here: pip install -e . again)."""
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastnn.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", fastnn.__version__)
    assert importlib.metadata.version("fastnn") == fastnn.__version__


def test_typed_package():
    assert (ROOT / "fastnn" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["fastnn"]
    assert all(not p.startswith("examples") for p in PYPROJECT["tool"]["setuptools"]["packages"])


def test_license_and_changelog():
    license = (ROOT / "LICENSE").read_text()
    assert license.startswith("MIT License") and "Copyright (c) 2026 the fastnn developers" in license
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {fastnn.__version__}" in changelog and "## 0.1.0" in changelog


def test_design_document_and_every_reference_to_it():
    design = (ROOT / "docs/DESIGN.md").read_text()
    assert "## Layout and import boundaries" in design
    assert "../shared" not in design
    stray = []
    for path in [ROOT / "README.md", *ROOT.glob("fastnn/*.py"), *ROOT.glob("kernels/*.py"),
                 *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py"), *ROOT.glob("examples/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<!docs/)DESIGN\.md", line):
                stray.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not stray, "references to the design document that do not name docs/DESIGN.md:\n" + "\n".join(stray)
