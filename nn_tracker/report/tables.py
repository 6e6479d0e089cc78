"""The tables of a report, as header and rows of text: shared by the Markdown and HTML renderers."""

from __future__ import annotations

from typing import Any

from nn_tracker.report import units

Table = tuple[list[str], list[list[str]]]


def period(data: dict[str, Any]) -> str:
    """When the run happened; a checkpoint of a run that never stopped says it may have been interrupted."""
    if data["status"] != "running":
        return f"{data['started_at']} → {data['ended_at']} · {units.duration(data['duration_s'])}"
    last = data.get("checkpointed_at") or "unknown"
    return (
        f"{data['started_at']} → last checkpoint {last} · {units.duration(data['duration_s'])} so far "
        "(if the job is no longer running, it was interrupted after this checkpoint)"
    )


def related(data: dict[str, Any]) -> Table | None:
    """The other runs listed in the report (earlier stages of the same trainer) and the total with this one."""
    runs = data.get("related_runs") or []
    if not runs:
        return None
    rows = [
        [
            r.get("stage") or "",
            r["run_id"],
            r["status"],
            units.duration(r["duration_s"]),
            units.energy(r.get("it_energy_kwh")),
            units.carbon(r.get("total_carbon_g")),
        ]
        for r in runs
    ]
    rows.append(
        [
            "this report",
            data["run_id"],
            data["status"],
            units.duration(data["duration_s"]),
            units.energy(data["energy"]["it_kwh"]),
            units.carbon(data["footprint"]["total_carbon_g"]),
        ]
    )
    energies = [r.get("it_energy_kwh") for r in runs] + [data["energy"]["it_kwh"]]
    carbons = [r.get("total_carbon_g") for r in runs] + [data["footprint"]["total_carbon_g"]]
    rows.append(
        [
            "all of them",
            "",
            "",
            units.duration(sum(r["duration_s"] for r in runs) + data["duration_s"]),
            units.energy(sum(e for e in energies if e is not None)),
            units.carbon(sum(c for c in carbons if c is not None)),
        ]
    )
    return ["stage", "run", "status", "duration", "IT energy", "total carbon"], rows


def headline(data: dict[str, Any]) -> list[list[str]]:
    """The figures shown first."""
    footprint = data["footprint"]
    facility_kwh = footprint["training_energy_kwh"] + footprint["querying_energy_kwh"]
    embodied = footprint["embodied_carbon_amortised_g"]
    rows = [
        ["Energy, IT (measured or estimated per device)", units.energy(data["energy"]["it_kwh"])],
        ["Energy, facility (IT x PUE)", units.energy(facility_kwh)],
        ["Operational carbon", units.carbon(footprint["operational_carbon_g"])],
        ["Embodied carbon, amortised over the run", "not included" if embodied is None else units.carbon(embodied)],
        ["Total carbon", units.carbon(footprint["total_carbon_g"])],
    ]
    resolved = footprint.get("time_resolved")
    if resolved:
        rows.insert(
            3,
            [
                f"Operational carbon, time-resolved (series column {resolved.get('series_column') or '?'}; "
                f"{units.energy(resolved['uncovered_energy_kwh'])} outside it at the yearly average)",
                units.carbon(resolved["operational_carbon_g"]),
            ],
        )
    per_phase = [(kind, phase, u) for kind, unit in data["units"].items() for phase, u in unit["by_phase"].items()]
    for kind, phase, u in sorted(per_phase, key=lambda item: -item[2]["count"])[:6]:  # the most counted
        rows.append([f"Per {kind} ({phase})", units.carbon(u["carbon_g_per_unit"])])
    return rows


def phases(data: dict[str, Any]) -> Table:
    """Energy and time per phase, own and with nested phases."""
    return (
        ["phase", "energy (own)", "energy (with nested)", "duration", "units"],
        [
            [
                name,
                units.energy(p["energy_kwh"]),
                units.energy(p["inclusive_energy_kwh"]),
                units.duration(p["duration_s"]),
                ", ".join(f"{units.number(n)} {k}" for k, n in p["units"].items()),
            ]
            for name, p in data["phases"].items()
        ],
    )


def embodied(data: dict[str, Any]) -> Table:
    """Embodied carbon per hardware, with method, source and lifetime."""
    return (
        ["hardware", "count", "per unit", "method and source", "life", "amortised"],
        [
            [
                e["name"],
                units.number(e["count"]),
                f"{e['embodied_kg_per_unit']:g} kgCO2e",
                f"{e['method']} ({e['source']})",
                f"{e['lifetime_years']:g} years at {e['utilisation']:.0%}",
                units.carbon(e["amortised_g"]),
            ]
            for e in data["footprint"]["embodied"]
        ],
    )


def what_if(data: dict[str, Any]) -> Table:
    """The same energy under other grids."""
    return (
        ["place", "why", "grid intensity", "total carbon"],
        [
            [
                f"{p['name']} ({p['code']})",
                p["why"],
                f"{p['intensity_g_per_kwh']:g} gCO2e/kWh ({p['year'] or 'year n/a'})",
                units.carbon(p["total_carbon_g"]),
            ]
            for p in data["what_if"]["places"]
        ],
    )


def per_unit(data: dict[str, Any]) -> Table:
    """Energy and carbon per functional unit, per kind and phase (the phase's own energy and time)."""
    return (
        ["unit", "phase", "count", "facility energy per unit", "carbon per unit"],
        [
            [
                kind,
                phase,
                units.number(u["count"]),
                units.energy(u["facility_energy_kwh_per_unit"]),
                units.carbon(u["carbon_g_per_unit"]),
            ]
            for kind, unit in data["units"].items()
            for phase, u in unit["by_phase"].items()
        ],
    )


def equivalents(data: dict[str, Any]) -> list[str]:
    """One sentence per equivalent, with its factor and source."""
    return [
        f"{units.number(e['value'])} {e['label']} ({e['factor']:g} {e['unit']}; {e['source']})"
        for e in data["equivalents"]
    ]
