"""Prometheus metrics of a :class:`~nn_tracker.serving.ServingTracker` (needs ``prometheus_client``).

A custom collector: every scrape reads the tracker's running totals (its sampler's last
readings; no sensor is read during a scrape), so nothing is updated on the request path.
Names and units follow the Prometheus conventions: base units in the name, ``_total`` on
counters (energy in joules, carbon in grams of CO2e, power in watts).

| metric | type | labels |
| --- | --- | --- |
| ``nn_tracker_run_info`` | info | ``run_id``, ``project``, ``unit`` |
| ``nn_tracker_it_energy_joules_total`` | counter | |
| ``nn_tracker_facility_energy_joules_total`` | counter | |
| ``nn_tracker_device_energy_joules_total`` | counter | ``device``, ``component``, ``method`` |
| ``nn_tracker_power_watts`` | gauge | |
| ``nn_tracker_device_power_watts`` | gauge | ``device``, ``component``, ``method`` |
| ``nn_tracker_operational_carbon_grams_total`` | counter | |
| ``nn_tracker_embodied_carbon_grams_total`` | counter | |
| ``nn_tracker_carbon_grams_total`` | counter | |
| ``nn_tracker_device_carbon_grams_total`` | counter | ``device``, ``component``, ``method`` |
| ``nn_tracker_units_total`` | counter | ``unit`` |
| ``nn_tracker_facility_energy_joules_per_unit`` | gauge | ``unit`` |
| ``nn_tracker_carbon_grams_per_unit`` | gauge | ``unit`` |

A figure nobody measured is left out, never exported as 0.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.report.document import IncompleteReport, Report

log = logging.getLogger("nn_tracker")

Families = Any  # Counter, Gauge or Info metric families: their add_metric differ (a value or labels)
DEVICE_LABELS = ("device", "component", "method")


class ServingCollector:
    """Exposes a serving tracker's figures at each scrape.

    Args:
        serving: The :class:`~nn_tracker.serving.ServingTracker`.
    """

    def __init__(self, serving: Any) -> None:
        self._serving = serving

    def describe(self) -> Iterator[Metric]:
        """The metric families (without samples), so a registry can refuse duplicates up front."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The current figures; nothing before the tracker starts, the final figures after it stops."""
        tracker = self._serving.tracker
        try:
            report = tracker.live_report()
        except Exception:  # not started yet, or a broken sensor: a scrape must never raise into the server
            log.debug("nn_tracker: no figures for this scrape", exc_info=True)
            return
        served = report.units.get(self._serving.unit) if isinstance(report, Report) else None
        yield from self._families(report, served.count if served else 0.0)

    def _families(self, report: Report | IncompleteReport | None = None, units: float = 0.0) -> Iterator[Metric]:
        families: dict[str, Families] = {
            "info": InfoMetricFamily(
                "nn_tracker_run", "The tracked service run.", labels=("run_id", "project", "unit")
            ),
            "it": CounterMetricFamily("nn_tracker_it_energy_joules", "IT energy of every measured device."),
            "facility": CounterMetricFamily(
                "nn_tracker_facility_energy_joules", "IT energy x PUE: what the facility drew."
            ),
            "device_energy": CounterMetricFamily(
                "nn_tracker_device_energy_joules", "IT energy of one device.", labels=DEVICE_LABELS
            ),
            "power": GaugeMetricFamily("nn_tracker_power_watts", "Power of every measured device at its last reading."),
            "device_power": GaugeMetricFamily(
                "nn_tracker_device_power_watts", "Power of one device at its last reading.", labels=DEVICE_LABELS
            ),
            "operational": CounterMetricFamily(
                "nn_tracker_operational_carbon_grams", "Operational carbon (facility energy x grid intensity), gCO2e."
            ),
            "embodied": CounterMetricFamily(
                "nn_tracker_embodied_carbon_grams", "Embodied carbon amortised over the run so far, gCO2e."
            ),
            "total": CounterMetricFamily("nn_tracker_carbon_grams", "Operational + amortised embodied carbon, gCO2e."),
            "device_carbon": CounterMetricFamily(
                "nn_tracker_device_carbon_grams",
                "Operational carbon of one device: each phase's energy at its own datacentre, gCO2e.",
                labels=DEVICE_LABELS,
            ),
            "served": CounterMetricFamily("nn_tracker_units", "Functional units served (count()).", labels=("unit",)),
            "energy_per_unit": GaugeMetricFamily(
                "nn_tracker_facility_energy_joules_per_unit",
                "Facility energy per unit since the start.",
                labels=("unit",),
            ),
            "carbon_per_unit": GaugeMetricFamily(
                "nn_tracker_carbon_grams_per_unit", "Total carbon per unit since the start, gCO2e.", labels=("unit",)
            ),
        }
        if isinstance(report, Report):
            self._fill(report, units, families)
        yield from families.values()
        yield from self._requests(report)

    def _requests(self, report: Report | IncompleteReport | None) -> Iterator[Metric]:
        """Energy per request: histograms of the settled requests and the idle energy (no sensor read)."""
        energy = HistogramMetricFamily(
            "nn_tracker_request_energy_joules", "Facility energy of each settled request (request()), J."
        )
        carbon = HistogramMetricFamily(
            "nn_tracker_request_carbon_grams", "Carbon of each settled request (operational + embodied share), gCO2e."
        )
        idle = CounterMetricFamily("nn_tracker_idle_energy_joules", "IT energy while no request was in flight.")
        ledger = self._serving._ledger
        if isinstance(report, Report) and ledger is not None:
            figures = self._serving._stats.histograms()
            for family, (bounds, counts, total) in ((energy, figures["energy"]), (carbon, figures["carbon"])):
                family.add_metric([], _cumulative(bounds, counts, figures["count"]), total)
            idle.add_metric([], ledger.idle_j)
        yield from (energy, carbon, idle)

    def _fill(self, report: Report, units: float, families: dict[str, Families]) -> None:
        unit = self._serving.unit
        footprint = report.footprint
        families["info"].add_metric([report.run_id, report.project_name, unit], {})
        it_kwh = report.energy_kwh
        facility_kwh = footprint.facility_energy_kwh
        families["it"].add_metric([], it_kwh * JOULES_PER_KWH)
        families["facility"].add_metric([], facility_kwh * JOULES_PER_KWH)
        operational_g = footprint.operational_carbon_g
        families["operational"].add_metric([], operational_g)
        if footprint.embodied_carbon_amortised_g is not None:
            families["embodied"].add_metric([], footprint.embodied_carbon_amortised_g)
        families["total"].add_metric([], footprint.total_carbon_g)
        power_w = None
        for device in report.devices:
            if device.energy_kwh is None:
                continue  # not measured: left out, not 0
            labels = [device.device_id, device.component, device.method]
            families["device_energy"].add_metric(labels, device.energy_kwh * JOULES_PER_KWH)
            if device.operational_carbon_g is not None:
                families["device_carbon"].add_metric(labels, device.operational_carbon_g)
            if device.last_power_w is not None:
                families["device_power"].add_metric(labels, device.last_power_w)
                power_w = (power_w or 0.0) + device.last_power_w
        if power_w is not None:
            families["power"].add_metric([], power_w)
        families["served"].add_metric([unit], units)
        if units > 0:
            families["energy_per_unit"].add_metric([unit], facility_kwh * JOULES_PER_KWH / units)
            families["carbon_per_unit"].add_metric([unit], footprint.total_carbon_g / units)


