"""``Tracker``: start/stop, context manager, decorator, phases, functional units, crash-safe output.

A thin coordinator: sensors are discovered at :meth:`Tracker.start`, a
:class:`~nn_tracker.sensors.sampling.Sampler` reads them, and a report is built from its
totals and written atomically — periodically while running, and once at the end.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nn_tracker.accounting.ledger import Ledger, Record, node_pseudonym
from nn_tracker.config import TrackerConfig, make_config
from nn_tracker.core.clock import Clock, SystemClock
from nn_tracker.core.errors import NNTrackerError, describe, without_folders
from nn_tracker.core.node import hostname, node_id
from nn_tracker.report.live import live_figures
from nn_tracker.report.output import ReportFiles
from nn_tracker.run.endings import ExitGuard, SigtermGuard, stop_as_block_ends
from nn_tracker.run.phases import PhaseBook
from nn_tracker.sensors import SensorOptions, SensorSet, discover_sensors
from nn_tracker.sensors.sampling import Sampler

if TYPE_CHECKING:  # the report's types are imported when the first report is built, not with nn_tracker
    from nn_tracker.report.document import IncompleteReport, RelatedRun, Report
    from nn_tracker.report.model import RunState

log = logging.getLogger("nn_tracker")
STOP_WAIT_S = 15.0  # the longest report() waits for a stop in progress on another thread (reads have deadlines)
F = TypeVar("F", bound=Callable[..., Any])


class Tracker:
    """Measure a job's energy and carbon while it runs.

    Use as ``with Tracker(location="FR") as tracker: ...``, as ``start()``/``stop()``,
    or through :func:`track`. Keyword options are the fields of
    :class:`~nn_tracker.config.TrackerConfig`.

    Args:
        config: A ready configuration; keyword options override its fields.
        clock: Clock for durations (tests use :class:`~nn_tracker.core.clock.ManualClock`).
        background: Sample in a background thread; ``False`` samples only on :meth:`sample` calls.
        sensors: Use these sensors instead of discovering the machine's (simulations, tests).
        session: The session this tracker measures in (:class:`~nn_tracker.distributed.DistributedTracker`
            gives every rank rank 0's); a new one by default.
        rank: This process's rank in the session (0 outside distributed runs).
        **options: Fields of :class:`TrackerConfig`.

    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        *,
        clock: Clock | None = None,
        background: bool = True,
        sensors: SensorSet | None = None,
        session: str | None = None,
        rank: int = 0,
        **options: Any,
    ) -> None:
        self.config = make_config(config, options)
        self._clock = clock or SystemClock()
        self._background = background
        self._given_sensors = sensors
        self._state_lock = threading.RLock()
        self._stop_lock = threading.RLock()  # one stop at a time; a second caller gets the first one's report
        self._stopping_thread: int | None = None  # the thread in stop(): a signal handler there must not wait
        self._phases = PhaseBook(self.config.default_phase, self._on_switch)
        self._sampler: Sampler | None = None
        self._sensors: SensorSet | None = None
        self._started_wall_s = 0.0
        self._started_s = 0.0
        self._ended_s: float | None = None  # when sampling ended (monotonic)
        self._stopping = False  # sampling is ending
        self._at_exit = False  # stopped because the program ends with the run going on
        self._exit_status: tuple[str, BaseException] | None = None  # see end_at_exit_as
        self._last_checkpoint_s = 0.0
        self._owner_pid: int | None = None
        self._sigterm = SigtermGuard(lambda: self.stop("terminated", _Terminated("SIGTERM received")))
        self._exit = ExitGuard(self._stop_at_exit)
        self._report: Report | IncompleteReport | None = None
        self._notes: list[str] = []
        self._related_runs: list[RelatedRun] = []
        self._node = node_pseudonym(node_id(self.config.proc_root))
        self._process = os.urandom(12).hex()  # this tracker's key in the run's ledger, with its session
        self._session = session or self._process
        self._rank = rank
        self._carried = Ledger()  # earlier sessions (resume) and other processes (distributed)
        self._energy_listener: Any = None  # energy per request (ServingTracker): the sampler's pieces,
        self._requests_section: Any = None  # the report's requests section,
        self._sampling_ended: Any = None  # called once the last reading is taken, before the final report
        self._final_report: Any = None  # called with the final report, however the run stopped (SIGTERM, exit)
        # time first (runs sort by start), then 96 random bits: no collision even for a cluster's simultaneous starts
        self.run_id = self.config.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(12).hex()
        self._files = ReportFiles(
            self.config.output_dir, f"{self.config.project_name}-{self.run_id}", self.config.formats
        )

    # ----- life cycle -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Started and still sampling (in this process)."""
        return (
            self._sampler is not None
            and self._report is None
            and self._ended_s is None
            and self._owner_pid == os.getpid()
        )

    @property
    def report_path(self) -> Path:
        """Where the JSON report is written."""
        return self._files.json_path

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
                energy_listener=self._energy_listener,
            )
            self._sampler.phase = config.default_phase
            self._owner_pid = os.getpid()
            self._started_wall_s = self._clock.time()
            self._started_s = self._last_checkpoint_s = self._clock.monotonic()
            self._sampler.start(background=self._background)
            if any(c.default_location for c in config.resolved):
                log.warning(
                    "nn_tracker: no location given; using the world-average grid intensity. "
                    "Set location= (country, zone or cloud region) for a meaningful carbon figure."
                )
            if config.handle_sigterm:
                self._sigterm.install()
            self._exit.install()
            if config.write_report:
                self._files.claim(self._build("running", None, final=False))
        return self

    def stop(self, status: str = "completed", error: BaseException | None = None) -> Report | IncompleteReport:
        """Stop sampling, compute the footprint, write the final report; returns it. Idempotent.

        The report is returned (and seen by other threads) only once its files are written.
        """
        with self._stop_lock:
            if self._stopping_thread == threading.get_ident():  # re-entered (a signal handler): never wait on us
                return self._build("running", None, final=False, timeline=False)
            self._stopping_thread = threading.get_ident()
            try:
                return self._stop(status, error)
            finally:
                self._stopping_thread = None

    def _stop(self, status: str, error: BaseException | None) -> Report | IncompleteReport:
        """:meth:`stop`, under the stop lock."""
        with self._state_lock:
            if self._report is not None:
                return self._report
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self._owner_pid != os.getpid():  # a forked child: the run belongs to the parent
                return self._build("running", None, final=False)
        self.end_sampling()  # joins the sampler's thread: never under the state lock its checkpoints take
        self._sigterm.restore()
        self._exit.restore()
        _call_safely(self._sampling_ended)
        with self._state_lock:
            status, error = self._sigterm_status(status, error)
            if status == "completed":
                error = None  # e.g. sys.exit(0): a completed run has no error
            report = self._build(status, error, final=True)
            if self._sensors is not None and self._given_sensors is None:
                self._sensors.close()
            self._write(report, final=True)
            self._report = report
        _call_safely(self._final_report, report)
        return report

    def _sigterm_status(self, status: str, error: BaseException | None) -> tuple[str, BaseException | None]:
        """The status once SIGTERM came: ``terminated`` unless the program handled it and the run ended in code."""
        if not self._sigterm.received:
            return status, error
        if self._sigterm.handled_by_program and not self._at_exit and not isinstance(error, SystemExit):
            self.add_note("SIGTERM came during the run; the program's own handler took it and the run went on.")
            return status, error
        if status in ("completed", "failed"):
            return "terminated", _Terminated("SIGTERM received")
        return status, error

    def end_sampling(self) -> None:
        """Take the last reading and stop sampling (the report is built by :meth:`stop`); idempotent."""
        with self._state_lock:
            if self._sampler is None or self._ended_s is not None or self._stopping:
                return
            self._stopping = True  # no checkpoint from now on
        try:
            self._sampler.stop()
        except BaseException:  # Ctrl-C in the middle: a later stop() ends the sampling again
            self._stopping = False
            raise
        with self._state_lock:
            self._ended_s = self._sampler.last_tick_s

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        stop_as_block_ends(self.stop, exc)

    # ----- phases and units ------------------------------------------------------------------------------
    @property
    def current_phase(self) -> str:
        """The innermost phase path of the calling thread or task, e.g. ``training/validation``."""
        return self._phases.here

    def phase(self, name: str) -> contextlib.AbstractContextManager[str]:
        """Attribute energy and time to ``name`` inside the block; nests as ``outer/name``.

        Energy is counted in the innermost phase ("exclusive") and, in the report,
        also in every enclosing phase ("inclusive"). Phases nest per thread and per asyncio task;
        while phases of several threads are open, energy goes to the one entered last.
        """
        return self._phases.phase(name)

    def _on_switch(self, phase: str) -> None:
        # Never waits for a sensor or a report: the sampler only records the switch's time.
        if self._sampler is not None and self.running:
            self._sampler.switch_phase(phase)

    def add_units(self, count: float = 1, kind: str = "sample") -> None:
        """Count functional units (samples, queries, tokens...) in the current phase; cheap, thread-safe."""
        self._phases.add_units(count, kind)

    def sample(self) -> None:
        """Take one reading now (with ``background=False``, the only readings besides start and stop)."""
        if self.running:
            self._sampler.tick(force=True)
            self._on_tick(self._clock.monotonic())

    def _await_stop(self) -> None:
        """While another thread stops the run, wait (bounded) for its final report."""
        if self._stopping and self._report is None and self._stop_lock.acquire(timeout=STOP_WAIT_S):
            self._stop_lock.release()

    def report(self) -> Report | IncompleteReport:
        """A snapshot of the run so far (status ``running``), or the final report after stop."""
        self._await_stop()
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
        """Functional units counted so far in this process and session, per kind, over all phases."""
        return self._phases.totals()

    def checkpoint(self) -> None:
        """Rewrite the JSON report now (status ``running``)."""
        with self._state_lock:
            if self.running:
                self._checkpoint(force=True)

    def add_note(self, text: str) -> None:
        """Add a caveat or fact to the report's notes."""
        self._notes.append(str(text))

    def add_related_run(self, summary: RelatedRun) -> None:
        """List another run in the report (e.g. an earlier stage of the same trainer), with its totals."""
        self._related_runs.append(summary)

    def live_report(self) -> Report | IncompleteReport:
        """The report so far, without the timeline: cheap enough for every logging step or scrape.

        With a background sampler nothing is read here: the figures are those of its last tick. After
        :meth:`stop`, the final report.
        """
        self._await_stop()
        with self._state_lock:
            if self._report is not None:
                return self._report
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self.running and not self._background:
                self._sampler.tick()
            return self._build("running", None, final=False, timeline=False)

    def live(self) -> dict[str, float | None]:
        """Cheap running totals for loggers (see :data:`~nn_tracker.report.live.LIVE_METRICS`).

        With a background sampler nothing is read here: the figures are those of its last tick
        (counters are read once a second), so a logging step never waits for a sensor.
        """
        return live_figures(self.live_report(), self._sampler.power_w())

    def figures(self, ledger: Ledger) -> dict[str, float | None]:
        """The running totals (as :meth:`live`) of another ledger of this run, e.g. every rank's records.

        ``power/total_w`` is the power at the last reading of every device measured in this session.
        """
        with self._state_lock:
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            report = self._build("running", None, final=False, timeline=False, ledger=ledger)
        power_w = sum(
            device.last_power_w or 0.0
            for record in ledger.records
            if record.session == self._session
            for device in record.devices
        )
        return live_figures(report, power_w)

    # ----- the ledger: resuming and merging --------------------------------------------------------------
    @property
    def session(self) -> str:
        """The session this tracker measures in."""
        return self._session

    def ledger(self) -> Ledger:
        """The run's ledger: carried records and this process's own record as of now."""
        with self._state_lock:
            if self._sampler is None:
                raise NNTrackerError("this Tracker was never started")
            if self.running:
                self._sampler.tick(force=True)
            return self._ledger()

    def _ledger(self) -> Ledger:
        return self._carried.with_record(self._own_record())

    def _own_record(self) -> Record:
        """What this process measured in this session so far (one consistent snapshot of the sampler)."""
        sampler = self._sampler
        with sampler.lock:
            started_s = sampler.started_s or self._started_s
            devices = tuple(t.record(started_s) for t in sampler.totals.values())
            phase_time_s = dict(sampler.phase_time_s)
        end_s = self._ended_s if self._ended_s is not None else self._clock.monotonic()
        return Record(
            session=self._session,
            process=self._process,
            rank=self._rank,
            node=self._node,
            run_id=self.run_id,
            started_wall_s=self._started_wall_s,
            ended_wall_s=self._started_wall_s + (end_s - started_s),
            duration_s=max(end_s - started_s, 0.0),
            phase_time_s=phase_time_s,
            units=self._phases.units(),
            devices=devices,
            host=hostname(),
        )

    def export_state(self, public: bool = False) -> dict[str, Any]:
        """The run's ledger as a JSON-ready dict: for checkpoints (``public``: no host names) or merging ranks."""
        return self.ledger().to_state(public)

    def carry_over(self, state: dict[str, Any], parallel: bool = False) -> None:
        """Add the records of :meth:`export_state` of another tracker to this run's ledger.

        Records keep their keys: an earlier session (resume from a checkpoint) adds its energy, time
        and units; another process of this session (a distributed rank) its energy and units. The
        same record carried twice counts once.

        Args:
            state: The exported ledger.
            parallel: The records come from a process that ran at the same time as this session but
                did not know it (not through :class:`~nn_tracker.distributed.DistributedTracker`):
                the records of its latest session are filed under this session, after this
                process's rank (their time does not add to the run's); its earlier sessions stay
                earlier sessions.

        Raises:
            ValidationError: ``state`` is not an nn_tracker state (one line naming the field).
        """
        from dataclasses import replace

        ledger = Ledger.from_state(state)
        with self._state_lock:
            if self._report is not None:
                raise NNTrackerError("carry_over() must come before stop()")
            latest = ledger.records[-1].session if ledger.records else None
            for record in ledger.records:
                if parallel and record.session == latest:
                    record = replace(record, session=self._session, rank=self._rank + 1 + record.rank)
                if record.key != (self._session, self._process):  # our own record: ours is the newest
                    self._carried.add(record)
            for note in ledger.notes:
                self._carried.notes.append(note)

    # ----- output ----------------------------------------------------------------------------------------
    def _build(
        self,
        status: str,
        error: BaseException | None,
        final: bool,
        timeline: bool = True,
        ledger: Ledger | None = None,
    ) -> Report | IncompleteReport:
        """The report (of ``ledger``, by default the run's); if it cannot be built, what is known, logged."""
        from nn_tracker.report.model import build_report, incomplete_report

        state = self._run_state(status, error, final, ledger)
        try:
            return build_report(state, self._sampler, timeline=timeline)
        except Exception as exc:
            log.exception("nn_tracker: building the report failed; writing what is known")
            return incomplete_report(state, exc)

    def _run_state(
        self, status: str, error: BaseException | None, final: bool, ledger: Ledger | None = None
    ) -> RunState:
        """What the report needs besides the sampler's health and timeline."""
        from nn_tracker.report.document import RunError
        from nn_tracker.report.model import RunState

        notes = [
            *(self._sensors.notes if self._sensors else []),
            *self._notes,
            *self._phases.notes,
        ]
        if self._files.errors:
            notes.append(f"{self._files.errors} report writes failed (see the log); this report is from memory.")
        return RunState(
            config=self.config,
            run_id=self.run_id,
            status=status,
            ledger=ledger if ledger is not None else self._ledger(),
            session=self._session,
            node=self._node,
            started_wall_s=self._started_wall_s,
            ended_wall_s=self._clock.time() if final else None,
            notes=notes,
            cpu_model=self._sensors.cpu_model.model_name if self._sensors and self._sensors.cpu_model else None,
            error=RunError(type=type(error).__name__, message=self._public(describe(error))) if error else None,
            related_runs=list(self._related_runs),
            built_wall_s=self._clock.time(),
            requests=self._requests_section() if self._requests_section is not None else None,
        )

    def _public(self, text: str) -> str:
        """Text for the report: absolute paths cut to their file's name unless ``identity`` was asked for."""
        return text if self.config.identity else without_folders(text)

    def _write(self, report: Report | IncompleteReport, final: bool = False) -> None:
        """Write the report's files (not from a forked child: the run belongs to the parent)."""
        if self.config.write_report and self._owner_pid == os.getpid():
            self._files.write(report, final)

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
                if self._report is None and not self._stopping:
                    self._checkpoint()

    def end_at_exit_as(self, status: str, error: BaseException) -> None:
        """If the program ends with this run still going and no exception says why, end it so (e.g. ``failed``).

        For integrations whose framework has no exception event: a stage still open when the program
        exits never got its end event.
        """
        self._exit_status = (status, error)

    def _stop_at_exit(self, status: str, error: BaseException | None) -> None:
        self._at_exit = True
        if status == "completed" and self._exit_status is not None:
            status, error = self._exit_status
        if self._sampler is not None and self._report is None and self._owner_pid == os.getpid():
            self.stop(status, error)


