"""A bounded, downsampled record of energy and power over time, per device.

The sampler adds each tick's interval (with the power samples' integral and peak), then
the energy that a later read finds for any interval already recorded, into the bucket
that holds it. When the number of buckets would exceed ``max_points``, neighbours are
merged pairwise and the bucket width doubles. Memory is bounded whatever the run length;
energy is conserved exactly; peak power is kept per bucket.
"""

from __future__ import annotations

import bisect

from nn_tracker.core.structs import field, struct


@struct
class TimelinePoint:
    """One bucket ``[start_s, end_s)`` in tracker seconds.

    Attributes:
        energy_j: Energy per device (exact readings, spread over the time they cover).
        peak_power_w: Highest power sample (or reading's mean power) per device.
        phase_energy_j: Energy of all devices per root phase.
        power_j: Integral of the power samples per device (devices with power samples only):
            the shape the plot shows, which never exceeds what the device can draw.
        phase_s: Seconds of each root phase in the bucket (the plot's phase bands).

    """

    start_s: float
    end_s: float
    energy_j: dict[str, float] = field(default_factory=dict)
    peak_power_w: dict[str, float] = field(default_factory=dict)
    phase_energy_j: dict[str, float] = field(default_factory=dict)
    power_j: dict[str, float] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)

    def absorb(self, other: TimelinePoint) -> None:
        """Extend this bucket with the next one."""
        self.end_s = other.end_s
        _add_all(self.energy_j, other.energy_j)
        _add_all(self.phase_energy_j, other.phase_energy_j)
        _add_all(self.power_j, other.power_j)
        _add_all(self.phase_s, other.phase_s)
        for device, watts in other.peak_power_w.items():
            self.peak_power_w[device] = max(self.peak_power_w.get(device, watts), watts)

    def mean_power_w(self, device: str) -> float | None:
        """Average power of ``device`` over the bucket (from power samples where it has them)."""
        duration = self.end_s - self.start_s
        if duration <= 0:
            return None
        if device in self.power_j:
            return self.power_j[device] / duration
        if device in self.energy_j:
            return self.energy_j[device] / duration
        return None


def _add_all(into: dict[str, float], values: dict[str, float]) -> None:
    for key, value in values.items():
        into[key] = into.get(key, 0.0) + value


class Timeline:
    """Downsampling store of :class:`TimelinePoint` (at most ``max_points``)."""

    def __init__(self, max_points: int = 2000) -> None:
        if max_points < 2:
            raise ValueError("max_points must be >= 2")
        self.max_points = max_points
        self.bucket_s = 0.0
        self.points: list[TimelinePoint] = []

    def add_interval(
        self,
        start_s: float,
        end_s: float,
        power_j: dict[str, float],
        peak_power_w: dict[str, float],
        phase_s: dict[str, float] | None = None,
    ) -> None:
        """Record one sampler interval: the integral and peak of the power samples in it, its phases' time."""
        point = TimelinePoint(
            start_s, end_s, peak_power_w=dict(peak_power_w), power_j=dict(power_j), phase_s=dict(phase_s or {})
        )
        last = self.points[-1] if self.points else None
        if last is not None and last.end_s - last.start_s < self.bucket_s:
            last.absorb(point)
            return
        self.points.append(point)
        if len(self.points) > self.max_points:
            self._halve()

    def add_energy(
        self, device: str, start_s: float, end_s: float, energy_j: float, phase: str | None, peak: bool = True
    ) -> None:
        """Add energy a read found for ``[start_s, end_s]`` (inside one recorded interval) to its bucket.

        ``peak``: for a device without power samples, count the mean power over ``[start_s, end_s]`` as a peak.
        """
        if not self.points:
            return
        middle = (start_s + end_s) / 2
        point = self.points[-1]
        if point.start_s > middle:  # not in the newest bucket (the usual case): search
            index = bisect.bisect_right(self.points, middle, key=lambda p: p.start_s) - 1
            point = self.points[max(index, 0)]
        point.energy_j[device] = point.energy_j.get(device, 0.0) + energy_j
        if phase:
            root = phase.split("/", 1)[0]
            point.phase_energy_j[root] = point.phase_energy_j.get(root, 0.0) + energy_j
        if peak and device not in point.power_j:  # no power samples: the reading's mean power is its peak here
            watts = energy_j / (end_s - start_s) if end_s > start_s else 0.0
            point.peak_power_w[device] = max(point.peak_power_w.get(device, watts), watts)

    def add(
        self,
        start_s: float,
        end_s: float,
        energy_j: dict[str, float],
        power_w: dict[str, float],
        phase: str | None = None,
    ) -> None:
        """Record an interval and the energy of each device in it (``power_w``: peak power)."""
        self.add_interval(start_s, end_s, {}, power_w, {phase.split("/", 1)[0]: end_s - start_s} if phase else None)
        for device, joules in energy_j.items():
            self.add_energy(device, start_s, end_s, joules, phase, peak=False)

    def _halve(self) -> None:
        merged = []
        for i in range(0, len(self.points) - 1, 2):
            first = self.points[i]
            first.absorb(self.points[i + 1])
            merged.append(first)
        if len(self.points) % 2:
            merged.append(self.points[-1])
        self.points = merged
        widest = max(p.end_s - p.start_s for p in merged)
        self.bucket_s = max(self.bucket_s * 2, widest)

    def to_dict(self, origin_s: float = 0.0) -> dict[str, object]:
        """JSON-ready form: times relative to ``origin_s``, mean and peak power per device."""
        devices = sorted({d for p in self.points for d in (*p.energy_j, *p.power_j)})
        return {
            "bucket_s": self.bucket_s,
            "devices": devices,
            "points": [
                {
                    "start_s": round(p.start_s - origin_s, 6),
                    "end_s": round(p.end_s - origin_s, 6),
                    "mean_power_w": {d: w for d in devices if (w := p.mean_power_w(d)) is not None},
                    "peak_power_w": {d: p.peak_power_w[d] for d in devices if d in p.peak_power_w},
                    "energy_j": {d: p.energy_j[d] for d in devices if d in p.energy_j},
                    "phase_energy_j": dict(p.phase_energy_j),
                    "phase_s": dict(p.phase_s),
                }
                for p in self.points
            ],
        }
