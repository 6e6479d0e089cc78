"""The report as Markdown: a summary for a README, a model card or a paper's appendix."""

from __future__ import annotations

from typing import Any

from nn_tracker.report import units


def _cell(value: Any) -> str:
    """Table cell text: pipes and line breaks would break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def headline_rows(data: dict[str, Any]) -> list[list[str]]:
    """The figures shown first, in Markdown and HTML alike."""
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


def render(data: dict[str, Any]) -> str:
    """Markdown text of a (current-schema) report."""
    lines = [
        f"# Footprint of {_cell(data['project_name'])}",
        "",
        f"Run `{_cell(data['run_id'])}` · status **{data['status']}** · {data['started_at']} → "
        f"{data['ended_at'] or 'still running'} · {units.duration(data['duration_s'])} · "
        f"measured by nn_tracker {data['software'].get('nn_tracker') or ''}".rstrip(),
        "",
        *_table(["", "value"], headline_rows(data)),
        "",
        "## Energy by phase",
        "",
        *_table(
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
        ),
        "",
        "## Energy by device",
        "",
        *_table(
            ["device", "node", "how", "energy", "mean power", "peak power"],
            [
                [
                    f"{d['name']} ({d['component']})",
                    d["node"],
                    f"{d['method']}{': ' + d['model'] if d['model'] else ''}",
                    units.energy(d["energy_kwh"]),
                    units.power(d["mean_power_w"]),
                    units.power(d["peak_power_w"]),
                ]
                for d in data["devices"]
            ],
        ),
        "",
        "## Where the energy was used",
        "",
        *_table(
            ["datacentre", "grid intensity", "PUE", "transport factor", "carbon"],
            [
                [
                    c["name"],
                    c["intensity_source"] if c["location_code"] else f"{c['intensity_g_per_kwh']:g} gCO2e/kWh (given)",
                    f"{c['pue']:g} ({c['pue_source']})",
                    f"{c['transport_factor']:g}",
                    units.carbon(c["operational_carbon_g"]),
                ]
                for c in data["datacentres"]
            ],
        ),
    ]
    embodied = data["footprint"]["embodied"]
    if embodied:
        lines += ["", "## Embodied carbon", ""]
        lines += _table(
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
                for e in embodied
            ],
        )
    lines += ["", "## In everyday terms", ""]
    lines += [
        f"- {units.number(e['value'])} {e['label']} ({e['factor']:g} {e['unit']}; {e['source']})"
        for e in data["equivalents"]
    ]
    lines += ["", "## The same energy elsewhere", ""]
    lines += _table(
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
    if data["notes"]:
        lines += ["", "## Notes and caveats", ""]
        lines += [f"- {_cell(note)}" for note in data["notes"]]
    return "\n".join(lines) + "\n"
