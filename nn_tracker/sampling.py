"""The background sampler: one daemon thread reading every sensor each interval.

``while not stop.wait(interval): tick()``, one last tick on stop. A sensor that
raises is counted (with its first message) and the next successful read covers
the interval, so errors never reach the host program. Totals are exact running
sums; the timeline is bounded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nn_tracker.clock import Clock
from nn_tracker.energy import is_plausible
from nn_tracker.sensors.base import Sensor, SensorInfo
from nn_tracker.timeline import Timeline

log = logging.getLogger("nn_tracker")


@dataclass
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
    lost_at_s: float | None = None
    pending_s: float = 0.0  # time since the last successful read (covered by the next one)
    node: str | None = None  # host that measured it, when carried over from another process
    last_power_w: float | None = None

    _STATE_FIELDS = (
        "energy_j",
        "measured_s",
        "gap_s",
        "peak_power_w",
        "readings",
        "errors",
        "first_error",
        "dropped_intervals",
    )

    def to_state(self) -> dict[str, Any]:
        """JSON-ready totals, to resume a run or to merge the ranks of a distributed job."""
        info = self.info
        state = {name: getattr(self, name) for name in self._STATE_FIELDS}
        state["gap_s"] += self.pending_s
        state.update(
            energy_by_phase_j=dict(self.energy_by_phase_j),
            node=self.node,
            info={
                "device_id": info.device_id,
                "component": info.component,
                "name": info.name,
                "method": info.method,
                "model": info.model,
                "details": dict(info.details),
                "notes": list(info.notes),
            },
        )
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeviceTotals:
        """Inverse of :meth:`to_state`."""
        totals = cls(SensorInfo(**state["info"]))
        for name in cls._STATE_FIELDS:
            setattr(totals, name, state[name])
        totals.energy_by_phase_j = dict(state["energy_by_phase_j"])
        totals.node = state.get("node")
        return totals

    def absorb(self, other: DeviceTotals) -> None:
        """Add another session's totals of the same device."""
        self.energy_j += other.energy_j
        self.measured_s += other.measured_s
        self.gap_s += other.gap_s
        self.readings += other.readings
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.dropped_intervals += other.dropped_intervals
        if other.peak_power_w is not None:
            self.peak_power_w = max(self.peak_power_w or 0.0, other.peak_power_w)
        for phase, joules in other.energy_by_phase_j.items():
            self.energy_by_phase_j[phase] = self.energy_by_phase_j.get(phase, 0.0) + joules

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

    """

    def __init__(
        self,
        sensors: list[Sensor],
        clock: Clock,
        interval_s: float = 0.1,
        timeline_points: int = 2000,
        on_tick: Callable[[float], None] | None = None,
        max_wake_s: float | None = None,
    ) -> None:
        self._sensors = list(sensors)
        self._clock = clock
        self._interval_s = interval_s
        self._on_tick = on_tick
        self._max_wake_s = max_wake_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals: dict[str, DeviceTotals] = {s.info.device_id: DeviceTotals(s.info) for s in self._sensors}
        self.timeline = Timeline(timeline_points)
        self.phase = "training"
        self.phase_time_s: dict[str, float] = {}
        self.ticks = 0
        self.started_s: float | None = None
        self.last_tick_s: float | None = None
        self.tick_errors = 0
        self._timeline_from_s = 0.0

    @property
    def lock(self) -> threading.Lock:
        """Held while totals change; hold it to read a consistent snapshot."""
        return self._lock

    def start(self, background: bool = True) -> None:
        """Take every sensor's baseline; then start the thread if ``background``."""
        now = self._clock.monotonic()
        for sensor in list(self._sensors):
            try:
                sensor.start(now)
            except Exception as exc:  # noqa: BLE001 - a sensor that cannot start is dropped, not fatal
                totals = self.totals[sensor.info.device_id]
                totals.record_error(exc)
                totals.info.notes.append(f"Sensor could not start ({totals.first_error}); not measured.")
                totals.lost_at_s = now
                self._sensors.remove(sensor)
        self.started_s = self.last_tick_s = self._timeline_from_s = now
        if background:
            self._thread = threading.Thread(target=self._run, name="nn_tracker-sampler", daemon=True)
            self._thread.start()

    @property
    def wake_interval_s(self) -> float:
        """How often the thread wakes: the interval, or slower when every sensor is slower."""
        slowest_needed = min((s.min_interval_s for s in self._sensors), default=self._interval_s)
        wake_s = max(self._interval_s, slowest_needed)
        return wake_s if self._max_wake_s is None else min(wake_s, max(self._max_wake_s, self._interval_s))

    def _run(self) -> None:
        wake_s = self.wake_interval_s
        while not self._clock.wait(self._stop, wake_s):
            self.tick()
            if self._on_tick is not None:
                try:
                    self._on_tick(self._clock.monotonic())
                except Exception:
                    log.exception("nn_tracker: periodic task failed (tracking continues)")

    def tick(self, force: bool = False) -> None:
        """Read the sensors that are due (all with ``force``) and account the interval; never raises."""
        try:
            with self._lock:
                self._tick_locked(force)
        except Exception:
            self.tick_errors += 1
            log.exception("nn_tracker: sampling tick failed (tracking continues)")

    def _tick_locked(self, force: bool) -> None:
        now = self._clock.monotonic()
        interval_s = now - self.last_tick_s
        self.last_tick_s = now
        self.ticks += 1
        self.phase_time_s[self.phase] = self.phase_time_s.get(self.phase, 0.0) + interval_s
        energies: dict[str, float] = {}
        powers: dict[str, float] = {}
        for sensor in self._sensors:
            totals = self.totals[sensor.info.device_id]
            if not sensor.active:
                totals.gap_s += interval_s
                continue
            totals.pending_s += interval_s
            if not force and totals.pending_s < sensor.min_interval_s:
                continue
            try:
                measurement = sensor.read(now)
            except Exception as exc:  # noqa: BLE001
                totals.record_error(exc)
                continue
            if not sensor.active:  # lost during this read
                totals.lost_at_s = now
                totals.gap_s += totals.pending_s
                totals.pending_s = 0.0
                continue
            covered_s, totals.pending_s = totals.pending_s, 0.0
            if measurement.power_w is not None:
                totals.last_power_w = measurement.power_w
                powers[totals.info.device_id] = measurement.power_w
                if totals.peak_power_w is None or measurement.power_w > totals.peak_power_w:
                    totals.peak_power_w = measurement.power_w
            energy = measurement.energy_j
            if energy is None or not is_plausible(energy, covered_s, sensor.max_power_w):
                totals.dropped_intervals += energy is not None
                totals.gap_s += covered_s
                continue
            totals.readings += 1
            totals.measured_s += covered_s
            totals.energy_j += energy
            totals.energy_by_phase_j[self.phase] = totals.energy_by_phase_j.get(self.phase, 0.0) + energy
            energies[totals.info.device_id] = energy
        if energies or powers:
            self.timeline.add(self._timeline_from_s, now, energies, powers, phase=self.phase)
            self._timeline_from_s = now

    def carry(self, totals: DeviceTotals, key: str) -> None:
        """Add totals measured elsewhere (an earlier session, another rank) under ``key``."""
        with self._lock:
            existing = self.totals.get(key)
            if existing is None:
                totals.info.device_id = key
                self.totals[key] = totals
            else:
                existing.absorb(totals)

    def carry_phase_time(self, phase_time_s: dict[str, float]) -> None:
        """Add the phase durations of an earlier session."""
        with self._lock:
            for phase, seconds in phase_time_s.items():
                self.phase_time_s[phase] = self.phase_time_s.get(phase, 0.0) + seconds

    def switch_phase(self, phase: str) -> None:
        """Account the time so far to the current phase, then switch."""
        with self._lock:
            try:
                self._tick_locked(force=True)
            except Exception:
                self.tick_errors += 1
                log.exception("nn_tracker: sampling tick failed (tracking continues)")
            self.phase = phase

    def stop(self) -> None:
        """Stop the thread, take the last reading, close the sensors; safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self._interval_s * 2))
        self.tick(force=True)
        for sensor in self._sensors:
            try:
                sensor.close()
            except Exception:
                log.debug("sensor close failed", exc_info=True)
        self._sensors = []
