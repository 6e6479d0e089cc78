"""One row per run in CodeCarbon's ``emissions.csv`` columns and units, appended safely.

Units as CodeCarbon: duration s, emissions kgCO2e, emissions_rate kgCO2e/s, power W
(mean over the run), energy kWh. ``energy_consumed`` is the facility energy (IT x PUE)
that the emissions come from. A component that was not measured is an empty cell,
never 0. Extra columns at the end: ``status``, ``nn_tracker_version``, ``energy_methods``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from nn_tracker.report.files import append_whole

COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "on_cloud",
    "pue",
    "status",
    "nn_tracker_version",
    "energy_methods",
)


def row(data: dict[str, Any]) -> dict[str, Any]:
    """The CSV row of a (current-schema) report."""
    duration = data["duration_s"]
    footprint = data["footprint"]
    emissions_kg = footprint["total_carbon_g"] / 1000
    by_component = data["energy"]["by_component_kwh"]
    centre = data["datacentres"][0]
    kind, code = centre.get("location_kind"), centre.get("location_code") or ""
    gpus = [d for d in data["devices"] if d["component"] == "gpu"]
    stamp = data["ended_at"] or data["started_at"]

    def mean_power(component: str) -> float | str:
        kwh = by_component.get(component)
        return "" if kwh is None or duration <= 0 else kwh * 3.6e6 / duration

    return {
        "timestamp": datetime.fromisoformat(stamp).strftime("%Y-%m-%dT%H:%M:%S") if stamp else "",
        "project_name": data["project_name"],
        "run_id": data["run_id"],
        "experiment_id": "",
        "duration": duration,
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / duration if duration > 0 else "",
        "cpu_power": mean_power("cpu"),
        "gpu_power": mean_power("gpu"),
        "ram_power": mean_power("ram"),
        "cpu_energy": _blank(by_component.get("cpu")),
        "gpu_energy": _blank(by_component.get("gpu")),
        "ram_energy": _blank(by_component.get("ram")),
        "energy_consumed": footprint["training_energy_kwh"] + footprint["querying_energy_kwh"],
        "country_name": centre["name"] if kind == "country" else "",
        "country_iso_code": code if kind == "country" else "",
        "region": code if kind in ("us_state", "grid_zone") else "",
        "cloud_provider": code.split(":")[0] if kind == "cloud_region" else "",
        "cloud_region": code.split(":", 1)[1] if kind == "cloud_region" else "",
        "os": data["machine"].get("os", ""),
        "python_version": data["software"].get("python", ""),
        "codecarbon_version": "",
        "cpu_count": data["machine"].get("logical_cpus", ""),
        "cpu_model": data["machine"].get("cpu_model") or "",
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(sorted({d["name"] for d in gpus})),
        "longitude": "",
        "latitude": "",
        "ram_total_size": "",
        "tracking_mode": data.get("settings", {}).get("attribution", ""),
        "on_cloud": "Yes" if kind == "cloud_region" else "No",
        "pue": centre["pue"],
        "status": data["status"],
        "nn_tracker_version": data["software"].get("nn_tracker") or "",
        "energy_methods": ";".join(sorted(data["energy"]["by_method_kwh"])),
    }


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


def render(data: dict[str, Any], header: bool = True) -> str:
    """The row as CSV text (with the header line if ``header``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerow(row(data))
    return buffer.getvalue()


def append(path: str | Path, data: dict[str, Any]) -> Path:
    """Append the run's row to ``path`` (header first if the file is new or empty), whole or not at all.

    See :func:`~nn_tracker.report.files.append_whole`: locked, torn rows cut, never through a symlink.

    Raises:
        OSError: the row could not be written (the file is as it was).

    """
    return append_whole(path, lambda size: render(data, header=size == 0).encode("utf-8"))
