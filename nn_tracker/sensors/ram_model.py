"""RAM power estimate when RAPL has no DRAM counter: W per GB of memory in use.

The coefficient is the bundled, sourced ``ram_w_per_gb`` (0.392 W/GB, Cloud
Carbon Footprint). It is applied to memory actually used — by the tracked
process tree, or by the machine — never to installed memory, and never above
a cgroup memory limit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from nn_tracker.core.energy import trapezoid_j
from nn_tracker.core.inputs import proc_file, read_head, read_system_file
from nn_tracker.footprint.catalogue import PowerModel
from nn_tracker.sensors.base import METHOD_ESTIMATE, Measurement, Sensor, SensorInfo
from nn_tracker.sensors.process_tree import ProcessTree

GB = 1e9


def machine_used_bytes(proc_root: str | Path = "/proc") -> int:
    """Memory in use on the machine: total - available, as ``psutil.virtual_memory().used`` has it.

    Read from the first lines of ``/proc/meminfo`` (MemTotal, MemFree, MemAvailable: ~5 us, where psutil
    parses the whole file in ~30 us); psutil itself where they are not as expected (kernels before 3.14).
    """
    try:
        head = read_head(proc_file(proc_root, "meminfo"), 200).split(b"\n")[:3]
        fields = {name: int(value.split()[0]) * 1024 for name, _, value in (line.partition(b":") for line in head)}
        total, available = fields[b"MemTotal"], fields[b"MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        total = available = -1
    if 0 < available <= total:
        return total - available
    import psutil  # imported on use: psutil reads /proc when imported

    result: int = psutil.virtual_memory().used
    return result


def _own_cgroups(proc_root: str | Path) -> dict[str, str]:
    """The cgroup paths of this process from ``/proc/self/cgroup``: ``v2`` (unified), ``v1`` (memory)."""
    try:
        text = read_system_file(os.path.join(proc_root, "self", "cgroup"))
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            found["v2"] = path
        elif "memory" in controllers.split(","):
            found["v1"] = path
    return found


def _with_ancestors(base: str, path: str) -> list[str]:
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return [os.path.join(base, *parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_memory_limit_bytes(
    cgroup_root: str | Path = "/sys/fs/cgroup", proc_root: str | Path = "/proc"
) -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors, if any.

    cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``, found through ``/proc/self/cgroup`` (a
    job step's own limit, not only the top of the mount); without it, the top of the mount.
    """
    root = os.fspath(cgroup_root)  # strings, not pathlib: read at every start
    own = _own_cgroups(proc_root)
    files = [os.path.join(d, "memory.max") for d in _with_ancestors(root, own.get("v2", ""))]
    v1 = _with_ancestors(os.path.join(root, "memory"), own.get("v1", ""))
    files += [os.path.join(d, "memory.limit_in_bytes") for d in v1]
    limits = []
    for path in files:
        try:
            text = read_system_file(path).strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 reports "no limit" as a huge number, v2 as "max"
            limits.append(int(text))
    return min(limits, default=None)


LIMIT_REUSE_S = 10.0  # a limit read this recently is used again by the next tracker's start
_limits_read: dict[tuple[str, str], tuple[float, int | None]] = {}  # (cgroup root, proc root) -> (when, limit)


def recent_cgroup_memory_limit_bytes(cgroup_root: str | Path, proc_root: str | Path) -> int | None:
    """:func:`cgroup_memory_limit_bytes`, read again only after :data:`LIMIT_REUSE_S`.

    A run reads the limit once, at its start, and keeps it; trackers started one after another (a
    ``@track``-ed function called in a loop) share a reading of the last seconds (~0.3 ms a start).
    """
    key, now_s = (os.fspath(cgroup_root), os.fspath(proc_root)), time.monotonic()
    found = _limits_read.get(key)
    if found is None or not 0 <= now_s - found[0] < LIMIT_REUSE_S:
        found = (now_s, cgroup_memory_limit_bytes(cgroup_root, proc_root))
        _limits_read[key] = found
    return found[1]


class RamEstimateSensor(Sensor):
    """RAM power = W/GB x GB in use, averaged over each interval (trapezoid).

    Args:
        coefficient: The sourced W/GB figure.
        attribution: ``process`` (RSS of the process tree) or ``machine`` (used memory).
        tree: Process tree for ``process`` mode.
        limit_bytes: cgroup memory limit; usage is capped at it.
        used_bytes: Override of how machine-wide used memory is read (tests).

    """

    energy_interval_s = 1.0  # memory in use changes slowly; reading /proc/meminfo at 10 Hz is waste
    phase_read_after_s = None  # nor is a read at each phase switch needed: time splits it well

    def __init__(
        self,
        coefficient: PowerModel,
        attribution: str = "machine",
        tree: ProcessTree | None = None,
        limit_bytes: int | None = None,
        used_bytes: Callable[[], int] | None = None,
    ) -> None:
        self._w_per_gb = coefficient.value
        self._attribution = attribution
        self._tree = tree
        self._limit = limit_bytes
        self._used_bytes = used_bytes or machine_used_bytes
        self._last_power_w = 0.0
        self._last_s = 0.0
        scope = "the tracked processes' resident memory" if attribution == "process" else "memory in use"
        model = f"{coefficient.value:g} W/GB x {scope}"
        notes = [f"RAM energy is an estimate: {coefficient.describe()} applied to {scope}."]
        if limit_bytes is not None:
            notes.append(f"Memory use is capped at the cgroup limit of {limit_bytes / GB:.2f} GB.")
        self.info = SensorInfo(
            device_id="ram:estimate",
            component="ram",
            name="RAM",
            method=METHOD_ESTIMATE,
            model=model,
            details={"w_per_gb": coefficient.value, "attribution": attribution, "cgroup_limit_bytes": limit_bytes},
            notes=notes,
        )

    def power_w(self) -> float:
        """Current estimated power."""
        if self._attribution == "process" and self._tree is not None:
            used = self._tree.rss_bytes()
        else:
            used = self._used_bytes()
        if self._limit is not None:
            used = min(used, self._limit)
        return used / GB * self._w_per_gb

    def start(self, now_s: float) -> None:
        """First reading."""
        self._last_power_w = self.power_w()
        self._last_s = now_s

    def read_energy(self, now_s: float) -> Measurement:
        """Trapezoid of the power over the interval."""
        power = self.power_w()
        energy_j = trapezoid_j(self._last_power_w, power, now_s - self._last_s)
        self._last_power_w, self._last_s = power, now_s
        return Measurement(energy_j, power)
