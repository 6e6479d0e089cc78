"""The report as Markdown: a summary for a README, a model card or a paper's appendix."""

from __future__ import annotations

from typing import Any

from nn_tracker.report import tables, units


def _cell(value: Any) -> str:
    """Table cell text: pipes and line breaks would break the table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render(data: dict[str, Any]) -> str:
    """Markdown text of a (current-schema) report."""
    lines = [
        f"# Footprint of {_cell(data['project_name'])}",
        "",
        f"Run `{_cell(data['run_id'])}` · status **{data['status']}** · {_cell(tables.period(data))} · "
        f"measured by nn_tracker {data['software'].get('nn_tracker') or ''}".rstrip(),
        "",
        *_table(["", "value"], tables.headline(data)),
        "",
        "## Energy by phase",
        "",
        *_table(*tables.phases(data)),
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
                    c["intensity_source"]
                    if c.get("location_code")
                    else f"{c['intensity_g_per_kwh']:g} gCO2e/kWh (given)",
                    f"{c['pue']:g} ({c['pue_source']})",
                    f"{c['transport_factor']:g}",
                    units.carbon(c["operational_carbon_g"]),
                ]
                for c in data["datacentres"]
            ],
        ),
    ]
    others = tables.related(data)
    if others:
        lines += ["", "## This report and the other stages of the run", "", *_table(*others)]
    if data["footprint"]["embodied"]:
        lines += ["", "## Embodied carbon", "", *_table(*tables.embodied(data))]
    lines += ["", "## In everyday terms", "", *(f"- {line}" for line in tables.equivalents(data))]
    lines += ["", "## The same energy elsewhere", "", *_table(*tables.what_if(data))]
    if data["notes"]:
        lines += ["", "## Notes and caveats", ""]
        lines += [f"- {_cell(note)}" for note in data["notes"]]
    return "\n".join(lines) + "\n"
