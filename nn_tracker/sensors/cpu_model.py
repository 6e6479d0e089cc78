"""CPU power estimate when RAPL cannot be read: TDP x utilisation, labelled as an estimate.

The TDP comes from the user, or from the bundled catalogue matched to the model
name in ``/proc/cpuinfo``. When the model is unknown (virtual machines often show
only a brand such as "AMD EPYC"), a documented per-logical-CPU default is
assumed and the report says so, and how to give the real TDP.
"""

# No `from __future__ import annotations`: typing.NamedTuple compiles each string annotation (~27 us a field,
# ~1.5 ms for the NamedTuples on a tracker's path); names defined further down are quoted.
import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from nn_tracker.core.inputs import proc_file, read_head, read_system_file
from nn_tracker.core.structs import struct
from nn_tracker.footprint.catalogue import Catalogue
from nn_tracker.sensors.base import METHOD_ESTIMATE, Measurement, Sensor, SensorInfo
from nn_tracker.sensors.process_tree import ProcessTree

_NOISE = re.compile(
    r"\((?:R|TM|tm|r)\)|®|™|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*GHz|\b\d+-Core\b|\bwith Radeon.*$|\bw/ Radeon.*$",
    re.IGNORECASE,
)


class CpuTimes(NamedTuple):
    """The machine's CPU seconds by state since boot, as ``psutil.cpu_times()`` gives them on Linux."""

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    guest: float = 0.0
    guest_nice: float = 0.0


def machine_cpu_times(proc_root: str = "/proc") -> Any:
    """The machine's CPU times: the first line of ``/proc/stat`` in seconds, as psutil reads it.

    Without psutil's import (~6 ms and 3,000 objects on a training script's cold path); psutil itself
    where the file is not there (not Linux) or not as expected. Missing states count 0 s, as with psutil.
    """
    try:
        values = read_head(proc_file(proc_root, "stat"), 512).split(b"\n", 1)[0].split()
        if values[0] != b"cpu" or len(values) < 5:
            raise ValueError(values[:1])
        ticks = _clock_ticks()
        return CpuTimes(*[int(value) / ticks for value in values[1:11]])
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil  # imported on use: psutil reads /proc when imported

        return psutil.cpu_times()


@functools.cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")  # fixed for the kernel's life


def _cpuinfo(proc_root: str | Path) -> tuple[tuple[str, str], ...]:
    """``/proc/cpuinfo`` as (lower-case key, value with single spaces) pairs; empty if unreadable.

    Read once per process and root: what the CPUs are does not change while a process runs, and the
    file of a 200-CPU server takes ~10 ms to parse (every tracker of the process would pay it).
    """
    return _cpuinfo_of(str(proc_root))


@functools.lru_cache(maxsize=8)
def _cpuinfo_of(proc_root: str) -> tuple[tuple[str, str], ...]:
    try:
        text = read_system_file(Path(proc_root) / "cpuinfo", limit=16 << 20)
    except OSError:
        return ()
    pairs = (line.partition(":") for line in text.splitlines())
    return tuple((key.strip().lower(), " ".join(value.split())) for key, _, value in pairs)


def read_cpu_model(proc_root: str | Path = "/proc") -> str | None:
    """The CPU model name from ``/proc/cpuinfo`` (``None`` if absent); no subprocess."""
    for key, value in _cpuinfo(proc_root):
        if key in ("model name", "cpu model", "processor name") and value:
            return value
    return None


def normalise_model(model: str) -> str:
    """Drop trademarks, clock speed, core counts.

    ``Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz`` becomes ``Intel Xeon Gold 6148``.
    """
    return " ".join(_NOISE.sub(" ", model).split())


def match_cpu_tdp(model: str | None, catalogue: Catalogue) -> tuple[str, float] | None:
    """Find the catalogue entry of a CPU model: exact, else the longest catalogue name inside it.

    Only names with a digit count as models: a bare brand ("AMD EPYC") matches nothing.
    """
    if not model:
        return None
    wanted = normalise_model(model)
    return catalogue.match_cpu(wanted) if any(c.isdecimal() for c in wanted) else None  # as \d, uncompiled


