"""``NNTrackerCallback`` for Hugging Face ``transformers``: energy and carbon of ``Trainer`` runs.

The same behaviour as the Lightning callback, over the ``Trainer``'s events: ``train`` is the
``training`` phase with its evaluations nested as ``training/validation``; a ``trainer.evaluate()``
of its own is ``validation``; ``trainer.predict()`` is ``querying/predict``. One report per
``train``/``evaluate``/``predict`` call. Samples, batches and tokens are counted from the batches the
model receives (``input_ids``/``attention_mask``), through a forward pre-hook on the model, because
``Trainer`` callbacks never see the batches. Importing ``nn_tracker`` imports neither ``transformers``
nor ``torch``; importing this module imports ``transformers``.

How it finds its way without events the ``Trainer`` does not have:

- Evaluation inside training begins when the ``Trainer`` decides to evaluate (``control.should_evaluate``
  at the end of a step or epoch, or ``eval_on_start``) and ends with ``on_evaluate``; a forward pass in
  ``eval`` mode during training is counted as validation too (an evaluation started by another
  callback), a forward pass in ``train`` mode ends it.
- A ``trainer.evaluate()`` or ``trainer.predict()`` outside training has no begin event: its stage
  starts at its first batch, recognised by the ``Trainer``'s ``evaluate``/``predict`` being on the call
  stack (the model used on its own, outside the ``Trainer``, is never tracked), and ends with
  ``on_evaluate``/``on_predict``.
- Metrics go through ``trainer.log`` (so every ``report_to`` backend receives them); the callback
  finds its ``Trainer`` on the call stack when the ``Trainer`` is created.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import DefaultFlowCallback, PrinterCallback, ProgressCallback

from nn_tracker.core.errors import ValidationError
from nn_tracker.distributed import DistributedTracker
from nn_tracker.integrations.batches import batch_size, batch_tokens
from nn_tracker.integrations.stages import (
    LoggedSeries,
    StageRun,
    check_tracker_options,
    read_checkpoint_state,
    stage_summary,
)
from nn_tracker.report.document import RelatedRun

try:  # transformers >= 4.41: callback state saved in the checkpoint's trainer_state.json
    from transformers.trainer_callback import ExportableState
except ImportError:  # pragma: no cover - older transformers: no resume of the totals
    ExportableState = object  # type: ignore[assignment,misc]

log = logging.getLogger("nn_tracker")


class _ForwardHook:
    """The forward pre-hook on the model: hands each batch to its callback; never raises.

    Holds its callback weakly, and a copy (``copy.deepcopy(model)``, ``torch.save(model)``) is a hook
    that does nothing, so the tracked model stays copyable and picklable.
    """

    def __init__(self, callback: NNTrackerCallback | None = None) -> None:
        self._callback = weakref.ref(callback) if callback is not None else None

    @property
    def callback(self) -> NNTrackerCallback | None:
        return self._callback() if self._callback else None

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        callback = self.callback
        if callback is None:
            return
        try:
            callback._before_forward(module, args, kwargs)
        except Exception:  # counting must never break training
            log.debug("nn_tracker: could not count a batch", exc_info=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_ForwardHook, ())


_HOOKS: weakref.WeakKeyDictionary[Any, tuple[_ForwardHook, Any]] = weakref.WeakKeyDictionary()  # model: its hook


class NNTrackerCallback(TrainerCallback, ExportableState):
    """Track a ``transformers.Trainer``'s energy and carbon; one report per ``train``/``evaluate``/``predict``.

    ``Trainer(..., callbacks=[NNTrackerCallback(location="FR")])``. Each report covers its own stage;
    its ``related_runs`` list this callback's earlier stages. In distributed runs (``torchrun``,
    ``accelerate launch``) every process tracks what it alone measures and global rank 0 writes one
    merged report (see :class:`~nn_tracker.distributed.DistributedTracker`). A training resumed with
    ``trainer.train(resume_from_checkpoint=...)`` continues the checkpoint's totals, which travel in
    the checkpoint's ``trainer_state.json``.

    Args:
        log_metrics: Log ``energy/*``, ``power/total_w`` and ``carbon/*`` through ``trainer.log``
            whenever the ``Trainer`` logs (``logging_steps``) and at the end of each stage. Energy and
            carbon are run-level series over the stages: they never go down.
        log_artifacts: Log each stage's report files as artifacts of the MLflow and W&B runs that
            ``report_to`` uses (under ``nn_tracker/``).
        **tracker_options: Fields of :class:`~nn_tracker.config.TrackerConfig` (``location``, ``pue``...).

    Raises:
        ValidationError: a bad argument, reported at construction.
    """

    def __init__(self, log_metrics: bool = True, log_artifacts: bool = True, **tracker_options: Any) -> None:
        for name, value in (("log_metrics", log_metrics), ("log_artifacts", log_artifacts)):
            if not isinstance(value, bool):
                raise ValidationError(name, value, "must be true or false")
        check_tracker_options(tracker_options)
        self.log_metrics = log_metrics
        self.log_artifacts = log_artifacts
        self._options = tracker_options
        self._stage_run: StageRun | None = None
        self._pending_tokens: Any = 0  # tokens counted since the last flush (maybe a tensor on the accelerator)
        self._checkpoint_totals: dict[str, Any] | None = None  # merged at the last collective point
        self._trainer: Any = None  # weakref.ref to the Trainer, found on the call stack
        self._series = LoggedSeries()
        self.reports: list[Any] = []
        self.stages: list[RelatedRun] = []

    @property
    def tracker(self) -> Any:
        """The tracker of the current stage (``None`` between stages)."""
        return self._stage_run.tracker if self._stage_run else None

    @property
    def trainer(self) -> Any:
        """The ``Trainer`` this callback belongs to (``None`` until found)."""
        return self._trainer() if self._trainer else None

    # ----- finding the trainer and the batches --------------------------------------------------------
    def on_init_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Find the ``Trainer`` and hook the model (to count batches and see evaluations begin)."""
        self._attach(model)

    def _attach(self, model: Any) -> None:
        if self.trainer is None:
            trainer = _calling_trainer()
            self._trainer = weakref.ref(trainer) if trainer is not None else None
            _end_stages_on_exceptions()
            if trainer is not None:
                _before_the_backends(trainer.callback_handler.callbacks, self)
        if model is None or not hasattr(model, "register_forward_pre_hook"):
            return
        current = _HOOKS.get(model)
        if current is not None and current[0].callback is self:
            return
        if current is not None:  # a callback restored from a checkpoint replaces this one: one hook per model
            current[1].remove()
        hook = _ForwardHook(self)
        _HOOKS[model] = (hook, model.register_forward_pre_hook(hook, with_kwargs=True))

    def _before_forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Before every forward pass of the model: follow its mode, count the batch."""
        if self._stage == "train":
            if module.training:
                self._leave_validation()
            elif self._stage_run is not None and not self._stage_run.nested:
                if self.trainer is None or "train" in _calls_of(self.trainer):
                    self._enter_validation()  # an evaluation started by another callback
                else:  # the training raised earlier and this is an evaluate() or predict() of its own
                    self._finish(RuntimeError("the train stage ended without on_train_end (the Trainer raised)"))
        if self._stage_run is None:
            if module.training:
                return
            stage = self._inference_stage()
            if stage is None:
                return  # the model used on its own, outside the Trainer: not ours to track
            self._begin(stage)
        self._count(kwargs if kwargs else (args[0] if len(args) == 1 else args))

    def _inference_stage(self) -> str | None:
        """``evaluate`` or ``predict`` when the Trainer's method of that name is running, else ``None``."""
        calls = _calls_of(self.trainer)
        return calls[0] if calls and calls[0] in ("evaluate", "predict") else None

    def _count(self, batch: Any) -> None:
        if self._stage_run is None:  # no stage: nothing to count in
            return
        tracker = self._stage_run.tracker
        tracker.add_units(batch_size(batch), kind="sample")
        tracker.add_units(1, kind="batch")
        tokens = batch_tokens(batch)
        if tokens is not None:
            self._pending_tokens = self._pending_tokens + tokens  # not read back: no wait for the GPU

    def _flush_tokens(self) -> None:
        """Count the pending tokens in the current phase (one read from the accelerator)."""
        pending, self._pending_tokens = self._pending_tokens, 0
        if self._stage_run is None:
            return
        count = int(pending.item()) if hasattr(pending, "item") else int(pending)
        if count:
            self._stage_run.tracker.add_units(count, kind="token")

    # ----- stages --------------------------------------------------------------------------------------
    @property
    def _stage(self) -> str:
        return self._stage_run.stage if self._stage_run else ""

    def _begin(self, stage: str) -> None:
        """Start tracking a stage (collective in distributed runs: every process reaches it)."""
        if self._stage_run is not None:  # the previous stage never got its end event: the Trainer raised
            self._finish(RuntimeError(f"the {self._stage} stage ended without its end event"))
        self._stage_run = StageRun(stage, self._options, self.stages)
        # the Trainer has no exception event: a stage still open when the program ends was ended by one
        self._stage_run.tracker.end_at_exit_as(
            "failed", RuntimeError(f"the {stage} stage ended without its end event (the Trainer raised)")
        )

    def _finish(self, exception: BaseException | None = None) -> None:
        if self._stage_run is None:
            return
        try:
            self._flush_tokens()
        except Exception:  # the report is written whatever happened here
            log.debug("nn_tracker: could not count the last tokens", exc_info=True)
        stage_run, self._stage_run = self._stage_run, None
        try:
            report = stage_run.finish(exception, self._log)  # the final figures, after the last readings
        finally:
            self._series.stage_ended(stage_run.tracker)
        self.reports.append(report)
        self.stages.append(stage_summary(stage_run.stage, report))
        trainer = self.trainer
        if self.log_artifacts and report.paths and trainer is not None:
            from nn_tracker.integrations import artifacts

            artifacts.from_transformers(report.paths, getattr(trainer.args, "report_to", None) or ())

    def _raised(self, exception: BaseException) -> None:
        """The Trainer's ``train``/``evaluate``/``predict`` raised: the open stage ends now, ``failed``."""
        try:
            self._finish(exception)
        except Exception:  # the program's own exception goes on; ours never replaces it
            log.warning("nn_tracker: could not end the stage the Trainer's exception ended", exc_info=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Start the ``train`` stage, continuing a resumed checkpoint's totals."""
        self._attach(model)
        self._begin("train")
        if state.global_step > 0 and self._stage_run is not None:  # a damaged trainer_state.json: a note
            self._stage_run.continue_from(*read_checkpoint_state(_saved_totals(state, type(self).__name__)))
        if args.eval_on_start:
            self._enter_validation()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop tracking and write the ``train`` report (global rank 0)."""
        if self._stage == "train":
            self._finish()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Training goes on: any evaluation is over."""
        self._leave_validation()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log when the Trainer logs; enter validation when it is about to evaluate."""
        self._before_log_save_evaluate(control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """As at the end of a step: the Trainer may log, evaluate and save now."""
        self._before_log_save_evaluate(control)

    def _before_log_save_evaluate(self, control: Any) -> None:
        if self._stage != "train":
            return
        if control.should_log and self._stage_run is not None:
            self._log(self._stage_run.run)  # collective: every process decides to log at the same step
        if control.should_save:
            self._remember_totals()
        if control.should_evaluate:
            self._enter_validation()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """An evaluation ended: back to training, or the end of an ``evaluate`` stage.

        With several evaluation datasets the ``Trainer`` evaluates each on its own (``on_evaluate``
        comes once per dataset): each is a stage of its own, with its own report.
        """
        if self._stage == "train":
            self._leave_validation()
            self._remember_totals()  # a checkpoint may follow (save_strategy="best" decides only now)
        elif self._stage == "evaluate":
            self._finish()

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        """A ``predict`` stage ended."""
        if self._stage == "predict":
            self._finish()

    # ----- validation inside training ------------------------------------------------------------------
    def _enter_validation(self) -> None:
        run = self._stage_run
        if run is not None and run.stage == "train" and not run.nested:
            self._flush_tokens()  # the tokens so far belong to training
            run.enter_nested("validation")

    def _leave_validation(self) -> None:
        if self._stage_run is not None and self._stage_run.nested:
            self._flush_tokens()
            self._stage_run.leave_nested()

    # ----- logging -------------------------------------------------------------------------------------
    def _log(self, run: DistributedTracker) -> None:
        """Send the run's totals (every process, every stage so far) through ``trainer.log`` (collective)."""
        if not self.log_metrics:
            return
        self._flush_tokens()
        metrics = self._series.values(run)
        trainer = self.trainer
        if trainer is not None and metrics:
            with _not_printed(trainer):
                trainer.log(metrics)

    # ----- checkpoints ---------------------------------------------------------------------------------
    def _remember_totals(self) -> None:
        """Merge the totals of every process now, for the checkpoint that may follow (collective)."""
        if self._stage_run is not None:
            self._flush_tokens()
            self._checkpoint_totals = self._stage_run.run.merged_state(public=True)

    def state(self) -> dict[str, Any]:
        """What the ``Trainer`` saves in a checkpoint's ``trainer_state.json``: options and totals so far.

        Called on the saving process only, so nothing collective happens here: in a distributed run
        the totals are those merged just before (when the ``Trainer`` decided to save or evaluate).
        """
        totals = self._checkpoint_totals
        if self._stage_run is not None and self._stage_run.run.world_size == 1:
            self._flush_tokens()
            totals = self._stage_run.run.merged_state(public=True)
        flags = {"log_metrics": self.log_metrics, "log_artifacts": self.log_artifacts}
        return {"args": _json_options(flags, self._options), "attributes": {"_saved_totals": totals}}


def _saved_totals(state: Any, name: str) -> dict[str, Any] | None:
    """The totals a resumed checkpoint's ``trainer_state.json`` carries for this callback, if any."""
    saved = (getattr(state, "stateful_callbacks", None) or {}).get(name)
    if isinstance(saved, list):
        saved = saved[0] if saved else None
    if not isinstance(saved, dict):
        return None
    return (saved.get("attributes") or {}).get("_saved_totals")


def _before_the_backends(callbacks: list[Any], callback: Any) -> None:
    """Move ``callback`` just after ``DefaultFlowCallback`` (which decides when to log), before ``report_to``'s.

    A stage's last figures and files then reach the backends (MLflow...) before their own ``on_train_end``
    closes their runs. The others keep their order; a loop over the list, running now, keeps its place
    (what follows ``callback`` does not move).
    """
    if callback not in callbacks:
        return
    flow = next((i for i, c in enumerate(callbacks) if isinstance(c, DefaultFlowCallback)), -1)
    if callbacks.index(callback) > flow + 1:
        callbacks.remove(callback)
        callbacks.insert(flow + 1, callback)


@contextlib.contextmanager
def _not_printed(trainer: Any) -> Iterator[None]:
    """Leave out the Trainer's console printers while our figures are logged.

    They go to ``report_to``'s backends and ``log_history``, never to the program's stdout (where
    ``PrinterCallback`` and ``ProgressCallback`` print logs).
    """
    handler = trainer.callback_handler
    every = list(handler.callbacks)
    handler.callbacks[:] = [c for c in every if not isinstance(c, (PrinterCallback, ProgressCallback))]
    try:
        yield
    finally:
        handler.callbacks[:] = every


def _json_options(flags: dict[str, bool], options: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments that survive ``trainer_state.json`` (the Trainer may rebuild the callback)."""
    kept: dict[str, Any] = dict(flags)
    for key, value in options.items():
        value = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue  # e.g. objects of the catalogue: not rebuilt, the defaults apply
        kept[key] = value
    return kept


_TRAINER_METHODS = ("evaluate", "predict", "train", "__init__")


def _calling_trainer() -> Any:
    """The ``Trainer`` whose method is on the call stack (the one creating or running this callback)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name in _TRAINER_METHODS:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Trainer):
                return candidate
        frame = frame.f_back
    return None


def _end_stages_on_exceptions() -> None:
    """Wrap ``Trainer.train``, ``evaluate`` and ``predict`` once: an exception ends the open stage at once.

    Done when a callback first attaches. The Trainer has no exception event: a stage whose exception the
    program caught would otherwise say ``running`` until the program ends. Trainers without this callback
    only pass through the wrapper.
    """
    for name in ("train", "evaluate", "predict"):
        function = getattr(Trainer, name)
        if getattr(function, "__nn_tracker__", False):
            continue

        def call(self: Any, *args: Any, __function: Any = function, **kwargs: Any) -> Any:
            try:
                return __function(self, *args, **kwargs)
            except BaseException as exception:
                handler = getattr(self, "callback_handler", None)
                for callback in getattr(handler, "callbacks", ()):
                    if isinstance(callback, NNTrackerCallback) and callback._stage_run is not None:
                        callback._raised(exception)
                raise

        functools.update_wrapper(call, function)
        call.__nn_tracker__ = True  # type: ignore[attr-defined]
        setattr(Trainer, name, call)


def _calls_of(trainer: Any) -> list[str]:
    """The names of ``trainer``'s ``evaluate``/``predict``/``train`` calls on the stack, innermost first."""
    if trainer is None:
        return []
    calls = []
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_name
        if name in ("evaluate", "predict", "train") and frame.f_locals.get("self") is trainer:
            calls.append(name)
        frame = frame.f_back
    return calls


__all__ = ["NNTrackerCallback"]
