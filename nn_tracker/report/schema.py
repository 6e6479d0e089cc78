"""Reading saved reports: version check, upgrades of older versions, clear errors.

The JSON schema is documented in ``docs/report-schema.md``. A report of an older
version is upgraded in memory; one of a newer version, or anything that is not
an nn_tracker report, is a :class:`~nn_tracker.errors.ValidationError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from nn_tracker.errors import ValidationError
from nn_tracker.node import hostname
from nn_tracker.report.model import SCHEMA_VERSION, STATUSES

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


BASE_REQUIRED = REQUIRED[:11]  # schema_version ... notes: present since version 1


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


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 gives per-unit figures per phase (version 2 divided a root's energy by all its units)."""
    from nn_tracker.report.model import per_unit

    phases = data["phases"]
    units = {name: phase.get("units", {}) for name, phase in phases.items() if phase.get("units")}
    data["units"] = per_unit(
        units, phases, data["datacentres"], data["footprint"].get("embodied_carbon_amortised_g"), data["duration_s"]
    )
    data["schema_version"] = 3
    return data


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


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
    missing = [key for key in BASE_REQUIRED if key not in data]  # in every version: say so before upgrading
    if missing:
        raise ValidationError(f"{where}.{missing[0]}", None, "is missing")
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
    _check(data, REPORT, where)
    return data


# ----- the shape of a current report, checked before anything renders it -----------------------------------
class _Num:
    """A finite number (``null`` allowed when ``optional``)."""

    def __init__(self, optional: bool = False, minimum: float | None = None) -> None:
        self.optional, self.minimum = optional, minimum


class _Str:
    def __init__(self, optional: bool = False, choices: tuple[str, ...] = ()) -> None:
        self.optional, self.choices = optional, choices


class _Time(_Str):
    """An ISO 8601 time, as ``datetime.fromisoformat`` reads it (``null`` allowed when ``optional``)."""


