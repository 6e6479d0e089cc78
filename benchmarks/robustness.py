"""Attack nn_tracker from the outside, as a user with a bad day would; print what held.

    .venv/bin/python benchmarks/robustness.py [--kills 20] [--concurrent 40]

1. Bad inputs by kind, through every command that reads a file (each a fresh ``nn-tracker``
   process): how many ended with exit 2 and one line, with a traceback, hung, or succeeded.
2. SIGKILL at random moments of a tracked job that checkpoints every second: is the report left
   behind always valid JSON?
3. Many ``nn-tracker run`` at once into one folder: is every row of ``emissions.csv`` there, whole?
4. A bad day: a FIFO given as every input, a command killed by a real-time signal, outputs to a FIFO
   or ``/dev/full``, 2,000 nested phases, a 4-MB IF manifest: the outcome and the seconds each takes.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIES = "timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n2026-01-01T01:00:00Z,200\n"
REPORT = {"schema_version": 2, "run_id": "x", "project_name": "p", "status": "completed", "duration_s": 1}

# kind -> bytes of a file a user might give
INPUTS: dict[str, bytes] = {
    "binary": bytes(range(256)) * 4,
    "invalid UTF-8": b"key: caf\xe9\n",
    "UTF-16": "key: value\n".encode("utf-16"),
    "empty": b"",
    "deep JSON (100k)": b"[" * 100_000 + b"]" * 100_000,
    "deep YAML (10k)": b"[" * 10_000 + b"]" * 10_000,
    "YAML alias bomb": (
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 12))
    ).encode(),
    "400-digit integer": b"pue: 1" + b"0" * 400 + b"\n",
    "5000-digit integer": b"pue: 1" + b"0" * 5000 + b"\n",
    "NaN and Infinity": b'{"duration_s": NaN, "x": Infinity}',
    "quoted newline in a number": b'timestamp,intensity\n2026-01-01T00:00:00Z,"1\n2"\n2026-01-01T01:00:00Z,3\n',
    "date out of range": b"timestamp,intensity\n9999-12-31T22:00:00-01:00,1\n9999-12-31T22:30:00-01:00,1\n",
    "wrong-typed report": json.dumps({**REPORT, "energy": [], "footprint": None}).encode(),
    "report with Infinity": json.dumps({**REPORT, "duration_s": 1e400}).encode(),
    "python tag": b"!!python/object/apply:os.system ['echo pwned']\n",
}


def commands(path: str, folder: Path) -> dict[str, list[str]]:
    series = folder / "series.csv"
    return {
        "if-run": ["if-run", path],
        "report": ["report", path, "--format", "html"],
        "compare": ["compare", path, path, "--format", "html"],
        "schedule --series": ["schedule", "--series", path, "--duration-h", "1", "--power-w", "100"],
        "schedule --report": ["schedule", "--series", str(series), "--report", path],
        "estimate --catalogue": ["estimate", "--catalogue", path, "--hardware", "T4", "--hours", "1"],
        "list --catalogue": ["list", "hardware", "--catalogue", path],
        "run --config": ["run", "--config", path, "--no-status", "--output-dir", str(folder / "out"), "--", "true"],
        "run --intensity-series": [
            "run",
            "--intensity-series",
            path,
            "--no-status",
            "--output-dir",
            str(folder / "out"),
            "--",
            "true",
        ],
    }


def nn_tracker(*args: str, timeout: float = 30) -> tuple[str, float, str]:
    """Run the CLI; classify the outcome."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return "hung", timeout, ""
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    if "Traceback" in result.stderr:
        return "traceback", elapsed, result.stderr[-500:]
    if result.returncode == 2 and len(lines) == 1 and lines[0].startswith("nn-tracker: error: "):
        return "one-line error", elapsed, lines[0]
    if result.returncode == 0:
        return "accepted", elapsed, ""
    return f"exit {result.returncode}", elapsed, result.stderr[-300:]


def bad_inputs(folder: Path) -> dict:
    (folder / "series.csv").write_text(SERIES)
    outcomes: dict[str, int] = {}
    details = []
    slowest = 0.0
    for kind, content in INPUTS.items():
        path = folder / f"input-{len(details)}"
        path.write_bytes(content)
        for entry, args in commands(str(path), folder).items():
            outcome, elapsed, text = nn_tracker(*args)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            slowest = max(slowest, elapsed)
            details.append({"kind": kind, "entry": entry, "outcome": outcome, "message": text[:160]})
    return {"invocations": len(details), "outcomes": outcomes, "slowest_s": round(slowest, 2), "details": details}


KILLED = """
import sys, time
sys.path.insert(0, {root!r})
import nn_tracker
tracker = nn_tracker.Tracker(output_dir={out!r}, intensity_g_per_kwh=100, run_id="kill", interval_s=0.01,
                             checkpoint_interval_s=1.0, formats=("json", "csv"))
tracker.start()
print("ready", flush=True)
while True:
    with tracker.phase("step"):
        tracker.add_units(1)
"""


def kills(folder: Path, count: int) -> dict:
    valid = 0
    for i in range(count):
        out = folder / f"kill-{i}"
        script = folder / "killed.py"
        script.write_text(KILLED.format(root=str(ROOT), out=str(out)))
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        process.stdout.readline()
        time.sleep(random.uniform(0.0, 2.5))
        process.kill()
        process.wait()
        try:
            json.loads((out / "nn_tracker-kill.json").read_text())
            valid += 1
        except (OSError, ValueError):
            pass
    return {"kills": count, "valid_json_reports": valid}


