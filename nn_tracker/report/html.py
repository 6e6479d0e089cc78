"""The report as one self-contained HTML page: no scripts, no external assets, opens offline.

The power plot is an inline SVG drawn from the downsampled timeline, so a 30-day
run gives a page as small as a 30-second one. Every string from the report is
escaped.
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.report import tables, units
from nn_tracker.report.document import Footprint, Report, Timeline, TimelinePoint

PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1000px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem}.meta{color:#555;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:1rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:12rem}
.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;font-size:.92rem}
th,td{border-bottom:1px solid #e5e5e5;padding:.35rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:break-word}
#power-plot{max-width:100%;height:auto}
.hbar{background:#1f77b4;height:.8rem;min-width:2px}.histogram td:nth-child(2){width:60%}
.v{white-space:nowrap}
th{background:#f6f6f6}.legend span{margin-right:1.2rem;white-space:nowrap}
.swatch{display:inline-block;width:.9rem;height:.9rem;border-radius:2px;margin-right:.3rem;vertical-align:middle}
.bar{display:flex;height:1.6rem;border-radius:4px;overflow:hidden;margin:.5rem 0}
.notes li{margin:.3rem 0}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


_VALUE = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?( [^\s()]+){1,3}$")  # "13 s", "1 h 5 min", "3.41 mgCO2e"


_LONG_TOKEN = re.compile(r"\S{16,}")  # a URL, a path, an identifier: may wrap after / _ . : only


def _value(text: Any) -> str:
    """Escaped text; a number with its unit never breaks across lines, a word never inside itself."""
    if _VALUE.match(str(text)) and len(str(text)) < 24:
        return f'<span class="v">{_e(text)}</span>'
    return _LONG_TOKEN.sub(lambda m: re.sub(r"([/_.:])", r"\1<wbr>", m[0]), _e(text))


def table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table of text cells (escaped; numbers with units never break)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_value(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


BAND_COLOURS = ("#eef3fb", "#fdf2e6", "#edf7ee", "#f5eefa", "#fbeeee", "#eef8f8")


def power_plot(timeline: Timeline | None, labels: dict[str, str], width: int = 900, height: int = 320) -> str:
    """Inline SVG of mean power per device over time: 1-2-5 ticks, phase bands, no label outside the frame."""
    points = timeline.points if timeline else []
    devices = timeline.devices if timeline else []
    if not points or not devices:
        return "<p>No power timeline in this report.</p>"
    left, right, top, bottom = 72, 40, 24, 44
    span_s = max(p.end_s for p in points) or 1.0
    peak_w = max((w for p in points for w in p.mean_power_w.values() if w is not None), default=0.0) or 1.0
    step_w = units.nice_step(peak_w * 1.05, 5)
    axis_w = step_w * math.ceil(peak_w * 1.05 / step_w)

    def x(seconds: float) -> float:
        return left + (width - left - right) * seconds / span_s

    def y(watts: float) -> float:
        return top + (height - top - bottom) * (1 - watts / axis_w)

    parts = [
        f'<svg id="power-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Power over time per device">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="#fff" stroke="#999"/>',
    ]
    parts += _phase_bands(points, x, top, height - bottom)
    parts += _ticks(x, y, (left, right, bottom, width, height), span_s, step_w, axis_w)
    for index, device in enumerate(devices):
        coords = [
            f"{x((p.start_s + p.end_s) / 2):.1f},{y(watts):.1f}"
            for p in points
            if (watts := p.mean_power_w.get(device)) is not None
        ]
        if len(coords) == 1:
            coords.append(coords[0])
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<polyline class="device-line" data-device="{_e(device)}" fill="none" stroke="{colour}" '
            f'stroke-width="2.5" points="{" ".join(coords)}"><title>{_e(labels.get(device, device))}'
            "</title></polyline>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></i>{_e(labels.get(d, d))}</span>'
        for i, d in enumerate(devices)
    )
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def _ticks(
    x: Any, y: Any, frame: tuple[int, int, int, int, int], span_s: float, step_w: float, axis_w: float
) -> list[str]:
    """Power gridlines with 1-2-5 labels, time labels that stay in the frame, and the axis title."""
    left, right, bottom, width, height = frame
    parts = []
    for i in range(round(axis_w / step_w) + 1):
        watts = step_w * i
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(watts):.1f}" y2="{y(watts):.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y(watts) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_e(units.power(watts))}</text>"
        )
    step_s = units.nice_time_step(span_s)
    for i in range(int(span_s / step_s + 1e-9) + 1):
        seconds = step_s * i
        anchor = "end" if x(seconds) > width - right - 20 else "middle"  # the last label stays in the frame
        parts.append(
            f'<text x="{x(seconds):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="{anchor}">'
            f"{_e(units.duration(seconds))}</text>"
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
        "time since start</text>"
    )
    return parts


def _phase_bands(points: list[TimelinePoint], x: Any, top: float, bottom: float) -> list[str]:
    """Shaded spans of the root phase that filled most of each bucket, labelled when wide enough."""
    spans: list[list[Any]] = []  # [phase, start, end]
    for point in points:
        phase_s = point.phase_s
        if not phase_s:
            continue
        phase = max(phase_s, key=phase_s.__getitem__)
        if spans and spans[-1][0] == phase and abs(spans[-1][2] - point.start_s) < 1e-6:
            spans[-1][2] = point.end_s
        else:
            spans.append([phase, point.start_s, point.end_s])
    colours: dict[str, str] = {}
    parts = []
    for phase, start, end in spans:
        colour = colours.setdefault(phase, BAND_COLOURS[len(colours) % len(BAND_COLOURS)])
        x0, x1 = x(start), x(end)
        parts.append(
            f'<rect class="phase-band" data-phase="{_e(phase)}" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 0.5):.1f}" '
            f'height="{bottom - top}" fill="{colour}"><title>{_e(phase)}</title></rect>'
        )
        if x1 - x0 > 8 * len(phase) + 8:
            parts.append(f'<text x="{x0 + 4:.1f}" y="{top - 6}" font-size="11" fill="#555">{_e(phase)}</text>')
    return parts


def _carbon_split(footprint: Footprint) -> str:
    """A bar of operational against amortised embodied carbon, with its legend."""
    operational = footprint.operational_carbon_g
    amortised = footprint.embodied_carbon_amortised_g
    embodied = amortised or 0.0
    total = (operational + embodied) or 1.0
    embodied_text = "not included" if amortised is None else units.carbon(amortised)
    return (
        f'<div class="bar"><div style="width:{100 * operational / total:.2f}%;background:#1f77b4" '
        f'title="operational"></div><div style="width:{100 * embodied / total:.2f}%;background:#ff7f0e" '
        'title="embodied"></div></div>'
        f'<p class="legend"><span><i class="swatch" style="background:#1f77b4"></i>operational '
        f'{_e(units.carbon(operational))}</span><span><i class="swatch" style="background:#ff7f0e"></i>'
        f"embodied, amortised {_e(embodied_text)}</span></p>"
    )


def _devices(report: Report, labels: dict[str, str]) -> str:
    """Energy by device, with how each figure was obtained."""
    return table(
        ["device", "node", "how it was obtained", "energy", "mean power", "peak power", "gaps"],
        [
            [
                labels[d.device_id],
                d.node,
                d.model or d.method,
                units.energy(d.energy_kwh),
                units.power(d.mean_power_w),
                units.power(d.peak_power_w),
                units.duration(d.gap_s),
            ]
            for d in report.devices
        ],
    )


def _inputs(report: Report) -> str:
    """Each datacentre's grid intensity, PUE and transport factor, with their sources."""
    return table(
        ["datacentre", "grid intensity", "source", "PUE", "transport factor", "carbon"],
        [
            [
                c.name,
                f"{c.intensity_g_per_kwh:g} gCO2e/kWh",
                c.intensity_source,
                f"{c.pue:g} ({c.pue_source})",
                f"{c.transport_factor:g}",
                units.carbon(c.operational_carbon_g),
            ]
            for c in report.datacentres
        ],
    )