def _cumulative(bounds: tuple[float, ...], counts: list[int], total: int) -> list[tuple[str, float]]:
    """Prometheus buckets: ``(le, count of values <= le)``, ending with ``+Inf``."""
    buckets, running = [], 0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        buckets.append((repr(bound), running))
    return [*buckets, ("+Inf", total)]


MAX_CONNECTIONS = 16  # scrapes served at once; more are closed at once (a scraper holds one)
CONNECTION_TIMEOUT_S = 10.0  # an idle connection is closed after this


class MetricsServer(ThreadingHTTPServer):
    """``GET /metrics`` of one registry: at most :data:`MAX_CONNECTIONS` at once, none left after :meth:`close_all`.

    ``prometheus_client``'s own server keeps one thread per open connection, even after it is shut
    down, so idle clients could keep hundreds of threads alive; this one bounds them, times idle
    ones out, and closes every connection when the tracker stops.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], registry: Any) -> None:
        self.registry = registry
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: dict[socket.socket, float] = {}  # connection: when it must be done
        self._open_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _MetricsHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve on a thread of its own, or close at once when :data:`MAX_CONNECTIONS` are open."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        request.settimeout(CONNECTION_TIMEOUT_S)
        with self._open_lock:
            self._open[request] = time.monotonic() + CONNECTION_TIMEOUT_S
        super().process_request(request, client_address)

    def service_actions(self) -> None:
        """Between two polls: close connections open longer than :data:`CONNECTION_TIMEOUT_S` (a slow client)."""
        now = time.monotonic()
        with self._open_lock:
            late = [request for request, deadline in self._open.items() if deadline < now]
        for request in late:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer: nothing to report (the service's stderr is its own)."""
        log.debug("nn_tracker: a metrics connection failed", exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        """Close a connection and free its slot."""
        with self._open_lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Stop listening and close every open connection (their threads then end)."""
        self.server_close()
        with self._open_lock:
            requests = list(self._open)
        for request in requests:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """The metrics (any path, as ``prometheus_client`` serves them)."""
        body = generate_latest(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the service's logs are its own."""


class PrometheusExport:
    """The collector in a registry and, if asked, an HTTP endpoint: opened at start, closed at stop.

    Args:
        serving: The serving tracker.
        registry: The application's registry to register into (``prometheus_client.REGISTRY`` for the
            default one); ``None`` for none.
        port: Serve ``/metrics`` on this port (0: any free port); ``None`` for no endpoint.
        addr: The address to listen on.
    """

    def __init__(self, serving: Any, registry: Any, port: int | None, addr: str) -> None:
        self.collector = ServingCollector(serving)
        self.registry, self.port, self.addr = registry, port, addr
        self._registry = registry
        self._server: Any = None
        self._own_registry: CollectorRegistry | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the endpoint while it listens."""
        return self._server.server_address[:2] if self._server is not None else None

    def open(self) -> None:
        """Register the collector and start listening.

        Raises:
            ValueError: the registry already has these metrics (another tracker registered them).
            OSError: the port cannot be listened on.
        """
        if self._registry is not None:
            self._registry.register(self.collector)
        if self.port is None:
            return
        served = self._registry
        if served is None:
            served = self._own_registry = CollectorRegistry()
            served.register(self.collector)
        try:
            self._server = MetricsServer((self.addr, self.port), served)
        except OSError:
            self.close()
            raise
        threading.Thread(target=self._server.serve_forever, name="nn_tracker-prometheus", daemon=True).start()

    def close(self) -> None:
        """Stop listening and unregister (a later tracker may register the same names); idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_all()
            self._server = None
        for registry in (self._registry, self._own_registry):
            if registry is not None:
                with contextlib.suppress(KeyError):  # never registered: open() failed before
                    registry.unregister(self.collector)
        self._registry = self._own_registry = None
