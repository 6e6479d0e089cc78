"""The background sampler: one daemon thread reading every sensor each interval.

``while not stop: wait(interval); tick()``, one last tick on stop. Each tick reads the
cheap power samples of every sensor that has them, and the energy of the sensors whose
read is due (GPU counters once a second: a read costs milliseconds and the counter moves
only every 100 ms). The energy a read finds covers every tick since the previous read;
it is spread over those ticks in proportion to the power samples (by time where there
are none), so per-phase energy and the timeline follow the power's shape while the
totals stay the exact sum of the readings.

Phase switches from the tracked code only record a timestamped event (microseconds,
never an NVML call); the sampler splits its intervals at those times. A sensor that
raises is counted (with its first message) and the next successful read covers the
interval, so errors never reach the host program.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from nn_tracker.accounting.ledger import DeviceRecord
from nn_tracker.accounting.timeline import Timeline
from nn_tracker.core.clock import Clock
from nn_tracker.core.energy import is_plausible, trapezoid_j
from nn_tracker.core.structs import field, struct
from nn_tracker.sensors.base import Measurement, Sensor, SensorInfo

log = logging.getLogger("nn_tracker")


@struct
class DeviceTotals:
    """Running totals of one sensor."""

    info: SensorInfo
    energy_j: float = 0.0
    energy_by_phase_j: dict[str, float] = field(default_factory=dict)
    measured_s: float = 0.0
    gap_s: float = 0.0
    peak_power_w: float | None = None
    readings: int = 0
    errors: int = 0
    first_error: str = ""
    dropped_intervals: int = 0
    bridged_intervals: int = 0
    lost_at_s: float | None = None
    pending_s: float = 0.0  # time since the last successful energy read (covered by the next one)
    last_power_w: float | None = None
    last_energy_s: float = 0.0  # when energy was last read
    # (start_s, end_s, phase, weight) of the time since the last energy read; weight: power samples' J or None
    pending: list[tuple[float, float, str, float | None]] = field(default_factory=list)
    flushed: list[tuple[float, float, str, float]] = field(default_factory=list)  # energy for the timeline

    def record(self, started_s: float) -> DeviceRecord:
        """The device's figures so far as a ledger record (``started_s``: the session's start)."""
        info = self.info
        return DeviceRecord(
            device_id=info.device_id,
            component=info.component,
            name=info.name,
            method=info.method,
            model=info.model,
            details=dict(info.details),
            notes=tuple(info.notes),
            energy_j=self.energy_j,
            energy_by_phase_j=dict(self.energy_by_phase_j),
            measured_s=self.measured_s,
            gap_s=self.gap_s + self.pending_s,
            peak_power_w=self.peak_power_w,
            last_power_w=self.last_power_w,
            readings=self.readings,
            errors=self.errors,
            first_error=self.first_error,
            dropped_intervals=self.dropped_intervals,
            bridged_intervals=self.bridged_intervals,
            lost_at_s=None if self.lost_at_s is None else self.lost_at_s - started_s,
        )

    def record_error(self, exc: BaseException) -> None:
        """Count an error; keep and log the first message (later ones are only counted)."""
        self.errors += 1
        if not self.first_error:
            self.first_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "nn_tracker: reading %s failed (%s); further errors are counted in the report",
                self.info.device_id,
                self.first_error,
            )


class Sampler:
    """Reads sensors on a clock; thread-safe; never raises into the caller's code.

    Args:
        sensors: The sensors to read.
        clock: Monotonic clock (injectable).
        interval_s: Seconds between ticks.
        timeline_points: Maximum points of the downsampled timeline.
        on_tick: Called (outside the lock) after each background tick, e.g. for checkpoints.
        max_wake_s: Wake at least this often (checkpoints), even when every sensor is slower.
        energy_listener: Called (outside the lock) after each tick with the energy read in it
            (``start, end, joules`` pieces of every device), the time up to which every device has
            read, and the power at the last samples (energy per request, :mod:`nn_tracker.run.requests`).

    """

    def __init__(
        self,
        sensors: list[Sensor],
        clock: Clock,
        interval_s: float = 0.1,
        timeline_points: int = 2000,
        on_tick: Callable[[float], None] | None = None,
        max_wake_s: float | None = None,
        energy_listener: Callable[[list[tuple[float, float, float]], float, float], None] | None = None,
    ) -> None:
        self._sensors = list(sensors)
        self._clock = clock
        self._interval_s = interval_s
        self._on_tick = on_tick
        self._max_wake_s = max_wake_s
        self._energy_listener = energy_listener
        self._lock = threading.Lock()  # totals, timeline, phase times
        self._read_lock = threading.Lock()  # one reader of the sensors at a time
        self._events_lock = threading.Lock()
        self._events: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals: dict[str, DeviceTotals] = {s.info.device_id: DeviceTotals(s.info) for s in self._sensors}
        self.timeline = Timeline(timeline_points)
        self.phase = "training"
        self.phase_time_s: dict[str, float] = {}
        self.ticks = 0
        self.started_s: float | None = None
        self.last_tick_s: float | None = None
        self.tick_errors = 0
        self._wake_on_phase = any(s.phase_read_after_s is not None for s in self._sensors)

    @property
    def lock(self) -> threading.Lock:
        """Held while totals change; hold it to read a consistent snapshot."""
        return self._lock

    def start(self, background: bool = True) -> None:
        """Take every sensor's baseline; then start the thread if ``background``."""
        now = self._clock.monotonic()
        for sensor in list(self._sensors):
            totals = self.totals[sensor.info.device_id]
            try:
                sensor.start(now)
            except Exception as exc:  # noqa: BLE001 - a sensor that cannot start is dropped, not fatal
                totals.record_error(exc)
                totals.info.notes.append(f"Not measured: the sensor could not start ({totals.first_error}).")
                totals.lost_at_s = now
                self._sensors.remove(sensor)
                continue
            totals.last_energy_s = now
            if sensor.has_power:
                try:
                    totals.last_power_w = totals.peak_power_w = sensor.read_power(now)
                except Exception as exc:  # noqa: BLE001 - counted; the next sample starts the curve
                    totals.record_error(exc)
        self._wake_on_phase = any(s.phase_read_after_s is not None for s in self._sensors)
        self.started_s = self.last_tick_s = now
        if background:
            self._thread = threading.Thread(target=self._run, name="nn_tracker-sampler", daemon=True)
            self._thread.start()

    @property
    def wake_interval_s(self) -> float:
        """How often the thread wakes: the interval, or slower when every sensor is slower."""
        needs = [self._interval_s if s.has_power else max(self._interval_s, s.energy_interval_s) for s in self._sensors]
        wake_s = min(needs, default=self._interval_s)
        return wake_s if self._max_wake_s is None else min(wake_s, max(self._max_wake_s, self._interval_s))

    def _run(self) -> None:
        wake_s = self.wake_interval_s
        # Woken by phase switches at most this often: a burst of switches costs one tick, not one each.
        phase_gap_s = min((s.phase_read_after_s for s in self._sensors if s.phase_read_after_s is not None), default=0)
        while not self._stop.is_set():
            self._clock.wait(self._wake, wake_s)
            self._wake.clear()
            last_tick_s = self.last_tick_s if self.last_tick_s is not None else self._clock.monotonic()
            early_s = last_tick_s + max(phase_gap_s, 0.01) - self._clock.monotonic()
            if early_s > 0 and not self._stop.is_set():
                self._clock.wait(self._stop, early_s)
            if self._stop.is_set():
                break
            self.tick()
            if self._on_tick is not None:
                try:
                    self._on_tick(self._clock.monotonic())
                except Exception:
                    log.exception("nn_tracker: periodic task failed (tracking continues)")

    # ----- phases ------------------------------------------------------------------------------------
    def mark_phase(self, phase: str) -> None:
        """Record that ``phase`` starts now; costs microseconds (no sensor is read here)."""
        with self._events_lock:
            self._events.append((self._clock.monotonic(), phase))
        if self._wake_on_phase:
            self._wake.set()

    def switch_phase(self, phase: str) -> None:
        """Switch phase: recorded at once; without a background thread, read every sensor now."""
        self.mark_phase(phase)
        if self._thread is None:
            self.tick(force=True)

    def _take_events(self) -> list[tuple[float, str]]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    # ----- ticks -------------------------------------------------------------------------------------
    def tick(self, force: bool = False, wait_s: float | None = None) -> None:
        """Read what is due (every sensor with ``force``) and account the interval; never raises.

        ``wait_s``: wait at most this long for a read in progress on another thread (then skip this tick).
        """
        if not self._read_lock.acquire(timeout=-1 if wait_s is None else wait_s):
            self.tick_errors += 1
            log.warning("nn_tracker: a sensor read did not end within %.1f s; this reading is skipped", wait_s)
            return
        try:
            events = self._take_events()
            now = self._clock.monotonic()
            readings = self._read(now, force, bool(events))
            listener = self._energy_listener
            with self._lock:
                pieces = self._apply(now, events, readings)
                heard = self._heard(pieces, now) if listener is not None else None
            if listener is not None and heard is not None:
                listener(*heard)
        except Exception:
            self.tick_errors += 1
            log.exception("nn_tracker: sampling tick failed (tracking continues)")
        finally:
            self._read_lock.release()

    def _read(self, now: float, force: bool, phase_switched: bool) -> list[tuple[Sensor, Any, Any]]:
        """Read the sensors (outside the totals lock): (sensor, power sample, energy measurement or error)."""
        readings = []
        for sensor in self._sensors:
            if not sensor.active:
                continue
            power: float | Exception | None = None
            if sensor.has_power:
                try:
                    power = _plausible_power(sensor.read_power(now), sensor)
                except Exception as exc:  # noqa: BLE001
                    power = exc
            since_s = now - self.totals[sensor.info.device_id].last_energy_s
            due = force or since_s >= sensor.energy_interval_s
            if phase_switched and sensor.phase_read_after_s is not None:
                due = due or since_s >= sensor.phase_read_after_s
            measurement: Any = None
            if due:
                try:
                    measurement = sensor.read_energy(now)
                except Exception as exc:  # noqa: BLE001
                    measurement = exc
                else:
                    try:
                        _plausible_power(measurement.power_w, sensor)
                    except ValueError as exc:  # the energy stands; the power is dropped and counted
                        measurement, power = measurement._replace(power_w=None), exc
            readings.append((sensor, power, measurement))
        return readings

    def _heard(
        self, pieces: list[tuple[float, float, float]], now: float
    ) -> tuple[list[tuple[float, float, float]], float, float]:
        """What the energy listener gets: the pieces, the horizon and the power of the sensors still measuring."""
        measuring = [self.totals[s.info.device_id] for s in self._sensors if s.active]
        return pieces, self._horizon(now), sum(t.last_power_w or 0.0 for t in measuring)

    def _horizon(self, now: float) -> float:
        """The time up to which every sensor still measuring has read its energy.

        A sensor whose energy has not been read for ``MAX_READ_LAG_S`` (reads that keep failing) no longer
        holds it back: what it reads later for that time counts as idle energy per request, never lost.
        """
        read = [self.totals[s.info.device_id].last_energy_s for s in self._sensors if s.active]
        return min([t for t in read if now - t <= MAX_READ_LAG_S], default=now)

    def _apply(
        self, now: float, events: list[tuple[float, str]], readings: list[tuple[Sensor, Any, Any]]
    ) -> list[tuple[float, float, float]]:
        """Account a tick; return the energy read in it as ``(start, end, joules)`` pieces."""
        start = self.last_tick_s if self.last_tick_s is not None else now  # start() set it
        self.last_tick_s = now
        self.ticks += 1
        segments = self._segments(start, now, events)
        for seg_start, seg_end, phase in segments:
            self.phase_time_s[phase] = self.phase_time_s.get(phase, 0.0) + (seg_end - seg_start)
        read = {sensor.info.device_id for sensor, _, _ in readings}
        for sensor in self._sensors:
            if sensor.info.device_id not in read:  # lost before this tick: the rest of the run is a gap
                self.totals[sensor.info.device_id].gap_s += now - start
        power_j: dict[str, float] = {}
        peaks: dict[str, float] = {}
        for sensor, power, measurement in readings:
            totals = self.totals[sensor.info.device_id]
            if isinstance(power, Exception):
                totals.record_error(power)
                power = None
            previous = totals.last_power_w
            if power is not None:  # no sample (a failed read, or energy reads only): the last power holds
                totals.last_power_w = power
            for seg_start, seg_end, phase in segments:
                weight = None
                if power is not None:
                    p0 = previous if previous is not None else power
                    weight = _integral_j(start, now, p0, power, seg_start, seg_end)
                totals.pending.append((seg_start, seg_end, phase, weight))
            if len(totals.pending) > MAX_PENDING:  # a sensor that keeps failing: stay bounded, coarser
                totals.pending = _coarser(totals.pending)
            if power is not None:
                power_j[totals.info.device_id] = trapezoid_j(
                    previous if previous is not None else power, power, now - start
                )
                peaks[totals.info.device_id] = power
                if totals.peak_power_w is None or power > totals.peak_power_w:
                    totals.peak_power_w = power
            if not sensor.active:  # lost during this read: what was pending is a gap
                totals.lost_at_s = now
                totals.gap_s += now - totals.last_energy_s
                totals.pending.clear()
                totals.pending_s = 0.0
                continue
            totals.pending_s = now - totals.last_energy_s
            if isinstance(measurement, Exception):
                totals.record_error(measurement)
            elif measurement is not None:
                self._account(sensor, totals, now, measurement)
        if segments:
            phase_s: dict[str, float] = {}
            for seg_start, seg_end, phase in segments:
                root = phase.split("/", 1)[0]
                phase_s[root] = phase_s.get(root, 0.0) + (seg_end - seg_start)
            self.timeline.add_interval(start, now, power_j, peaks, phase_s)
        pieces = []
        for totals in self.totals.values():
            for seg_start, seg_end, phase, joules in totals.flushed:
                self.timeline.add_energy(totals.info.device_id, seg_start, seg_end, joules, phase)
                pieces.append((seg_start, seg_end, joules))
            totals.flushed.clear()
        return pieces

    def _segments(self, start: float, now: float, events: list[tuple[float, str]]) -> list[tuple[float, float, str]]:
        """The tick interval cut at phase switches: (start, end, phase) of non-zero length."""
        segments = []
        phase = self.phase
        for at, new_phase in events:
            at = min(max(at, start), now)
            if at > start:
                segments.append((start, at, phase))
                start = at
            phase = new_phase
        if now > start:
            segments.append((start, now, phase))
        self.phase = phase
        return segments

    def _account(self, sensor: Sensor, totals: DeviceTotals, now: float, measurement: Measurement) -> None:
        """Add an energy reading; spread it over the pending time by the power samples (else by time)."""
        covered_s = now - totals.last_energy_s
        totals.last_energy_s = now
        totals.pending_s = 0.0
        pending, totals.pending = totals.pending, []
        if measurement.power_w is not None and not sensor.has_power:
            totals.last_power_w = measurement.power_w
            if totals.peak_power_w is None or measurement.power_w > totals.peak_power_w:
                totals.peak_power_w = measurement.power_w
        energy = measurement.energy_j
        window_s = covered_s + sensor.counter_period_s  # a counter step can hold energy from before the interval
        if energy is None or not is_plausible(energy, window_s, sensor.max_power_w):
            totals.dropped_intervals += energy is not None
            totals.gap_s += covered_s
            return
        totals.bridged_intervals += measurement.bridged
        totals.readings += 1
        totals.measured_s += covered_s
        totals.energy_j += energy
        sampled = [w for *_, w in pending]
        weights = [w for w in sampled if w is not None]
        if len(weights) < len(sampled) or sum(weights) <= 0:
            weights = [end - begin for begin, end, _, _ in pending]
        total_weight = sum(weights)
        by_phase = totals.energy_by_phase_j
        if total_weight <= 0:  # no time passed since the last read: the energy belongs to the current phase
            by_phase[self.phase] = by_phase.get(self.phase, 0.0) + energy
            totals.flushed.append((now, now, self.phase, energy))
            return
        for (begin, end, phase, _), weight in zip(pending, weights, strict=True):
            joules = energy * weight / total_weight
            by_phase[phase] = by_phase.get(phase, 0.0) + joules
            totals.flushed.append((begin, end, phase, joules))

    # ----- results -----------------------------------------------------------------------------------
    def power_w(self) -> float:
        """Power of this process's devices at their last reading."""
        with self._lock:
            return sum(t.last_power_w or 0.0 for t in self.totals.values())

    def stop(self) -> None:
        """Stop the thread, take the last reading, close the sensors; safe to call twice."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(STOP_JOIN_S, self._interval_s * 2))
        self.tick(force=True, wait_s=STOP_JOIN_S)  # each read bounded by its sensor's deadline
        for sensor in self._sensors:
            try:
                sensor.close()
            except Exception:
                log.debug("sensor close failed", exc_info=True)
        self._sensors = []


MAX_READ_LAG_S = 10.0  # a sensor this far behind no longer holds back the energy per request
STOP_JOIN_S = 3.0  # how long stop() waits for the thread and a read in progress (reads have deadlines)
MAX_PENDING = 4096  # intervals kept per device between two energy reads (about 7 minutes at 10 Hz)


def _coarser(pending: list[tuple[float, float, str, float | None]]) -> list[tuple[float, float, str, float | None]]:
    """Merge neighbouring intervals pairwise (same phase first; if that is not enough, the longer one's phase)."""
    Pending = list[tuple[float, float, str, float | None]]

    def pairs(items: Pending, same_phase_only: bool) -> Pending:
        merged: Pending = []
        i = 0
        while i < len(items):
            a = items[i]
            if i + 1 < len(items) and (not same_phase_only or items[i + 1][2] == a[2]):
                b = items[i + 1]
                phase = a[2] if a[1] - a[0] >= b[1] - b[0] else b[2]
                merged.append((a[0], b[1], phase, None if a[3] is None or b[3] is None else a[3] + b[3]))
                i += 2
            else:
                merged.append(a)
                i += 1
        return merged

    merged = pairs(pending, same_phase_only=True)
    return merged if len(merged) <= MAX_PENDING * 3 // 4 else pairs(merged, same_phase_only=False)


def _plausible_power(power_w: float | None, sensor: Sensor) -> float | None:
    """A power sample, or an error (counted, the sample dropped) if it is NaN, infinite, negative or too high."""
    if power_w is not None and not 0.0 <= power_w <= sensor.max_power_w:  # NaN fails every comparison
        raise ValueError(f"implausible power sample ({power_w!r} W, at most {sensor.max_power_w:g} W): dropped")
    return power_w


def _integral_j(t0: float, t1: float, p0: float, p1: float, a: float, b: float) -> float:
    """Integral over ``[a, b]`` of the power that goes linearly from ``p0`` at ``t0`` to ``p1`` at ``t1``."""
    if t1 <= t0:
        return 0.0

    def power_at(t: float) -> float:
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0)

    return trapezoid_j(power_at(a), power_at(b), b - a)
