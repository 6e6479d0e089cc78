#!/usr/bin/env bash
# Set up and run the main job: estimate GPT-3's training footprint (Patterson et al. 2021, Table 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p reports
.venv/bin/nn-tracker estimate --hardware "Tesla V100-SXM2-32GB" --power-w 330 --count 10000 --days 14.8 \
    --pue 1.10 --intensity 429 --format json > reports/gpt3-estimate.json.tmp
mv reports/gpt3-estimate.json.tmp reports/gpt3-estimate.json
.venv/bin/nn-tracker estimate --hardware "Tesla V100-SXM2-32GB" --power-w 330 --count 10000 --days 14.8 \
    --pue 1.10 --intensity 429
echo "JSON written to reports/gpt3-estimate.json"
