"""Energy and carbon per request: the measured power shared among the requests in flight.

**Attribution rule.** At every moment, the power of the tracked devices is split among the requests
in flight in proportion to their weights (1 each by default; a server may weigh by tokens or batch
slots, and change a weight while its request runs). Power while no request is in flight is **idle
energy**, reported apart. So the requests' energy and the idle energy add up to the run's energy.

**How.** A *weight clock* ``G(t) = ∫ ds / W(s)`` (``W``: the weights in flight; idle time ``I(t)`` where
``W = 0``) advances at every request event, in O(1). Energy arrives from the sampler as pieces
(``start, end, joules``, each device's counter reading spread over the time it covers); once every
device has read past a time (the *horizon*), the power up to it is final and the *energy clock*
``F(t) = ∫ P(s) / W(s) ds`` is extended over it. A request of weight ``w`` from ``a`` to ``z`` then
gets ``w × (F(z) − F(a))``, idle time gets ``∫ P`` where ``W = 0``: exact sums, whatever the overlap.

**Provisional and settled.** When a request ends, its figures are computed at once: final up to the
horizon, the last power sample beyond it (no sensor read on the request's thread); before any power is
known (the first readings), they stay ``None``. When the horizon passes its end they are settled
against the counters (``settled``). Settled requests leave memory;
the distribution is kept in fixed logarithmic buckets.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any

from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import field, struct

log = logging.getLogger("nn_tracker")

EXACT_SUM_UP_TO = 64  # requests in flight whose weights are summed exactly at each event (more: kept running)
BUCKETS_PER_DECADE = 20  # percentiles within 12 % (one bucket: a factor 10^(1/20) = 1.122)
LOWEST = 1e-12  # smaller values (and 0) go to the first bucket


def check_weight(value: Any) -> float:
    """A request's weight: a finite number > 0.

    Raises:
        ValidationError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValidationError("weight", value, "must be a finite number > 0")
    return float(value)


def check_units(kind: str, n: Any) -> None:
    """A unit kind (a name, not ``request``, which counts the requests themselves) and its count (>= 0).

    Raises:
        ValidationError: either is wrong.
    """
    if not isinstance(kind, str) or not kind.strip() or kind == "request" or len(kind) > 100:
        raise ValidationError("unit", kind, "must be a name of at most 100 characters other than 'request'")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
        raise ValidationError(f"units.{kind}", n, "must be a finite number >= 0")


