"""The import boundaries of the layout (docs/DESIGN.md), read from the source with ``ast``: every import, at
module level or inside a function, of every .py file of kernels/ and fastnn/.

kernels -> only NumPy, Numba (with llvmlite, its code generator) and the standard library, so that they
can be read, tested and compiled alone; the reference -> only NumPy and the standard library, never the kernels, so that the two stay independent
twins; the library -> never a front end, never matplotlib, and Dask only inside the function that needs it,
so that ``import fastnn`` stays light and works without the optional extras.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRONT_ENDS = ("fastnn.plot", "fastnn.cli", "fastnn.demo", "fastnn.__main__", "fastnn.tutorial")

# (rule, the files it applies to, what breaks it). Files are "kernels", "reference" (fastnn/reference.py),
# "library" (fastnn/ less the front ends); an import is a dotted name, resolved as installed (kernels/ is
# fastnn.kernels), with the level it is made at: "module" or "function".
RULES = {
    "kernels import only numpy, numba, llvmlite and the standard library":
        ("kernels", lambda name, level: not (is_under(name, "numpy", "numba", "llvmlite", "fastnn.kernels")
                                             or is_stdlib(name))),
    "the reference never imports the kernels":
        ("reference", lambda name, level: is_under(name, "fastnn.kernels")),
    "the reference imports only numpy and the standard library":
        ("reference", lambda name, level: not (is_under(name, "numpy") or is_stdlib(name))),
    "the library never imports a front end":
        ("library", lambda name, level: is_under(name, *FRONT_ENDS)),
    "the library never imports matplotlib":
        ("library", lambda name, level: is_under(name, "matplotlib")),
    "the library imports dask only inside functions":
        ("library", lambda name, level: level == "module" and is_under(name, "dask", "distributed")),
}


def is_under(name, *packages):
    return any(name == p or name.startswith(p + ".") for p in packages)


def is_stdlib(name):
    return name.split(".")[0] in sys.stdlib_module_names


def module_of(path):
    """The dotted module name a source file has once installed."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("fastnn", "kernels", *rel.parts[1:]) if rel.parts[0] == "kernels" else rel.parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source, module, is_package=False):
    """(line, dotted name, "module" or "function") for every import in source. ``from a import b`` yields
    both a and a.b (b may be a submodule); relative imports are resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []

    def visit(node, level):
        for child in ast.iter_child_nodes(node):
            inner = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else level
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = package.split(".")
                base = base[:len(base) - child.level + 1] if child.level else []
                target = ".".join(base + ([child.module] if child.module else []))
                found.append((child.lineno, target, level))
                found.extend((child.lineno, f"{target}.{alias.name}", level) for alias in child.names
                             if alias.name != "*")
            visit(child, inner)

    visit(ast.parse(source), "module")
    return found


def files(kind):
    if kind == "kernels":
        return sorted((ROOT / "kernels").glob("*.py"))
    if kind == "reference":
        return [ROOT / "fastnn" / "reference.py"]
    return [p for p in sorted((ROOT / "fastnn").glob("*.py")) if module_of(p) not in FRONT_ENDS]


def violations(rule, path):
    _, breaks = RULES[rule]
    found = imports(path.read_text(), module_of(path), path.name == "__init__.py")
    return [f"{path.relative_to(ROOT)}:{line} imports {name} ({level} level)" for line, name, level in found
            if breaks(name, level)]


CASES = [(rule, path) for rule, (kind, _) in RULES.items() for path in files(kind)]


@pytest.mark.parametrize("rule, path", CASES, ids=[f"{rule}: {path.relative_to(ROOT)}" for rule, path in CASES])
def test_import_boundary(rule, path):
    assert not violations(rule, path), f"{rule}: " + "; ".join(violations(rule, path))


def test_every_file_is_checked():
    """A glob that found nothing would pass every rule: the files the layout names are all there."""
    checked = {path.relative_to(ROOT).as_posix() for _, path in CASES}
    assert {"kernels/__init__.py", "kernels/network.py", "fastnn/reference.py", "fastnn/train.py",
            "fastnn/model.py", "fastnn/sweep.py", "fastnn/__init__.py"} <= checked
    assert not checked & {"fastnn/plot.py", "fastnn/cli.py", "fastnn/tutorial.py", "fastnn/__main__.py"}


# What each rule must catch and let pass, written as the source a file might hold: the checker itself can fail.
EXAMPLES = [  # (rule, file, source, broken)
    ("kernels import only numpy, numba, llvmlite and the standard library", "kernels/network.py",
     "from .. import train", True),
    ("kernels import only numpy, numba, llvmlite and the standard library", "kernels/network.py",
     "def f():\n    import fastnn.model", True),
    ("kernels import only numpy, numba, llvmlite and the standard library", "kernels/network.py",
     "import scipy.special", True),
    ("kernels import only numpy, numba, llvmlite and the standard library", "kernels/network.py",
     "import math, types\nimport numpy as np\nfrom numba import njit, prange\nfrom .config import JIT\n"
     "from . import elementwise\nfrom fastnn.kernels import config\nfrom llvmlite import ir", False),
    ("the reference never imports the kernels", "fastnn/reference.py", "from . import kernels", True),
    ("the reference never imports the kernels", "fastnn/reference.py", "from .kernels import config", True),
    ("the reference never imports the kernels", "fastnn/reference.py",
     "def f():\n    from fastnn import kernels", True),
    ("the reference never imports the kernels", "fastnn/reference.py", "import fastnn.kernels.network", True),
    ("the reference never imports the kernels", "fastnn/reference.py",
     "import numpy as np\nfrom . import _validate", False),
    ("the reference imports only numpy and the standard library", "fastnn/reference.py",
     "from . import _validate", True),
    ("the reference imports only numpy and the standard library", "fastnn/reference.py",
     "def f():\n    import scipy.special", True),
    ("the reference imports only numpy and the standard library", "fastnn/reference.py",
     "import types\nimport numpy as np\nfrom numpy.linalg import norm", False),
    ("the library never imports a front end", "fastnn/sweep.py", "from . import plot", True),
    ("the library never imports a front end", "fastnn/model.py", "from .cli import main", True),
    ("the library never imports a front end", "fastnn/train.py", "def f():\n    import fastnn.tutorial", True),
    ("the library never imports a front end", "fastnn/__init__.py", "from .demo import run", True),
    ("the library never imports a front end", "fastnn/__init__.py",
     "from .train import train\nfrom . import kernels", False),
    ("the library never imports matplotlib", "fastnn/sweep.py", "def f():\n    import matplotlib.pyplot", True),
    ("the library imports dask only inside functions", "fastnn/sweep.py",
     "from dask.distributed import Client", True),
    ("the library imports dask only inside functions", "fastnn/sweep.py",
     "try:\n    import dask\nexcept ImportError:\n    dask = None", True),
    ("the library imports dask only inside functions", "fastnn/sweep.py",
     "def f():\n    from dask.distributed import Client", False),
]


@pytest.mark.parametrize("rule, file, source, broken", EXAMPLES,
                         ids=[f"{r}: {s.splitlines()[-1].strip()}" for r, _, s, _ in EXAMPLES])
def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch, rule, file, source, broken):
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert bool(violations(rule, path)) == broken, violations(rule, path)
