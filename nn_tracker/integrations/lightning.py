"""``NNTrackerCallback``: energy and carbon of PyTorch Lightning runs.

A thin adapter over :class:`~nn_tracker.distributed.DistributedTracker` (which is a
plain :class:`~nn_tracker.Tracker` outside distributed training): ``fit`` is the
``training`` phase with validation nested as ``training/validation``; ``validate``
is ``validation``; ``test`` and ``predict`` are ``querying/test`` and
``querying/predict``. Samples and batches are counted as functional units. Works
with ``lightning`` (``lightning.pytorch``) and ``pytorch_lightning``, whichever is
installed (both at once too); importing ``nn_tracker`` imports neither.
"""

from __future__ import annotations

import contextlib
from typing import Any

from nn_tracker.config import TRAINING_PHASE
from nn_tracker.core.errors import ValidationError
from nn_tracker.integrations.batches import batch_size
from nn_tracker.integrations.stages import (
    LoggedSeries,
    StageRun,
    check_tracker_options,
    read_checkpoint_state,
    stage_summary,
)
from nn_tracker.report.document import RelatedRun


def _callback_bases() -> tuple[type, ...]:
    bases = []
    with contextlib.suppress(ImportError):
        from lightning.pytorch.callbacks import Callback as LightningCallback

        bases.append(LightningCallback)
    with contextlib.suppress(ImportError):
        from pytorch_lightning.callbacks import Callback as PLCallback

        bases.append(PLCallback)
    if not bases:
        raise ImportError("NNTrackerCallback needs `lightning` or `pytorch_lightning`: pip install pytorch-lightning")
    return tuple(bases)


class NNTrackerCallback(*_callback_bases()):  # type: ignore[misc]
    """Track a Lightning ``Trainer``'s energy and carbon; one report per ``fit``/``validate``/``test``/``predict``.

    Each report covers its own stage only (header, plot, totals and exports agree); its
    ``related_runs`` list the earlier stages of this callback with their totals, so a reader
    sees the trainer's run so far, and summing the stages' CSV rows counts nothing twice. A fit
    resumed from a checkpoint continues the checkpoint's totals.

    Args:
        log_every_n_steps: Log ``energy/*``, ``power/total_w`` and ``carbon/*`` to the trainer's
            loggers every this many training steps (and once at the end of each stage). Energy and
            carbon are run-level series over the stages: they never go down.
        log_artifacts: Log each stage's report files as artifacts of the trainer's ``MLFlowLogger``
            and ``WandbLogger`` runs (under ``nn_tracker/``).
        **tracker_options: Fields of :class:`~nn_tracker.config.TrackerConfig` (``location``, ``pue``...).

    Raises:
        ValidationError: a bad argument, reported at construction.
    """

    def __init__(self, log_every_n_steps: int = 50, log_artifacts: bool = True, **tracker_options: Any) -> None:
        super().__init__()
        if isinstance(log_every_n_steps, bool) or not isinstance(log_every_n_steps, int) or log_every_n_steps < 1:
            raise ValidationError("log_every_n_steps", log_every_n_steps, "must be an integer >= 1")
        if not isinstance(log_artifacts, bool):
            raise ValidationError("log_artifacts", log_artifacts, "must be true or false")
        check_tracker_options(tracker_options)
        self.log_every_n_steps = log_every_n_steps
        self.log_artifacts = log_artifacts
        self._options = tracker_options
        self._stage_run: StageRun | None = None
        self._carried: dict[str, Any] | None = None  # a checkpoint's ledger, added when the stage runs
        self._carried_note: str | None = None  # why a checkpoint's ledger was not used
        self._last_logged_step = -1
        self._series = LoggedSeries()
        self.reports: list[Any] = []
        self.stages: list[RelatedRun] = []  # the stages finished by this callback, with their totals

    @property
    def tracker(self) -> Any:
        """The tracker of the current stage (``None`` between stages)."""
        return self._stage_run.tracker if self._stage_run else None

    # ----- stages --------------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Start tracking the stage."""
        stage_name = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn (a str enum)
        self._stage_run = StageRun(stage_name, self._options, self.stages)

    # ----- continuing the totals ----------------------------------------------------------------------
    def _continue_totals(self, *_: Any) -> None:
        """Add the totals of the checkpoint the stage resumes from, once it runs (after Lightning's restore)."""
        if self._stage_run is not None and (self._carried is not None or self._carried_note):
            self._stage_run.continue_from(self._carried, self._carried_note)
            self._carried = self._carried_note = None

    on_fit_start = on_test_start = on_predict_start = _continue_totals

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Stop tracking and write the report (global rank 0)."""
        self._finish(trainer, None)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """Write the report with status ``failed`` (``terminated`` for Ctrl-C)."""
        self._finish(trainer, exception)

    def _finish(self, trainer: Any, exception: BaseException | None) -> None:
        if self._stage_run is None:
            return
        self._continue_totals()  # a stage that ended before it started running keeps the earlier totals
        stage_run = self._stage_run
        try:  # the final figures are logged after the last reading of every sensor
            report = stage_run.finish(exception, lambda _run: self._log(trainer, force=True))
        finally:
            self._stage_run = None
            self._series.stage_ended(stage_run.tracker)
        self.reports.append(report)
        self.stages.append(stage_summary(stage_run.stage, report))
        if self.log_artifacts and report.paths:
            from nn_tracker.integrations import artifacts

            artifacts.from_lightning(report.paths, getattr(trainer, "loggers", ()))

    # ----- validation inside fit -----------------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        """Nest ``validation`` inside ``training`` during fit."""
        self._continue_totals()  # the validate stage has no other start hook
        if self._stage_run is not None and self._stage_run.tracker.current_phase == TRAINING_PHASE:
            self._stage_run.enter_nested("validation")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Back to ``training``."""
        if self._stage_run is not None:
            self._stage_run.leave_nested()

    # ----- units and logging ---------------------------------------------------------------------------
    def _count(self, batch: Any) -> None:
        if self._stage_run is not None:
            self._stage_run.tracker.add_units(batch_size(batch), kind="sample")
            self._stage_run.tracker.add_units(1, kind="batch")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Count the batch; log every ``log_every_n_steps`` steps."""
        self._count(batch)
        if trainer.global_step % self.log_every_n_steps == 0:
            self._log(trainer)

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Count the batch."""
        self._count(batch)

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Count the batch."""
        self._count(batch)

    def on_predict_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """Count the batch."""
        self._count(batch)

    def _log(self, trainer: Any, force: bool = False) -> None:
        """Send the run's totals (every process, every stage so far) to every logger (collective in DDP)."""
        step = trainer.global_step
        if self._stage_run is None or (step == self._last_logged_step and not force):
            return
        self._last_logged_step = step
        metrics = self._series.values(self._stage_run.run)
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # ----- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The run's ledger so far, every process's records, so a resumed run continues it (no host names)."""
        # merged_state() is collective: Lightning calls state_dict on every process when it checkpoints
        state = self._stage_run.run.merged_state(public=True) if self._stage_run is not None else self._carried
        return {"nn_tracker": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the checkpoint's run (a state that cannot be used is left out with a note, never raised)."""
        # added when the stage starts running (Lightning restores after setup)
        self._carried, self._carried_note = read_checkpoint_state(state_dict.get("nn_tracker"))


__all__ = ["NNTrackerCallback", "batch_size", "stage_summary"]
