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

import functools
import inspect
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nn_tracker.config import QUERYING_PHASE, check_phase_name, datacentre_index
from nn_tracker.core import validation as check
from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.core.errors import ValidationError
from nn_tracker.report.files import append_whole
from nn_tracker.run.endings import stop_as_block_ends
from nn_tracker.run.requests import METHOD, RequestEnergy, RequestLedger, RequestStats, check_units, check_weight
from nn_tracker.tracker import Tracker

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report, Requests

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
        self._ledger: RequestLedger | None = None  # energy per request, while running
        self._stats = RequestStats()
        self._open_at_stop = 0
        self._idle_at_period_start_j = 0.0
        hooks = self.tracker.hooks
        hooks.energy_listener = self._heard
        hooks.requests_section = self._requests_section
        hooks.sampling_ended = self._close_requests  # also when SIGTERM or the exit stops the tracker
        hooks.final_report = self._last_period

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
            self._ledger = self._new_ledger()
            self.tracker.start()
            self._ledger.embodied_g_per_s = _embodied_g_per_s(self.tracker)
        except BaseException:
            self._ledger = None
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

    def request(self, weight: float = 1.0, **units: float) -> RequestScope:
        """One request: ``with``/``async with`` (or a decorator); yields its :class:`RequestEnergy`.

        The power of the tracked devices is shared among the requests in flight by ``weight``
        (change it with ``RequestEnergy.set_weight``); ``units`` (``tokens=...``) are counted for it.
        Its figures are provisional when it ends, settled once the counters' readings cover it.

        Raises:
            ValidationError: a weight or unit count that is not a finite number > 0 (>= 0 for units).
        """
        check_weight(weight)
        for kind, n in units.items():
            check_units(kind, n)
        return RequestScope(self, weight, units)

    def _heard(self, pieces: list[tuple[float, float, float]], horizon_s: float, power_w: float) -> None:
        """The sampler's energy: settles requests (never raises into the sampler)."""
        ledger = self._ledger
        if ledger is None:
            return
        try:
            ledger.add_energy(pieces, horizon_s, power_w)
        except Exception:  # energy per request must never stop the tracking
            log.exception("nn_tracker: energy per request failed for this reading (tracking continues)")

    def _new_ledger(self) -> RequestLedger:
        """The request ledger, with the serving datacentre's PUE and carbon per joule."""
        config = self.tracker.config
        centre = config.resolved[datacentre_index(QUERYING_PHASE, [c.phases for c in config.resolved])]
        return RequestLedger(
            self.tracker.clock.monotonic,
            pue=centre.pue,
            carbon_g_per_facility_j=centre.intensity_g_per_kwh / centre.transport_factor / JOULES_PER_KWH,
            on_settled=self._stats.add,
        )

    def _requests_section(self) -> Requests | None:
        """The report's ``requests`` section (``None`` when no request was ever made)."""
        from nn_tracker.report.document import RequestBin, Requests, RequestUnits, Spread

        ledger = self._ledger
        count, it_j, facility_j, carbon_g, per_unit, bins = self._stats.run_figures()
        if ledger is None or (not count and not ledger._in_flight and not ledger._waiting):
            return None
        pue, g_per_j = ledger.pue, ledger.carbon_g_per_facility_j
        idle_g = ledger.idle_j * pue * g_per_j + ledger.idle_s * ledger.embodied_g_per_s
        return Requests(
            count=count,
            open_at_stop=self._open_at_stop,
            it_energy_kwh=it_j / JOULES_PER_KWH,
            idle_it_energy_kwh=ledger.idle_j / JOULES_PER_KWH,
            idle_s=ledger.idle_s,
            facility_energy_kwh=facility_j / JOULES_PER_KWH,
            carbon_g=carbon_g,
            idle_carbon_g=idle_g,
            idle_share_facility_energy_j=ledger.idle_j * pue / count if count else None,
            idle_share_carbon_g=idle_g / count if count else None,
            per_unit={
                kind: RequestUnits(
                    units=figures["units"],
                    requests=figures["requests"],
                    facility_energy_j=Spread(**figures["facility_energy_j"]),
                    carbon_g=Spread(**figures["carbon_g"]),
                )
                for kind, figures in per_unit.items()
            },
            histogram=[RequestBin(up_to_j=bound, count=n) for bound, n in bins],
            method=METHOD,
        )

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
            if self._ledger is not None and (self._stats.period.count or self._stats.run.count):
                idle_j = self._ledger.idle_j
                record["requests"] = {
                    **self._stats.take_period(),  # the requests settled in this period
                    "idle_it_energy_kwh": (idle_j - self._idle_at_period_start_j) / JOULES_PER_KWH,
                }
                self._idle_at_period_start_j = idle_j
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
            return self.tracker.stop(status, error)  # the hooks below close the requests and the last period
        finally:
            self._close_prometheus()

    def _close_requests(self) -> None:
        """After the last reading: end the requests still in flight (noted) and settle every request."""
        ledger = self._ledger
        if ledger is None:
            return
        self._open_at_stop = ledger.close(self.tracker.clock.monotonic())
        if self._open_at_stop:
            self.tracker.add_note(
                f"{self._open_at_stop} request(s) still in flight at stop were ended then (see requests)."
            )

    def _last_period(self, report: Any) -> None:
        """The last period ends with the final report: the periods add up to it."""
        self._stop.set()
        self.close_period(report)

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


