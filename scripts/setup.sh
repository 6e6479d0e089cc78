#!/usr/bin/env bash
# Create .venv (if needed); install nn_tracker with its test tools and the Lightning, transformers and Prometheus
# extras. Called by demo.sh and test.sh.
# torch==2.13.0 is installed first and explicitly: on the project machines it is a local CPU build, whereas any
# other version (or an unpinned torch pulled in by pytorch-lightning or accelerate) would download a multi-GB CUDA
# build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
.venv/bin/python -c "import torch" 2>/dev/null || pip install torch==2.13.0
pip install -e '.[test,lightning,transformers,prometheus,serving]'
