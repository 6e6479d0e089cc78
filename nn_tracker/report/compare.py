"""Runs side by side: energy, carbon, per-unit figures, hardware and method, and the change from the first run.

:func:`compare` turns (current-schema) reports into one JSON-ready comparison; :func:`render`
writes it as a terminal table, Markdown, HTML (the report's style, every run's power on one
plot) or JSON. A figure a run does not have is ``None`` ("—" in text), never 0, and has no change.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from html import escape
from typing import Any

from nn_tracker.core.errors import ValidationError, printable
from nn_tracker.report import html, units
from nn_tracker.report.document import Report, Timeline, TimelinePoint

FORMATS = ("table", "md", "html", "json")
MISSING = "—"

# (key, label, unit, getter): the figures compared, in order
FIGURES: tuple[tuple[str, str, str, Any], ...] = (
    ("duration_s", "duration", "s", lambda r: r.duration_s),
    ("energy.it_kwh", "energy, IT", "kWh", lambda r: r.energy_kwh),
    ("energy.facility_kwh", "energy, facility (IT x PUE)", "kWh", lambda r: r.footprint.facility_energy_kwh),
    ("carbon.operational_g", "carbon, operational", "gCO2e", lambda r: r.footprint.operational_carbon_g),
    ("carbon.embodied_g", "carbon, embodied (amortised)", "gCO2e", lambda r: r.footprint.embodied_carbon_amortised_g),
    ("carbon.total_g", "carbon, total", "gCO2e", lambda r: r.total_carbon_g),
)


def compare(reports: list[tuple[str, Report]]) -> dict[str, Any]:
    """The comparison of ``(source path, report)`` pairs, the first being the baseline.

    Raises:
        ValidationError: fewer than two reports.
    """
    if len(reports) < 2:
        raise ValidationError("reports", len(reports), "must be at least 2 files to compare")
    datas = [data for _path, data in reports]
    labels = _labels(reports)
    runs = [
        {
            "label": label,
            "path": path,
            "run_id": data.run_id,
            "project_name": data.project_name,
            "status": data.status,
            "started_at": data.started_at,
            "hardware": hardware(data),
            "location": location(data),
            "methods": methods(data),
        }
        for label, (path, data) in zip(labels, reports, strict=True)
    ]
    rows = [_row(key, label, unit, [_number(get, data) for data in datas]) for key, label, unit, get in FIGURES]
    for kind, phase in _unit_phases(datas):
        for suffix, label, unit in (
            ("facility_energy_kwh_per_unit", f"facility energy per {kind} ({phase})", "kWh"),
            ("carbon_g_per_unit", f"carbon per {kind} ({phase})", "gCO2e"),
        ):
            values = [_per_unit(d, kind, phase, suffix) for d in datas]
            rows.append(_row(f"units.{kind}.{phase}.{suffix}", label, unit, values))
    return {"baseline": labels[0], "runs": runs, "figures": rows}


def _per_unit(report: Report, kind: str, phase: str, figure: str) -> float | None:
    """A per-unit figure of one kind in one phase; ``None`` where the run counted no such units."""
    unit = report.units.get(kind)
    in_phase = unit.by_phase.get(phase) if unit else None
    return getattr(in_phase, figure) if in_phase else None


def _number(get: Any, report: Report) -> float | None:
    value = get(report)
    return None if value is None else float(value)


def _row(key: str, label: str, unit: str, values: list[float | None]) -> dict[str, Any]:
    """One figure for every run, with each run's change relative to the first (a fraction)."""
    first = values[0]
    change = [
        None if value is None or first is None or first == 0 else (value - first) / abs(first) for value in values
    ]
    change = [c if c is None or math.isfinite(c) else None for c in change]  # a change beyond float range: none
    return {"key": key, "label": label, "unit": unit, "values": values, "change_vs_first": change}


def _unit_phases(reports: list[Report]) -> list[tuple[str, str]]:
    """Every (unit kind, phase) any run counted, in first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for report in reports:
        for kind, unit in report.units.items():
            for phase in unit.by_phase:
                seen.setdefault((kind, phase), None)
    return list(seen)


def _labels(reports: list[tuple[str, Report]]) -> list[str]:
    """Short names for the columns: the project names if they differ, else the runs' numbers."""
    names = [report.project_name for _path, report in reports]
    if len(set(names)) == len(names):
        return names
    return [f"run {i + 1}" for i in range(len(reports))]


def hardware(report: Report) -> str:
    """``2 x NVIDIA H100 80GB HBM3, AMD EPYC 7763`` (RAM left out: it is sized, not named)."""
    counts = Counter(d.name for d in report.devices if d.component != "ram")
    return ", ".join(f"{n} x {name}" if n > 1 else name for name, n in counts.items()) or MISSING


