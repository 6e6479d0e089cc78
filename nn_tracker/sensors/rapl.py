"""CPU packages and DRAM through Linux RAPL (powercap sysfs).

Sums ``package-N`` zones and their ``dram`` subzones, found by their ``name``
files; never ``core``/``uncore`` (inside the package) or ``psys`` (includes
it); ``intel-rapl-mmio`` duplicates are ignored. Counters wrap at
``max_energy_range_uj``. Since Linux 5.10 ``energy_uj`` is root-only
(CVE-2020-8694): then one message says how to grant access, and the caller
falls back to an estimate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nn_tracker.core.energy import counter_delta
from nn_tracker.core.inputs import read_system_file
from nn_tracker.core.structs import field, struct
from nn_tracker.sensors.base import METHOD_COUNTER, Measurement, Sensor, SensorInfo

DEFAULT_ROOT = "/sys/class/powercap"
ReadText = Callable[[Path], str]


def _read_text(path: Path) -> str:
    return read_system_file(path)


def access_fix(root: str) -> str:
    """The commands that make the counters readable for non-root users."""
    return (
        f"grant read access with `sudo chmod a+r {root}/intel-rapl:*/energy_uj "
        f"{root}/intel-rapl:*/*/energy_uj` (until reboot) or a udev rule: "
        'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r /sys%p/energy_uj"'
    )


class RaplZoneSensor(Sensor):
    """One RAPL zone (a CPU package or its DRAM) read from ``energy_uj``."""

    max_power_w = 2_000.0
    counter_period_s = 0.001  # RAPL counters move about every millisecond

    def __init__(
        self, path: Path, zone_name: str, component: str, max_range_uj: float | None, read_text: ReadText = _read_text
    ) -> None:
        self._path = path
        self._read_text = read_text
        self._max_range_uj = max_range_uj
        self._last_uj: float | None = None
        self.info = SensorInfo(
            device_id=f"{component}:rapl:{path.name}",
            component=component,
            name=f"RAPL {zone_name}",
            method=METHOD_COUNTER,
            details={"zone": zone_name, "path": str(path), "max_energy_range_uj": max_range_uj},
        )

    def energy_uj(self) -> float:
        """The raw counter."""
        return float(self._read_text(self._path / "energy_uj").strip())

    def start(self, now_s: float) -> None:
        """Read the baseline."""
        self._last_uj = self.energy_uj()

    def read_energy(self, now_s: float) -> Measurement:
        """Energy since the last read, across one wrap at ``max_energy_range_uj``."""
        current = self.energy_uj()
        last = self._last_uj if self._last_uj is not None else current  # start() read the baseline
        delta_uj = counter_delta(last, current, self._max_range_uj)
        self._last_uj = current
        return Measurement(delta_uj / 1e6, None)


@struct
class RaplDiscovery:
    """Readable zones, plus the problems found (each with its fix)."""

    sensors: list[RaplZoneSensor] = field(default_factory=list)
    zones_seen: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def has_dram(self) -> bool:
        """Whether a DRAM counter is measured (then RAM is not estimated)."""
        return any(s.info.component == "ram" for s in self.sensors)


def discover_rapl(root: str | Path = DEFAULT_ROOT, read_text: ReadText = _read_text) -> RaplDiscovery:
    """Find the package and DRAM zones under ``root`` and check that they can be read.

    Args:
        root: The powercap directory (injectable for tests).
        read_text: How files are read (injectable to simulate permission errors as root).

    """
    result = RaplDiscovery()
    base = Path(root)
    if not base.is_dir():
        result.problems.append(f"no RAPL interface at {base} (not Linux, no powercap driver, or a VM)")
        return result
    unreadable = []
    for package in sorted(p for p in base.glob("intel-rapl:*") if p.name.count(":") == 1):
        name = _zone_name(package, read_text)
        result.zones_seen.append(f"{package.name}={name}")
        if not name.startswith("package-"):
            continue  # psys (includes the package) or anything unknown
        zones = [(package, name, "cpu")]
        for sub in sorted(package.glob(f"{package.name}:*")):
            sub_name = _zone_name(sub, read_text)
            result.zones_seen.append(f"{sub.name}={sub_name}")
            if sub_name == "dram":
                zones.append((sub, f"{name}/dram", "ram"))
        for path, zone_name, component in zones:
            sensor = RaplZoneSensor(path, zone_name, component, _max_range(path, read_text), read_text)
            try:
                sensor.energy_uj()
            except PermissionError:
                unreadable.append(str(path / "energy_uj"))
                continue
            except (OSError, ValueError) as exc:
                result.problems.append(f"{path / 'energy_uj'} cannot be read ({exc})")
                continue
            result.sensors.append(sensor)
    if unreadable:
        result.problems.append(
            f"RAPL counters are readable only by root since Linux 5.10 ({len(unreadable)} zones, e.g. "
            f"{unreadable[0]}); {access_fix(str(base))}"
        )
    if not result.zones_seen:
        result.problems.append(f"no intel-rapl zones under {base}")
    return result


def _zone_name(path: Path, read_text: ReadText) -> str:
    try:
        return read_text(path / "name").strip()
    except OSError:
        return ""


def _max_range(path: Path, read_text: ReadText) -> float | None:
    try:
        return float(read_text(path / "max_energy_range_uj").strip())
    except (OSError, ValueError):
        return None
