"""The documentation site builds without a warning, and the README stays short and points into it."""

import re
import subprocess
import sys
from pathlib import Path

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
