#!/usr/bin/env bash
# Set up and run the main job: a tracked training + serving demo that writes a footprint report,
# then the what-if estimate of GPT-3's training (Patterson et al. 2021, Table 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/tracked_logistic_regression.py --location FR --output-dir reports
.venv/bin/nn-tracker estimate --hardware "Tesla V100-SXM2-32GB" --power-w 330 --count 10000 --days 14.8 \
    --pue 1.10 --intensity 429
