"""Costs of tracking, measured on this machine (run by hand; results go to docs/validation/benchmarks.md).

    .venv/bin/python benchmarks/bench_tracker.py [--rounds 30] [--days 30]

Measures: import time; start()+stop() latency; CPU per sampler tick with the CPU
sensors and with 8 simulated GPUs (the real pynvml bindings on tests/fake_nvml.c);
with 8 simulated GPUs whose counter calls spin for 2.5 ms (as on an H200): the time a
phase switch and add_units keep the calling thread, and the sampling thread's CPU time
per second for 1 and 8 GPUs;
resident memory added by importing and by running; CPU time of the sampling thread;
slowdown of a fixed CPU loop at 10 Hz against no tracker (alternating rounds, rotated
order); memory of a simulated 30-day run at 10 Hz fed through the timeline.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def in_subprocess(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def import_time_ms(runs: int = 15, after_torch: bool = False, bytecode: bool = False) -> float:
    """Median time of ``import nn_tracker`` in fresh processes.

    ``after_torch``: torch is imported first, as in a training script (the stdlib modules both use are
    then loaded already). ``bytecode``: nn_tracker's ``.pyc`` files exist, as after ``pip install``;
    without them (this machine sets ``PYTHONDONTWRITEBYTECODE``) every import compiles the sources.
    """
    if bytecode:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "nn_tracker")], check=True)
    else:
        for cached in (ROOT / "nn_tracker").rglob("__pycache__"):
            shutil.rmtree(cached)
    code = (
        ("import torch; " if after_torch else "") + "import time, json; t=time.perf_counter(); import nn_tracker; "
        "print(json.dumps({'ms': (time.perf_counter()-t)*1000}))"
    )
    try:
        return statistics.median(in_subprocess(code)["ms"] for _ in range(runs))
    finally:
        for cached in (ROOT / "nn_tracker").rglob("__pycache__"):
            shutil.rmtree(cached)


def memory_mb() -> dict:
    """Resident memory added by importing and by running 2 s, in a bare process and after ``import torch``."""
    code = """
