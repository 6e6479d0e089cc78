"""Serving mode: a long-running tracker for inference services.

Counts queries from any thread (``serving.count()``), and every ``period_s`` (default
one hour) appends one line to ``<project>-<run id>.periods.jsonl`` with that
period's energy, carbon and per-query figures, and rewrites the cumulative JSON
report. Memory does not grow with uptime: totals are running sums, the timeline is
bounded, and periods go to disk, not to memory.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from nn_tracker import validation as check
from nn_tracker.report.files import append_whole
from nn_tracker.report.model import Report
from nn_tracker.tracker import Tracker, status_for_exception

log = logging.getLogger("nn_tracker")


class ServingTracker:
    """Track a service; one period record every ``period_s``.

    Args:
        period_s: Seconds per period (default 3600).
        unit: The functional unit counted by :meth:`count` (default ``query``).
        **options: Fields of :class:`~nn_tracker.config.TrackerConfig`; ``default_phase`` is ``querying``.
    """

    def __init__(self, period_s: float = 3600.0, unit: str = "query", **options: Any) -> None:
        self.period_s = check.positive("period_s", period_s)
        self.unit = unit
        options.setdefault("default_phase", "querying")
        self.tracker = Tracker(**options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._period_lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._period_index = 0
        self._period_started_s = 0.0

    @property
    def periods_path(self) -> Path:
        """Where the period records are appended."""
        return self.tracker.report_path.with_suffix(".periods.jsonl")

    def start(self) -> ServingTracker:
        """Start tracking and the period timer."""
        self.tracker.start()
        self._last = self._totals()
        self._period_started_s = self.tracker.elapsed_s()
        if self.tracker.background:
            self._thread = threading.Thread(target=self._run, name="nn_tracker-serving", daemon=True)
            self._thread.start()
        return self

    def count(self, n: float = 1) -> None:
        """Count served units (cheap, thread-safe)."""
        self.tracker.add_units(n, kind=self.unit)

    def _run(self) -> None:
        while not self.tracker.clock.wait(self._stop, self.period_s):
            try:
                self.close_period()
            except Exception:  # a period record must never stop the service
                log.exception("nn_tracker: period record failed (tracking continues)")

    def _totals(self) -> dict[str, float]:
        self.tracker.sample()  # read every sensor now: a period gets exactly its own energy
        live = self.tracker.live()
        units = self.tracker.units().get(self.unit, 0.0)
        return {
            "energy_kwh": live["energy/total_kwh"] or 0.0,
            "facility_kwh": live["energy/facility_kwh"] or 0.0,
            "carbon_g": live["carbon/total_g"] or 0.0,
            "units": units,
        }

    def close_period(self) -> dict[str, Any]:
        """Record the period that ends now (also called by the timer) and return it."""
        with self._period_lock:
            now = self.tracker.elapsed_s()
            totals = self._totals()
            delta = {key: totals[key] - self._last.get(key, 0.0) for key in totals}
            count = delta["units"]
            record = {
                "period": self._period_index,
                "run_id": self.tracker.run_id,
                "start_s": self._period_started_s,
                "end_s": now,
                "it_energy_kwh": delta["energy_kwh"],
                "facility_energy_kwh": delta["facility_kwh"],
                "carbon_g": delta["carbon_g"],
                f"{self.unit}_count": int(count) if float(count).is_integer() else count,
                f"carbon_g_per_{self.unit}": delta["carbon_g"] / count if count else None,
                f"facility_energy_kwh_per_{self.unit}": delta["facility_kwh"] / count if count else None,
            }
            self._last, self._period_started_s = totals, now
            self._period_index += 1
            if self.tracker.config.write_report:
                self._append(record)
                self.tracker.checkpoint()
            return record

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=False) + "\n").encode()
        append_whole(self.periods_path, lambda _size: line)

    def stop(self, status: str = "completed", error: BaseException | None = None) -> Report:
        """Record the last (partial) period and write the final report."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.tracker.running and self.tracker.elapsed_s() > self._period_started_s:
            self.close_period()
        return self.tracker.stop(status, error)

    def __enter__(self) -> ServingTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.stop()
            return
        try:
            self.stop(status_for_exception(exc), exc)
        except Exception:  # the served code's exception wins: ours is only logged
            log.exception("nn_tracker: stopping failed; the served code's exception is raised unchanged")
