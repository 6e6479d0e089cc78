"""The architecture, checked: each layer imports only layers below it; no function body over 60 lines.

The layers (documented in the package docstring, ``nn_tracker/__init__.py``), lowest first. A module
belongs to the first layer with a prefix that names it.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nn_tracker"

LAYERS = [
    ("base", ("core", "accounting")),
    ("footprint model", ("footprint",)),
    ("measuring", ("sensors",)),
    ("configuration", ("config", "estimate")),
    ("reports", ("report",)),
    ("running", ("run", "tracker", "distributed", "serving")),
    ("integrations", ("integrations",)),
    ("command line", ("cli", "__main__", "__init__")),
]
LOOSE_MODULES_AT_MOST = 8  # the package's top: the entry points; everything else lives in a sub-package


def layer_of(module: str) -> int:
    """The layer index of ``nn_tracker.<module>`` (``report.html`` -> reports)."""
    first = module.split(".")[0]
    for index, (_name, prefixes) in enumerate(LAYERS):
        if first in prefixes:
            return index
    raise AssertionError(f"nn_tracker.{module} is in no layer: add it to LAYERS and the package docstring")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)
        yield name, ast.parse(path.read_text(), str(path))


def imported(tree):
    """Every nn_tracker module a module imports, at its top or inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nn_tracker"):
            if node.module == "nn_tracker":
                yield from (alias.name for alias in node.names)  # from nn_tracker import cli
            else:
                yield node.module.removeprefix("nn_tracker.")
        elif isinstance(node, ast.Import):
            yield from (a.name.removeprefix("nn_tracker.") for a in node.names if a.name.startswith("nn_tracker."))


def test_no_layer_imports_a_higher_one():
    problems = []
    for name, tree in modules():
        own = layer_of(name)
        for target in imported(tree):
            if target in ("__version__",):
                continue
            if layer_of(target) > own:
                problems.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert problems == []


def test_the_check_sees_an_upward_import():
    tree = ast.parse("def f():\n    from nn_tracker.tracker import Tracker\n")
    assert list(imported(tree)) == ["tracker"] and layer_of("tracker") > layer_of("sensors.sampling")


def test_few_modules_are_loose_at_the_top_and_every_package_is_in_a_layer():
    loose = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_MODULES_AT_MOST, loose
    packages = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    assert all(layer_of(name) >= 0 for name in [*loose, *packages])


def test_the_tracker_class_stays_short():
    """``Tracker`` is the run's life cycle; phases, records, reports and endings are its base classes in ``run/``."""
    tree = dict(modules())["tracker"]
    (tracker,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Tracker"]
    assert tracker.end_lineno - tracker.lineno + 1 <= 200


def test_no_function_body_is_over_60_lines():
    long = []
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                start = first.end_lineno + 1 if is_doc and len(node.body) > 1 else first.lineno
                if node.end_lineno - start + 1 > 60:
                    long.append(f"{name}.{node.name}: {node.end_lineno - start + 1} lines")
    assert long == []
