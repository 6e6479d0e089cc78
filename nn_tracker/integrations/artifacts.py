"""A stage's report files logged as artifacts of the experiment trackers' runs (MLflow, Weights & Biases).

Used by both trainer callbacks after a stage's report is written (global rank 0): Lightning's
``MLFlowLogger`` and ``WandbLogger``, and the runs that transformers' ``report_to`` started (the MLflow
run still open then; none is logged to when none is). The files go under ``nn_tracker/`` in MLflow's
artifacts and are saved with the W&B run; the shared ``emissions.csv`` is left out (it holds every run's
rows). A failure is a warning, never an exception into training. Nothing is imported unless such a
logger or run is there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("nn_tracker")
ARTIFACT_FOLDER = "nn_tracker"


def to_mlflow(paths: Iterable[str | Path], run_id: str, client: Any) -> None:
    """Log ``paths`` as artifacts of the MLflow run ``run_id`` through ``client`` (an ``MlflowClient``)."""
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_FOLDER)


def to_wandb(paths: Iterable[str | Path], run: Any) -> None:
    """Save ``paths`` with the W&B ``run`` (uploaded now, kept in its files under their names)."""
    for path in paths:
        run.save(str(path), base_path=str(Path(path).parent), policy="now")


def own_files(paths: Iterable[str]) -> list[str]:
    """The run's own files: not the ``emissions.csv`` that every run appends to (it holds other runs' rows)."""
    return [p for p in paths if not str(p).endswith(".csv")]


def from_lightning(paths: list[str], loggers: Iterable[Any]) -> list[str]:
    """Log the report files to every MLflow and W&B logger of a Lightning trainer; return where they went."""
    paths = own_files(paths)
    went = []
    for logger in loggers:
        kind = type(logger).__name__
        try:
            if kind == "MLFlowLogger" and getattr(logger, "run_id", None):
                to_mlflow(paths, logger.run_id, logger.experiment)
                went.append(f"MLflow run {logger.run_id}")
            elif kind == "WandbLogger":
                to_wandb(paths, logger.experiment)
                went.append("W&B run")
        except Exception:  # the experiment tracker's trouble must never stop training
            log.warning("nn_tracker: could not log the report files to %s", kind, exc_info=True)
    return went


def from_transformers(paths: list[str], report_to: Iterable[str]) -> list[str]:
    """Log the report files to the MLflow and W&B runs that transformers' ``report_to`` uses; return where."""
    paths = own_files(paths)
    went = []
    wanted = set(report_to or ())
    if "mlflow" in wanted and "mlflow" in sys.modules:
        try:
            import mlflow

            run = mlflow.active_run()  # report_to's run, still open (our callback runs before it closes it)
            if run is not None:
                to_mlflow(paths, run.info.run_id, mlflow.MlflowClient())
                went.append(f"MLflow run {run.info.run_id}")
        except Exception:  # never into training
            log.warning("nn_tracker: could not log the report files to MLflow", exc_info=True)
    if "wandb" in wanted and "wandb" in sys.modules:
        try:
            import wandb

            if wandb.run is not None:
                to_wandb(paths, wandb.run)
                went.append("W&B run")
        except Exception:  # never into training
            log.warning("nn_tracker: could not log the report files to W&B", exc_info=True)
    return went