class RequestScope:
    """``ServingTracker.request(...)``: a request of the tracker as a ``with``/``async with`` block or a decorator.

    Entering yields the request's :class:`~nn_tracker.run.requests.RequestEnergy`; leaving gives it its
    provisional figures. Never raises into the server once entered (a failure is logged); entering one
    scope twice at once is an error: make one per request (a decorator makes one per call).
    """

    def __init__(self, serving: ServingTracker, weight: float, units: dict[str, float]) -> None:
        self._serving = serving
        self._weight = weight
        self._units = units
        self.energy: RequestEnergy | None = None

    def __enter__(self) -> RequestEnergy:
        if self.energy is not None and self.energy.duration_s is None:
            raise ValidationError("request", "in flight", "must be entered once at a time (make one per request)")
        ledger = self._serving._ledger
        if ledger is None or not self._serving.tracker.running:
            self.energy = RequestEnergy(weight=self._weight, units=dict(self._units))  # not tracked: no figures
            return self.energy
        self.energy = ledger.begin(self._weight, self._units)
        return self.energy

    def __exit__(self, *_: Any) -> None:
        request, ledger = self.energy, self._serving._ledger
        if request is None or request._ledger is None or ledger is None:
            return
        try:
            ledger.end(request)
        except Exception:  # the server's own exception, if any, goes on; ours never replaces it
            log.warning("nn_tracker: a request could not be ended", exc_info=True)

    async def __aenter__(self) -> RequestEnergy:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a function (sync or async): each call is one request."""
        serving, weight, units = self._serving, self._weight, self._units
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                async with RequestScope(serving, weight, units):
                    return await function(*args, **kwargs)

            return call_async

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            with RequestScope(serving, weight, units):
                return function(*args, **kwargs)

        return call


def _embodied_g_per_s(tracker: Tracker) -> float:
    """The run's amortised embodied carbon per second (it grows linearly with the run's time)."""
    from types import SimpleNamespace

    from nn_tracker.report import carbon

    sensors = tracker._sensors.sensors if tracker._sensors else []
    devices = [
        SimpleNamespace(component=s.info.component, name=s.info.name, device_id=s.info.device_id) for s in sensors
    ]
    items = carbon.embodied(tracker.config, devices, 3600.0, [])  # type: ignore[arg-type]
    return sum(item.amortised_g or 0.0 for item in items) / 3600.0