class Distribution:
    """Values in fixed logarithmic buckets: count, exact sum and mean, percentiles within one bucket."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self._buckets: dict[int, int] = {}

    def add(self, value: float) -> None:
        """Count one value."""
        self.count += 1
        self.total += value
        index = math.floor(math.log10(max(value, LOWEST)) * BUCKETS_PER_DECADE)
        self._buckets[index] = self._buckets.get(index, 0) + 1

    def quantile(self, q: float) -> float | None:
        """The value below which a share ``q`` of the values lie (a bucket's geometric middle)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return 10 ** ((index + 0.5) / BUCKETS_PER_DECADE)
        return None  # pragma: no cover - the loop always reaches the rank

    def summary(self) -> dict[str, float | None]:
        """Mean (exact), p50, p90 and p99 (within a bucket); ``None`` without values."""
        return {
            "mean": self.total / self.count if self.count else None,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
        }


@struct(eq=False)
class RequestEnergy:
    """One request: its figures are provisional when it ends and ``settled`` once the counters cover it.

    Attributes:
        weight: Its current share of the power among the requests in flight.
        units: Functional units it served (``tokens=...``), per kind.
        duration_s: Seconds in flight (``None`` while it runs).
        energy_j: IT energy attributed to it, J (``None`` while it runs).
        facility_energy_j: ``energy_j`` x the PUE.
        carbon_g: Operational carbon of ``facility_energy_j`` + its share of the embodied carbon.
        settled: Whether the figures come from the counters' readings (final), not from power samples.
    """

    weight: float
    units: dict[str, float] = field(default_factory=dict)
    duration_s: float | None = None
    energy_j: float | None = None
    facility_energy_j: float | None = None
    carbon_g: float | None = None
    settled: bool = False
    _points: list[tuple[float, float, float]] = field(default_factory=list, repr=False)  # (t, G(t), weight after)
    _final_f: list[float] = field(default_factory=list, repr=False)  # F at its first points, once final
    _ledger: RequestLedger | None = field(default=None, repr=False)
    _id: int = field(default=0, repr=False)

    def set_weight(self, weight: float) -> None:
        """Change its share from now on (e.g. the tokens it holds in the batch); after its end, nothing changes.

        Raises:
            ValidationError: a weight that is not a finite number > 0.
        """
        weight = check_weight(weight)
        ledger = self._ledger
        if ledger is None or self.duration_s is not None:  # not tracked, or over: nothing to share any more
            return
        ledger.reweigh(self, weight)

    def add_units(self, **units: float) -> None:
        """Count functional units it served (``tokens=128``)."""
        for kind, n in units.items():
            check_units(kind, n)
            self.units[kind] = self.units.get(kind, 0.0) + n


class RequestLedger:
    """The weight clock, the energy clock and the requests waiting to be settled (thread-safe).

    Args:
        now: The monotonic clock.
        pue: Facility energy / IT energy of the serving datacentre.
        carbon_g_per_facility_j: Operational carbon per joule drawn by the facility.
        embodied_g_per_s: Amortised embodied carbon per second (shared like power; idle keeps its share).
        on_settled: Called (under no lock of the caller's) with each request once settled.
    """

    def __init__(
        self,
        now: Callable[[], float],
        pue: float = 1.0,
        carbon_g_per_facility_j: float = 0.0,
        embodied_g_per_s: float = 0.0,
        on_settled: Callable[[RequestEnergy], None] | None = None,
    ) -> None:
        self._now = now
        self.pue = pue
        self.carbon_g_per_facility_j = carbon_g_per_facility_j
        self.embodied_g_per_s = embodied_g_per_s
        self._on_settled = on_settled
        self._lock = threading.RLock()  # a signal handler may end or make a request while one is entering
        self._ids = itertools.count(1)
        start = now()
        # weight clock: the state after the last event, and the events since the frontier (for look-ups)
        self._t, self._w, self._g, self._i = start, 0.0, 0.0, 0.0
        self._events: list[tuple[float, float, float, float]] = [(start, 0.0, 0.0, 0.0)]  # (t, G, I, W after)
        self._in_flight: dict[int, RequestEnergy] = {}
        # energy clock: final segments [b, e) with G, F and power; pieces not final yet
        self._frontier = start  # the energy up to here is final
        self._bounds: list[float] = []  # segment starts
        self._segments: list[tuple[float, float, float, float, float]] = []  # (end, G(start), G(end), F(start), W)
        self._f = 0.0  # F at the frontier
        self._pieces: list[list[float]] = []  # [start, end, joules] not yet final
        self._power_w = 0.0  # the last power sample, for provisional figures beyond the frontier
        self._waiting: list[tuple[float, int, RequestEnergy]] = []  # ended, by end time
        self.idle_j = 0.0
        self.idle_s = 0.0
        self.settled_j = 0.0
        self.settled_count = 0
        self.energy_j = 0.0  # every piece made final

    # ----- the request's thread ----------------------------------------------------------------------
    def begin(self, weight: float = 1.0, units: dict[str, float] | None = None) -> RequestEnergy:
        """A request enters now."""
        request = RequestEnergy(weight=check_weight(weight), units=dict(units or {}), _ledger=self)
        with self._lock:
            t = self._advance()
            request._id = next(self._ids)
            request._points.append((t, self._g, request.weight))
            self._in_flight[request._id] = request
            self._set_weight(self._w + request.weight)
        return request

    def reweigh(self, request: RequestEnergy, weight: float) -> None:
        """Change a request's weight from now on."""
        with self._lock:
            if request._id not in self._in_flight:
                return  # ended meanwhile (at stop): nothing to share any more
            t = self._advance()
            before, request.weight = request.weight, weight
            self._set_weight(self._w - before + weight)
            request._points.append((t, self._g, weight))

    def end(self, request: RequestEnergy) -> RequestEnergy:
        """The request leaves now: its provisional figures (settled later by the sampler's readings)."""
        with self._lock:
            if self._in_flight.pop(request._id, None) is None:
                raise ValidationError("request", "ended", "must be used once (it has ended already)")
            t = self._advance()
            request._points.append((t, self._g, 0.0))
            self._set_weight(self._w - request.weight)
            request.duration_s = t - request._points[0][0]
            if self._power_w > 0 or t <= self._frontier:  # else no power known yet: no figure, never a false 0
                self._figures(request, self._provisional_f)
            heapq.heappush(self._waiting, (t, request._id, request))
        return request

    def _advance(self) -> float:
        """Move the weight clock to now; return now."""
        t = max(self._now(), self._t)
        if self._w > 0:
            self._g += (t - self._t) / self._w
        else:
            self._i += t - self._t
        self._t = t
        return t

    def _set_weight(self, weight: float) -> None:
        if not self._in_flight:
            weight = 0.0  # nobody in flight: exactly idle, whatever the sums' rounding left
        elif len(self._in_flight) <= EXACT_SUM_UP_TO or weight <= 0:  # exactly (rounding may eat small weights)
            weight = math.fsum(r.weight for r in self._in_flight.values())
        self._w = weight
        self._events.append((self._t, self._g, self._i, self._w))

    # ----- the clocks --------------------------------------------------------------------------------
    def _clock_at(self, t: float) -> tuple[float, float]:
        """``(G(t), I(t))`` for any time since the frontier."""
        index = bisect.bisect_right(self._events, (t, math.inf)) - 1
        te, g, i, w = self._events[max(index, 0)]
        if t <= te:
            return g, i
        return (g + (t - te) / w, i) if w > 0 else (g, i + (t - te))

    def _final_f(self, t: float, g: float) -> float:
        """``F(t)`` for ``t`` up to the frontier (``g`` = ``G(t)``)."""
        index = bisect.bisect_right(self._bounds, t) - 1
        if index < 0:
            return self._segments[0][3] if self._segments else 0.0
        end, g0, g1, f0, power = self._segments[index]
        return f0 + power * ((g if t < end else g1) - g0)

    def _provisional_f(self, t: float, g: float) -> float:
        """``F(t)``, beyond the frontier from the last power sample."""
        if t <= self._frontier:
            return self._final_f(t, g)
        g_frontier = self._clock_at(self._frontier)[0]
        return self._f + self._power_w * (g - g_frontier)

    def _figures(self, request: RequestEnergy, f: Callable[[float, float], float]) -> None:
        known = request._final_f  # F of the points already final (their segments may be forgotten)
        values = [known[i] if i < len(known) else f(t, g) for i, (t, g, _) in enumerate(request._points)]
        energy = carbon_s = 0.0
        for ((_, g0, weight), (_, g1, _)), (f0, f1) in zip(
            itertools.pairwise(request._points), itertools.pairwise(values), strict=True
        ):
            energy += weight * (f1 - f0)
            carbon_s += weight * (g1 - g0)  # its share of the time, for the embodied carbon
        request.energy_j = energy
        request.facility_energy_j = energy * self.pue
        request.carbon_g = request.facility_energy_j * self.carbon_g_per_facility_j + carbon_s * self.embodied_g_per_s

    # ----- the sampler's thread ----------------------------------------------------------------------
    def add_energy(self, pieces: Iterable[tuple[float, float, float]], horizon_s: float, power_w: float) -> None:
        """Energy read (``start, end, joules`` per device), the time up to which every device has read, the power.

        Settles the requests that ended before the new frontier.
        """
        done: list[RequestEnergy] = []
        with self._lock:
            self._power_w = power_w if power_w > 0 else self._last_power_w()
            for start, end, joules in pieces:
                if not joules:
                    continue
                if end <= start:  # read with no time passed: it belongs to the time just before
                    start = min(start, self._frontier)
                after = joules * _share(start, end, self._frontier) if end > self._frontier else 0.0
                if joules - after:  # energy for a time already settled (a late reading): idle, never lost
                    self.idle_j += joules - after
                    self.energy_j += joules - after
                if after:
                    self._pieces.append([max(start, self._frontier), end, after])
            horizon = min(horizon_s, max(self._now(), self._t))
            if horizon > self._frontier:
                self._extend(horizon)
            while self._waiting and self._waiting[0][0] <= self._frontier:
                request = heapq.heappop(self._waiting)[2]
                self._figures(request, self._final_f)
                request.settled = True
                request._ledger = None
                self.settled_j += request.energy_j or 0.0
                self.settled_count += 1
                done.append(request)
            self._trim()
        if self._on_settled is not None:
            for request in done:
                try:
                    self._on_settled(request)
                except Exception:  # the statistics of one request; the others are still counted
                    log.exception("nn_tracker: a settled request could not be counted")

    def _last_power_w(self) -> float:
        """Without a power sample (sensors that give energy only): the power of the last final segment."""
        return self._segments[-1][4] if self._segments else 0.0

    def _extend(self, horizon: float) -> None:
        """Make the energy up to ``horizon`` final: elementary segments with their total power."""
        start = self._frontier
        cuts = {start, horizon}
        keep = []
        final = []
        for piece in self._pieces:
            b, e, joules = piece
            if b >= horizon:
                keep.append(piece)
                continue
            if e > horizon:  # straddles: the part before the horizon, by time, is final
                part = joules * (horizon - b) / (e - b)
                keep.append([horizon, e, joules - part])
                e, joules = horizon, part
            final.append((b, e, joules / (e - b)))
            cuts.update((b, e))
        self._pieces = keep
        changes: dict[float, float] = {}  # power steps: + at a piece's start, - at its end (a sweep, n log n)
        for b, e, power in final:
            changes[b] = changes.get(b, 0.0) + power
            changes[e] = changes.get(e, 0.0) - power
        edges = sorted(c for c in cuts if start <= c <= horizon)
        running = 0.0
        powers = []
        for b in edges[:-1]:
            running += changes.get(b, 0.0)
            powers.append(max(running, 0.0) if abs(running) > 1e-12 * (1 + abs(running)) else 0.0)
        for (b, e), power in zip(itertools.pairwise(edges), powers, strict=True):
            g0, i0 = self._clock_at(b)
            g1, i1 = self._clock_at(e)
            self._bounds.append(b)
            self._segments.append((e, g0, g1, self._f, power))
            self._f += power * (g1 - g0)
            self.idle_j += power * (i1 - i0)
            self.idle_s += i1 - i0
            self.energy_j += power * (e - b)
        self._frontier = horizon

    def _trim(self) -> None:
        """Forget what no request can need: segments before the oldest point not yet final, events before the frontier.

        A request's points that became final get their ``F`` kept with them, so a request in flight for hours
        does not keep the segments of those hours.
        """
        oldest = self._frontier
        for request in itertools.chain(self._in_flight.values(), (r for _, _, r in self._waiting)):
            points, known = request._points, request._final_f
            while len(known) < len(points) and points[len(known)][0] <= self._frontier:
                t, g, _ = points[len(known)]
                known.append(self._final_f(t, g))
            if len(known) < len(points):
                oldest = min(oldest, points[len(known)][0])
        cut = bisect.bisect_right(self._bounds, oldest) - 1
        if cut > 64:  # in batches: slicing is O(n)
            del self._bounds[:cut], self._segments[:cut]
        keep_from = bisect.bisect_right(self._events, (self._frontier, math.inf)) - 1
        if keep_from > 64:
            del self._events[:keep_from]

    def close(self, final_horizon_s: float) -> int:
        """At stop: end what is in flight, settle everything up to ``final_horizon_s``; return how many were open."""
        with self._lock:
            open_requests = list(self._in_flight.values())
            for request in open_requests:
                self.end(request)
            self._power_w = 0.0  # nothing is measured after the last reading
            horizon = max(final_horizon_s, self._t)
        self.add_energy((), horizon, 0.0)
        return len(open_requests)


def _share(start: float, end: float, frontier: float) -> float:
    """The share of a piece after the frontier, by time (an instant reading at or before it: none)."""
    if start >= frontier:
        return 1.0
    return max(0.0, (end - frontier) / (end - start)) if end > start else 0.0


# ----- what is kept of settled requests: bounded, whatever their number ------------------------------------------
ENERGY_BUCKETS_J = tuple(float(f"{m}e{e}") for e in range(-3, 5) for m in (1, 2.5, 5))  # 1 mJ to 50 kJ
CARBON_BUCKETS_G = tuple(float(f"{m}e{e}") for e in range(-7, 1) for m in (1, 2.5, 5))  # 0.1 µg to 5 g
METHOD = (
    "At every moment the measured power of the tracked devices is split among the requests in flight in "
    "proportion to their weights; power while none is in flight is idle energy. Figures are settled against "
    "the counters' readings. Carbon: the serving datacentre's intensity, and the embodied carbon shared the "
    "same way by time."
)


class _Window:
    """Settled requests over a span (the run, or a period): totals and distributions per unit kind."""

    def __init__(self) -> None:
        self.count = 0
        self.it_j = self.facility_j = self.carbon_g = 0.0
        self.kinds: dict[str, tuple[list[float], Distribution, Distribution]] = {}  # units, requests; J, g per unit

    def add(self, request: RequestEnergy) -> None:
        self.count += 1
        self.it_j += request.energy_j or 0.0
        self.facility_j += request.facility_energy_j or 0.0
        self.carbon_g += request.carbon_g or 0.0
        for kind, units in (("request", 1.0), *request.units.items()):
            if units <= 0:
                continue
            totals, energy, carbon = self.kinds.setdefault(kind, ([0.0, 0.0], Distribution(), Distribution()))
            totals[0] += units
            totals[1] += 1
            energy.add((request.facility_energy_j or 0.0) / units)
            carbon.add((request.carbon_g or 0.0) / units)

    def per_unit(self) -> dict[str, dict[str, Any]]:
        return {
            kind: {
                "units": totals[0],
                "requests": int(totals[1]),
                "facility_energy_j": energy.summary(),
                "carbon_g": carbon.summary(),
            }
            for kind, (totals, energy, carbon) in self.kinds.items()
        }


class RequestStats:
    """The settled requests of a run and of the current period, and the Prometheus histograms' buckets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.run = _Window()
        self.period = _Window()
        self.energy_buckets = [0] * (len(ENERGY_BUCKETS_J) + 1)  # the last: above every bound
        self.carbon_buckets = [0] * (len(CARBON_BUCKETS_G) + 1)

    def add(self, request: RequestEnergy) -> None:
        """Count a settled request (the ledger's ``on_settled``)."""
        with self._lock:
            self.run.add(request)
            self.period.add(request)
            self.energy_buckets[bisect.bisect_left(ENERGY_BUCKETS_J, request.facility_energy_j or 0.0)] += 1
            self.carbon_buckets[bisect.bisect_left(CARBON_BUCKETS_G, request.carbon_g or 0.0)] += 1

    def run_figures(self) -> tuple[int, float, float, float, dict[str, dict[str, Any]], list[tuple[float | None, int]]]:
        """The run's count, IT J, facility J, carbon g, per-unit figures and energy bins, consistently."""
        with self._lock:
            run = self.run
            return run.count, run.it_j, run.facility_j, run.carbon_g, run.per_unit(), self._bins()

    def take_period(self) -> dict[str, Any]:
        """The current period's requests (count, energy, per-unit distribution); a new period starts."""
        with self._lock:
            window, self.period = self.period, _Window()
        return {
            "count": window.count,
            "it_energy_kwh": window.it_j / 3.6e6,
            "facility_energy_kwh": window.facility_j / 3.6e6,
            "carbon_g": window.carbon_g,
            "per_unit": window.per_unit(),
        }

    def histograms(self) -> dict[str, Any]:
        """For Prometheus: per histogram its bounds, counts (not cumulative) and sum; and the count."""
        with self._lock:
            run = self.run
            return {
                "energy": (ENERGY_BUCKETS_J, self.energy_buckets[:-1], run.facility_j),
                "carbon": (CARBON_BUCKETS_G, self.carbon_buckets[:-1], run.carbon_g),
                "count": run.count,
            }

    def _bins(self) -> list[tuple[float | None, int]]:
        """The non-empty bins of facility energy: ``(upper bound J or None above the last, count)``."""
        bounds: list[float | None] = [*ENERGY_BUCKETS_J, None]
        return [(bound, count) for bound, count in zip(bounds, self.energy_buckets, strict=True) if count]
