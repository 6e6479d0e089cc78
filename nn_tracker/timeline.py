"""A bounded, downsampled record of energy over time, per device.

Consecutive sampler intervals are merged into buckets; when the number of
buckets would exceed ``max_points``, neighbours are merged pairwise and the
bucket width doubles. Memory is bounded whatever the run length; energy is
conserved exactly; peak power is kept per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TimelinePoint:
    """One bucket: ``[start_s, end_s)`` in tracker seconds, energy and peak power per device."""

    start_s: float
    end_s: float
    energy_j: dict[str, float] = field(default_factory=dict)
    peak_power_w: dict[str, float] = field(default_factory=dict)
    phase_energy_j: dict[str, float] = field(default_factory=dict)  # all devices, per root phase

    def absorb(self, other: TimelinePoint) -> None:
        """Extend this bucket with the next one."""
        self.end_s = other.end_s
        for device, joules in other.energy_j.items():
            self.energy_j[device] = self.energy_j.get(device, 0.0) + joules
        for device, watts in other.peak_power_w.items():
            self.peak_power_w[device] = max(self.peak_power_w.get(device, watts), watts)
        for phase, joules in other.phase_energy_j.items():
            self.phase_energy_j[phase] = self.phase_energy_j.get(phase, 0.0) + joules

    def mean_power_w(self, device: str) -> float | None:
        """Average power of ``device`` over the bucket, ``None`` if it has no energy here."""
        duration = self.end_s - self.start_s
        if device not in self.energy_j or duration <= 0:
            return None
        return self.energy_j[device] / duration


class Timeline:
    """Downsampling store of :class:`TimelinePoint` (at most ``max_points``)."""

    def __init__(self, max_points: int = 2000) -> None:
        if max_points < 2:
            raise ValueError("max_points must be >= 2")
        self.max_points = max_points
        self.bucket_s = 0.0
        self.points: list[TimelinePoint] = []

    def add(
        self,
        start_s: float,
        end_s: float,
        energy_j: dict[str, float],
        power_w: dict[str, float],
        phase: str | None = None,
    ) -> None:
        """Record one interval (``phase``: the phase it belongs to; its root phase gets the energy)."""
        phase_energy = {phase.split("/", 1)[0]: sum(energy_j.values())} if phase and energy_j else {}
        point = TimelinePoint(start_s, end_s, dict(energy_j), dict(power_w), phase_energy)
        last = self.points[-1] if self.points else None
        if last is not None and last.end_s - last.start_s < self.bucket_s:
            last.absorb(point)
            return
        self.points.append(point)
        if len(self.points) > self.max_points:
            self._halve()

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
        devices = sorted({d for p in self.points for d in p.energy_j})
        return {
            "bucket_s": self.bucket_s,
            "devices": devices,
            "points": [
                {
                    "start_s": round(p.start_s - origin_s, 6),
                    "end_s": round(p.end_s - origin_s, 6),
                    "mean_power_w": {d: p.mean_power_w(d) for d in devices if d in p.energy_j},
                    "peak_power_w": {d: p.peak_power_w[d] for d in devices if d in p.peak_power_w},
                    "energy_j": {d: p.energy_j[d] for d in devices if d in p.energy_j},
                    "phase_energy_j": dict(p.phase_energy_j),
                }
                for p in self.points
            ],
        }