import json, os, time, psutil
PRELUDE
p = psutil.Process()
before = p.memory_info().rss
import nn_tracker
after_import = p.memory_info().rss
t = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, interval_s=0.1)
t.start(); time.sleep(2.0); t.stop()
after_run = p.memory_info().rss
print(json.dumps({"import_mb": (after_import-before)/1e6, "run_mb": (after_run-before)/1e6}))
"""
    bare = in_subprocess(code.replace("PRELUDE", ""))
    after_torch = in_subprocess(code.replace("PRELUDE", "import torch"))
    return {**bare, **{f"after_torch_{name}": value for name, value in after_torch.items()}}


def cold_first_run_ms(runs: int = 5) -> float:
    """Constructor + start + stop of the first tracker in a fresh process (catalogue loading included)."""
    code = (
        "import time, json, nn_tracker; t=time.perf_counter(); "
        "nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False).start().stop(); "
        "print(json.dumps({'ms': (time.perf_counter()-t)*1000}))"
    )
    return statistics.median(in_subprocess(code)["ms"] for _ in range(runs))


def start_stop_ms(runs: int = 20) -> dict:
    import nn_tracker

    nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False).start().stop()  # warm caches
    starts, stops, totals, with_files = [], [], [], []
    tmp = tempfile.mkdtemp()
    for i in range(runs):
        tracker = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False)
        t0 = time.perf_counter()
        tracker.start()
        t1 = time.perf_counter()
        tracker.stop()
        t2 = time.perf_counter()
        starts.append((t1 - t0) * 1000)
        stops.append((t2 - t1) * 1000)
        totals.append((t2 - t0) * 1000)
        t0 = time.perf_counter()
        nn_tracker.Tracker(intensity_g_per_kwh=100, output_dir=tmp, run_id=f"b{i}").start().stop()
        with_files.append((time.perf_counter() - t0) * 1000)
    shutil.rmtree(tmp)
    return {
        "start_ms": statistics.median(starts),
        "stop_ms": statistics.median(stops),
        "start_stop_ms": statistics.median(totals),
        "start_stop_with_reports_ms": statistics.median(with_files),
    }


def add_units_us(calls: int = 200_000) -> dict:
    """``add_units`` on the calling thread, in a phase, with a background sampler running (CPU sensors)."""
    import nn_tracker

    tracker = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, gpus=False).start()
    try:
        with tracker.phase("training"):
            t0 = time.perf_counter()
            for _ in range(calls):
                tracker.add_units(32)
            per_call = (time.perf_counter() - t0) / calls
    finally:
        tracker.stop()
    return {"add_units_us": per_call * 1e6}


def tick_us(sensors, ticks: int = 2000) -> float:
    from nn_tracker.core.clock import SystemClock
    from nn_tracker.sensors.sampling import Sampler

    sampler = Sampler(sensors, SystemClock())
    sampler.start(background=False)
    t0 = time.thread_time()
    for _ in range(ticks):
        sampler.tick(force=True)  # every sensor read, as at a phase switch
    return (time.thread_time() - t0) / ticks * 1e6


def cpu_sensor_tick_us() -> float:
    from nn_tracker.footprint.catalogue import bundled
    from nn_tracker.sensors import SensorOptions, discover_sensors

    found = discover_sensors(SensorOptions(gpus=False), bundled())
    return tick_us(found.sensors)


def simulated_gpus(gpus: int, counter_ms: float) -> ctypes.CDLL:
    """A fresh simulated driver (tests/fake_nvml.c) with ``gpus`` GPUs, loaded into pynvml.

    Its clock follows the real one; a counter call spins (burns CPU) for ``counter_ms``, as on an
    H200, where one call cost 2.3 ms of wall time and 3.3 ms of CPU (docs/validation.md).
    """
    import pynvml

    build = Path(tempfile.mkdtemp()) / "libnvidia-ml.so.1"
    source = ROOT / "tests" / "fake_nvml.c"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O1", "-Wl,-soname,libnvidia-ml.so.1", "-o", str(build), str(source)], check=True
    )
    lib = ctypes.CDLL(str(build))
    lib.fake_add_device.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_ulonglong]
    lib.fake_set_latency_us.argtypes = [ctypes.c_int, ctypes.c_double]
    for i in range(gpus):
        lib.fake_add_device(b"NVIDIA H100 80GB HBM3", f"GPU-{i:04d}".encode(), 300_000, 700_000, 0)
    lib.fake_set_latency_us(0, counter_ms * 1000)
    lib.fake_set_spin(1)
    lib.fake_set_realtime(1)
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache = {}
    return lib


def gpu_tick_us(gpus: int = 8) -> float:
    """Python and ctypes cost of reading every GPU once (counters instant, to see our own overhead)."""
    from nn_tracker.sensors.nvml import discover_gpus

    simulated_gpus(gpus, counter_ms=0.0)
    found = discover_gpus(",".join(str(i) for i in range(gpus)))
    try:
        return tick_us(found.sensors)
    finally:
        found.close()


def phase_switch_cost(gpus: int = 8, counter_ms: float = 2.5, switches: int = 400) -> dict:
    """Time the tracked code spends in a phase switch and in add_units, with slow simulated counters."""
    import nn_tracker

    simulated_gpus(gpus, counter_ms)
    enter, leave, units = [], [], []
    with nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, rapl_root="/nonexistent") as tracker:
        for i in range(switches):
            t0 = time.perf_counter()
            phase = tracker.phase("validation")
            phase.__enter__()
            t1 = time.perf_counter()
            tracker.add_units(32)
            t2 = time.perf_counter()
            phase.__exit__(None, None, None)
            t3 = time.perf_counter()
            enter.append((t1 - t0) * 1000)
            units.append((t2 - t1) * 1e6)
            leave.append((t3 - t2) * 1000)
            if i % 20 == 0:
                time.sleep(0.05)  # let the sampler read in between, as during training
    switch = sorted(enter + leave)
    return {
        "gpus": gpus,
        "counter_call_ms": counter_ms,
        "phase_switch_ms_p50": statistics.median(switch),
        "phase_switch_ms_p99": switch[int(len(switch) * 0.99)],
        "phase_switch_ms_max": switch[-1],
        "add_units_us_p50": statistics.median(units),
    }


def slow_counter_sampler_cpu(gpus: int, counter_ms: float = 2.5, seconds: float = 20.0) -> dict:
    """CPU time of the sampling thread per second, with ``gpus`` simulated GPUs whose counter calls spin."""
    code = f"""
