r"""nn_tracker against CodeCarbon on the same fixed CPU training workload (run by hand).

Needs a Python with torch 2.13.0, codecarbon and nn_tracker (the test venv has all three; a separate one keeps the
workload timings apart):

    python3.11 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0 \\
        && .venv-bench/bin/pip install codecarbon -e . \\
        && .venv-bench/bin/python benchmarks/bench_vs_codecarbon.py --rounds 6

Every measurement runs in a fresh process. Modes: ``none``; ``nn_tracker`` at 10 Hz;
``codecarbon`` with its default interval (15 s) and at 1 s (``OfflineEmissionsTracker``,
country FRA, so nothing goes to the network). Each round runs the four modes in a
rotated order; slowdown is the ratio to the same round's ``none``.

``--cold`` measures instead what a training script pays first: in a fresh process, after a prelude
(``import torch``, or ``import torch, psutil``), with the garbage collector on and bytecode compiled,
the import of the tool and its first tracker (construct, start, stop, its report file written); and
what the tool adds to the script up to the end of a model's construction that follows (against no
tool: right after ``import torch`` a full garbage collection is due, and whoever allocates next pays
it). nn_tracker, CodeCarbon and no tool alternate in rotated rounds:

    .venv/bin/python -m compileall -q nn_tracker && .venv/bin/python benchmarks/bench_vs_codecarbon.py --cold
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODES = ("none", "nn_tracker", "codecarbon_15s", "codecarbon_1s")


def workload() -> float:
    """A fixed CPU training loop: an MLP on synthetic data, 900 steps (about 6 s on 2 cores)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(512, 256), torch.randint(0, 10, (512,))
    for _ in range(900):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
    return float(loss.detach())


def worker(mode: str, out_dir: str) -> dict:
    """One measured run in this (fresh) process."""
    import psutil
    import torch  # imported before measuring, as in any training script

    process = psutil.Process()
    torch.randn(512, 256) @ torch.randn(256, 512)  # torch's own threads exist before we look
    rss_before = process.memory_info().rss
    threads_before = {th.id for th in process.threads()}
    result: dict = {"mode": mode}
    t0 = time.perf_counter()
    if mode == "nn_tracker":
        import nn_tracker

        t1 = time.perf_counter()
        tracker = nn_tracker.Tracker(location="FR", output_dir=out_dir, interval_s=0.1)
        tracker.start()
    elif mode.startswith("codecarbon"):
        from codecarbon import OfflineEmissionsTracker

        t1 = time.perf_counter()
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=out_dir,
            log_level="error",
            measure_power_secs=15 if mode == "codecarbon_15s" else 1,
            allow_multiple_runs=True,
        )
        tracker.start()
    else:
        t1 = time.perf_counter()
        tracker = None
    t2 = time.perf_counter()
    added_rss = process.memory_info().rss - rss_before  # import + construction + start
    tracker_threads = {th.id for th in process.threads()} - threads_before
    workload()
    t3 = time.perf_counter()
    thread_cpu = sum(th.user_time + th.system_time for th in process.threads() if th.id in tracker_threads)
    if tracker is not None:
        tracker.stop()
    t4 = time.perf_counter()
    result.update(
        import_s=t1 - t0,
        start_s=t2 - t1,
        workload_s=t3 - t2,
        stop_s=t4 - t3,
        added_rss_mb=added_rss / 1e6,
        tracker_threads=len(tracker_threads),
        tracker_thread_cpu_s=thread_cpu,
        tracker_thread_cpu_pct=100 * thread_cpu / (t3 - t2),
    )
    if mode == "nn_tracker":
        data = tracker.report().to_dict()
        result["energy_kwh"] = data["energy"]["it_kwh"]
        result["label"] = ", ".join(
            f"{d['component']}: {d['method']} ({d['model'] or d['name']})" for d in data["devices"]
        )
    elif tracker is not None:
        data = tracker.final_emissions_data
        result["energy_kwh"] = data.energy_consumed
        result["label"] = (
            f"cpu_power {data.cpu_power:.1f} W, ram_power {data.ram_power:.1f} W, "
            f"tracking_mode {data.tracking_mode} (no per-number method given)"
        )
    return result


COLD = r"""
import gc, sys, time
PRELUDE
full_collections_s, collecting = [0.0], [0.0]
def watch(phase, info):  # the time of full collections (of torch's heap), to set apart
    if info["generation"] == 2:
        if phase == "start":
            collecting[0] = time.perf_counter()
        else:
            full_collections_s[0] += time.perf_counter() - collecting[0]
gc.callbacks.append(watch)
started = time.perf_counter()
if sys.argv[1] == "nn_tracker":
    import nn_tracker
    tracker = nn_tracker.Tracker(location="FR", output_dir=sys.argv[2])
elif sys.argv[1] == "codecarbon":
    from codecarbon import OfflineEmissionsTracker
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", output_dir=sys.argv[2], log_level="error",
                                      allow_multiple_runs=True)
else:
    tracker = None
if tracker is not None:
    tracker.start()
    tracker.stop()
tool = time.perf_counter()
collected_in_tool_s = full_collections_s[0]
import torch  # the script goes on: builds a model (allocates; pays any garbage collection that was due)
model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(300)])  # past the collection due
print(tool - started, time.perf_counter() - started, tool - started - collected_in_tool_s)
"""
TOOLS = ("nn_tracker", "codecarbon", "none")


