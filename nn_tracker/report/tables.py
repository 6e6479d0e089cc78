"""The tables of a report, as header and rows of text: shared by the Markdown and HTML renderers."""

from __future__ import annotations

from typing import Any

from nn_tracker.report import units

Table = tuple[list[str], list[list[str]]]


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
            3, ["Operational carbon, time-resolved (intensity series)", units.carbon(resolved["operational_carbon_g"])]
        )
    for kind, unit in data["units"].items():
        rows.append([f"Per {kind} ({', '.join(unit['basis_phases'])})", units.carbon(unit["carbon_g_per_unit"])])
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
    """Energy and carbon per functional unit."""
    return (
        ["unit", "count", "phases", "facility energy per unit", "carbon per unit"],
        [
            [
                k,
                units.number(u["count"]),
                ", ".join(u["basis_phases"]),
                units.energy(u["facility_energy_kwh_per_unit"]),
                units.carbon(u["carbon_g_per_unit"]),
            ]
            for k, u in data["units"].items()
        ],
    )


def equivalents(data: dict[str, Any]) -> list[str]:
    """One sentence per equivalent, with its factor and source."""
    return [
        f"{units.number(e['value'])} {e['label']} ({e['factor']:g} {e['unit']}; {e['source']})"
        for e in data["equivalents"]
    ]
