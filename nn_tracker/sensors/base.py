"""The interface every sensor implements, and how a reading says where it came from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

# How a figure was obtained; reports show one of these next to every number.
METHOD_COUNTER = "counter"  # difference of a hardware energy counter (NVML total energy, RAPL energy_uj)
METHOD_POWER = "integrated_power"  # trapezoid over sampled power readings
METHOD_ESTIMATE = "estimate"  # a model (TDP x utilisation, W per GB) - labelled with the model


@dataclass(frozen=True)
class Measurement:
    """What one read of a sensor gives.

    Attributes:
        energy_j: Energy since the sensor's previous successful read, ``None`` if unknown.
        power_w: Power at this read (instant or short average), ``None`` if unknown.

    """

    energy_j: float | None
    power_w: float | None = None


@dataclass
class SensorInfo:
    """Static description of a sensor for reports and ``nn-tracker sensors``.

    Attributes:
        device_id: Stable id, e.g. ``gpu:GPU-1234...``, ``cpu:package-0``, ``cpu:estimate``.
        component: ``gpu``, ``cpu`` or ``ram``.
        name: Human name (GPU model, CPU model, zone name).
        method: One of the ``METHOD_*`` values.
        model: For estimates, the model used (e.g. ``"TDP 280 W x utilisation"``).
        details: Further facts (UUID, power limit, zone path...).
        notes: Caveats shown in the report.

    """

    device_id: str
    component: str
    name: str
    method: str
    model: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Sensor(ABC):
    """One source of energy readings; the sampler calls :meth:`start`, then :meth:`read` each tick."""

    info: SensorInfo
    #: Highest plausible average power; larger deltas are dropped as counter resets.
    max_power_w: float = 10_000.0
    #: Read at most this often; in between, the next read covers the time (phase switches and stop force a read).
    min_interval_s: float = 0.0

    @abstractmethod
    def start(self, now_s: float) -> None:
        """Take the baseline reading at monotonic time ``now_s``."""

    @abstractmethod
    def read(self, now_s: float) -> Measurement:
        """Read the sensor; energy covers the time since the previous successful read.

        Raises:
            Exception: any failure; the sampler counts it and the next read covers the gap.

        """

    @property
    def active(self) -> bool:
        """False once the device is gone (e.g. a lost GPU); it is no longer read."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, most sensors hold nothing
        """Release what the sensor holds."""
