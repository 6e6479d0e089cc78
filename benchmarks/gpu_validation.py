"""Check nn_tracker on your own NVIDIA GPU, with NVML read directly as the reference.

    python benchmarks/gpu_validation.py [--out DIR] [--gpu INDEX] [--quick]

Runs on one GPU (PyTorch with CUDA, and Lightning for the fit): NVML call costs; how often the
energy counter moves; a workload of phases (idle, full load, idle, bursts, medium load) under a
tracker, each phase against the counter read directly at its boundaries; how long a phase switch
keeps the calling thread; the sampler thread's CPU time; short jobs of 0.2-3 s; a short Lightning
fit against the counter read around it. Prints a Markdown table of each figure with its error and
the target, and writes everything to DIR/gpu-validation.json (and the tracker's reports to DIR).

Targets: every phase within one counter step at each of its boundaries (a step is the energy of
one counter period at the power around the boundary), the Lightning fit within 0.5 %, zero dropped
intervals, no timeline point above the highest power sample the GPU gave.

Without a GPU it runs against whatever ``libnvidia-ml.so.1`` is found, e.g. the project's simulated
driver (``tests/fake_nvml.c``, with ``FAKE_NVML_DEVICES`` and ``FAKE_NVML_REALTIME=1``), on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import pynvml  # noqa: E402
import torch  # noqa: E402

import nn_tracker  # noqa: E402

CUDA = torch.cuda.is_available()
PERIOD_S = 0.1  # the counter period assumed until measured


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


class Gpu:
    """The reference: NVML read directly on one GPU."""

    def __init__(self, index: int) -> None:
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.name = _text(pynvml.nvmlDeviceGetName(self.handle))
        self.uuid = _text(pynvml.nvmlDeviceGetUUID(self.handle))
        self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
        self.limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(self.handle) / 1000

    def joules(self) -> float:
        """The counter now, in J."""
        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Workload:
    """Matrix products at full load, medium load, bursts and idle, on the GPU (or small on the CPU)."""

    def __init__(self) -> None:
        device, dtype = ("cuda", torch.bfloat16) if CUDA else ("cpu", torch.float32)
        n, m = (8192, 2048) if CUDA else (256, 128)
        self.a = torch.randn(n, n, device=device, dtype=dtype)
        self.b = torch.randn(n, n, device=device, dtype=dtype)
        self.c = torch.randn(m, m, device=device, dtype=dtype)

    def heavy(self, seconds: float) -> None:
        """Full load: large bf16 matrix products back to back."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(20):
                self.a @ self.b
            sync()

    def medium(self, seconds: float) -> None:
        """Medium load: small matrix products with short pauses."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(50):
                self.c @ self.c
            sync()
            time.sleep(0.002)

    def bursty(self, seconds: float) -> None:
        """Bursts: 60 ms of full load, 440 ms idle."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.heavy(0.06)
            time.sleep(0.44)

    @staticmethod
    def idle(seconds: float) -> None:
        """Nothing on the GPU."""
        time.sleep(seconds)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[int(len(ordered) * 0.9)],
        "p99": ordered[min(int(len(ordered) * 0.99), len(ordered) - 1)],
    }


def call_costs(gpu: Gpu, calls: int) -> dict[str, dict[str, float]]:
    """Wall and CPU time of one call of each NVML function nn_tracker uses (microseconds)."""
    functions = {
        "total_energy_counter": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle),
        "power_usage": lambda: pynvml.nvmlDeviceGetPowerUsage(gpu.handle),
        "field_186_instant_power": lambda: pynvml.nvmlDeviceGetFieldValues(gpu.handle, [186]),
    }
    result = {}
    for name, call in functions.items():
        walls = []
        cpu0 = time.thread_time()
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            walls.append((time.perf_counter() - t0) * 1e6)
        cpu_us = (time.thread_time() - cpu0) / calls * 1e6
        result[name] = {
            **{f"wall_{k}_us": round(v, 1) for k, v in percentiles(walls).items()},
            "cpu_us": round(cpu_us, 1),
        }
    return result


def counter_period(gpu: Gpu, work: Workload, seconds: float = 1.5) -> dict[str, float | int | None]:
    """How often the counter moves, under load: median time between changes, largest step."""
    changes, steps = [], []
    last = gpu.joules()
    if CUDA:
        for _ in range(40):
            work.a @ work.b  # queued: the GPU stays busy while the counter is polled
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        value = gpu.joules()
        if value != last:
            changes.append(time.monotonic())
            steps.append(value - last)
            last = value
    sync()
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    return {
        "changes": len(changes),
        "median_period_s": statistics.median(gaps) if gaps else None,
        "largest_step_j": max(steps) if steps else None,
    }


