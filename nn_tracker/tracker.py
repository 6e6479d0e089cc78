"""``Tracker``: start/stop, context manager, decorator, phases, functional units, crash-safe output.

A thin coordinator: sensors are discovered at :meth:`Tracker.start`, a
:class:`~nn_tracker.sensors.sampling.Sampler` reads them, and a report is built from its
totals and written atomically — periodically while running, and once at the end.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nn_tracker.accounting.ledger import Ledger, node_pseudonym
from nn_tracker.config import TrackerConfig, make_config
from nn_tracker.core.clock import Clock, SystemClock
from nn_tracker.core.errors import NNTrackerError
from nn_tracker.core.node import node_id
from nn_tracker.report.output import ReportFiles
from nn_tracker.run.attribution import RunPhases
from nn_tracker.run.endings import ExitGuard, RunEnding, SigtermGuard, Terminated, stop_as_block_ends
from nn_tracker.run.hooks import RunHooks, call_safely
from nn_tracker.run.phases import PhaseBook
from nn_tracker.run.records import RunRecords
from nn_tracker.run.reports import RunReports
from nn_tracker.sensors import SensorOptions, SensorSet, discover_sensors
from nn_tracker.sensors.sampling import Sampler

if TYPE_CHECKING:  # the report's types are imported when the first report is built, not with nn_tracker
    from nn_tracker.report.document import IncompleteReport, RelatedRun, Report

log = logging.getLogger("nn_tracker")
F = TypeVar("F", bound=Callable[..., Any])


class Tracker(RunPhases, RunRecords, RunReports, RunEnding):
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
        self._sigterm = SigtermGuard(lambda: self.stop("terminated", Terminated("SIGTERM received")))
        self._exit = ExitGuard(self._stop_at_exit)
        self._report: Report | IncompleteReport | None = None
        self._notes: list[str] = []
        self._related_runs: list[RelatedRun] = []
        self._node = node_pseudonym(node_id(self.config.proc_root))
        self._process = os.urandom(12).hex()  # this tracker's key in the run's ledger, with its session
        self._session = session or self._process
        self._rank = rank
        self._carried = Ledger()  # earlier sessions (resume) and other processes (distributed)
        self.hooks = RunHooks()  # how a tracker built on this one (ServingTracker) takes part in the run
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
                energy_listener=self.hooks.energy_listener,
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
            self._started_sampler()  # never started: an error
            if self._owner_pid != os.getpid():  # a forked child: the run belongs to the parent
                return self._build("running", None, final=False)
        self.end_sampling()  # joins the sampler's thread: never under the state lock its checkpoints take
        self._sigterm.restore()
        self._exit.restore()
        call_safely(self.hooks.sampling_ended)
        with self._state_lock:
            status, error = self._sigterm_status(status, error)
            if status == "completed":
                error = None  # e.g. sys.exit(0): a completed run has no error
            report = self._build(status, error, final=True)
            if self._sensors is not None and self._given_sensors is None:
                self._sensors.close()
            self._write(report, final=True)
            self._report = report
        call_safely(self.hooks.final_report, report)
        return report

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

    @property
    def clock(self) -> Clock:
        """The clock durations are measured with."""
        return self._clock

    @property
    def background(self) -> bool:
        """Whether a background thread samples (else only :meth:`sample` does)."""
        return self._background


def track(func: F | None = None, /, **options: Any) -> Any:
    """Decorator: run each call of the function under a fresh :class:`Tracker`.

    ``@track`` or ``@track(location="FR", project_name="train")``. The report of
    the last call is at ``wrapper.last_report``. A coroutine function is measured while it is
    awaited, a generator (sync or async) while it is iterated, from its first item until it is
    exhausted or closed (closing it early is ``completed``).
    """
    TrackerConfig(**options)  # validate now, not at the first call

    def decorate(inner: F) -> F:
        import inspect  # ~3.6 ms in a process without torch: only for the decorator

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
