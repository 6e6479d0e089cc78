"""The report as Markdown: a summary for a README, a model card or a paper's appendix."""

from __future__ import annotations

import re
from typing import Any

from nn_tracker.core.errors import printable
from nn_tracker.report import tables, units
from nn_tracker.report.document import Report

MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\<>[]|`"})
_AUTOLINK = re.compile(r"(?=://)|(?<=www)(?=\.)", re.IGNORECASE)  # where GitHub's Markdown starts a bare link


def markdown_text(value: Any) -> str:
    """Text from a report as inert Markdown: no HTML (``<script>``), no link or image, no table break.

    Control characters (terminal escapes, line breaks) are shown escaped; backslash, angle and square
    brackets, pipe and backtick are backslash-escaped, which CommonMark renders as the characters themselves;
    so are the ``:`` of ``://`` and the ``.`` of ``www.``: GitHub links no bare URL (an e-mail address
    still becomes a ``mailto:`` link there: its extension finds them after escapes are read).
    """
    return _AUTOLINK.sub("\\\\", printable(str(value)).translate(MARKDOWN_SPECIAL))


_cell = markdown_text  # a table cell: what would break the table or inject markup is escaped


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _requests(report: Report) -> list[str]:
    """The energy-per-request section (none without requests)."""
    sentence, requests = tables.requests(report)
    return ["", "## Energy per request", "", _cell(sentence), "", *_table(*requests)] if sentence else []


def render(report: Report) -> str:
    """Markdown text of a report."""
    lines = [
        f"# Footprint of {_cell(report.project_name)}",
        "",
        f"Run `{_cell(report.run_id)}` · status **{report.status}** · {_cell(tables.period(report))} · "
        f"measured by nn_tracker {_cell(report.software.get('nn_tracker') or '')}".rstrip(),
        "",
        *_table(["", "value"], tables.headline(report)),
        "",
        "## Energy by phase",
        "",
        *_table(*tables.phases(report)),
        "",
        "## Energy by device",
        "",
        *_table(
            ["device", "node", "how", "energy", "mean power", "peak power"],
            [
                [
                    f"{d.name} ({d.component})",
                    d.node,
                    f"{d.method}{': ' + d.model if d.model else ''}",
                    units.energy(d.energy_kwh),
                    units.power(d.mean_power_w),
                    units.power(d.peak_power_w),
                ]
                for d in report.devices
            ],
        ),
        "",
        "## Where the energy was used",
        "",
        *_table(
            ["datacentre", "grid intensity", "PUE", "transport factor", "carbon"],
            [
                [
                    c.name,
                    c.intensity_source if c.location_code else f"{c.intensity_g_per_kwh:g} gCO2e/kWh (given)",
                    f"{c.pue:g} ({c.pue_source})",
                    f"{c.transport_factor:g}",
                    units.carbon(c.operational_carbon_g),
                ]
                for c in report.datacentres
            ],
        ),
    ]
    resumed = tables.sessions(report)
    if resumed:
        lines += ["", "## Sessions of this resumed run", "", *_table(*resumed)]
    others = tables.related(report)
    if others:
        lines += ["", "## This report and the other stages of the run", "", *_table(*others)]
    lines += _requests(report)
    if report.footprint.embodied:
        lines += ["", "## Embodied carbon", "", *_table(*tables.embodied(report))]
    lines += ["", "## In everyday terms", "", *(f"- {_cell(line)}" for line in tables.equivalents(report))]
    lines += ["", "## The same energy elsewhere", "", *_table(*tables.what_if(report))]
    if report.notes:
        lines += ["", "## Notes and caveats", ""]
        lines += [f"- {_cell(note)}" for note in report.notes]
    return "\n".join(lines) + "\n"