def count_sockets(sys_root: str | Path = "/sys", proc_root: str | Path = "/proc") -> int | None:
    """CPU packages (sockets) of this machine, from sysfs topology or ``/proc/cpuinfo``; ``None`` if unknown.

    Counted once per process and roots (as :func:`_cpuinfo`).
    """
    return _count_sockets(str(sys_root), str(proc_root))


@functools.lru_cache(maxsize=8)
def _count_sockets(sys_root: str, proc_root: str) -> int | None:
    packages = set()
    cpus = os.path.join(sys_root, "devices", "system", "cpu")
    try:
        names = os.listdir(cpus)  # not Path.glob: its pattern machinery cost ~1 ms of the first tracker
    except OSError:
        names = []
    for name in names:
        if not (name.startswith("cpu") and name[3:4] and name[3] in "0123456789"):  # cpu0, cpu1...: cpu[0-9]*
            continue
        try:
            packages.add(read_system_file(Path(cpus, name, "topology", "physical_package_id")).strip())
        except OSError:
            continue
    if not packages:
        packages.update(value for key, value in _cpuinfo(proc_root) if key == "physical id")
    return len(packages) or None


@struct(frozen=True)
class CpuPowerModel:
    """How the CPU power is estimated: a TDP for the whole machine and where it came from.

    Attributes:
        tdp_w: TDP of all the machine's CPUs together (per-package TDP x sockets).
        source: Where the figure comes from.
        model_name: The CPU model, if known.
        assumed: Whether the figure is a stated default rather than the CPU's own.
        sockets: CPU packages counted (``None`` when unknown; then one was assumed).

    """

    tdp_w: float
    source: str
    model_name: str | None
    assumed: bool
    sockets: int | None = 1


def cpu_power_model(
    catalogue: Catalogue,
    tdp_w: float | None = None,
    proc_root: str | Path = "/proc",
    logical_cpus: int | None = None,
    sys_root: str | Path = "/sys",
) -> CpuPowerModel:
    """Choose the TDP: the user's or the catalogue's per package x sockets, or the documented per-CPU default.

    A TDP is per package (socket): a two-socket server draws up to twice it.
    """
    model = read_cpu_model(proc_root)
    sockets = count_sockets(sys_root, proc_root)
    times = sockets or 1
    per = f" per package x {times} socket{'s' if times > 1 else ''}" + (
        "" if sockets else " (count unknown: 1 assumed)"
    )
    if tdp_w is not None:
        return CpuPowerModel(tdp_w * times, f"given by the user: {tdp_w:g} W{per}", model, False, sockets)
    match = match_cpu_tdp(model, catalogue)
    if match:
        return CpuPowerModel(
            match[1] * times,
            f"catalogue TDP of {match[0]!r}, {match[1]:g} W{per} ({catalogue.cpu_tdp_source.title})",
            model,
            False,
            sockets,
        )
    per_cpu = catalogue.power_models["cpu_w_per_logical_cpu"]
    count = logical_cpus or os.cpu_count() or 1
    reason = "no CPU model name" if not model else f"CPU model {model!r} is not in the catalogue"
    return CpuPowerModel(
        per_cpu.value * count,
        f"assumed: {reason}; {per_cpu.value:g} W per logical CPU x {count} ({per_cpu.source.title}). "
        "Give the real TDP per package with cpu_tdp_w (CLI: --cpu-tdp-w)",
        model,
        assumed=True,
        sockets=sockets,
    )


