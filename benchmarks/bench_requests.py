"""What energy per request costs the request's thread and the memory it keeps (run by hand; see docs/validation).

    .venv/bin/python benchmarks/bench_requests.py [--requests 200000]

A ServingTracker with this machine's sensors (the sampler thread running at 10 Hz) serves requests
entered and left in a loop, with 0, 100 and 1,000 other requests in flight: the time of one
``with serving.request(): pass`` (enter + leave, provisional figures included), in batches of 1,000
(p50 and p99 of the batches' means), and the Python memory held after all of them (tracemalloc).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nn_tracker.serving import ServingTracker  # noqa: E402

BATCH = 1000


def per_request_us(serving: ServingTracker, count: int) -> list[float]:
    """Mean µs of one enter + leave, per batch of BATCH."""
    means = []
    for _ in range(count // BATCH):
        started = time.perf_counter_ns()
        for _ in range(BATCH):
            with serving.request():
                pass
        means.append((time.perf_counter_ns() - started) / BATCH / 1000)
    return means


def main() -> None:
    """Print the costs as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        serving = ServingTracker(output_dir=folder, location="FR", checkpoint_interval_s=None, period_s=3600)
        with serving:
            for others in (0, 100, 1000):
                background = [serving.request().__enter__() for _ in range(others)]
                means = sorted(per_request_us(serving, args.requests))
                results[f"{others} others in flight"] = {
                    "p50_us": round(statistics.median(means), 2),
                    "p99_us": round(means[int(0.99 * (len(means) - 1))], 2),
                }
                for request in background:
                    serving._ledger.end(request)
            time.sleep(2.5)  # let the readings settle what is waiting
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            per_request_us(serving, args.requests)
            waited = time.monotonic()
            ledger, stats = serving._ledger, serving._stats
            while (ledger._waiting or stats.run.count < ledger.settled_count) and time.monotonic() - waited < 60:
                time.sleep(0.1)  # settled by the next readings, then counted in the statistics
            results["seconds until every request was settled and counted"] = round(time.monotonic() - waited, 2)
            gc.collect()
            after = tracemalloc.take_snapshot()
            held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            tracemalloc.stop()
            results[f"memory held after {args.requests:,} more requests"] = f"{held / 1024:.0f} KiB"
        results["settled"] = serving.tracker.report().requests.count
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