def location(report: Report) -> str:
    """Each datacentre with its grid intensity and PUE."""
    places = (f"{c.name} ({c.intensity_g_per_kwh:g} gCO2e/kWh, PUE {c.pue:g})" for c in report.datacentres)
    return "; ".join(places) or MISSING


def methods(report: Report) -> str:
    """How each device's energy was obtained: ``gpu:0 energy_counter; cpu estimate``."""
    return "; ".join(f"{d.device_id} {d.method}" for d in report.devices) or MISSING


# ----- rendering --------------------------------------------------------------------------------------------
def _formatter(unit: str) -> Any:
    return {"s": units.duration, "kWh": units.energy, "gCO2e": units.carbon}[unit]


def _change(change: float | None) -> str:
    """`` (+12.5%)``; `` (x250)`` or `` (x0.004)`` beyond ten times more or less; `` (same)``."""
    if change is None:
        return ""
    if abs(change) < 5e-4:
        return " (same)"
    ratio = 1 + change
    if ratio >= 10 or 0 < ratio <= 0.1:
        return f" (x{ratio:.3g})"
    return f" ({change:+.1%})"


def table_rows(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of text: the runs' facts, then every figure with its change from the first run."""
    runs = comparison["runs"]
    header = ["figure", *(r["label"] for r in runs)]
    rows = [
        ["run", *(r["run_id"] for r in runs)],
        ["status", *(r["status"] for r in runs)],
        ["started", *(r["started_at"] or MISSING for r in runs)],
        ["hardware", *(r["hardware"] for r in runs)],
        ["location", *(r["location"] for r in runs)],
        ["how energy was obtained", *(r["methods"] for r in runs)],
    ]
    for figure in comparison["figures"]:
        fmt = _formatter(figure["unit"])
        cells = [
            (MISSING if value is None else fmt(value)) + (_change(change) if index else "")
            for index, (value, change) in enumerate(zip(figure["values"], figure["change_vs_first"], strict=True))
        ]
        rows.append([figure["label"], *cells])
    return header, rows


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    header, rows = [printable(h) for h in header], [[printable(c) for c in row] for row in rows]  # no escapes
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def _markdown(comparison: dict[str, Any]) -> str:
    header, rows = table_rows(comparison)

    from nn_tracker.report.markdown import markdown_text as cell

    lines = [
        f"# Comparison of {len(comparison['runs'])} runs",
        "",
        f"Changes in brackets are relative to the first run ({cell(comparison['baseline'])}).",
        "",
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def power_timelines(runs: list[Report], labels: list[str]) -> Timeline | None:
    """One timeline whose "devices" are the runs: each run's total power per bucket, from its own start.

    A bucket where any of the run's devices has no reading is left out (missing is not zero).
    """
    points = []
    for label, report in zip(labels, runs, strict=True):
        timeline = report.timeline
        if timeline is None or not timeline.devices:
            continue
        for point in timeline.points:
            powers = [point.mean_power_w.get(d) for d in timeline.devices]
            if all(p is not None for p in powers):
                total_w = sum(p for p in powers if p is not None)
                points.append(
                    TimelinePoint(
                        start_s=point.start_s,
                        end_s=point.end_s,
                        mean_power_w={label: total_w},
                        peak_power_w={},
                        energy_j={},
                    )
                )
    if not points:
        return None
    points.sort(key=lambda p: p.start_s)
    return Timeline(bucket_s=max(r.timeline.bucket_s for r in runs if r.timeline), devices=labels, points=points)


def _html(comparison: dict[str, Any], datas: list[Report]) -> str:
    header, rows = table_rows(comparison)
    labels = [r["label"] for r in comparison["runs"]]
    plot = html.power_plot(power_timelines(datas, labels), {label: label for label in labels})
    sections = [
        f"<h1>Comparison of {len(labels)} runs</h1>",
        f'<p class="meta">Changes in brackets are relative to the first run ({escape(labels[0])}).</p>',
        "<h2>Power over time (all devices of each run, from its own start)</h2>",
        plot,
        "<h2>Figures</h2>",
        html.table(header, rows),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Comparison of {len(labels)} runs</title><style>{html.STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def render(reports: list[tuple[str, Report]], fmt: str) -> str:
    """The comparison of ``reports`` as text in ``fmt`` (``table``, ``md``, ``html`` or ``json``).

    Raises:
        ValidationError: fewer than two reports, or a report lacking a field the comparison needs.
    """
    comparison = compare(reports)
    if fmt == "json":
        return json.dumps(comparison, indent=2, allow_nan=False) + "\n"
    if fmt == "md":
        return _markdown(comparison)
    if fmt == "html":
        return _html(comparison, [data for _path, data in reports])
    if fmt == "table":
        return _text_table(*table_rows(comparison))
    raise ValidationError("format", fmt, f"must be one of {', '.join(FORMATS)}")
