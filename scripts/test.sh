#!/usr/bin/env bash
# Set up and run the whole test suite (lint and type check included). Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # strict on the package ([tool.mypy] in pyproject.toml)
.venv/bin/python -m pytest "$@"