def sampler_thread_cpu_s() -> float:
    """CPU seconds used so far by nn_tracker's sampling thread(s) in this process."""
    ids = {t.native_id for t in threading.enumerate() if t.name == "nn_tracker-sampler"}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


def phases(gpu: Gpu, work: Workload, out: Path, quick: bool, period_s: float) -> dict:
    """The phased workload under one tracker; each phase against the counter read at its boundaries."""
    scale = 0.5 if quick else 1.0
    plan = [
        ("idle", work.idle, 6),
        ("heavy", work.heavy, 12),
        ("idle2", work.idle, 5),
        ("bursty", work.bursty, 10),
        ("medium", work.medium, 8),
    ]
    tracker = nn_tracker.Tracker(
        project_name="gpu-validation",
        location="FR",
        output_dir=str(out),
        formats=("json", "html"),
        visible_devices=gpu.uuid,
    )
    reference, switch_ms = {}, []
    tracker.start()
    cpu0, wall0 = sampler_thread_cpu_s(), time.monotonic()
    sync()
    for name, run, seconds in plan:
        t0 = time.perf_counter()
        phase = tracker.phase(name)
        phase.__enter__()
        switch_ms.append((time.perf_counter() - t0) * 1000)
        start_j, start_s = gpu.joules(), time.monotonic()
        run(seconds * scale)
        sync()
        reference[name] = {"joules": gpu.joules() - start_j, "seconds": time.monotonic() - start_s}
        t0 = time.perf_counter()
        phase.__exit__(None, None, None)
        switch_ms.append((time.perf_counter() - t0) * 1000)
    cpu_s, wall_s = sampler_thread_cpu_s() - cpu0, time.monotonic() - wall0
    data = tracker.stop().to_dict()
    device = next(d for d in data["devices"] if d["component"] == "gpu")
    got = {p: kwh * 3.6e6 for p, kwh in device["energy_kwh_by_phase"].items()}
    names = [name for name, _, _ in plan]
    mean_w = {n: reference[n]["joules"] / reference[n]["seconds"] for n in names}
    rows = {}
    for i, name in enumerate(names):
        # one counter step at each boundary, at the higher of the powers on either side of it
        neighbours = [names[j] for j in (i - 1, i + 1) if 0 <= j < len(names)]
        bound_j = sum(max(mean_w[name], mean_w[other]) * period_s for other in neighbours)
        ref = reference[name]["joules"]
        error = got.get(name, 0.0) - ref
        rows[name] = {
            "reference_j": round(ref, 1),
            "tracker_j": round(got.get(name, 0.0), 1),
            "error_j": round(error, 1),
            "error_pct": round(error / ref * 100, 2) if ref else None,
            "mean_power_w": round(mean_w[name], 1),
            "bound_j": round(bound_j, 1),
            "within_bound": abs(error) <= bound_j,
        }
    points = data["timeline"]["points"]
    watts = [(p["start_s"], p["end_s"], p["mean_power_w"].get(device["device_id"])) for p in points]
    return {
        "phases": rows,
        "total": {
            "reference_j": round(sum(r["joules"] for r in reference.values()), 1),
            "tracker_j": round(sum(got.get(name, 0.0) for name in names), 1),
            "tracker_whole_run_j": round(device["energy_kwh"] * 3.6e6, 1),  # with the time outside the phases
        },
        "method": device["method"],
        "dropped_intervals": device["dropped_intervals"],
        "bridged_intervals": device["bridged_intervals"],
        "gap_s": device["gap_s"],
        "notes": device["notes"],
        "phase_switch_ms": {k: round(v, 3) for k, v in percentiles(switch_ms).items()} | {"max": max(switch_ms)},
        "sampler_thread_cpu_pct_of_a_core": round(cpu_s / wall_s * 100, 3),
        "timeline": {
            "highest_point_w": max((w for _, _, w in watts if w is not None), default=None),
            "highest_power_sample_w": device["peak_power_w"],
            "highest_2s_mean_w": _highest_window_w(watts, 2.0),
            "power_limit_w": gpu.limit_w,
        },
        "report": data["run_id"],
    }


