"""The tables of a report, as header and rows of text: shared by the Markdown and HTML renderers."""

from __future__ import annotations

from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.report import units
from nn_tracker.report.document import Report

Table = tuple[list[str], list[list[str]]]


def period(report: Report) -> str:
    """When the run happened; a checkpoint of a run that never stopped says it may have been interrupted."""
    if report.status != "running":
        return f"{report.started_at} → {report.ended_at} · {units.duration(report.duration_s)}"
    last = report.checkpointed_at or "unknown"
    return (
        f"{report.started_at} → last checkpoint {last} · {units.duration(report.duration_s)} so far "
        "(if the job is no longer running, it was interrupted after this checkpoint)"
    )


def related(report: Report) -> Table | None:
    """The other runs listed in the report (earlier stages of the same trainer) and the total with this one."""
    runs = report.related_runs
    if not runs:
        return None
    rows = [
        [
            r.stage or "",
            r.run_id,
            r.status,
            units.duration(r.duration_s),
            units.energy(r.it_energy_kwh),
            units.carbon(r.total_carbon_g),
        ]
        for r in runs
    ]
    rows.append(
        [
            "this report",
            report.run_id,
            report.status,
            units.duration(report.duration_s),
            units.energy(report.energy_kwh),
            units.carbon(report.total_carbon_g),
        ]
    )
    energies = [r.it_energy_kwh for r in runs] + [report.energy_kwh]
    carbons = [r.total_carbon_g for r in runs] + [report.total_carbon_g]
    rows.append(
        [
            "all of them",
            "",
            "",
            units.duration(sum(r.duration_s for r in runs) + report.duration_s),
            units.energy(sum(e for e in energies if e is not None)),
            units.carbon(sum(c for c in carbons if c is not None)),
        ]
    )
    return ["stage", "run", "status", "duration", "IT energy", "total carbon"], rows


def sessions(report: Report) -> Table | None:
    """The sessions of a resumed run (none for a run of one session): each one's own figures, and the run."""
    if len(report.sessions) < 2:
        return None
    rows = [
        [
            ("this session" if s.current else f"session {i + 1}"),
            s.run_id,
            f"{s.started_at} → {s.ended_at}",
            units.duration(s.duration_s),
            units.energy(s.it_energy_kwh),
            units.carbon(s.total_carbon_g),
        ]
        for i, s in enumerate(report.sessions)
    ]
    rows.append(
        [
            "the run",
            "",
            "",
            units.duration(report.duration_s),
            units.energy(report.energy_kwh),
            units.carbon(report.total_carbon_g),
        ]
    )
    return ["session", "run id", "when", "duration", "IT energy", "total carbon"], rows


def headline(report: Report) -> list[list[str]]:
    """The figures shown first."""
    footprint = report.footprint
    embodied = footprint.embodied_carbon_amortised_g
    rows = [
        ["Energy, IT (measured or estimated per device)", units.energy(report.energy_kwh)],
        ["Energy, facility (IT x PUE)", units.energy(footprint.facility_energy_kwh)],
        ["Operational carbon", units.carbon(footprint.operational_carbon_g)],
        ["Embodied carbon, amortised over the run", "not included" if embodied is None else units.carbon(embodied)],
        ["Total carbon", units.carbon(footprint.total_carbon_g)],
    ]
    resolved = footprint.time_resolved
    if resolved:
        rows.insert(
            3,
            [
                f"Operational carbon, time-resolved (series column {resolved.series_column or '?'}; "
                f"{units.energy(resolved.uncovered_energy_kwh)} outside it at the yearly average)",
                units.carbon(resolved.operational_carbon_g),
            ],
        )
    per_phase = [(kind, phase, u) for kind, unit in report.units.items() for phase, u in unit.by_phase.items()]
    for kind, phase, u in sorted(per_phase, key=lambda item: -item[2].count)[:6]:  # the most counted
        rows.append([f"Per {kind} ({phase})", units.carbon(u.carbon_g_per_unit)])
    return rows


def phases(report: Report) -> Table:
    """Energy and time per phase, own and with nested phases."""
    return (
        ["phase", "energy (own)", "energy (with nested)", "duration", "units"],
        [
            [
                name,
                units.energy(p.energy_kwh),
                units.energy(p.inclusive_energy_kwh),
                units.duration(p.duration_s),
                ", ".join(f"{units.number(n)} {k}" for k, n in p.units.items()),
            ]
            for name, p in report.phases.items()
        ],
    )


def embodied(report: Report) -> Table:
    """Embodied carbon per hardware, with method, source and lifetime."""
    return (
        ["hardware", "count", "per unit", "method and source", "life", "amortised"],
        [
            [
                e.name,
                units.number(e.count),
                f"{e.embodied_kg_per_unit:g} kgCO2e",
                f"{e.method} ({e.source})",
                f"{e.lifetime_years:g} years at {e.utilisation:.0%}",
                units.carbon(e.amortised_g),
            ]
            for e in report.footprint.embodied
        ],
    )


def what_if(report: Report) -> Table:
    """The same energy under other grids."""
    return (
        ["place", "why", "grid intensity", "total carbon"],
        [
            [
                f"{p.name} ({p.code})",
                p.why,
                f"{p.intensity_g_per_kwh:g} gCO2e/kWh ({p.year or 'year n/a'})",
                units.carbon(p.total_carbon_g),
            ]
            for p in report.what_if.places
        ],
    )


def per_unit(report: Report) -> Table:
    """Energy and carbon per functional unit, per kind and phase (the phase's own energy and time)."""
    return (
        ["unit", "phase", "count", "facility energy per unit", "carbon per unit"],
        [
            [
                kind,
                phase,
                units.number(u.count),
                units.energy(u.facility_energy_kwh_per_unit),
                units.carbon(u.carbon_g_per_unit),
            ]
            for kind, unit in report.units.items()
            for phase, u in unit.by_phase.items()
        ],
    )


def requests(report: Report) -> tuple[str, Table]:
    """Energy per request: a sentence (attributed, idle) and the distribution per unit kind."""
    section = report.requests
    if section is None:
        return "", ([], [])
    total_kwh = section.it_energy_kwh + section.idle_it_energy_kwh
    idle_share = f" ({section.idle_it_energy_kwh / total_kwh:.0%})" if total_kwh > 0 else ""
    sentence = (
        f"{units.number(section.count)} requests used {units.energy(section.it_energy_kwh)} (IT); "
        f"idle time ({units.duration(section.idle_s)}) used {units.energy(section.idle_it_energy_kwh)}{idle_share}. "
        "Each request gets the power of the moments it was in flight, shared by weight with the others."
    )
    rows = [
        [
            kind,
            units.number(figures.units),
            *(_joules(getattr(figures.facility_energy_j, q)) for q in ("mean", "p50", "p90", "p99")),
            units.carbon(figures.carbon_g.mean),
        ]
        for kind, figures in section.per_unit.items()
    ]
    header = ["per", "units", "facility energy: mean", "p50", "p90", "p99", "carbon: mean"]
    return sentence, (header, rows)


def _joules(value: float | None) -> str:
    return units.energy(None if value is None else value / JOULES_PER_KWH)


def equivalents(report: Report) -> list[str]:
    """One sentence per equivalent, with its factor and source."""
    return [f"{units.number(e.value)} {e.label} ({e.factor:g} {e.unit}; {e.source})" for e in report.equivalents]
