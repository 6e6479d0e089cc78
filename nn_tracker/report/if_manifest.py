"""A tracked run as an Impact Framework 1.x manifest, computable by the official ``if-run``.

One child per root phase and one for the amortised embodied carbon, all on one time grid: an
observation per timeline bucket (quoted ISO-8601 ``timestamp``, ``duration`` in seconds, ``energy`` =
the phase's facility energy in that bucket, kWh; the embodied carbon spread by duration). The nn-c
step is IF's builtin ``Coefficient`` (intensity / transport factor of the phase's datacentre), and a
``Sum`` adds ``carbon-embodied``. Every parameter has ``parameter-metadata`` with ``sum`` as its time
and component aggregation, and the manifest asks for ``aggregation`` of ``energy`` and ``carbon``
(``both``): the official ``if-run``'s ``tree.aggregated`` is the report's facility energy and total
carbon. The timeline is the current session's; what earlier sessions measured (a resumed run) is one
observation at the run's start, lasting the earlier sessions' duration, so nothing is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.core.errors import ValidationError
from nn_tracker.report.carbon import centre_row_for
from nn_tracker.report.document import Report


def _stamp(start: datetime, offset_s: float) -> str:
    return (start + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SUMMED = {"time": "sum", "component": "sum"}


def _parameter(unit: str, description: str) -> dict[str, Any]:
    return {"unit": unit, "description": description, "aggregation-method": dict(_SUMMED)}


ENERGY = _parameter("kWh", "facility energy (IT energy x PUE) measured by nn_tracker")
OPERATIONAL = _parameter("gCO2e", "operational carbon: energy x grid intensity / transport factor")
EMBODIED = _parameter("gCO2e", "amortised embodied carbon of the hardware")
CARBON = _parameter("gCO2e", "operational + embodied carbon")


def build(report: Report) -> dict[str, Any]:
    """The manifest as a dict."""
    centres = report.datacentres
    if report.started_at is None:
        raise ValidationError("report.started_at", None, "must be the run's start time to export an IF manifest")
    plugins = _plugins(centres)
    grid = _grid(report)
    children: dict[str, Any] = {}
    for phase in (name for name in report.phases if "/" not in name):
        pue = centres[centre_row_for(phase, centres)].pue
        if report.phases[phase].inclusive_energy_kwh > 0:
            children[phase] = {
                "pipeline": {"compute": [f"operational-carbon-{centre_row_for(phase, centres)}", "total-carbon"]},
                "defaults": {"carbon-embodied": 0},
                "inputs": [
                    {"timestamp": stamp, "duration": seconds, "energy": kwh.get(phase, 0.0) * pue}
                    for stamp, seconds, kwh in grid
                ],
            }
    embodied = report.footprint.embodied_carbon_amortised_g
    if embodied:
        children["embodied"] = _embodied_child(embodied, grid)
    if not children:  # nothing measured: one child of zero energy, so that IF has a tree to compute
        phase = next((name for name in report.phases if "/" not in name), "training")
        children[phase] = {
            "pipeline": {"compute": [f"operational-carbon-{centre_row_for(phase, centres)}", "total-carbon"]},
            "defaults": {"carbon-embodied": 0},
            "inputs": [{"timestamp": stamp, "duration": seconds, "energy": 0.0} for stamp, seconds, _ in grid],
        }
    return {
        "name": f"nn_tracker {report.project_name} {report.run_id}",
        "description": "Energy measured by nn_tracker; carbon = facility energy x intensity / transport factor "
        "(builtin Coefficient) + amortised embodied carbon (Sum). Every child has the same time grid, so IF's "
        f"aggregation gives the tree's total: carbon {report.total_carbon_g!r} g.",
        "tags": {"kind": "nn_tracker export", "status": report.status},
        "aggregation": {"metrics": ["energy", "carbon"], "type": "both"},
        "initialize": {"plugins": plugins},
        "tree": {"children": children},
    }


def _plugins(centres: list[Any]) -> dict[str, Any]:
    """One ``Coefficient`` per datacentre (nn-c) and the ``Sum`` of operational and embodied carbon."""
    plugins: dict[str, Any] = {
        f"operational-carbon-{i}": {
            "path": "builtin",
            "method": "Coefficient",
            "config": {
                "input-parameter": "energy",
                "coefficient": centre.intensity_g_per_kwh / centre.transport_factor,
                "output-parameter": "carbon-operational",
            },
            "parameter-metadata": {"inputs": {"energy": ENERGY}, "outputs": {"carbon-operational": OPERATIONAL}},
        }
        for i, centre in enumerate(centres)
    }
    plugins["total-carbon"] = {
        "path": "builtin",
        "method": "Sum",
        "config": {"input-parameters": ["carbon-operational", "carbon-embodied"], "output-parameter": "carbon"},
        "parameter-metadata": {
            "inputs": {"carbon-operational": OPERATIONAL, "carbon-embodied": EMBODIED},
            "outputs": {"carbon": CARBON},
        },
    }
    return plugins


def _embodied_child(embodied_g: float, grid: list[tuple[str, float, dict[str, float]]]) -> dict[str, Any]:
    """The amortised embodied carbon on the common grid, spread by duration."""
    total_s = sum(seconds for _, seconds, _ in grid)
    shares = [seconds / total_s for _, seconds, _ in grid] if total_s > 0 else [1.0] + [0.0] * (len(grid) - 1)
    return {
        "pipeline": {"compute": ["total-carbon"]},
        "inputs": [
            {
                "timestamp": stamp,
                "duration": seconds,
                "energy": 0.0,
                "carbon-operational": 0.0,
                "carbon-embodied": embodied_g * share,
            }
            for (stamp, seconds, _), share in zip(grid, shares, strict=True)
        ],
    }


def _grid(report: Report) -> list[tuple[str, float, dict[str, float]]]:
    """The observations every child shares: (timestamp, seconds, IT kWh per root phase).

    One per timeline bucket of the current session, after one at the run's start for what earlier
    sessions measured (a resumed run); a report without a timeline is one observation of the whole run.
    """
    start = datetime.fromisoformat(report.started_at or "")
    session = report.session
    session_start = datetime.fromisoformat(session.started_at) if session and session.started_at else start
    points = report.timeline.points if report.timeline else []
    roots = [name for name in report.phases if "/" not in name]
    if not points:
        kwh = {phase: report.phases[phase].inclusive_energy_kwh for phase in roots}
        return [(_stamp(start, 0), round(report.duration_s, 6), kwh)]
    grid = [
        (
            _stamp(session_start, point.start_s),
            round(point.end_s - point.start_s, 6),
            {phase: point.phase_energy_j.get(phase, 0.0) / JOULES_PER_KWH for phase in roots},
        )
        for point in points
    ]
    carried = {phase: report.phases[phase].inclusive_energy_kwh - sum(g[2][phase] for g in grid) for phase in roots}
    earlier_s = sum(s.duration_s for s in report.sessions if not s.current)
    if earlier_s > 0 or any(kwh > 1e-12 for kwh in carried.values()):  # measured in earlier sessions (resumed)
        grid.insert(0, (_stamp(start, 0), round(earlier_s, 6), {p: max(kwh, 0.0) for p, kwh in carried.items()}))
    return grid


def render(report: Report) -> str:
    """The manifest as YAML (timestamps quoted, as IF expects strings)."""
    from nn_tracker.core.inputs import dump_yaml  # PyYAML only when a manifest is written: importing it costs ~80 ms

    return dump_yaml(build(report), sort_keys=False, default_flow_style=False, width=1000)
