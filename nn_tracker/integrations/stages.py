"""The stages of a trainer (fit, validate, test, predict) as nn_tracker phases and report summaries."""

from __future__ import annotations

from typing import Any

STAGE_PHASES = {
    "fit": ("training",),
    "train": ("training",),
    "validate": ("validation",),
    "evaluate": ("validation",),
    "test": ("querying", "test"),
    "predict": ("querying", "predict"),
}


def stage_phases(stage: str) -> tuple[str, ...]:
    """The nested phases a stage runs in (``("querying", "test")`` for ``test``); unknown stages as named."""
    return STAGE_PHASES.get(stage, (stage,))


def stage_summary(stage: str, report: Any) -> dict[str, Any]:
    """What a later stage's report says of an earlier one: its totals and where its report is."""
    data = report.to_dict()
    return {
        "stage": stage,
        "run_id": data["run_id"],
        "status": data["status"],
        "started_at": data.get("started_at"),
        "duration_s": data["duration_s"],
        "it_energy_kwh": (data.get("energy") or {}).get("it_kwh"),
        "total_carbon_g": (data.get("footprint") or {}).get("total_carbon_g"),
        "report": report.paths[0] if report.paths else None,
    }