class _Terminated(Exception):
    """Stands for the signal in the report's ``error`` field."""


def track(func: F | None = None, /, **options: Any) -> Any:
    """Decorator: run each call of the function under a fresh :class:`Tracker`.

    ``@track`` or ``@track(location="FR", project_name="train")``. The report of
    the last call is at ``wrapper.last_report``. A coroutine function is measured while it is
    awaited, a generator (sync or async) while it is iterated, from its first item until it is
    exhausted or closed (closing it early is ``completed``).
    """
    TrackerConfig(**options)  # validate now, not at the first call

    def decorate(inner: F) -> F:
        if inspect.isasyncgenfunction(inner):

            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = Tracker(**options)
                try:
                    with tracker:
                        async for item in inner(*args, **kwargs):
                            yield item
                finally:
                    agen_wrapper.last_report = tracker._report  # type: ignore[attr-defined]

            wrapper: Any = functools.wraps(inner)(agen_wrapper)
        elif inspect.isgeneratorfunction(inner):

            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = Tracker(**options)
                try:
                    with tracker:
                        return (yield from inner(*args, **kwargs))
                finally:
                    wrapper.last_report = tracker._report

            wrapper = functools.wraps(inner)(gen_wrapper)
        elif inspect.iscoroutinefunction(inner):

            async def coro_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = Tracker(**options)
                try:
                    with tracker:
                        return await inner(*args, **kwargs)
                finally:
                    wrapper.last_report = tracker._report

            wrapper = functools.wraps(inner)(coro_wrapper)
        else:

            def plain_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = Tracker(**options)
                try:
                    with tracker:
                        return inner(*args, **kwargs)
                finally:
                    wrapper.last_report = tracker._report

            wrapper = functools.wraps(inner)(plain_wrapper)
        wrapper.last_report = None
        return wrapper  # type: ignore[no-any-return]

    return decorate(func) if func is not None else decorate


def _call_safely(hook: Any, *args: Any) -> None:
    """A hook of a tracker built on this one (ServingTracker); its failure never stops the report."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("nn_tracker: a stop hook failed (the report is written all the same)")
