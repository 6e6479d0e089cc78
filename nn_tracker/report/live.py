"""The running figures a tracker gives loggers, status lines and metrics endpoints.

Every figure but ``power/total_w`` is cumulative and never goes down while a run goes on (the
trainer callbacks log them for the run as a whole: every process, every stage, see
:class:`~nn_tracker.integrations.stages.LoggedSeries`). ``power/total_w`` is the power over the
interval that ended at each device's last reading.

| name | what |
| --- | --- |
| ``energy/gpu_kwh``, ``energy/cpu_kwh``, ``energy/ram_kwh`` | IT energy per component (``None``: not measured) |
| ``energy/total_kwh`` | IT energy of every device so far |
| ``energy/facility_kwh`` | IT energy x PUE so far |
| ``power/total_w`` | power of this process's devices at their last reading |
| ``carbon/operational_g`` | operational carbon so far |
| ``carbon/total_g`` | operational + amortised embodied carbon so far |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report

LIVE_METRICS = (
    "energy/gpu_kwh",
    "energy/cpu_kwh",
    "energy/ram_kwh",
    "energy/total_kwh",
    "energy/facility_kwh",
    "power/total_w",
    "carbon/operational_g",
    "carbon/total_g",
)


CUMULATIVE_METRICS = tuple(name for name in LIVE_METRICS if not name.startswith("power/"))


def live_figures(report: Report | IncompleteReport, power_w: float) -> dict[str, float | None]:
    """The running figures from a report so far and the current power (``None``: not known)."""
    if report.incomplete:
        return {**dict.fromkeys(LIVE_METRICS), "power/total_w": power_w}
    report = cast("Report", report)
    by_component = report.energy.by_component_kwh
    footprint = report.footprint
    return {
        "energy/gpu_kwh": by_component.get("gpu"),
        "energy/cpu_kwh": by_component.get("cpu"),
        "energy/ram_kwh": by_component.get("ram"),
        "energy/total_kwh": report.energy_kwh,
        "energy/facility_kwh": footprint.facility_energy_kwh,
        "power/total_w": power_w,
        "carbon/operational_g": footprint.operational_carbon_g,
        "carbon/total_g": footprint.total_carbon_g,
    }
