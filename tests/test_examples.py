"""Every example runs (with small sizes), so none rots."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_logistic_regression_demo_writes_a_report(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "tracked_logistic_regression.py"),
            "--epochs",
            "2",
            "--samples",
            "400",
            "--queries",
            "100",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "validation accuracy" in result.stdout
    reports = list(tmp_path.glob("logistic-demo-*.json"))
    assert len(reports) == 1
    data = json.loads(reports[0].read_text())
    assert data["status"] == "completed"
    assert set(data["phases"]) == {"training", "training/validation", "querying"}
    assert data["units"]["query"]["count"] == 100 and data["units"]["sample"]["count"] == 800