import json, sys, threading, time, psutil
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
from bench_tracker import simulated_gpus
import nn_tracker
lib = simulated_gpus({gpus}, {counter_ms})
t = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, rapl_root="/nonexistent")
t.start()
thread = next(x for x in threading.enumerate() if x.name == "nn_tracker-sampler")
def cpu():
    return {{th.id: th.user_time + th.system_time for th in psutil.Process().threads()}}.get(thread.native_id, 0.0)
c0, w0 = cpu(), time.monotonic()
time.sleep({seconds})
c1, w1 = cpu(), time.monotonic()
t.stop()
share = (c1 - c0) / (w1 - w0) * 100
calls = lib.fake_counter_calls(0) / (w1 - w0)
print(json.dumps({{"gpus": {gpus}, "counter_call_ms": {counter_ms}, "thread_cpu_pct_of_a_core": share,
                  "per_gpu_pct": share / {gpus}, "counter_calls_per_gpu_per_s": calls}}))
"""
    return in_subprocess(code)


def thread_cpu_share(seconds: float = 30.0) -> dict:
    code = f"""
import json, threading, time, psutil, nn_tracker
t = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, interval_s=0.1)
t.start()
thread = next(x for x in threading.enumerate() if x.name == "nn_tracker-sampler")
time.sleep({seconds})
times = {{th.id: th.user_time + th.system_time for th in psutil.Process().threads()}}
t.stop()
cpu = times.get(thread.native_id, 0.0)
print(json.dumps({{"thread_cpu_s": cpu, "wall_s": {seconds}, "share_of_core_pct": cpu / {seconds} * 100}}))
"""
    return in_subprocess(code)


def workload() -> None:
    total = 0
    for i in range(12_000_000):
        total += i * i % 7


def slowdown(rounds: int) -> dict:
    import nn_tracker

    plain, tracked = [], []
    for r in range(rounds):
        order = ("plain", "tracked") if r % 2 == 0 else ("tracked", "plain")
        for kind in order:
            t0 = time.perf_counter()
            if kind == "plain":
                workload()
                plain.append(time.perf_counter() - t0)
            else:
                with nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, interval_s=0.1):
                    workload()
                tracked.append(time.perf_counter() - t0)
    ratios = [t / p for t, p in zip(tracked, plain, strict=True)]
    return {
        "rounds": rounds,
        "plain_median_s": statistics.median(plain),
        "tracked_median_s": statistics.median(tracked),
        "ratio_median": statistics.median(ratios),
        "ratio_p10": sorted(ratios)[len(ratios) // 10],
        "ratio_p90": sorted(ratios)[len(ratios) * 9 // 10],
    }


def month_timeline(days: float) -> dict:
    code = f"""
import json, psutil
from nn_tracker.accounting.timeline import Timeline
p = psutil.Process()
before = p.memory_info().rss
timeline = Timeline(2000)
steps = int({days} * 86400 * 10)
peak = before
for i in range(steps):
    t = i * 0.1
    timeline.add(t, t + 0.1, {{"gpu:0": 30.0, "cpu:estimate": 5.0, "ram:estimate": 0.1}},
                 {{"gpu:0": 300.0, "cpu:estimate": 50.0, "ram:estimate": 1.0}})
    if i % 1_000_000 == 0:
        peak = max(peak, p.memory_info().rss)
