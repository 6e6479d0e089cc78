"""The stages of a trainer (fit, validate, test, predict) as nn_tracker phases and report summaries."""

from __future__ import annotations

import logging
from typing import Any

from nn_tracker.config import QUERYING_PHASE, TRAINING_PHASE
from nn_tracker.report.document import IncompleteReport, RelatedRun, Report
from nn_tracker.tracker import Tracker

log = logging.getLogger("nn_tracker")

STAGE_PHASES = {
    "fit": (TRAINING_PHASE,),
    "train": (TRAINING_PHASE,),
    "validate": ("validation",),
    "evaluate": ("validation",),
    "test": (QUERYING_PHASE, "test"),
    "predict": (QUERYING_PHASE, "predict"),
}


def stage_phases(stage: str) -> tuple[str, ...]:
    """The nested phases a stage runs in (``("querying", "test")`` for ``test``); unknown stages as named."""
    return STAGE_PHASES.get(stage, (stage,))


def stage_summary(stage: str, report: Report | IncompleteReport) -> RelatedRun:
    """What a later stage's report says of an earlier one: its totals and where its report is."""
    return RelatedRun(
        stage=stage,
        run_id=report.run_id,
        status=report.status,
        started_at=getattr(report, "started_at", None),  # an incomplete report has no times
        duration_s=report.duration_s,
        it_energy_kwh=report.energy_kwh,
        total_carbon_g=report.total_carbon_g,
        report=report.paths[0] if report.paths else None,
    )


def read_checkpoint_state(state: Any) -> tuple[dict[str, Any] | None, str | None]:
    """A checkpoint's nn_tracker ledger, checked: ``(state, None)``, or ``(None, note)`` when it cannot be used.

    A damaged or foreign state must never stop the training: it is left out, with a one-line note.
    """
    from nn_tracker.accounting.ledger import Ledger
    from nn_tracker.core.errors import ValidationError

    if state is None:
        return None, None
    try:
        Ledger.from_state(state)
    except ValidationError as exc:
        return None, f"The checkpoint's nn_tracker records were not used: {exc}."
    return state, None


class LoggedSeries:
    """The figures a trainer's loggers get: the run-level totals of every stage so far, as one ledger.

    Each logging step (collective) gathers the current stage's records from every process; on global
    rank 0 they join the records of the stages that ended before (theirs first: a stage's final
    record wins over the copy of it that a later stage carried in from a checkpoint), and the
    figures are computed from that union. So ``fit`` then ``test`` (or a fit resumed with the same
    callback) logs series that never go down, each rank and each session counted once, and a
    logger's last ``energy/total_kwh`` is the trainer's whole run. Each stage's report keeps its own
    figures. Every process gets the same figures (the gather gives each every record), so the
    trainer's own flow stays the same on every rank.
    """

    def __init__(self) -> None:
        from nn_tracker.accounting.ledger import Ledger

        self._finished = Ledger()
        self._last_view = Ledger()

    def values(self, run: Any) -> dict[str, float]:
        """What to log now for the stage ``run`` (a collective call)."""
        from nn_tracker.accounting.ledger import Ledger

        view = Ledger()
        view.merge(self._finished)
        view.merge(run.merged_ledger())
        self._last_view = view
        return {name: value for name, value in run.tracker.figures(view).items() if value is not None}

    def stage_ended(self, tracker: Any) -> None:
        """Keep a finished stage's records (every process's, as last gathered) for the stages that follow."""
        try:
            self._finished.merge(tracker.ledger())  # its final records win over the last gathered ones
            self._finished.merge(self._last_view)
        except Exception:  # logging must never hurt the training
            log.debug("nn_tracker: the stage's records are not kept for the logged series", exc_info=True)


def check_tracker_options(options: dict[str, Any]) -> None:
    """Raise a one-line error unless ``options`` are fields of :class:`~nn_tracker.config.TrackerConfig`."""
    from nn_tracker.config import TrackerConfig
    from nn_tracker.core.errors import ValidationError

    try:
        TrackerConfig(**options)
    except TypeError as exc:
        raise ValidationError("tracker_options", sorted(options), f"must be TrackerConfig fields ({exc})") from None


class StageRun:
    """One stage of a trainer: a :class:`~nn_tracker.distributed.DistributedTracker` in the stage's phases.

    Starting is collective in distributed runs (every process creates its ``StageRun`` together).

    Args:
        stage: ``fit``, ``train``, ``validate``, ``evaluate``, ``test`` or ``predict`` (others as named).
        options: Fields of :class:`~nn_tracker.config.TrackerConfig`.
        earlier: Summaries of the earlier stages (:func:`stage_summary`), listed in the report.
    """

    def __init__(self, stage: str, options: dict[str, Any], earlier: list[RelatedRun]) -> None:
        from nn_tracker.distributed import DistributedTracker

        phases = stage_phases(stage)
        self.stage = stage
        # the moments before the stage's phase is entered belong to the stage, not to "training"
        self.run = DistributedTracker(**{"default_phase": phases[0], **options}).start()
        for summary in earlier:
            self.tracker.add_related_run(summary)
        self._phases: list[Any] = []
        for name in phases:
            self._enter(name)
        self._nested: Any = None

    @property
    def tracker(self) -> Tracker:
        """The tracker of this process."""
        return self.run._started()

    @property
    def nested(self) -> bool:
        """Whether a nested phase (validation inside training) is entered."""
        return self._nested is not None

    def _enter(self, name: str) -> None:
        phase = self.tracker.phase(name)
        phase.__enter__()
        self._phases.append(phase)

    def enter_nested(self, name: str) -> None:
        """Enter ``name`` inside the stage's phase (e.g. ``training/validation``); once at a time."""
        if self._nested is None:
            self._nested = self.tracker.phase(name)
            self._nested.__enter__()

    def leave_nested(self) -> None:
        """Back to the stage's own phase."""
        if self._nested is not None:
            phase, self._nested = self._nested, None
            phase.__exit__(None, None, None)

    def continue_from(self, state: dict[str, Any] | None, note: str | None = None) -> None:
        """Continue a checkpoint's run: its records (earlier sessions) join this stage's ledger on the writer.

        Only the writer carries them (the others' ledgers would add nothing: a union keeps a record once).
        """
        if note:
            self.tracker.add_note(note)
        if state is not None and self.run.is_writer:
            self.tracker.carry_over(state)

    def finish(self, exception: BaseException | None, last_log: Any = None) -> Any:
        """Leave the phases, stop (collective; global rank 0 writes the report) and return the report.

        ``last_log(run)`` runs after the last reading of every sensor, before nn_tracker's process group
        is released (so it may sum over the processes), when the stage ended without an exception.
        """
        from nn_tracker.run.endings import status_for_exception

        self.leave_nested()
        while self._phases:
            self._phases.pop().__exit__(None, None, None)
        try:
            report = self.run.stop(status_for_exception(exception), exception, close=False)
            if exception is None and last_log is not None:
                last_log(self.run)
        finally:
            self.run.close()
        return report