class CpuEstimateSensor(Sensor):
    """CPU power as TDP x utilisation, for the whole machine or this process tree.

    Args:
        model: The TDP and its source.
        attribution: ``machine`` (all CPU use) or ``process`` (this process and its children).
        tree: Process tree used in ``process`` mode.
        cpu_times: ``psutil.cpu_times`` (injectable).
        logical_cpus: Number of logical CPUs.
        own_cpu_s: CPU seconds of this job's process tree (injectable); with ``machine`` attribution
            it tells how much of the machine's CPU time other processes used.

    """

    # Energy is TDP x busy CPU time / CPUs: linear, so reading once a second loses nothing and costs a tenth;
    # a phase switch triggers a read (on the sampler's thread) so that each phase gets its own CPU time.
    energy_interval_s = 1.0
    phase_read_after_s = 0.1

    def __init__(
        self,
        model: CpuPowerModel,
        attribution: str = "machine",
        tree: ProcessTree | None = None,
        cpu_times: Callable[[], object] | None = None,
        logical_cpus: int | None = None,
        own_cpu_s: Callable[[], float] | None = None,
    ) -> None:
        self._model = model
        # machine attribution: this job's own CPU time too, to say when other processes were busy
        self._own_cpu_s = own_cpu_s
        self._own_last: float | None = None
        self._machine_busy_s = self._own_busy_s = 0.0
        self._attribution = attribution
        self._tree = tree
        self._cpu_times = cpu_times or machine_cpu_times
        self._cpus = logical_cpus or os.cpu_count() or 1
        self._last: tuple[float, float] | None = None
        self._last_s: float | None = None
        share = "this process and its children" if attribution == "process" else "the whole machine"
        notes = [f"CPU energy is an estimate: TDP {model.tdp_w:g} W x CPU utilisation of {share}."]
        if model.assumed:
            notes.append(f"CPU TDP {model.source}.")
        self.info = SensorInfo(
            device_id="cpu:estimate",
            component="cpu",
            name=model.model_name or "unknown CPU",
            method=METHOD_ESTIMATE,
            model=f"TDP {model.tdp_w:g} W x utilisation ({share})",
            details={
                "tdp_w": model.tdp_w,
                "sockets": model.sockets,
                "tdp_source": model.source,
                "attribution": attribution,
                "logical_cpus": self._cpus,
            },
        )
        self.info.notes.extend(notes)

    def _busy_and_total_s(self, now_s: float) -> tuple[float, float]:
        if self._attribution == "process" and self._tree is not None:
            return self._tree.cpu_seconds(), now_s * self._cpus
        times = self._cpu_times()
        # Linux already counts guest (virtual machine) time in user and nice: counting it again double counts
        guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
        total = sum(times) - guest  # type: ignore[arg-type]
        idle = getattr(times, "idle", 0.0) + getattr(times, "iowait", 0.0)
        return total - idle, total

    def start(self, now_s: float) -> None:
        """Baseline CPU times."""
        self._last = self._busy_and_total_s(now_s)
        self._last_s = now_s
        if self._attribution == "machine":
            if self._own_cpu_s is None:
                self._own_cpu_s = ProcessTree().cpu_seconds
            self._own_last = self._own_cpu_s()

    def utilisation(self, now_s: float) -> float | None:
        """Share of the CPUs busy since the last call, in [0, 1]; ``None`` when no CPU time was counted since."""
        busy, total = self._busy_and_total_s(now_s)
        last_busy, last_total = self._last if self._last is not None else (busy, total)  # start() set it
        self._last = (busy, total)
        if self._own_last is not None and self._own_cpu_s is not None:
            own = self._own_cpu_s()
            self._own_busy_s += max(own - self._own_last, 0.0)
            self._machine_busy_s += max(busy - last_busy, 0.0)
            self._own_last = own
            if self._machine_busy_s > 0:
                others = min(max(1 - self._own_busy_s / self._machine_busy_s, 0.0), 1.0)
                self.info.details["other_processes_cpu_share"] = round(others, 4)
        elapsed = total - last_total
        return min(max((busy - last_busy) / elapsed, 0.0), 1.0) if elapsed > 0 else None

    def read_energy(self, now_s: float) -> Measurement:
        """Average power over the interval and the energy it implies.

        An interval in which the kernel counted no CPU time (shorter than its tick, e.g. a read right
        after a phase switch) holds no energy and says nothing of the power: its power is ``None``, so
        the last power stays that of the last interval that had a tick (never a false 0 W).
        """
        share = self.utilisation(now_s)
        duration_s = now_s - (self._last_s if self._last_s is not None else now_s)
        self._last_s = now_s
        if share is None:
            return Measurement(0.0, None)
        power_w = self._model.tdp_w * share
        return Measurement(power_w * duration_s, power_w)
