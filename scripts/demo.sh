#!/usr/bin/env bash
# Set up and run the main job: a Lightning training (fit + test) tracked by NNTrackerCallback, which writes
# the footprint report to reports/; then the what-if estimate of GPT-3's training (Patterson et al. 2021).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/lightning_train.py --location FR --output-dir reports
.venv/bin/nn-tracker estimate --hardware "Tesla V100-SXM2-32GB" --power-w 330 --count 10000 --days 14.8 \
    --pue 1.10 --intensity 429
