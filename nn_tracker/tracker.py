"""``Tracker``: start/stop, context manager, decorator, phases, functional units, crash-safe output.

A thin coordinator: sensors are discovered at :meth:`Tracker.start`, a
:class:`~nn_tracker.sampling.Sampler` reads them, and a report is built from its
totals and written atomically — periodically while running, and once at the end.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from nn_tracker import validation as check
from nn_tracker.clock import Clock, SystemClock
from nn_tracker.config import TrackerConfig, check_phase_name
from nn_tracker.errors import NNTrackerError, ValidationError
from nn_tracker.node import NodeLabels, hostname, node_id
from nn_tracker.report import writers
from nn_tracker.report.files import claim, remove_stale_temporaries
from nn_tracker.report.model import Report, RunState, build_report
from nn_tracker.run_state import add_units, unit_totals
from nn_tracker.sampling import DeviceTotals, Sampler
from nn_tracker.sensors import SensorOptions, SensorSet, discover_sensors

log = logging.getLogger("nn_tracker")
F = TypeVar("F", bound=Callable[..., Any])


class Tracker:
    """Measure a job's energy and carbon while it runs.

    Use as ``with Tracker(location="FR") as tracker: ...``, as ``start()``/``stop()``,
    or through :func:`track`. Keyword options are the fields of
    :class:`~nn_tracker.config.TrackerConfig`.

    Args:
        config: A ready configuration; keyword options override its fields.
        clock: Clock for durations (tests use :class:`~nn_tracker.clock.ManualClock`).
        background: Sample in a background thread; ``False`` samples only on :meth:`sample` calls.
        sensors: Use these sensors instead of discovering the machine's (simulations, tests).
        **options: Fields of :class:`TrackerConfig`.

    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        clock: Clock | None = None,
        background: bool = True,
        sensors: SensorSet | None = None,
        **options: Any,
    ) -> None:
        try:
            self.config = dataclasses.replace(config, **options) if config else TrackerConfig(**options)
        except TypeError as exc:
            from nn_tracker.config import closest

            known = {f.name for f in dataclasses.fields(TrackerConfig) if f.init}
            unknown = sorted(set(options) - known)
            if unknown:
                rule = "is not a TrackerConfig field" + closest(unknown[0], known)
                raise ValidationError(unknown[0], options[unknown[0]], rule) from None
            raise ValidationError("options", sorted(options), f"must be fields of TrackerConfig ({exc})") from None
        self._clock = clock or SystemClock()
        self._background = background
        self._given_sensors = sensors
        self._state_lock = threading.RLock()
        self._units: dict[str, dict[str, float]] = {}
        self._units_lock = threading.Lock()
        self._phase_stack: list[str] = []
        self._phase_names: set[str] = {self.config.default_phase}
        self._phase_overflow = False
        self._unit_kinds: set[str] = set()
        self._phase_lock = threading.Lock()
        self._sampler: Sampler | None = None
        self._sensors: SensorSet | None = None
        self._started_wall_s = 0.0
        self._started_s = 0.0
        self._last_checkpoint_s = 0.0
        self._owner_pid: int | None = None
        self._previous_sigterm: Any = None
        self._sigterm_installed = False
        self._sigterm_received = False  # set by the handler
        self._sigterm_wake = threading.Event()  # wakes the watcher thread: SIGTERM received, or the run is over
        self._kill_after_stop = False
        self._report: Report | None = None
        self._write_errors = 0
        self._pending_carry: list[tuple[dict[str, Any], bool]] = []
        self._carried_duration_s = 0.0
        self._carry_notes: list[str] = []
        self._related_runs: list[dict[str, Any]] = []
        self._node_id = node_id(self.config.proc_root)
        self._node_labels = NodeLabels(self._node_id, hostname())
        # time first (runs sort by start), then 96 random bits: no collision even for a cluster's simultaneous starts
        self.run_id = self.config.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(12).hex()
        self._stem = f"{self.config.project_name}-{self.run_id}"

    # ----- life cycle -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Started and not yet stopped (in this process)."""
        return self._sampler is not None and self._report is None and self._owner_pid == os.getpid()

    @property
    def report_path(self) -> Path:
        """Where the JSON report is written."""
        return Path(self.config.output_dir) / f"{self._stem}.json"

    def start(self) -> Tracker:
        """Discover sensors, start sampling, write a first checkpoint. Returns ``self``.

        Raises:
            NNTrackerError: the tracker was already started.

        """
        with self._state_lock:
            if self._sampler is not None:
                raise NNTrackerError("this Tracker was already started; create a new one for another run")
            config = self.config
            self._sensors = self._given_sensors or discover_sensors(SensorOptions.from_config(config), config.catalogue)
            self._sampler = Sampler(
                self._sensors.sensors,
                self._clock,
                config.interval_s,
                config.timeline_points,
                on_tick=self._on_tick,
                max_wake_s=config.checkpoint_interval_s,
            )
            self._sampler.phase = config.default_phase
            self._owner_pid = os.getpid()
            self._started_wall_s = self._clock.time()
            self._started_s = self._last_checkpoint_s = self._clock.monotonic()
            self._sampler.start(background=self._background)
            for state, parallel in self._pending_carry:
                self._apply_carry(state, parallel)
            self._pending_carry.clear()
            if any(c.default_location for c in config.resolved):
                log.warning(
                    "nn_tracker: no location given; using the world-average grid intensity. "
                    "Set location= (country, zone or cloud region) for a meaningful carbon figure."
                )
            self._install_sigterm()
            atexit.register(self._at_exit)
            self._claim_report()
        return self

    def _claim_report(self) -> None:
        """Write the first report under a name no other run has (``-2``... if the run id was reused)."""
        if not self.config.write_report:
            return
        folder = Path(self.config.output_dir)
        remove_stale_temporaries(folder)
        try:
            text = writers.render(self._build("running", None, final=False).to_dict(), "json")
            self._stem = claim(self.report_path, text).stem
        except (OSError, ValueError) as exc:
            self._write_errors += 1
            log.error("nn_tracker: cannot write %s (%s); tracking continues", self.report_path, exc)

    def stop(self, status: str = "completed", error: BaseException | None = None) -> Report:
        """Stop sampling, compute the footprint, write the final report; returns it. Idempotent."""
        with self._state_lock:
            if self._report is not None:
                return self._report
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self._owner_pid != os.getpid():  # a forked child: the run belongs to the parent
                return self._build("running", None, final=False)
            if self._sigterm_received and status == "completed":
                status, error = "terminated", error or _Terminated("SIGTERM received")
            self._sampler.stop()
            self._restore_sigterm()
            atexit.unregister(self._at_exit)
            try:
                report = self._build(status, error, final=True)
            except Exception as exc:
                log.exception("nn_tracker: building the final report failed; writing what is known")
                report = self._incomplete_report(status, error, exc)
            self._report = report
            if self._sensors is not None and self._given_sensors is None:
                self._sensors.close()
            self._write(report, final=True)
            return report

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.stop()
            return
        try:
            self.stop(status_for_exception(exc), exc)
        except Exception:  # the tracked code's exception wins: ours is only logged
            log.exception("nn_tracker: stopping failed; the tracked code's exception is raised unchanged")

    # ----- phases and units ------------------------------------------------------------------------------
    @property
    def current_phase(self) -> str:
        """The innermost phase path, e.g. ``training/validation``."""
        return self._phase_stack[-1] if self._phase_stack else self.config.default_phase

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[str]:
        """Attribute energy and time to ``name`` inside the block; nests as ``outer/name``.

        Energy is counted in the innermost phase ("exclusive") and, in the report,
        also in every enclosing phase ("inclusive").
        """
        check_phase_name(name)
        parent = self._phase_stack[-1] if self._phase_stack else None
        path = self._bounded_phase(f"{parent}/{name}" if parent else name, parent)
        self._switch(path, push=True)
        try:
            yield path
        finally:
            self._switch(path, push=False)

    def _bounded_phase(self, path: str, parent: str | None) -> str:
        """``path``, or ``<parent>/other`` once :data:`MAX_PHASES` distinct phases exist (costs stay bounded)."""
        if path in self._phase_names or len(self._phase_names) < MAX_PHASES:
            self._phase_names.add(path)
            return path
        if not self._phase_overflow:
            self._phase_overflow = True
            message = f"More than {MAX_PHASES:,} distinct phases: later new names are counted as '<parent>/other'."
            log.warning("nn_tracker: %s", message)
            self._carry_notes.append(message)
        other = f"{parent}/other" if parent else "other"
        self._phase_names.add(other)
        return other

    def _switch(self, path: str, push: bool) -> None:
        # Never waits for a sensor or a report: the sampler only records the switch's time.
        with self._phase_lock:
            if push:
                self._phase_stack.append(path)
            elif path in self._phase_stack:
                del self._phase_stack[self._phase_stack.index(path) :]
            if self._sampler is not None and self.running:
                self._sampler.switch_phase(self.current_phase)

    def add_units(self, count: float = 1, kind: str = "sample") -> None:
        """Count functional units (samples, queries, tokens...) in the current phase; cheap, thread-safe."""
        if isinstance(count, bool) or not isinstance(count, (int, float)):
            raise ValidationError("count", count, "must be a number")
        check.non_negative("count", count)
        check_phase_name(kind, "kind")
        phase = self.current_phase
        with self._units_lock:
            if kind not in self._unit_kinds:
                if len(self._unit_kinds) >= MAX_UNIT_KINDS:
                    kind = self._other_kind()
                self._unit_kinds.add(kind)
            per_phase = self._units.setdefault(phase, {})
            per_phase[kind] = per_phase.get(kind, 0) + count

    def _other_kind(self) -> str:
        if "other" not in self._unit_kinds:
            message = f"More than {MAX_UNIT_KINDS:,} kinds of units: later new kinds are counted as 'other'."
            log.warning("nn_tracker: %s", message)
            self._carry_notes.append(message)
        return "other"

    def sample(self) -> None:
        """Take one reading now (with ``background=False``, the only readings besides start and stop)."""
        if self.running:
            self._sampler.tick(force=True)
            self._on_tick(self._clock.monotonic())

    def report(self) -> Report:
        """A snapshot of the run so far (status ``running``), or the final report after stop."""
        with self._state_lock:
            if self._report is not None:
                return self._report
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self.running:
                self._sampler.tick(force=True)
            return self._build("running", None, final=False)

    @property
    def clock(self) -> Clock:
        """The clock durations are measured with."""
        return self._clock

    @property
    def background(self) -> bool:
        """Whether a background thread samples (else only :meth:`sample` does)."""
        return self._background

    def elapsed_s(self) -> float:
        """Seconds since :meth:`start` on the tracker's clock."""
        return self._clock.monotonic() - self._started_s

    def units(self) -> dict[str, float]:
        """Functional units counted so far, per kind, over all phases."""
        with self._units_lock:
            return unit_totals(self._units)

    def checkpoint(self) -> None:
        """Rewrite the JSON report now (status ``running``)."""
        with self._state_lock:
            if self.running:
                self._checkpoint(force=True)

    def add_note(self, text: str) -> None:
        """Add a caveat or fact to the report's notes."""
        self._carry_notes.append(str(text))

    def add_related_run(self, summary: dict[str, Any]) -> None:
        """List another run in the report (e.g. an earlier stage of the same trainer), with its totals."""
        self._related_runs.append(dict(summary))

    def live_report(self) -> dict[str, Any]:
        """The report so far as a dict, without the timeline: cheap enough for every logging step or scrape.

        With a background sampler nothing is read here: the figures are those of its last tick. After
        :meth:`stop`, the final report.
        """
        with self._state_lock:
            if self._report is not None:
                return self._report.to_dict()
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self.running and not self._background:
                self._sampler.tick()
            return self._build("running", None, final=False, timeline=False).to_dict()

    def live(self) -> dict[str, float | None]:
        """Cheap running totals for loggers: energy per component and total (kWh), power (W), carbon (g).

        With a background sampler nothing is read here: the figures are those of its last tick
        (counters are read once a second), so a logging step never waits for a sensor.
        """
        report = self.live_report()
        by_component = report["energy"]["by_component_kwh"]
        with self._sampler.lock:
            power = sum(t.last_power_w or 0.0 for t in self._sampler.totals.values() if t.node is None)
        return {
            "energy/gpu_kwh": by_component.get("gpu"),
            "energy/cpu_kwh": by_component.get("cpu"),
            "energy/ram_kwh": by_component.get("ram"),
            "energy/total_kwh": report["energy"]["it_kwh"],
            "energy/facility_kwh": report["footprint"]["training_energy_kwh"]
            + report["footprint"]["querying_energy_kwh"],
            "power/total_w": power,
            "carbon/operational_g": report["footprint"]["operational_carbon_g"],
            "carbon/total_g": report["footprint"]["total_carbon_g"],
        }

    # ----- resuming and merging -------------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """Cumulative totals as a JSON-ready dict: for checkpoints of a training job or merging ranks."""
        with self._state_lock:
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self.running:
                self._sampler.tick(force=True)
            with self._sampler.lock:
                devices = [t.to_state() for t in self._sampler.totals.values()]
                phase_time_s = dict(self._sampler.phase_time_s)
            with self._units_lock:
                units = {phase: dict(kinds) for phase, kinds in self._units.items()}
            return {
                "nn_tracker_state": STATE_VERSION,
                "node": self._node_id,
                "host": hostname(),
                "duration_s": self._clock.monotonic() - self._started_s + self._carried_duration_s,
                "phase_time_s": phase_time_s,
                "units": units,
                "devices": devices,
            }

    def carry_over(self, state: dict[str, Any], parallel: bool = False) -> None:
        """Add totals from :meth:`export_state` of another tracker.

        Args:
            state: The exported totals.
            parallel: ``False`` for an earlier session of this run (resume from a checkpoint: energy,
                time and units add up); ``True`` for another process running at the same time (a
                distributed rank: energy and units add up, time does not; devices of another node
                are keyed ``node/device``).

        Raises:
            ValidationError: ``state`` is not an nn_tracker state.
        """
        check_state(state)
        with self._state_lock:
            if self._report is not None:
                raise NNTrackerError("carry_over() must come before stop()")
            if self._sampler is None:
                self._pending_carry.append((state, parallel))
            else:
                self._apply_carry(state, parallel)

    def _apply_carry(self, state: dict[str, Any], parallel: bool) -> None:
        for device_state in state["devices"]:
            totals = DeviceTotals.from_state(device_state)
            key = totals.info.device_id
            if parallel:
                key = remote_device_key(totals, state, self._node_id, self._node_labels)
            self._sampler.carry(totals, key, parallel)
        if not parallel:
            self._sampler.carry_phase_time(state["phase_time_s"])
            self._carried_duration_s += state["duration_s"]
            self._carry_notes.append(f"Includes {state['duration_s']:.1f} s measured in earlier sessions (resumed).")
        with self._units_lock:
            add_units(self._units, state["units"])

    # ----- output ----------------------------------------------------------------------------------------
    def _build(self, status: str, error: BaseException | None, final: bool, timeline: bool = True) -> Report:
        now = self._clock.monotonic()
        with self._units_lock:
            units = {phase: dict(kinds) for phase, kinds in self._units.items()}
        notes = (list(self._sensors.notes) if self._sensors else []) + self._carry_notes
        if self._write_errors:
            notes.append(f"{self._write_errors} report writes failed (see the log); this report is from memory.")
        state = RunState(
            config=self.config,
            run_id=self.run_id,
            status=status,
            started_wall_s=self._started_wall_s,
            ended_wall_s=self._clock.time() if final else None,
            duration_s=now - self._started_s + self._carried_duration_s,
            units=units,
            notes=notes,
            cpu_model=self._sensors.cpu_model.model_name if self._sensors and self._sensors.cpu_model else None,
            error={"type": type(error).__name__, "message": str(error)} if error is not None else None,
            related_runs=list(self._related_runs),
            built_wall_s=self._clock.time(),
        )
        return build_report(state, self._sampler, timeline=timeline)

    def _incomplete_report(self, status: str, error: BaseException | None, failure: BaseException) -> Report:
        """The little that is known when the report cannot be built: never nothing, never a wrong figure."""
        from nn_tracker.report.model import SCHEMA_VERSION

        return Report(
            {
                "schema_version": SCHEMA_VERSION,
                "run_id": self.run_id,
                "project_name": self.config.project_name,
                "status": status,
                "incomplete": True,
                "duration_s": self._clock.monotonic() - self._started_s + self._carried_duration_s,
                "error": {"type": type(error).__name__, "message": str(error)} if error is not None else None,
                "notes": [f"The report could not be built ({type(failure).__name__}: {failure}); no figures given."],
            }
        )

    def _write(self, report: Report, final: bool = False) -> None:
        """Write the JSON report (checkpoints and final), and at the end every other configured format."""
        if not self.config.write_report or self._owner_pid != os.getpid():
            return
        formats = ["json", *(f for f in self.config.formats if f != "json")] if final else ["json"]
        if report.data.get("incomplete"):
            formats = ["json"]  # the other formats need the figures it lacks
        paths = []
        for fmt in formats:
            path = writers.default_path(self.config.output_dir, self._stem, fmt)
            try:
                paths.append(str(writers.write(report.to_dict(), fmt, path)))
            except (OSError, ValueError) as exc:
                self._write_errors += 1
                if self._write_errors == 1:
                    log.error(
                        "nn_tracker: cannot write %s (%s); tracking continues and the report stays in memory",
                        path,
                        exc,
                    )
            except Exception:  # a bug in a writer must not reach the tracked program
                log.exception(
                    "nn_tracker: writing %s failed (a bug: please report it); the other files are written", path
                )
        report.paths = paths

    def _checkpoint(self, force: bool = False) -> None:
        if (self.config.checkpoint_interval_s is None and not force) or not self.config.write_report:
            return
        try:
            self._sampler.tick(force=True)  # a checkpoint is as current as the sensors allow
            self._write(self._build("running", None, final=False))
        except Exception:
            log.exception("nn_tracker: checkpoint failed (tracking continues)")

    def _on_tick(self, now_s: float) -> None:
        interval = self.config.checkpoint_interval_s
        if interval is not None and now_s - self._last_checkpoint_s >= interval:
            self._last_checkpoint_s = now_s
            with self._state_lock:
                if self._report is None:
                    self._checkpoint()

    # ----- signals and exit ------------------------------------------------------------------------------
    def _install_sigterm(self) -> None:
        if not self.config.handle_sigterm or threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except (ValueError, OSError):  # not the main interpreter, or signals unavailable
            return
        self._sigterm_installed = True
        threading.Thread(target=self._watch_sigterm, name="nn_tracker-sigterm", daemon=True).start()

    def _restore_sigterm(self) -> None:
        """Put the previous handler back (main thread only; the handler does it itself when it runs)."""
        if not self._sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        self._sigterm_installed = False
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        self._sigterm_wake.set()  # ends the watcher (the run is over)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """Record the request; never stop here.

        The handler runs in the main thread between two steps of whatever it was doing, possibly
        inside ``add_units``, a phase switch or ``live()`` with one of the tracker's locks held:
        stopping here could wait for that lock forever. The watcher thread stops the run instead.
        """
        previous = self._previous_sigterm
        self._sigterm_installed = False
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        self._kill_after_stop = previous in (None, signal.SIG_DFL)
        self._sigterm_received = True
        self._sigterm_wake.set()
        if callable(previous):
            previous(signum, frame)

    def _watch_sigterm(self) -> None:
        """Stop the run when SIGTERM was received, then end as the process would have without us."""
        self._sigterm_wake.wait()
        if not self._sigterm_received:
            return  # the run ended normally
        try:
            self.stop("terminated", _Terminated("SIGTERM received"))
        except Exception:
            log.exception("nn_tracker: final report on SIGTERM failed")
        if self._kill_after_stop:
            os.kill(os.getpid(), signal.SIGTERM)  # the default handler is back: the process ends by SIGTERM

    def _at_exit(self) -> None:
        """Stop a tracker still running when the interpreter exits.

        When an uncaught exception ends the program (Python sets ``sys.last_value`` before the
        exit handlers run), the report says so: ``failed``, or ``terminated`` for Ctrl-C.
        """
        if self.running:
            uncaught = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
            if isinstance(uncaught, BaseException):
                self.stop(status_for_exception(uncaught), uncaught)
            else:
                self.stop("completed")


STATE_VERSION = 1
MAX_PHASES = 10_000  # distinct phase paths per run; beyond, '<parent>/other'
MAX_UNIT_KINDS = 1_000  # distinct kinds of functional units per run; beyond, 'other'


def remote_device_key(totals: DeviceTotals, state: dict[str, Any], own_node: str, labels: NodeLabels) -> str:
    """Key of a device measured by another process: ``host/device`` when on another node.

    Nodes are told apart by their identity (``state["node"]``); the host name only labels them.
    """
    if state["node"] == own_node or totals.node:
        return totals.info.device_id
    totals.node = labels.label(state["node"], state.get("host"))
    return f"{totals.node}/{totals.info.device_id}"


def check_state(state: Any) -> None:
    """Raise a one-line error unless ``state`` comes from :meth:`Tracker.export_state`."""
    keys = {"nn_tracker_state", "node", "duration_s", "phase_time_s", "units", "devices"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise ValidationError("state", type(state).__name__, "must be a dict from Tracker.export_state()")
    if state["nn_tracker_state"] != STATE_VERSION:
        raise ValidationError("state.nn_tracker_state", state["nn_tracker_state"], f"must be {STATE_VERSION}")
    check.non_negative("state.duration_s", state["duration_s"])
    for name in ("phase_time_s", "units"):
        if not isinstance(state[name], dict):
            raise ValidationError(f"state.{name}", type(state[name]).__name__, "must be a mapping")
    for phase, seconds in state["phase_time_s"].items():
        check.non_negative(f"state.phase_time_s.{phase}", seconds)
    for phase, kinds in state["units"].items():
        if not isinstance(kinds, dict):
            raise ValidationError(f"state.units.{phase}", type(kinds).__name__, "must be a mapping")
        for kind, count in kinds.items():
            check.non_negative(f"state.units.{phase}.{kind}", count)
    if not isinstance(state["devices"], list):
        raise ValidationError("state.devices", type(state["devices"]).__name__, "must be a list")
    for i, device in enumerate(state["devices"]):
        try:
            totals = DeviceTotals.from_state(device)
            check.non_negative(f"state.devices[{i}].energy_j", totals.energy_j)
            for phase, joules in totals.energy_by_phase_j.items():
                check.non_negative(f"state.devices[{i}].energy_by_phase_j.{phase}", joules)
        except (KeyError, TypeError, AttributeError) as exc:
            rule = f"must be a device's totals ({exc})"
            raise ValidationError(f"state.devices[{i}]", type(exc).__name__, rule) from None


class _Terminated(Exception):
    """Stands for the signal in the report's ``error`` field."""


def status_for_exception(exc: BaseException | None) -> str:
    """The report status an exception leaving the tracked code means."""
    if exc is None:
        return "completed"
    if isinstance(exc, KeyboardInterrupt):
        return "terminated"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "completed"
    return "failed"


def track(func: F | None = None, /, **options: Any) -> Any:
    """Decorator: run each call of the function under a fresh :class:`Tracker`.

    ``@track`` or ``@track(location="FR", project_name="train")``. The report of
    the last call is at ``wrapper.last_report``.
    """
    TrackerConfig(**options)  # validate now, not at the first call

    def decorate(inner: F) -> F:
        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracker = Tracker(**options)
            try:
                with tracker:
                    return inner(*args, **kwargs)
            finally:
                wrapper.last_report = tracker._report  # type: ignore[attr-defined]

        wrapper.last_report = None  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate
