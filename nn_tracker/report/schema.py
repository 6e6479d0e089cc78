"""Reading saved reports: version check, upgrades of older versions, clear errors.

The JSON schema is documented in ``docs/report-schema.md``. A report of an older
version is upgraded in memory; one of a newer version, or anything that is not
an nn_tracker report, is a :class:`~nn_tracker.errors.ValidationError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nn_tracker.errors import ValidationError
from nn_tracker.report.model import SCHEMA_VERSION, hostname

REQUIRED = (
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
    "software",
    "equivalents",
    "what_if",
    "sampler",
)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added software versions, gap totals, nodes, equivalents and the what-if."""
    from nn_tracker.catalogue import bundled
    from nn_tracker.equivalents import equivalents, what_if

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


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


def upgrade(data: Any, where: str = "report") -> dict[str, Any]:
    """Bring a report dict to the current schema version, or raise a clear error."""
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
    try:
        while data["schema_version"] < SCHEMA_VERSION:
            data = UPGRADES[data["schema_version"]](data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(
            where, f"schema {version}", f"must be a complete report (cannot upgrade: {exc!r})"
        ) from None
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValidationError(f"{where}.{missing[0]}", None, "is missing")
    return data


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report (final or checkpoint) and upgrade it to the current schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError("report", str(path), f"must be a readable file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError("report", str(path), f"must be JSON (line {exc.lineno}: {exc.msg})") from None
    return upgrade(data, where=str(path))
