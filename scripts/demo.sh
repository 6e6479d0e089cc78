#!/usr/bin/env bash
# Set up and run the main job: a Lightning training (fit + test) tracked by NNTrackerCallback, which writes
# the footprint report to reports/; then the what-if estimate of GPT-3's training (Patterson et al. 2021).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/lightning_train.py --location FR --output-dir reports
echo
echo "What-if, nothing measured: GPT-3's training as Patterson et al. 2021 describe it"
echo "(10,000 V100 at 330 W for 14.8 days, PUE 1.10, 429 gCO2e/kWh; they report 1,287 MWh and 552 tCO2e):"
.venv/bin/nn-tracker estimate --hardware "Tesla V100-SXM2-32GB" --power-w 330 --count 10000 --days 14.8 \
    --pue 1.10 --intensity 429