def tracked_run(out: Path, *args: str) -> list[str]:
    """The argv of ``nn-tracker run`` writing into ``out``, without status lines."""
    return [sys.executable, "-m", "nn_tracker", "run", "--no-status", "--output-dir", str(out), *args]


def concurrent_rows(folder: Path, count: int) -> dict:
    out = folder / "shared"
    processes = [
        subprocess.Popen(
            tracked_run(out, "--intensity", "100", "--format", "csv", "--", "true"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for _ in range(count)
    ]
    for process in processes:
        process.wait()
    lines = (out / "emissions.csv").read_text().splitlines()
    widths = {len(line.split(",")) for line in lines}
    return {
        "runs": count,
        "rows": len(lines) - 1,
        "rows_lost": count - (len(lines) - 1),
        "column_counts": sorted(widths),
    }


NESTED = """
import contextlib, sys, time
sys.path.insert(0, {root!r})
import nn_tracker
tracker = nn_tracker.Tracker(write_report=False, intensity_g_per_kwh=100, gpus=False).start()
with contextlib.ExitStack() as stack:
    for i in range(2000):
        stack.enter_context(tracker.phase(f"p{{i}}"))
    started = time.perf_counter()
    tracker.report()
    print(round(time.perf_counter() - started, 3))
"""


def killed_wrapper(folder: Path, count: int) -> dict:
    """SIGKILL ``nn-tracker run`` at random moments of a command with a grandchild; count what runs on."""
    import os
    import random
    import signal

    for trial in range(count):
        marker = folder / f"survivor-{trial}"
        grandchild = f"import time; time.sleep(4); open({str(marker)!r}, 'w')"
        command = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}])"
        command += "; time.sleep(30)"
        process = subprocess.Popen(tracked_run(folder / "killed", "--", sys.executable, "-c", command))
        time.sleep(random.uniform(0.3, 1.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(5)
    survivors = sum((folder / f"survivor-{trial}").exists() for trial in range(count))
    return {"trials": count, "grandchildren_that_ran_on": survivors}


def bad_day(folder: Path) -> dict:
    """FIFOs where files should be, real-time signals, full devices, deep nesting, a large manifest."""
    import os

    import yaml

    fifo = folder / "fifo"
    os.mkfifo(fifo)
    fifo_outcomes: dict[str, int] = {}
    slowest = 0.0
    for args in commands(str(fifo), folder).values():
        outcome, elapsed, _ = nn_tracker(*args, timeout=20)
        fifo_outcomes[outcome] = fifo_outcomes.get(outcome, 0) + 1
        slowest = max(slowest, elapsed)
    killed = subprocess.run(
        tracked_run(folder / "rt", "--", "sh", "-c", "kill -40 $$"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(next((folder / "rt").glob("*.json")).read_text())
    (folder / "r.json").write_text(json.dumps(report))
    to_fifo = nn_tracker("report", str(folder / "r.json"), "-o", str(fifo))
    with open("/dev/full", "w") as full:
        started = time.monotonic()
        listed = subprocess.run(
            [sys.executable, "-m", "nn_tracker", "list", "locations"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
        full_s = time.monotonic() - started
    nested = subprocess.run([sys.executable, "-c", NESTED.format(root=str(ROOT))], capture_output=True, text=True)
    manifest = yaml.safe_load((ROOT / "tests" / "data" / "nn-ci-manifest.yml").read_text())
    child = manifest["tree"]["children"]["child-1"]
    manifest["tree"]["children"] = {f"c{i}": json.loads(json.dumps(child)) for i in range(5000)}  # ~4 MB, no alias
    big = folder / "big.yml"
    big.write_text(yaml.safe_dump(manifest))
    outcome, manifest_s, _ = nn_tracker("if-run", str(big), "-o", str(folder / "big-out.yml"), timeout=300)
    return {
        "fifo_as_input": {"outcomes": fifo_outcomes, "slowest_s": round(slowest, 2)},
        "real_time_signal": {
            "exit": killed.returncode,
            "status": report["status"],
            "error": report["error"]["message"],
            "traceback": "Traceback" in killed.stderr,
        },
        "output_to_a_fifo": to_fifo[0],
        "output_to_dev_full": {
            "exit": listed.returncode,
            "lines": len(listed.stderr.strip().splitlines()),
            "seconds": round(full_s, 2),
        },
        "report_of_2000_nested_phases_s": float(nested.stdout.strip() or "nan"),
        "if_run_4mb_manifest": {
            "outcome": outcome,
            "mb": round(big.stat().st_size / 1e6, 1),
            "seconds": round(manifest_s, 1),
        },
    }


def main() -> None:
    """Run the four attacks and print the summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--details", action="store_true", help="print every bad input's outcome")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="nn-tracker-robustness-"))
    inputs = bad_inputs(folder)
    if not args.details:
        inputs["details"] = [d for d in inputs["details"] if d["outcome"] not in ("one-line error", "accepted")]
    result = {
        "bad_inputs": inputs,
        "sigkill": kills(folder, args.kills),
        "concurrent_runs": concurrent_rows(folder, args.concurrent),
        "bad_day": bad_day(folder),
        "sigkill_of_nn_tracker_run": killed_wrapper(folder, args.kills),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