def cold(rounds: int, out: str) -> dict:
    """Medians of the cold path per tool and prelude, in fresh processes, the tools' order rotated.

    ``*_ms_median``: import + first tracker. ``*_own_ms_median``: the same less the time of the full garbage
    collections that fell inside it (torch's heap: due after ``import torch`` whoever allocates next).
    ``*_added_ms_median``: what the tool adds to the script up to
    the end of a model's construction that follows it (against no tool in the same round, the median of
    those differences), so a garbage collection that was due anyway is not charged to whichever tool
    happened to run first.
    """
    results = {}
    for prelude in ("import torch", "import torch, psutil"):
        tool_s: dict[str, list[float]] = {t: [] for t in TOOLS}
        total_s: dict[str, list[float]] = {t: [] for t in TOOLS}
        own_s: dict[str, list[float]] = {t: [] for t in TOOLS}
        for round_index in range(rounds):
            shift = round_index % len(TOOLS)
            for tool in TOOLS[shift:] + TOOLS[:shift]:
                output = subprocess.run(
                    [sys.executable, "-c", COLD.replace("PRELUDE", prelude), tool, out],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                first, total, own = map(float, output.strip().splitlines()[-1].split())
                tool_s[tool].append(first)
                total_s[tool].append(total)
                own_s[tool].append(own)
        median = {t: {"tool": statistics.median(tool_s[t])} for t in TOOLS}
        added = {  # paired within each round (the machine drifts between rounds), then the median
            t: statistics.median(a - b for a, b in zip(total_s[t], total_s["none"], strict=True))
            for t in ("nn_tracker", "codecarbon")
        }
        results[prelude] = {
            **{f"{t}_ms_median": round(1000 * median[t]["tool"], 1) for t in ("nn_tracker", "codecarbon")},
            "codecarbon_over_nn_tracker": round(median["codecarbon"]["tool"] / median["nn_tracker"]["tool"], 1),
            **{f"{t}_own_ms_median": round(1000 * statistics.median(own_s[t]), 1) for t in TOOLS[:2]},
            "own_codecarbon_over_nn_tracker": round(
                statistics.median(own_s["codecarbon"]) / statistics.median(own_s["nn_tracker"]), 1
            ),
            **{f"{t}_added_ms_median": round(1000 * added[t], 1) for t in ("nn_tracker", "codecarbon")},
            "added_codecarbon_over_nn_tracker": round(added["codecarbon"] / added["nn_tracker"], 1),
        }
    return results


def main() -> None:
    """Rounds of the four modes; print medians and slowdowns as JSON (``--cold``: the cold path)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cold", action="store_true", help="measure import + first tracker in fresh processes")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/nn_tracker_bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.out)))
        return
    if args.cold:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print(json.dumps(cold(args.rounds, args.out), indent=2))
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for round_index in range(args.rounds):
        order = MODES[round_index % 4 :] + MODES[: round_index % 4]
        for mode in order:
            output = subprocess.run(
                [sys.executable, __file__, "--worker", mode, "--out", args.out],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs[mode].append(json.loads(output.strip().splitlines()[-1]))
    (Path(args.out) / "runs.json").write_text(json.dumps(runs, indent=1))  # raw results, kept
    summary = {}
    for mode, results in runs.items():
        ratios = [r["workload_s"] / n["workload_s"] for r, n in zip(results, runs["none"], strict=True)]
        totals = [
            (r["start_s"] + r["workload_s"] + r["stop_s"]) / (n["start_s"] + n["workload_s"] + n["stop_s"])
            for r, n in zip(results, runs["none"], strict=True)
        ]
        summary[mode] = {
            "rounds": len(results),
            **{
                key: statistics.median(r[key] for r in results)
                for key in (
                    "import_s",
                    "start_s",
                    "stop_s",
                    "workload_s",
                    "added_rss_mb",
                    "tracker_thread_cpu_s",
                    "tracker_thread_cpu_pct",
                )
            },
            "workload_slowdown_median": statistics.median(ratios),
            "workload_slowdown_min_max": [min(ratios), max(ratios)],
            "end_to_end_slowdown_median": statistics.median(totals),
            "energy_kwh_median": statistics.median(r.get("energy_kwh", 0.0) for r in results)
            if mode != "none"
            else None,
            "label": results[-1].get("label"),
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
