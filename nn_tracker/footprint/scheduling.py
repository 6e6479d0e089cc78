"""When to run a job: the two optimisations of Dodge et al. 2022 over an intensity series.

"Measuring the Carbon Intensity of AI in Cloud Instances" (FAccT 2022):

- **Flexible Start**: start at the series step within the next N hours that minimises
  the job's emissions.
- **Pause and Resume**: within a window of N hours plus the job's duration, run only
  in the lowest-intensity steps until the job's duration is covered, in time order.

Both are compared with starting now. A job is a power profile (from a saved report's
timeline, or a duration and an average power); its energy in any stretch of its own
time is known, so emissions are exact sums of energy x intensity per series step.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timezone
from typing import Any

from nn_tracker.core import validation as check
from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import struct
from nn_tracker.footprint.intensity_series import IntensitySeries


@struct(frozen=True)
class JobProfile:
    """Facility power over the job's own time, as consecutive ``(duration_s, power_w)`` segments."""

    segments: tuple[tuple[float, float], ...]

    @classmethod
    def constant(cls, duration_s: float, power_w: float) -> JobProfile:
        """A job drawing ``power_w`` for ``duration_s``."""
        return cls(((check.positive("duration_s", duration_s), check.non_negative("power_w", power_w)),))

    @classmethod
    def measured(cls, buckets: list[tuple[float, float, float]], pue: float) -> JobProfile:
        """The power profile of a measured run: ``(start_s, end_s, IT joules)`` per timeline bucket x its PUE.

        Raises:
            ValidationError: no buckets.
        """
        if not buckets:
            raise ValidationError("report.timeline", None, "must have points to give a power profile")
        segments = []
        previous_end = 0.0
        for start, end, joules in buckets:
            if start > previous_end:
                segments.append((start - previous_end, 0.0))  # nothing measured there: no power assumed
            segments.append((end - start, joules / (end - start) * pue if end > start else 0.0))
            previous_end = end
        merged: list[tuple[float, float]] = []
        for duration, power in segments:
            if duration <= 0:
                continue
            if merged and merged[-1][1] == power:
                merged[-1] = (merged[-1][0] + duration, power)
            else:
                merged.append((duration, power))
        return cls(tuple(merged))

    @property
    def duration_s(self) -> float:
        """Length of the job."""
        return sum(d for d, _ in self.segments)

    def energy_kwh(self, start_s: float, end_s: float) -> float:
        """Energy of the job between two moments of its own time."""
        total, offset = 0.0, 0.0
        for duration, power in self.segments:
            overlap = min(end_s, offset + duration) - max(start_s, offset)
            if overlap > 0:
                total += power * overlap / JOULES_PER_KWH
            offset += duration
        return total


def _iso(epoch_s: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="seconds")
    except (ValueError, OverflowError, OSError):
        raise ValidationError("time", epoch_s, "must fall within the years 1-9999 (UTC)") from None


class _Integral:
    """Prefix sums of a series' covered steps: the integral of intensity (and of covered time) up to any moment.

    Built once (linear in rows); each query is a binary search, so evaluating a start costs
    O(job segments x log rows) instead of a walk over the series.
    """

    def __init__(self, series: IntensitySeries) -> None:
        self.slots = series.covered_intervals()
        self.starts = [a for a, _, _ in self.slots]
        self.grams = [0.0]  # (gCO2e/kWh) x s before slot i
        self.seconds = [0.0]  # covered seconds before slot i
        for a, b, value in self.slots:
            self.grams.append(self.grams[-1] + value * (b - a))
            self.seconds.append(self.seconds[-1] + (b - a))

    def at(self, t: float) -> tuple[float, float]:
        """(integral of intensity, covered seconds) from the series' start to ``t``."""
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return 0.0, 0.0
        a, b, value = self.slots[i]
        inside = min(max(t - a, 0.0), b - a)
        return self.grams[i] + value * inside, self.seconds[i] + inside


def _emissions_contiguous(integral: _Integral, job: JobProfile, start_s: float) -> float | None:
    """Emissions if the job runs from ``start_s`` without pause; ``None`` if the series does not cover it."""
    covered = integral.at(start_s + job.duration_s)[1] - integral.at(start_s)[1]
    if covered < job.duration_s - 1e-6:
        return None
    grams, offset = 0.0, 0.0
    for duration, power_w in job.segments:
        if power_w > 0:
            lo, hi = integral.at(start_s + offset)[0], integral.at(start_s + offset + duration)[0]
            grams += power_w / JOULES_PER_KWH * (hi - lo)
        offset += duration
    return grams


def schedule(series: IntensitySeries, job: JobProfile, window_h: float, now_s: float | None = None) -> dict[str, Any]:
    """Emissions of starting now, of the best Flexible Start, and of Pause and Resume.

    Args:
        series: Intensity over time (gCO2e/kWh).
        job: The job's facility power profile.
        window_h: How many hours the start may be delayed.
        now_s: The earliest start (epoch seconds); default the series' first timestamp.

    Raises:
        ValidationError: the job does not fit in the series from ``now``, or a bad window.
    """
    window_s = check.non_negative("window_h", window_h) * 3600
    now = series.times_s[0] if now_s is None else now_s
    integral = _Integral(series)
    baseline = _emissions_contiguous(integral, job, now)
    series_end = series.times_s[-1] + series.step_s
    if baseline is None:
        raise ValidationError(
            "job duration",
            f"{job.duration_s / 3600:g} h",
            f"must fit in the intensity series from {_iso(now)} (it ends {_iso(series_end)})",
        )
    first = bisect.bisect_right(series.times_s, now)
    last = bisect.bisect_right(series.times_s, now + window_s)
    starts = [now, *series.times_s[first:last]]
    options = [(g, t) for t in starts if (g := _emissions_contiguous(integral, job, t)) is not None]
    best_g, best_start = min(options, key=lambda o: (o[0], o[1]))

    window_end = now + window_s + job.duration_s
    usable = [(max(a, now), min(b, window_end), v) for a, b, v in integral.slots if b > now and a < window_end]
    chosen, covered = [], 0.0
    for a, b, value in sorted(usable, key=lambda s: (s[2], s[0])):
        if covered >= job.duration_s - 1e-6:
            break
        take = min(b - a, job.duration_s - covered)
        chosen.append((a, a + take, value))
        covered += take
    chosen.sort()
    pause_g, offset, runs = 0.0, 0.0, []
    for a, b, value in chosen:
        pause_g += job.energy_kwh(offset, offset + (b - a)) * value
        offset += b - a
        runs.append({"start": _iso(a), "end": _iso(b), "intensity_g_per_kwh": value})

    def saving(grams: float) -> dict[str, float]:
        return {
            "emissions_g": grams,
            "saving_g": baseline - grams,
            "saving_pct": 100 * (baseline - grams) / baseline if baseline > 0 else 0.0,
        }

    return {
        "series": series.source,
        "step_s": series.step_s,
        "job": {"duration_s": job.duration_s, "energy_kwh": job.energy_kwh(0, job.duration_s)},
        "window_h": window_h,
        "now": {"start": _iso(now), "end": _iso(now + job.duration_s), "emissions_g": baseline},
        "flexible_start": {"start": _iso(best_start), "end": _iso(best_start + job.duration_s), **saving(best_g)},
        "pause_and_resume": {"runs": runs, "end": _iso(chosen[-1][1]), **saving(pause_g)},
        "method": "Dodge et al. 2022: Flexible Start over the series steps in the window; Pause and Resume over "
        "the lowest-intensity steps of the window plus the job's duration, run in time order",
    }