peak = max(peak, p.memory_info().rss)
print(json.dumps({{"ticks": steps, "points": len(timeline.points), "growth_mb": (peak - before) / 1e6}}))
"""
    return in_subprocess(code)


def history_costs(phases: int = 100_000) -> dict:
    """Costs that must not grow with history: many distinct phases (bounded at 10,000 names)."""
    import nn_tracker

    tracker = nn_tracker.Tracker(intensity_g_per_kwh=100, write_report=False, rapl_root="/nonexistent")
    tracker.start()  # a background sampler, as in a real run
    switch = []
    for i in range(phases):
        t0 = time.perf_counter()
        with tracker.phase(f"request-{i}"):
            tracker.add_units(1, kind="query")
        switch.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    data = tracker.report().to_dict()
    build_s = time.perf_counter() - t0
    tracker.stop()
    switch.sort()
    return {
        "phase_names_given": phases,
        "phases_in_report": len(data["phases"]),
        "phase_enter_and_exit_us_median": switch[len(switch) // 2] * 1e6,
        "phase_enter_and_exit_us_p99": switch[int(len(switch) * 0.99)] * 1e6,
        "report_build_s": build_s,
    }


def series_costs(rows: int = 1_000_000) -> dict:
    """A 1M-row intensity series: read once, then report building and schedule stay fast."""
    import nn_tracker
    from nn_tracker.core.clock import ManualClock
    from nn_tracker.footprint.intensity_series import IntensitySeries
    from nn_tracker.footprint.scheduling import JobProfile, schedule

    folder = Path(tempfile.mkdtemp())
    path = folder / "series.csv"
    start = 1_700_000_000
    with open(path, "w") as handle:
        handle.write("timestamp,carbon_intensity\n")
        for i in range(rows):  # one row a minute: 694 days
            handle.write(f"{_iso(start + 60 * i)},{200 + (i * 7919) % 300}\n")
    t0 = time.perf_counter()
    series = IntensitySeries.from_csv(path)
    read_s = time.perf_counter() - t0
    clock = ManualClock(wall_start_s=start + 3600)
    t0 = time.perf_counter()
    tracker = nn_tracker.Tracker(clock=clock, intensity_g_per_kwh=100, write_report=False, intensity_series=str(path))
    config_s = time.perf_counter() - t0
    tracker.start()
    for _ in range(2000):
        clock.advance(30)
        tracker.sample()
    t0 = time.perf_counter()
    tracker.report()
    build_s = time.perf_counter() - t0
    tracker.stop()
    t0 = time.perf_counter()
    schedule(series, JobProfile.constant(6 * 3600, 3000), window_h=24, now_s=start + 86400)
    schedule_s = time.perf_counter() - t0
    shutil.rmtree(folder)
    return {
        "rows": rows,
        "read_s": read_s,
        "tracker_with_series_s": config_s,
        "report_build_with_series_s": build_s,
        "schedule_24h_window_s": schedule_s,
    }


def _iso(epoch_s: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    """Run every measurement and print a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="alternating rounds for the slowdown")
    parser.add_argument("--days", type=float, default=30.0, help="simulated run length for the memory test")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=(
            "import",
            "start_stop",
            "tick",
            "memory",
            "thread",
            "slowdown",
            "month",
            "slow_counters",
            "history",
            "series",
        ),
        help="run only these measurements",
    )
    args = parser.parse_args()
    measurements = {
        "import": lambda: {
            "import_ms": import_time_ms(),
            "import_after_torch_ms": import_time_ms(after_torch=True),
            "import_after_torch_bytecode_ms": import_time_ms(after_torch=True, bytecode=True),
        },
        "start_stop": lambda: {**start_stop_ms(), "cold_first_run_ms": cold_first_run_ms(), **add_units_us()},
        "tick": lambda: {"tick_us_cpu_sensors": cpu_sensor_tick_us(), "tick_us_8_simulated_gpus": gpu_tick_us()},
        "memory": memory_mb,
        "thread": lambda: {"sampler_thread": thread_cpu_share()},
        "slowdown": lambda: {"slowdown_10hz": slowdown(args.rounds)},
        "month": lambda: {"timeline_30_days": month_timeline(args.days)},
        "history": lambda: {"phases_100k": history_costs()},
        "series": lambda: {"series_1m_rows": series_costs()},
        "slow_counters": lambda: {
            "phase_switch_8_gpus": phase_switch_cost(8),
            "sampler_cpu_1_gpu": slow_counter_sampler_cpu(1),
            "sampler_cpu_8_gpus": slow_counter_sampler_cpu(8),
        },
    }
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    for name in args.only or list(measurements):
        results.update(measurements[name]())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
