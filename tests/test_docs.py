"""The documentation site builds without a warning, and the README stays short and points into it."""

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

from nn_tracker.core import structs

ROOT = Path(__file__).resolve().parents[1]


def test_the_documentation_site_builds_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link, a page outside the nav or a bad anchor fails it."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "guides" / "serving" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    # Tracker's methods from its base classes in run/ (phases, records, reports, endings) are documented
    for method in ("add_units", "phase", "live_report", "checkpoint", "carry_over", "export_state", "end_at_exit_as"):
        assert f'id="nn_tracker.Tracker.{method}"' in api, method


def test_the_readme_is_short_and_its_links_lead_somewhere():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert targets and all((ROOT / target).exists() for target in targets), [
        t for t in targets if not (ROOT / t).exists()
    ]


def cli_reference() -> str:
    """Every command's ``--help``, as the argument parser prints it (80 columns)."""
    import argparse
    import os

    from nn_tracker.cli import build_parser

    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps at the terminal's width
    try:
        parser = build_parser()
        parts = [f"```text\n{parser.format_help()}```\n"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, command in action.choices.items():
                    parts.append(f"## `nn-tracker {name}`\n\n```text\n{command.format_help()}```\n")
        return "\n".join(parts)
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def test_the_cli_reference_is_the_parser_s_own_help():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    start = page.index("<!-- cli: generated")
    block = page[page.index("\n", start) + 1 : page.index("<!-- cli: end -->")]
    assert block == cli_reference(), "docs/reference/cli.md is stale: paste tests/test_docs.py's cli_reference()"


def python_blocks() -> list[tuple[str, int, str]]:
    """Every ```python block of the README and the docs: (file, line, code)."""
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            blocks.append((str(path.relative_to(ROOT)), text[: match.start()].count("\n") + 1, match.group(1)))
    return blocks


def test_every_python_example_in_the_docs_uses_the_api_as_it_is():
    """Each example parses; what it imports from nn_tracker exists; the options it passes are real.

    (A quick check with a clear message; `tests/test_docs_examples.py` runs every example, and
    `tests/test_examples.py` the programs in `examples/`.)
    """
    from nn_tracker.config import TrackerConfig

    options = {f.name for f in structs.fields(TrackerConfig)}
    blocks = python_blocks()
    assert len(blocks) >= 10
    for where, line, code in blocks:
        tree = ast.parse(code, filename=f"{where}:{line}")
        names = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nn_tracker"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{where}:{line}: {node.module}.{alias.name} does not exist"
                    names[alias.asname or alias.name] = getattr(module, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nn_tracker"):
                        names[alias.asname or alias.name] = importlib.import_module(alias.name)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            target = _resolve(node.func, names)
            if target is None or not callable(target):
                continue
            given = {k.arg for k in node.keywords if k.arg}
            parameters = inspect.signature(target).parameters
            takes_options = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
            allowed = set(parameters) | (options if takes_options else set())
            assert given <= allowed, f"{where}:{line}: {ast.unparse(node.func)} takes no {sorted(given - allowed)}"


def _resolve(func, names):
    """The nn_tracker object a call's function names (``Tracker``, ``nn_tracker.track``), else ``None``."""
    if isinstance(func, ast.Name) and func.id in names:
        return names[func.id]
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in names:
        return getattr(names[func.value.id], func.attr, None)
    return None