class _Map:
    """An object whose values all follow ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _List:
    def __init__(self, spec: Any, min_items: int = 0) -> None:
        self.spec, self.min_items = spec, min_items


class _Opt:
    """``null`` or ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class _Absent:
    """A key that may be absent; when present, it follows ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


NUMS = _Map(_Num())
OPTIONAL_NUMS = _Map(_Num(optional=True))
POINT = {
    "start_s": _Num(),
    "end_s": _Num(),
    "mean_power_w": OPTIONAL_NUMS,
    "peak_power_w": OPTIONAL_NUMS,
    "energy_j": OPTIONAL_NUMS,
    "phase_s": _Absent(NUMS),
    "phase_energy_j": _Absent(NUMS),
}
EMBODIED = {
    "name": _Str(),
    "count": _Num(),
    "embodied_kg_per_unit": _Num(),
    "method": _Str(),
    "source": _Str(),
    "lifetime_years": _Num(),
    "utilisation": _Num(),
    "amortised_g": _Num(),
}
REPORT = {
    "run_id": _Str(),
    "project_name": _Str(),
    "status": _Str(choices=STATUSES),
    "started_at": _Time(optional=True),
    "ended_at": _Time(optional=True),
    "checkpointed_at": _Absent(_Time(optional=True)),
    "duration_s": _Num(minimum=0),
    "error": _Opt({"type": _Str(), "message": _Str()}),
    "software": _Map(_Str(optional=True)),
    "machine": _Absent(
        {
            "os": _Absent(_Str(optional=True)),
            "logical_cpus": _Absent(_Num(optional=True)),
            "cpu_model": _Absent(_Str(optional=True)),
        }
    ),
    "settings": _Absent(
        {
            "attribution": _Absent(_Str(optional=True)),
            "training_type": _Absent(_Str(choices=("pre-training", "fine-tuning"))),
        }
    ),
    "energy": {"it_kwh": _Num(), "by_component_kwh": _Map(_Num(optional=True)), "by_method_kwh": NUMS},
    "devices": _List(
        {
            "device_id": _Str(),
            "component": _Str(),
            "name": _Str(),
            "method": _Str(),
            "model": _Str(optional=True),
            "node": _Str(),
            "energy_kwh": _Num(optional=True),
            "energy_kwh_by_phase": NUMS,
            "mean_power_w": _Num(optional=True),
            "peak_power_w": _Num(optional=True),
            "last_power_w": _Absent(_Num(optional=True)),
            "measured_s": _Num(),
            "gap_s": _Num(),
            "notes": _List(_Str()),
        }
    ),
    "phases": _Map(
        {
            "energy_kwh": _Num(),
            "inclusive_energy_kwh": _Num(),
            "duration_s": _Num(),
            "inclusive_duration_s": _Num(),
            "units": NUMS,
        }
    ),
    "datacentres": _List(
        {
            "name": _Str(),
            "phases": _List(_Str()),
            "location_code": _Absent(_Str(optional=True)),
            "location_kind": _Absent(_Str(optional=True)),
            "intensity_g_per_kwh": _Num(),
            "intensity_source": _Str(),
            "pue": _Num(),
            "pue_source": _Str(),
            "transport_factor": _Num(),
            "it_energy_kwh": _Num(),
            "facility_energy_kwh": _Num(),
            "operational_carbon_g": _Num(),
        },
        min_items=1,
    ),
    "footprint": {
        "training_energy_kwh": _Num(),
        "querying_energy_kwh": _Num(),
        "operational_carbon_g": _Num(),
        "embodied_carbon_amortised_g": _Num(optional=True),
        "embodied": _List(EMBODIED),
        "total_carbon_g": _Num(),
        "time_resolved": _Opt(
            {
                "operational_carbon_g": _Num(),
                "uncovered_energy_kwh": _Num(),
                "series_column": _Absent(_Str(optional=True)),
            }
        ),
    },
    "units": _Map(
        {
            "count": _Num(),
            "by_phase": _Map(
                {
                    "count": _Num(),
                    "facility_energy_kwh": _Num(),
                    "carbon_g": _Num(),
                    "facility_energy_kwh_per_unit": _Num(optional=True),
                    "carbon_g_per_unit": _Num(optional=True),
                }
            ),
        }
    ),
    "equivalents": _List({"value": _Num(), "label": _Str(), "factor": _Num(), "unit": _Str(), "source": _Str()}),
    "what_if": {
        "places": _List(
            {
                "name": _Str(),
                "code": _Str(),
                "why": _Str(),
                "intensity_g_per_kwh": _Num(),
                "year": _Num(optional=True),
                "total_carbon_g": _Num(),
            }
        )
    },
    "related_runs": _Absent(
        _List(
            {
                "stage": _Absent(_Str(optional=True)),
                "run_id": _Str(),
                "status": _Str(),
                "duration_s": _Num(),
                "it_energy_kwh": _Absent(_Num(optional=True)),
                "total_carbon_g": _Absent(_Num(optional=True)),
            }
        )
    ),
    "sampler": dict,
    "notes": _List(_Str()),
    "timeline": _Opt({"bucket_s": _Num(), "devices": _List(_Str()), "points": _List(POINT)}),
}


def _check(value: Any, spec: Any, where: str) -> None:
    """Raise one :class:`ValidationError` naming the first place where ``value`` breaks ``spec``."""
    if isinstance(spec, _Opt):
        if value is not None:
            _check(value, spec.spec, where)
    elif isinstance(spec, _Num):
        if value is None and spec.optional:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(where, value, "must be a finite number" + (" or null" if spec.optional else ""))
        if spec.minimum is not None and value < spec.minimum:
            raise ValidationError(where, value, f"must be >= {spec.minimum:g}")
    elif isinstance(spec, _Str):
        if value is None and spec.optional:
            return
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            rule = f"must be one of {', '.join(spec.choices)}" if spec.choices else "must be a string"
            raise ValidationError(where, value, rule)
        if isinstance(spec, _Time):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValidationError(where, value, "must be an ISO 8601 time") from None
    elif isinstance(spec, _List):
        if not isinstance(value, list) or len(value) < spec.min_items:
            more = f" with at least {spec.min_items} item(s)" if spec.min_items else ""
            raise ValidationError(where, _short(value), f"must be a list{more}")
        for i, item in enumerate(value):
            _check(item, spec.spec, f"{where}[{i}]")
    elif isinstance(spec, _Map):
        if not isinstance(value, dict):
            raise ValidationError(where, _short(value), "must be an object")
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}")
    elif spec is dict:
        if not isinstance(value, dict):
            raise ValidationError(where, _short(value), "must be an object")
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ValidationError(where, _short(value), "must be an object")
        for key, item_spec in spec.items():
            if key not in value:
                if isinstance(item_spec, _Absent):
                    continue
                raise ValidationError(f"{where}.{key}", None, "is missing")
            _check(value[key], item_spec.spec if isinstance(item_spec, _Absent) else item_spec, f"{where}.{key}")


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report (final or checkpoint) and upgrade it to the current schema."""
    from nn_tracker import inputs

    path = Path(path)
    data = inputs.load_json(inputs.read_text(path, "report"), str(path))
    return upgrade(data, where=str(path))