def _requests(report: Report) -> str:
    """Energy per request: the sentence, the distribution table and a histogram of the requests' energy."""
    sentence, distribution = tables.requests(report)
    if not sentence or report.requests is None:
        return ""
    bins = report.requests.histogram
    most = max((b.count for b in bins), default=0) or 1
    rows = "".join(
        f"<tr><td>{_value(units.energy(b.up_to_j / JOULES_PER_KWH)) if b.up_to_j is not None else 'more'}</td>"
        f'<td><div class="hbar" style="width:{100 * b.count / most:.1f}%"></div></td>'
        f"<td>{_value(units.number(b.count))}</td></tr>"
        for b in bins
    )
    histogram = (
        '<table class="histogram" aria-label="Requests by facility energy"><thead><tr><th>facility energy up to</th>'
        f"<th></th><th>requests</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return f"<h2>Energy per request</h2><p>{_e(sentence)}</p>{table(*distribution)}{histogram}"


def render(report: Report) -> str:
    """The HTML page of a report."""
    labels = {d.device_id: f"{d.name} [{d.device_id}], {d.method}" for d in report.devices}
    cards = "".join(
        f'<div class="card">{_e(label)}<b>{_value(value)}</b></div>' for label, value in tables.headline(report)
    )
    related = tables.related(report)
    resumed = tables.sessions(report)
    sections = [
        f"<h1>Footprint of {_e(report.project_name)}</h1>",
        f'<p class="meta">Run <code>{_e(report.run_id)}</code> · status <b>{_e(report.status)}</b> · '
        f"{_e(tables.period(report))} · nn_tracker {_e(report.software.get('nn_tracker') or '')}</p>",
        f'<div class="cards">{cards}</div>',
        "<h2>Power over time</h2>",
        power_plot(report.timeline, labels),
        "<h2>Carbon: operational and embodied</h2>",
        _carbon_split(report.footprint),
        "<h2>Energy by phase</h2>",
        table(*tables.phases(report)),
        "<h2>Energy by device</h2>",
        _devices(report, labels),
        "<h2>Per functional unit</h2>",
        table(*tables.per_unit(report)),
        _requests(report),
        "<h2>Sessions of this resumed run</h2>" if resumed else "",
        table(*resumed) if resumed else "",
        "<h2>This report and the other stages of the run</h2>" if related else "",
        table(*related) if related else "",
        "<h2>Inputs and their sources</h2>",
        _inputs(report),
        table(*tables.embodied(report)) if report.footprint.embodied else "",
        "<h2>In everyday terms</h2>",
        "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in tables.equivalents(report)) + "</ul>",
        "<h2>The same energy elsewhere</h2>",
        table(*tables.what_if(report)),
        "<h2>Notes and caveats</h2>",
        '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in report.notes) + "</ul>",
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Footprint of {_e(report.project_name)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(s for s in sections if s)
        + "\n</body></html>\n"
    )
