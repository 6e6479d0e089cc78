"""Grid carbon intensity over time, from a CSV of timestamps and gCO2e/kWh.

Accepted: a header with a time column (``timestamp``, ``datetime``, ``time``, ``date``,
``point_time``, or a name starting with one of these, e.g. Electricity Maps'
``Datetime (UTC)``) and an intensity column (a name containing ``intensity``,
``gco2`` or ``value``), in gCO2e/kWh. Timestamps are ISO 8601; without a time
zone they are taken as UTC. Rows must be in strictly increasing time order.

The documented rule for time between rows: each row's value holds from its
timestamp until the next row, but for at most one *step* (the median spacing of
the series). Time not covered by any row (before the first, after the last step,
or in a hole longer than a step) is reported as uncovered, never silently filled.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
import itertools
import math
import statistics
from datetime import datetime, timezone
from pathlib import Path

from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import struct

TIME_NAMES = ("timestamp", "datetime", "time", "date", "point_time")
VALUE_HINTS = ("intensity", "gco2", "value")


def parse_time(text: str, field: str) -> float:
    """ISO 8601 to epoch seconds (UTC when no zone is given)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field, text, "must be an ISO 8601 date and time, e.g. 2026-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        moment.astimezone(timezone.utc)  # 9999-12-31T23:00-01:00 is in the year 10000 in UTC
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValidationError(field, text, "must fall within the years 1-9999 in UTC") from None


@struct(frozen=True)
class IntensitySeries:
    """A step function of grid intensity over time."""

    times_s: tuple[float, ...]
    values_g_per_kwh: tuple[float, ...]
    step_s: float
    source: str
    column: str = ""  # the header of the intensity column used

    @classmethod
    def from_csv(cls, path: str | Path) -> IntensitySeries:
        """Read and validate a CSV; every bad row is an error naming its line, field and value."""
        from nn_tracker.core import inputs

        path = Path(path)
        text = inputs.read_text(path, "intensity series")
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise ValidationError("intensity series", str(path), f"must be CSV ({exc})") from None
        if not rows:
            raise ValidationError("intensity series", str(path), "must have a header and at least two rows")
        header = [h.strip().lower() for h in rows[0]]
        time_col = next((i for i, h in enumerate(header) if h.startswith(TIME_NAMES)), None)
        candidates = [i for i, h in enumerate(header) if i != time_col and any(k in h for k in VALUE_HINTS)]
        # Electricity Maps exports direct and life-cycle intensity: life-cycle, by name, as the yearly averages are
        life_cycle = [i for i in candidates if "life" in header[i] or "lca" in header[i]]
        value_cols = life_cycle or candidates
        value_col = value_cols[0] if value_cols else None
        if time_col is None or value_col is None:
            raise ValidationError(
                f"{path.name} header",
                ",".join(rows[0]),
                "must name a time column (timestamp, datetime...) and an intensity column",
            )
        times: list[float] = []
        values: list[float] = []
        for line, row in enumerate(rows[1:], start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path.name} line {line}"
            if len(row) <= max(time_col, value_col):
                raise ValidationError(where, ",".join(row), f"must have {max(time_col, value_col) + 1} columns")
            if any(c in row[i] for i in (time_col, value_col) for c in "\r\n"):
                raise ValidationError(where, ",".join(row), "must not break a time or value across lines")
            moment = parse_time(row[time_col], f"{where} {rows[0][time_col].strip()}")
            try:
                value = float(row[value_col])
            except ValueError:
                raise ValidationError(
                    f"{where} {rows[0][value_col].strip()}", row[value_col], "must be a number (gCO2e/kWh)"
                ) from None
            if not math.isfinite(value) or value < 0:
                raise ValidationError(
                    f"{where} {rows[0][value_col].strip()}", row[value_col], "must be a finite number >= 0"
                )
            if times and moment <= times[-1]:
                raise ValidationError(
                    f"{where} {rows[0][time_col].strip()}", row[time_col], "must be later than the previous row"
                )
            times.append(moment)
            values.append(value)
        if len(times) < 2:
            raise ValidationError("intensity series", str(path), "must have at least two rows")
        return cls(
            tuple(times),
            tuple(values),
            statistics.median(b - a for a, b in itertools.pairwise(times)),
            Path(path).name,  # reports get published: the file's name, not where it is
            rows[0][value_col].strip(),
        )

    def covered_intervals(self) -> list[tuple[float, float, float]]:
        """``(start_s, end_s, g_per_kwh)`` of every row, per the documented rule."""
        out = []
        for i, (start, value) in enumerate(zip(self.times_s, self.values_g_per_kwh, strict=True)):
            end = start + self.step_s
            if i + 1 < len(self.times_s):
                end = min(end, self.times_s[i + 1])
            out.append((start, end, value))
        return out

    def carbon_of(self, start_s: float, end_s: float, energy_kwh: float) -> tuple[float, float]:
        """Carbon of ``energy_kwh`` spread evenly over ``[start_s, end_s)``: (grams, share of the time covered)."""
        if end_s <= start_s:
            return 0.0, 1.0
        grams, covered = 0.0, 0.0
        rate = energy_kwh / (end_s - start_s)
        intervals = self._intervals
        for index in range(max(bisect.bisect_right(self.times_s, start_s) - 1, 0), len(intervals)):
            a, b, value = intervals[index]  # no slice: a copy of the rest of a long series at every call
            if a >= end_s:
                break
            overlap = min(b, end_s) - max(a, start_s)
            if overlap > 0:
                grams += rate * overlap * value
                covered += overlap
        return grams, covered / (end_s - start_s)

    @functools.cached_property
    def _intervals(self) -> list[tuple[float, float, float]]:
        return self.covered_intervals()
