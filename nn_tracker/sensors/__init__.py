"""Sensors: which sources this machine offers, and the ones a tracker will read."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nn_tracker.core.structs import field, struct
from nn_tracker.footprint.catalogue import Catalogue
from nn_tracker.sensors.base import Measurement, Sensor, SensorInfo
from nn_tracker.sensors.cpu_model import CpuEstimateSensor, CpuPowerModel, cpu_power_model
from nn_tracker.sensors.process_tree import ProcessTree
from nn_tracker.sensors.ram_model import RamEstimateSensor, recent_cgroup_memory_limit_bytes
from nn_tracker.sensors.rapl import DEFAULT_ROOT, RaplDiscovery, discover_rapl

if TYPE_CHECKING:
    from nn_tracker.sensors.nvml import NvmlDiscovery

NO_LIBRARY = "libnvidia-ml.so.1 not found: no NVIDIA driver on this machine"
NO_LIBRARY_NOTE = f"No NVIDIA GPU measured: NVML could not be initialised ({NO_LIBRARY})."


def nvml_library_missing(on_callers_thread: bool = False) -> bool:
    """Linux without NVIDIA's library, seen before importing pynvml (3.4 MB) or our NVML module.

    Loads the library as pynvml does. Where a ``pynvml`` is loaded that has loaded a library, or that is
    not the real bindings (a test's stand-in), it decides. On the caller's thread the probe runs only
    where the loader searches local system folders: the folders of ``LD_LIBRARY_PATH`` may be network
    mounts that hang, so there the answer is "maybe" (``False``) and discovery probes under its deadline.
    A missing library is then answered at once: no thread, no deadline (that is for a driver that hangs),
    also where ``import torch`` imported pynvml without using it.
    """
    if not sys.platform.startswith("linux"):
        return False
    pynvml = sys.modules.get("pynvml")
    if pynvml is not None and getattr(pynvml, "nvmlLib", True) is not None:
        return False
    if on_callers_thread and os.environ.get("LD_LIBRARY_PATH"):
        return False
    return not _library_loads()


@functools.cache  # the loader's search path is fixed at process start: one probe a process
def _library_loads() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


__all__ = ["Measurement", "Sensor", "SensorInfo", "SensorOptions", "SensorSet", "discover_sensors"]


@struct(frozen=True)
class SensorOptions:
    """Where to look and how to attribute; every path is injectable for tests.

    Attributes:
        gpus: Measure NVIDIA GPUs through NVML.
        visible_devices: ``CUDA_VISIBLE_DEVICES``-style selection; ``None`` reads the environment.
        rapl_root: The powercap directory.
        proc_root: Where ``cpuinfo`` is.
        cgroup_root: Where the cgroup memory limit is.
        attribution: ``machine`` or ``process`` for the CPU and RAM estimates.
        cpu_tdp_w: The CPU's TDP, if the user knows it.
        node_sensors: Measure CPU and RAM (False on all but one rank of a node).
        sys_root: Where the CPU topology (sockets) is read.
        process_pids: With ``process`` attribution, the roots of the process trees to charge
            (every rank of this node, in a distributed job); ``None``: this process.

    """

    gpus: bool = True
    visible_devices: str | None = None
    rapl_root: str = DEFAULT_ROOT
    proc_root: str = "/proc"
    cgroup_root: str = "/sys/fs/cgroup"
    attribution: str = "machine"
    cpu_tdp_w: float | None = None
    node_sensors: bool = True
    process_pids: tuple[int, ...] | None = None
    sys_root: str = "/sys"

    @classmethod
    def from_config(cls, config: object, **overrides: object) -> SensorOptions:
        """The sensor options of a :class:`~nn_tracker.config.TrackerConfig`, with ``overrides``."""
        from nn_tracker.core import structs

        # every sensor option the configuration declares too (not a second list of names)
        names = [f.name for f in structs.fields(cls) if hasattr(config, f.name)]
        return cls(**{**{name: getattr(config, name) for name in names}, **overrides})


@struct
class SensorSet:
    """The sensors chosen for a run, with what was found and why."""

    sensors: list[Sensor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nvml: NvmlDiscovery | None = None
    rapl: RaplDiscovery | None = None
    cpu_model: CpuPowerModel | None = None

    def close(self) -> None:
        """Release NVML."""
        if self.nvml is not None:
            self.nvml.close()


DISCOVERY_DEADLINE_S = 15.0  # NVML's initialisation takes up to seconds on large nodes; longer is a hung driver


def _discover_gpus_in_time(visible: str | None) -> NvmlDiscovery:
    """:func:`discover_gpus` off the caller's thread: a driver that never answers means no GPU, with a note."""
    from nn_tracker.sensors.deadline import Deadline, ReadTimedOut
    from nn_tracker.sensors.nvml import NvmlDiscovery, discover_gpus

    deadline = Deadline("nvml-discovery", DISCOVERY_DEADLINE_S)
    try:
        return deadline.call(lambda: discover_gpus(visible))
    except ReadTimedOut:
        return NvmlDiscovery(
            notes=[f"No NVIDIA GPU measured: NVML did not answer within {DISCOVERY_DEADLINE_S:g} s (a hung driver)."]
        )
    finally:
        deadline.close()


def discover_sensors(options: SensorOptions, catalogue: Catalogue) -> SensorSet:
    """Pick the best source for each component: counters first, labelled estimates otherwise."""
    found = SensorSet()
    if options.gpus and nvml_library_missing(on_callers_thread=True):
        found.notes.append(NO_LIBRARY_NOTE)
    elif options.gpus:
        found.nvml = _discover_gpus_in_time(options.visible_devices)
        found.sensors.extend(found.nvml.sensors)
        found.notes.extend(found.nvml.notes)
    if not options.node_sensors:
        found.notes.append("CPU and RAM are measured by another process of this node (local rank 0).")
        return found
    found.rapl = discover_rapl(options.rapl_root)
    tree = ProcessTree(pids=options.process_pids) if options.attribution == "process" else None
    cpu_counters = [s for s in found.rapl.sensors if s.info.component == "cpu"]
    if cpu_counters:
        found.sensors.extend(found.rapl.sensors)
        if options.attribution == "process":
            found.notes.append("RAPL measures whole CPU packages (every process on them), not only this process tree.")
    else:
        for problem in found.rapl.problems:
            found.notes.append(f"CPU not measured by RAPL: {problem}. Falling back to an estimate.")
        found.cpu_model = cpu_power_model(catalogue, options.cpu_tdp_w, options.proc_root, sys_root=options.sys_root)
        found.sensors.append(CpuEstimateSensor(found.cpu_model, options.attribution, tree))
    if not found.rapl.has_dram or not cpu_counters:
        limit = recent_cgroup_memory_limit_bytes(options.cgroup_root, options.proc_root)
        found.sensors.append(
            RamEstimateSensor(catalogue.power_models["ram_w_per_gb"], options.attribution, tree, limit_bytes=limit)
        )
    return found


def describe(options: SensorOptions, catalogue: Catalogue) -> dict[str, Any]:
    """What ``nn-tracker sensors`` prints: what the machine offers and what would be used."""
    found = discover_sensors(options, catalogue)
    for sensor in found.sensors:
        if sensor.info.component == "gpu":
            try:
                sensor.start(0.0)  # probes the energy counter and the power source
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                sensor.info.notes.append(f"probe failed: {type(exc).__name__}: {exc}")
    try:
        rapl = found.rapl or RaplDiscovery()
        return {
            "nvml": {
                "available": bool(found.nvml and found.nvml.available),
                "driver_version": found.nvml.driver_version if found.nvml else "",
                "notes": found.nvml.notes
                if found.nvml
                else [NO_LIBRARY_NOTE if options.gpus else "GPU measurement disabled"],
            },
            "rapl": {
                "root": str(Path(options.rapl_root)),
                "zones": rapl.zones_seen,
                "readable": [s.info.details["zone"] for s in rapl.sensors],
                "problems": rapl.problems,
            },
            "cpu_model": found.cpu_model.model_name if found.cpu_model else None,
            "sensors": [
                {
                    "device_id": s.info.device_id,
                    "component": s.info.component,
                    "name": s.info.name,
                    "method": s.info.method,
                    "model": s.info.model,
                    "details": s.info.details,
                    "notes": s.info.notes,
                }
                for s in found.sensors
            ],
            "notes": found.notes,
        }
    finally:
        found.close()
