"""The reports of a run as a tracker writes them: snapshots, live figures, checkpoints, files.

Part of :class:`~nn_tracker.tracker.Tracker` (a base class of it). A report is built from the run's
state (:class:`~nn_tracker.report.model.RunState`) and the sampler's health and timeline; if it
cannot be built, what is known is written instead (never nothing, never a wrong figure).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from nn_tracker.accounting.ledger import Ledger
from nn_tracker.core.errors import describe, without_folders
from nn_tracker.report.live import live_figures
from nn_tracker.run.state import TrackerState

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, RelatedRun, Report
    from nn_tracker.report.model import RunState

log = logging.getLogger("nn_tracker")
STOP_WAIT_S = 15.0  # the longest report() waits for a stop in progress on another thread (reads have deadlines)


class RunReports(TrackerState):
    """A tracker's reports: what :meth:`report`, :meth:`live` and checkpoints give and write."""

    def _await_stop(self) -> None:
        """While another thread stops the run, wait (bounded) for its final report."""
        if self._stopping and self._report is None and self._stop_lock.acquire(timeout=STOP_WAIT_S):
            self._stop_lock.release()

    def report(self) -> Report | IncompleteReport:
        """A snapshot of the run so far (status ``running``), or the final report after stop."""
        return self._snapshot(timeline=True, force=True)

    def _snapshot(self, timeline: bool, force: bool | None) -> Report | IncompleteReport:
        """The final report after stop, else the run so far, its sensors read first.

        ``force``: every sensor (``True``), those due (``False``), none: the last tick's figures (``None``).

        Raises:
            NNTrackerError: the tracker was never started.
        """
        self._await_stop()
        with self._state_lock:
            if self._report is not None:
                return self._report
            sampler = self._started_sampler()
            if self.running and force is not None:
                sampler.tick(force=force)
            return self._build("running", None, final=False, timeline=timeline)

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
        return self._snapshot(timeline=False, force=None if self._background else False)

    def live(self) -> dict[str, float | None]:
        """Cheap running totals for loggers (see :data:`~nn_tracker.report.live.LIVE_METRICS`).

        With a background sampler nothing is read here: the figures are those of its last tick
        (counters are read once a second), so a logging step never waits for a sensor.
        """
        return live_figures(self.live_report(), self._started_sampler().power_w())

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
            return build_report(state, self._started_sampler(), timeline=timeline)
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
            requests=self.hooks.requests_section() if self.hooks.requests_section is not None else None,
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
            self._started_sampler().tick(force=True)  # a checkpoint is as current as the sensors allow
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
