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


def run_example(name, *args, timeout=240):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_lightning_example(tmp_path):
    out = run_example("lightning_train.py", "--epochs", "1", "--samples", "512", "--output-dir", str(tmp_path))
    assert "gCO2e per training sample" in out and "gCO2e per querying/test sample" in out
    assert len(list(tmp_path.glob("lightning-demo-*.html"))) == 2  # what a person opens, for each stage
    fit, test = sorted(
        (json.loads(p.read_text()) for p in tmp_path.glob("lightning-demo-*.json")), key=lambda r: r["ended_at"]
    )  # one report per stage, each covering its own stage
    assert fit["status"] == test["status"] == "completed"
    assert set(fit["phases"]) == {"training", "training/validation"} and set(test["phases"]) == {
        "querying",
        "querying/test",
    }
    assert fit["phases"]["training"]["units"]["sample"] == 512
    assert test["phases"]["querying/test"]["units"]["sample"] == 128
    assert [r["run_id"] for r in test["related_runs"]] == [fit["run_id"]]  # the run so far, beside it
    assert not any("earlier sessions" in n for n in test["notes"])  # nothing was resumed
    assert list(tmp_path.rglob("metrics.csv"))


def test_decorator_example(tmp_path):
    out = run_example("torch_decorator.py", "--steps", "20", "--output-dir", str(tmp_path))
    assert "final loss" in out
    data = json.loads(next(tmp_path.glob("torch-decorator-*.json")).read_text())
    assert data["datacentres"][0]["pue"] == 1.2 and data["status"] == "completed"


def test_serving_example(tmp_path):
    out = run_example("serving.py", "--queries", "200", "--output-dir", str(tmp_path))
    assert "200 queries" in out
    data = json.loads(next(tmp_path.glob("serving-*.json")).read_text())
    assert list(data["units"]["query"]["by_phase"]) == ["querying"]
    assert data["footprint"]["querying_energy_kwh"] > 0 and data["footprint"]["training_energy_kwh"] == 0


def test_transformers_example(tmp_path):
    out = run_example("transformers_train.py", "--samples", "64", "--epochs", "1", "--output-dir", str(tmp_path))
    assert "samples in training:" in out and "tokens in querying/predict:" in out
    train, predict = sorted(
        (json.loads(p.read_text()) for p in tmp_path.glob("transformers-demo-*.json")), key=lambda r: r["ended_at"]
    )
    assert train["phases"]["training"]["units"]["sample"] == 64
    assert train["phases"]["training/validation"]["units"]["sample"] == 64  # one evaluation per epoch
    assert predict["phases"]["querying/predict"]["units"]["sample"] == 128


def test_fastapi_example(tmp_path):
    out = run_example("fastapi_serving.py", "--self-test", "12", "--output-dir", str(tmp_path))
    assert "12 requests; provisional facility energy per request in the headers: min" in out
    data = json.loads(next(tmp_path.glob("fastapi-serving-*.json")).read_text())
    assert data["requests"]["count"] == 12 and data["requests"]["per_unit"]["query"]["units"] == 12
