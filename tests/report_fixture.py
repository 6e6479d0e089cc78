"""A deterministic report: manual clock, scripted sensors, fixed identity fields."""

from __future__ import annotations

from typing import Any

from fakes import ConstantPower, sensor_set

from nn_tracker import Datacentre, EmbodiedHardware, ManualClock, Tracker


def deterministic_report(tmp_path, **options: Any) -> Tracker:
    """Two GPUs and a CPU estimate over 2 h of training and 30 min of serving, in two datacentres."""
    clock = ManualClock(start_s=1000.0, wall_start_s=1_767_225_600.0)  # 2026-01-01T00:00:00Z
    gpu_a = ConstantPower("gpu:GPU-aaaa", power_w=300.0, name="NVIDIA A100-SXM4-80GB")
    gpu_b = ConstantPower("gpu:GPU-bbbb", power_w=250.0, name="NVIDIA A100-SXM4-80GB")
    cpu = ConstantPower("cpu:estimate", power_w=45.0, component="cpu", name="AMD EPYC 7763 64-Core Processor")
    options.setdefault(
        "datacentres",
        (
            Datacentre(location="FR", pue=1.2, name="Paris DC"),
            Datacentre(location="gcp:europe-west1", phases=("querying",)),
        ),
    )
    options.setdefault("embodied", (EmbodiedHardware("A100 SXM4 80 GB", count=2),))
    options.setdefault("what_if_locations", ("US-CA",))
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(gpu_a, gpu_b, cpu),
        output_dir=tmp_path,
        project_name="golden",
        run_id="golden-run",
        checkpoint_interval_s=None,
        interval_s=60.0,
        timeline_points=50,
        **options,
    )
    with tracker:
        with tracker.phase("training"):
            for step in range(120):
                clock.advance(60)
                gpu_a.power_w = 300.0 + (step % 10) * 5
                tracker.sample()
                tracker.add_units(256, kind="sample")
                if step % 60 == 59:
                    with tracker.phase("validation"):
                        clock.advance(300)
                        tracker.sample()
        with tracker.phase("querying"):
            for _ in range(30):
                clock.advance(60)
                tracker.sample()
                tracker.add_units(1000, kind="query")
    return tracker


def stable(data: dict[str, Any]) -> dict[str, Any]:
    """Replace the fields that depend on the machine running the test."""
    data["machine"] = {
        "hostname": "node-1",
        "os": "Linux",
        "python": "3.11",
        "nn_tracker": "0.1.0",
        "cpu_model": None,
        "logical_cpus": 2,
        "pid": 1,
        "user": "user",
    }
    data["software"] = {"nn_tracker": "0.1.0", "python": "3.11"}
    for device in data["devices"]:
        device["node"] = "node-1"
    data["nodes"] = {"node-1": data["nodes"].popitem()[1]}
    return data
