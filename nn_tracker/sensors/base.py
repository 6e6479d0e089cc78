"""The interface every sensor implements, and how a reading says where it came from."""

# No `from __future__ import annotations`: typing.NamedTuple compiles each string annotation (~27 us a field,
# ~1.5 ms for the NamedTuples on a tracker's path); names defined further down are quoted.
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from nn_tracker.core.structs import field, struct

# How a figure was obtained; reports show one of these next to every number.
METHOD_COUNTER = "counter"  # difference of a hardware energy counter (NVML total energy, RAPL energy_uj)
METHOD_POWER = "integrated_power"  # trapezoid over sampled power readings
METHOD_ESTIMATE = "estimate"  # a model (TDP x utilisation, W per GB) - labelled with the model


class Measurement(NamedTuple):
    """What one energy read of a sensor gives.

    Attributes:
        energy_j: Energy since the sensor's previous successful energy read, ``None`` if unknown.
        power_w: Power at this read (instant or the interval's mean), ``None`` if unknown.
        bridged: The energy of this interval was integrated from power samples because the counter
            could not be used for it (it went back: a driver reload).

    """

    energy_j: float | None
    power_w: float | None = None
    bridged: bool = False


@struct
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
    """One source of readings.

    The sampler calls :meth:`start`, then at every tick :meth:`read_power` (cheap, when
    :attr:`has_power`) and, when due, :meth:`read_energy`. Energy read over an interval is
    spread over the ticks inside it in proportion to the power samples (or to time when there
    are none), so phases and the timeline get the shape while totals stay exact.
    """

    info: SensorInfo
    #: Highest plausible power; an increase larger than this allows over the interval plus one
    #: counter period is dropped as a glitch.
    max_power_w: float = 10_000.0
    #: How often the hardware counter moves (a step can fall into any short interval).
    counter_period_s: float = 0.0
    #: Read energy at most this often; in between, the next read covers the time (stop and reports force a read).
    energy_interval_s: float = 0.0
    #: A phase switch makes the energy read due once this long has passed since the last one;
    #: ``None``: phase switches never trigger a read (the power samples split the interval).
    phase_read_after_s: float | None = 0.0
    #: Whether :meth:`read_power` gives cheap power samples.
    has_power: bool = False

    @abstractmethod
    def start(self, now_s: float) -> None:
        """Take the baseline reading at monotonic time ``now_s``."""

    def read_power(self, now_s: float) -> float | None:
        """A cheap power sample in W (``None``: none available now)."""
        return None

    @abstractmethod
    def read_energy(self, now_s: float) -> Measurement:
        """Energy since the previous successful energy read.

        Raises:
            Exception: any failure; the sampler counts it and the next read covers the gap.

        """

    @property
    def active(self) -> bool:
        """False once the device is gone (e.g. a lost GPU); it is no longer read."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook, most sensors hold nothing
        """Release what the sensor holds."""
