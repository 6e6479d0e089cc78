"""What a tracker holds, declared once for the base classes that make up :class:`~nn_tracker.tracker.Tracker`.

:class:`~nn_tracker.tracker.Tracker` sets every attribute in its ``__init__``; its base classes in
``run/`` (phases, records, reports, endings) read them. The methods one base class uses from
another are declared here for the type checker only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from nn_tracker.accounting.ledger import Ledger
from nn_tracker.config import TrackerConfig
from nn_tracker.core.clock import Clock
from nn_tracker.core.errors import NNTrackerError
from nn_tracker.report.output import ReportFiles
from nn_tracker.run.endings import ExitGuard, SigtermGuard
from nn_tracker.run.hooks import RunHooks
from nn_tracker.run.phases import PhaseBook

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, RelatedRun, Report
    from nn_tracker.sensors import SensorSet
    from nn_tracker.sensors.sampling import Sampler


class TrackerState:
    """A tracker's attributes (see :class:`~nn_tracker.tracker.Tracker` for what each holds)."""

    config: TrackerConfig
    run_id: str
    hooks: RunHooks
    _clock: Clock
    _background: bool
    _given_sensors: SensorSet | None
    _state_lock: threading.RLock
    _stop_lock: threading.RLock
    _stopping_thread: int | None
    _phases: PhaseBook
    _sampler: Sampler | None
    _sensors: SensorSet | None
    _started_wall_s: float
    _started_s: float
    _ended_s: float | None
    _stopping: bool
    _at_exit: bool
    _exit_status: tuple[str, BaseException] | None
    _last_checkpoint_s: float
    _owner_pid: int | None
    _sigterm: SigtermGuard
    _exit: ExitGuard
    _report: Report | IncompleteReport | None
    _notes: list[str]
    _related_runs: list[RelatedRun]
    _node: str
    _process: str
    _session: str
    _rank: int
    _carried: Ledger
    _files: ReportFiles

    def _started_sampler(self) -> Sampler:
        """The sampler of a started run.

        Raises:
            NNTrackerError: the tracker was never started.
        """
        if self._sampler is None:
            raise NNTrackerError("this Tracker was never started")
        return self._sampler

    if TYPE_CHECKING:  # defined by Tracker and its other base classes

        @property
        def running(self) -> bool:
            """Defined by the tracker (see :class:`~nn_tracker.tracker.Tracker`)."""

        def stop(self, status: str = "completed", error: BaseException | None = None) -> Any:
            """Defined by the tracker (see :class:`~nn_tracker.tracker.Tracker`)."""

        def add_note(self, text: str) -> None:
            """Defined by the tracker (see :class:`~nn_tracker.tracker.Tracker`)."""

        def _on_tick(self, now_s: float) -> None: ...

        def _ledger(self) -> Ledger: ...

        def _build(
            self,
            status: str,
            error: BaseException | None,
            final: bool,
            timeline: bool = True,
            ledger: Ledger | None = None,
        ) -> Report | IncompleteReport: ...
