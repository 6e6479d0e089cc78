"""Serving mode: a long-running tracker for inference services.

Counts queries from any thread (``serving.count()``), and every ``period_s`` (default
one hour) appends one line to ``<project>-<run id>.periods.jsonl`` with that
period's energy, carbon and per-query figures, and rewrites the cumulative JSON
report. A period's figures are the difference of the report's totals at its two ends; the
first period starts at the tracker's start (from zero) and the last ends with the final
report, so the periods add up to the report exactly. Memory does not grow with uptime: totals are
running sums, the timeline is bounded, and periods go to disk, not to memory.

Optionally (``prometheus_registry=`` or ``prometheus_port=``, needs ``prometheus_client``) its
figures are Prometheus metrics, see :mod:`nn_tracker.report.prometheus`.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nn_tracker import validation as check
from nn_tracker.config import QUERYING_PHASE, check_phase_name
from nn_tracker.endings import stop_as_block_ends
from nn_tracker.errors import ValidationError
from nn_tracker.report.files import append_whole
from nn_tracker.tracker import Tracker

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report

log = logging.getLogger("nn_tracker")
MIN_PERIOD_S = 0.1  # ten period records a second at most (~300 bytes each): a typo cannot flood the disk


class ServingTracker:
    """Track a service; one period record every ``period_s``.

    Args:
        period_s: Seconds per period (default 3600).
        unit: The functional unit counted by :meth:`count` (default ``query``).
        prometheus_registry: Register Prometheus metrics into this ``prometheus_client`` registry
            (``prometheus_client.REGISTRY`` is the default one) while the tracker runs.
        prometheus_port: Serve the metrics on ``http://ADDR:PORT/metrics`` while the tracker runs
            (0: any free port, see :attr:`prometheus_address`). Nothing listens unless given.
        prometheus_addr: The address the endpoint listens on (all interfaces by default, as
            ``prometheus_client`` does, so that a Prometheus on another host can scrape it).
        **options: Fields of :class:`~nn_tracker.config.TrackerConfig`; ``default_phase`` is ``querying``.

    Raises:
        ValidationError: a bad argument, or Prometheus options without ``prometheus_client``.
    """

    def __init__(
        self,
        period_s: float = 3600.0,
        unit: str = "query",
        prometheus_registry: Any = None,
        prometheus_port: int | None = None,
        prometheus_addr: str = "0.0.0.0",
        **options: Any,
    ) -> None:
        self.period_s = check.positive("period_s", period_s)
        if self.period_s < MIN_PERIOD_S:
            raise ValidationError("period_s", period_s, f"must be at least {MIN_PERIOD_S:g} s (a line on disk each)")
        check_phase_name(unit, "unit")
        self.unit = unit
        options.setdefault("default_phase", QUERYING_PHASE)
        self.tracker = Tracker(**options)
        self._prometheus = _prometheus_export(self, prometheus_registry, prometheus_port, prometheus_addr)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._period_lock = threading.Lock()
        self._last: dict[str, float] = {}  # the totals at the end of the last period
        self._period_index = 0

    @property
    def periods_path(self) -> Path:
        """Where the period records are appended."""
        return self.tracker.report_path.with_suffix(".periods.jsonl")

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the Prometheus endpoint while it listens, else ``None``."""
        return self._prometheus.address if self._prometheus is not None else None

    def start(self) -> ServingTracker:
        """Start tracking, the period timer and the Prometheus export (if asked).

        Raises:
            ValidationError: the Prometheus port cannot be listened on, or the registry already has
                nn_tracker's metrics (from another tracker still running).
        """
        if self._prometheus is not None:
            try:
                self._prometheus.open()
            except OSError as exc:
                raise ValidationError(
                    "prometheus_port", self._prometheus.port, f"must be free to listen on ({exc.strerror or exc})"
                ) from None
            except ValueError:  # prometheus_client: "Duplicated timeseries in CollectorRegistry: {...}"
                raise ValidationError(
                    "prometheus_registry",
                    type(self._prometheus.registry).__name__,
                    "must not hold nn_tracker's metrics already (another ServingTracker still uses it)",
                ) from None
        try:
            self.tracker.start()
        except BaseException:
            self._close_prometheus()
            raise
        self._last = dict.fromkeys(("energy_kwh", "facility_kwh", "carbon_g", "units", "end_s"), 0.0)
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

    def _totals(self, report: Any = None) -> dict[str, float]:
        """The report's running totals (read every sensor now, so a period gets exactly its own energy)."""
        if report is None:
            self.tracker.sample()
            report = self.tracker.live_report()
        if report.incomplete:  # nothing is known: the period waits for the next totals
            return dict(self._last)
        unit = report.units.get(self.unit)
        return {
            "energy_kwh": report.energy_kwh,
            "facility_kwh": report.footprint.facility_energy_kwh,
            "carbon_g": report.total_carbon_g,
            "units": unit.count if unit else 0.0,
            "end_s": report.duration_s,
        }

    def close_period(self, report: Any = None) -> dict[str, Any]:
        """Record the period that ends now (also called by the timer; ``report``: the final one) and return it.

        After the tracker stopped, a period is recorded only if something happened since the last one.
        """
        with self._period_lock:
            running = self.tracker.running
            if report is None and not running:
                report = self.tracker.report()
            totals = self._totals(report)
            delta = {key: totals[key] - self._last.get(key, 0.0) for key in totals}
            count = delta["units"]
            record = {
                "period": self._period_index,
                "run_id": self.tracker.run_id,
                "start_s": self._last["end_s"],
                "end_s": totals["end_s"],
                "it_energy_kwh": delta["energy_kwh"],
                "facility_energy_kwh": delta["facility_kwh"],
                "carbon_g": delta["carbon_g"],
                f"{self.unit}_count": int(count) if float(count).is_integer() else count,
                f"carbon_g_per_{self.unit}": delta["carbon_g"] / count if count else None,
                f"facility_energy_kwh_per_{self.unit}": delta["facility_kwh"] / count if count else None,
            }
            if running or totals != self._last:
                self._last = totals
                self._period_index += 1
                if self.tracker.config.write_report:
                    self._append(record)
                    if running:
                        self.tracker.checkpoint()
            return record

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, allow_nan=False) + "\n").encode()
        append_whole(self.periods_path, lambda _size: line, _is_whole_record)

    def stop(self, status: str = "completed", error: BaseException | None = None) -> Report | IncompleteReport:
        """Record the last (partial) period and write the final report."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        try:
            was_running = self.tracker.running
            report = self.tracker.stop(status, error)
            if was_running:  # the last period ends with the final report: the periods add up to it
                try:
                    self.close_period(report)
                except Exception:  # a period record must never hide the report
                    log.exception("nn_tracker: the last period record failed")
            return report
        finally:
            self._close_prometheus()

    def _close_prometheus(self) -> None:
        if self._prometheus is not None:
            try:
                self._prometheus.close()
            except Exception:  # stopping the endpoint must never hurt the service
                log.exception("nn_tracker: closing the Prometheus endpoint failed")

    def __enter__(self) -> ServingTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stop_as_block_ends(self.stop, exc)


def _is_whole_record(_first: bytes, line: bytes) -> bool:
    """Whether a last line without its newline is a whole period record (else it was torn and is cut)."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _prometheus_export(serving: ServingTracker, registry: Any, port: Any, addr: Any) -> Any:
    """The Prometheus export asked for (checked now, opened at start), or ``None``."""
    if registry is None and port is None:
        return None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise ValidationError("prometheus_port", port, "must be an integer from 0 to 65535")
    if not isinstance(addr, str) or not addr:
        raise ValidationError("prometheus_addr", addr, "must be a host name or IP address")
    if registry is not None and not callable(getattr(registry, "register", None)):
        raise ValidationError("prometheus_registry", type(registry).__name__, "must be a prometheus_client registry")
    try:
        from nn_tracker.report.prometheus import PrometheusExport
    except ImportError:
        raise ValidationError(
            "prometheus_port" if port is not None else "prometheus_registry",
            port if port is not None else type(registry).__name__,
            "needs prometheus_client (pip install 'nn-tracker[prometheus]')",
        ) from None
    return PrometheusExport(serving, registry, port, addr)
