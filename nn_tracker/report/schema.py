"""Reading saved reports: version check, upgrades of older versions, clear errors.

The schema is the report's types (:mod:`nn_tracker.report.document`; ``docs/report-schema.md``
is generated from them). A report of an older version is upgraded in memory, then read into
those types, every field checked; one of a newer version, or anything that is not an
nn_tracker report, is a :class:`~nn_tracker.core.errors.ValidationError`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nn_tracker.core.errors import ValidationError, shorten
from nn_tracker.core.node import hostname
from nn_tracker.report.codec import from_json
from nn_tracker.report.document import SCHEMA_VERSION, Datacentre, Phase, Report

BASE_REQUIRED = (  # present since version 1: checked before upgrading
    "schema_version",
    "run_id",
    "project_name",
    "status",
    "duration_s",
    "energy",
    "devices",
    "phases",
    "datacentres",
    "footprint",
    "units",
    "notes",
)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added software versions, gap totals, nodes, equivalents and the what-if."""
    from nn_tracker.footprint.catalogue import bundled
    from nn_tracker.footprint.equivalents import equivalents, what_if

    host = data.get("machine", {}).get("hostname") or hostname()
    for device in data["devices"]:
        device.setdefault("node", host)
    if "nodes" not in data:
        nodes: dict[str, Any] = {}
        for device in data["devices"]:
            node = nodes.setdefault(device["node"], {"energy_kwh": 0.0, "devices": []})
            node["energy_kwh"] += device["energy_kwh"]
            node["devices"].append(device["device_id"])
        data["nodes"] = nodes
    data["software"] = {"nn_tracker": data.get("machine", {}).get("nn_tracker"), "note": "upgraded from schema 1"}
    data.setdefault("sampler", {})["gap_s"] = sum(d.get("gap_s", 0.0) for d in data["devices"])
    footprint = data["footprint"]
    facility_kwh = footprint["training_energy_kwh"] + footprint["querying_energy_kwh"]
    data["equivalents"] = equivalents(footprint["total_carbon_g"], facility_kwh, bundled())
    data["what_if"] = what_if(facility_kwh, footprint["embodied_carbon_amortised_g"], bundled())
    data["schema_version"] = 2
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 gives per-unit figures per phase (version 2 divided a root's energy by all its units)."""
    from nn_tracker.report.carbon import per_unit
    from nn_tracker.report.codec import to_json

    phases = from_json(dict[str, Phase], data["phases"], "report.phases")
    centres = from_json(list[Datacentre], data["datacentres"], "report.datacentres")
    units = {name: phase.units for name, phase in phases.items() if phase.units}
    embodied_g = data["footprint"].get("embodied_carbon_amortised_g")
    data["units"] = to_json(per_unit(units, phases, centres, embodied_g, data["duration_s"]))
    data["schema_version"] = 3
    return data


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 lists the run's sessions (a version-3 report is one session) and each device's carbon (unknown)."""
    footprint = data["footprint"]
    units: dict[str, float] = {}
    for phase in data["phases"].values():
        for kind, count in (phase.get("units") or {}).items():
            units[kind] = units.get(kind, 0) + count
    data["sessions"] = [
        {
            "run_id": data["run_id"],
            "current": True,
            "started_at": data.get("started_at"),
            "ended_at": data.get("ended_at"),
            "duration_s": data["duration_s"],
            "processes": None,  # not known
            "it_energy_kwh": data["energy"]["it_kwh"],
            "it_energy_kwh_by_component": {
                c: kwh for c, kwh in data["energy"].get("by_component_kwh", {}).items() if kwh is not None
            },
            "facility_energy_kwh": footprint["training_energy_kwh"] + footprint["querying_energy_kwh"],
            "operational_carbon_g": footprint["operational_carbon_g"],
            "embodied_carbon_amortised_g": footprint.get("embodied_carbon_amortised_g"),
            "total_carbon_g": footprint["total_carbon_g"],
            "units": units,
        }
    ]
    data["schema_version"] = 4
    return data


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 added the optional ``requests`` section: nothing to change."""
    data["schema_version"] = 5
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
}


def upgrade(data: Any, where: str = "report") -> Report:
    """Bring a report dict to the current schema version and read it into a :class:`Report`, or raise a clear error."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ValidationError(where, type(data).__name__, "must be an nn_tracker report (no schema_version field)")
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError(f"{where}.schema_version", version, "must be a positive integer")
    if version > SCHEMA_VERSION:
        raise ValidationError(
            f"{where}.schema_version",
            version,
            f"is newer than this nn_tracker reads ({SCHEMA_VERSION}); upgrade nn_tracker",
        )
    if data.get("incomplete") is True:
        notes = data.get("notes") if isinstance(data.get("notes"), list) else []
        why = f" ({shorten(notes[0])})" if notes and isinstance(notes[0], str) else ""
        raise ValidationError(
            f"{where}.incomplete", True, f"has no figures to read: the run's report could not be built{why}"
        )
    missing = [key for key in BASE_REQUIRED if key not in data]  # in every version: say so before upgrading
    if missing:
        raise ValidationError(f"{where}.{missing[0]}", None, "is missing")
    if not isinstance(data["datacentres"], list) or not data["datacentres"]:  # the upgrades divide by them
        raise ValidationError(f"{where}.datacentres", data["datacentres"], "must be a list with at least 1 item(s)")
    try:
        while data["schema_version"] < SCHEMA_VERSION:
            data = UPGRADES[data["schema_version"]](data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(
            where, f"schema {version}", f"must be a complete report (cannot upgrade: {exc!r})"
        ) from None
    result: Report = from_json(Report, data, where)
    return result


def load_report(path: str | Path) -> Report:
    """Read a saved report (final or checkpoint) and upgrade it to the current schema."""
    from nn_tracker.core import inputs

    path = Path(path)
    data = inputs.load_json(inputs.read_text(path, "report"), str(path))
    return upgrade(data, where=str(path))