def _highest_window_w(points: list[tuple[float, float, float | None]], window_s: float) -> float | None:
    best = None
    for first in range(len(points)):
        joules = 0.0
        for last in range(first, len(points)):
            start, end, watts = points[last]
            joules += (watts or 0.0) * (end - start)
            if end - points[first][0] >= window_s:
                mean = joules / (end - points[first][0])
                best = mean if best is None else max(best, mean)
                break
    return round(best, 1) if best is not None else None


def short_jobs(gpu: Gpu, work: Workload) -> dict:
    """A tracker around a short burst of full load, against the counter read around it."""
    result = {}
    for seconds in (0.2, 0.5, 1.0, 3.0):
        sync()
        start_j = gpu.joules()
        with nn_tracker.Tracker(project_name="short", location="FR", write_report=False, visible_devices=gpu.uuid) as t:
            work.heavy(seconds)
            sync()
        ref = gpu.joules() - start_j
        device = next(d for d in t.report().to_dict()["devices"] if d["component"] == "gpu")
        got = device["energy_kwh"] * 3.6e6
        result[str(seconds)] = {
            "reference_j": round(ref, 1),
            "tracker_j": round(got, 1),
            "error_pct": round((got / ref - 1) * 100, 2) if ref else None,
        }
    return result


def lightning_fit(gpu: Gpu, out: Path, quick: bool) -> dict:
    """A short Lightning fit with NNTrackerCallback; the counter read directly around the tracked stage."""
    from torch.utils.data import DataLoader, TensorDataset

    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl

    from nn_tracker.integrations.lightning import NNTrackerCallback

    width, seq, layers = (1024, 256, 8) if CUDA else (64, 16, 1)
    samples = (6_400 if quick else 12_800) if CUDA else 256

    class Reference(pl.Callback):
        """Listed after the tracker: reads just after it starts and just after it stops."""

        def setup(self, trainer, module, stage):
            self.start_j = gpu.joules()

        def teardown(self, trainer, module, stage):
            self.joules = gpu.joules() - self.start_j

    class Encoder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(1000, width)
            layer = torch.nn.TransformerEncoderLayer(width, 16 if CUDA else 4, 4 * width, batch_first=True)
            self.net = torch.nn.TransformerEncoder(layer, layers)
            self.head = torch.nn.Linear(width, 2)

        def _loss(self, batch):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.head(self.net(self.embed(x)).mean(1)), y)

        def training_step(self, batch, _):
            return self._loss(batch)

        def validation_step(self, batch, _):
            self.log("val_loss", self._loss(batch))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-4)

    def data(n: int, seed: int) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 1000, (n, seq), generator=g)
        return DataLoader(TensorDataset(x, (x[:, 0] > 500).long()), batch_size=64, num_workers=2)

    tracker = NNTrackerCallback(
        project_name="lightning-validation", location="FR", output_dir=str(out), visible_devices=gpu.uuid
    )
    reference = Reference()
    trainer = pl.Trainer(
        accelerator="gpu" if CUDA else "cpu",
        devices=1,
        precision="bf16-mixed" if CUDA else "32",
        max_epochs=2,
        callbacks=[tracker, reference],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Encoder(), data(samples, 0), data(samples // 8, 1))
    data_ = tracker.reports[-1].to_dict()
    device = next(d for d in data_["devices"] if d["component"] == "gpu")
    got = device["energy_kwh"] * 3.6e6
    return {
        "reference_j": round(reference.joules, 1),
        "tracker_j": round(got, 1),
        "error_pct": round((got / reference.joules - 1) * 100, 3) if reference.joules else None,
        "duration_s": round(data_["duration_s"], 2),
        "dropped_intervals": device["dropped_intervals"],
        "phases_j": {p: round(v * 3.6e6, 1) for p, v in device["energy_kwh_by_phase"].items()},
        "status": data_["status"],
    }


def markdown(result: dict) -> str:
    """The table for docs/validation.md."""
    lines = [
        f"GPU: {result['gpu']} (driver {result['driver']}, power limit {result['power_limit_w']:g} W); "
        f"nn_tracker {result['nn_tracker']}; torch {result['torch']}.",
        "",
        "| check | reference (NVML direct) | nn_tracker | error | target | ok |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["workload"]["phases"].items():
        lines.append(
            f"| phase `{name}` ({row['mean_power_w']:g} W) | {row['reference_j']:g} J | {row['tracker_j']:g} J | "
            f"{row['error_j']:+g} J ({row['error_pct']:+g} %) | within {row['bound_j']:g} J (one step per boundary) "
            f"| {'yes' if row['within_bound'] else 'NO'} |"
        )
    total = result["workload"]["total"]
    error = total["tracker_j"] - total["reference_j"]
    lines.append(
        f"| sum of the phases | {total['reference_j']:g} J | {total['tracker_j']:g} J | "
        f"{error:+.1f} J ({error / total['reference_j'] * 100:+.2f} %) | - | - |"
    )
    for seconds, row in result["short_jobs"].items():
        lines.append(
            f"| short job {seconds} s | {row['reference_j']:g} J | {row['tracker_j']:g} J | {row['error_pct']:+g} % "
            "| one step | - |"
        )
    fit = result["lightning"]
    ok = fit["error_pct"] is not None and abs(fit["error_pct"]) <= 0.5
    lines.append(
        f"| Lightning fit ({fit['duration_s']:g} s) | {fit['reference_j']:g} J | {fit['tracker_j']:g} J | "
        f"{fit['error_pct']:+g} % | within 0.5 % | {'yes' if ok else 'NO'} |"
    )
    work = result["workload"]
    dropped = work["dropped_intervals"] + fit["dropped_intervals"]
    lines.append(f"| dropped intervals | - | {dropped} | - | 0 | {'yes' if dropped == 0 else 'NO'} |")
    timeline = work["timeline"]
    ok = (timeline["highest_point_w"] or 0) <= (timeline["highest_power_sample_w"] or 0) + 1e-6
    lines.append(
        f"| highest timeline point | highest power sample {timeline['highest_power_sample_w']:g} W | "
        f"{timeline['highest_point_w']:g} W | - | not above the highest sample | {'yes' if ok else 'NO'} |"
    )
    lines.append(
        f"| highest 2-s mean of the timeline | power limit {timeline['power_limit_w']:g} W | "
        f"{timeline['highest_2s_mean_w']:g} W | - | - | - |"
    )
    switch = work["phase_switch_ms"]
    lines.append(
        f"| phase switch, calling thread | - | p50 {switch['p50']:g} ms, max {switch['max']:.3f} ms | - | <= 1 ms "
        f"| {'yes' if switch['max'] <= 1 else 'NO'} |"
    )
    lines.append(f"| sampler thread CPU | - | {work['sampler_thread_cpu_pct_of_a_core']:g} % of a core | - | - | - |")
    costs = result["nvml_call_costs"]
    lines.append("")
    lines.append("| NVML call | wall p50 | wall p90 | CPU per call |")
    lines.append("| --- | --- | --- | --- |")
    for name, row in costs.items():
        lines.append(f"| `{name}` | {row['wall_p50_us']:g} µs | {row['wall_p90_us']:g} µs | {row['cpu_us']:g} µs |")
    period = result["counter"]
    lines.append("")
    lines.append(
        f"Counter: {period['changes']} changes in 1.5 s under load, median period "
        f"{(period['median_period_s'] or 0) * 1000:.1f} ms, largest step {period['largest_step_j']} J."
    )
    return "\n".join(lines)


def main() -> None:
    """Run every check and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-validation", help="folder for the JSON result and the reports")
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to check")
    parser.add_argument("--quick", action="store_true", help="half-length phases and fit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if CUDA:
        torch.cuda.set_device(0)
    gpu = Gpu(args.gpu)
    work = Workload()
    sync()
    result: dict = {
        "gpu": gpu.name,
        "driver": gpu.driver,
        "power_limit_w": gpu.limit_w,
        "cuda": CUDA,
        "nn_tracker": nn_tracker.__version__,
        "torch": torch.__version__,
        "nvml_call_costs": call_costs(gpu, 300 if args.quick else 1000),
    }
    result["counter"] = counter_period(gpu, work)
    period_s = result["counter"]["median_period_s"] or PERIOD_S
    result["workload"] = phases(gpu, work, out, args.quick, period_s)
    result["short_jobs"] = short_jobs(gpu, work)
    with contextlib.suppress(ImportError):
        result["lightning"] = lightning_fit(gpu, out, args.quick)
    (out / "gpu-validation.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
    if "lightning" in result:
        print(markdown(result))


if __name__ == "__main__":
    main()
