"""A tracked run as an Impact Framework 1.x manifest, computable by the official ``if-run``.

One child per root phase with one observation per timeline bucket (quoted ISO-8601
``timestamp``, ``duration`` in seconds, ``energy`` = the phase's facility energy in
that bucket, kWh); the nn-c step is IF's builtin ``Coefficient`` (intensity /
transport factor of the phase's datacentre), and a ``Sum`` adds ``carbon-embodied``
(0 on operational observations; the amortised embodied carbon on the ``embodied``
child). The sum of ``carbon`` over all outputs equals the report's total carbon.
The timeline is the current session's (its buckets are placed from that session's start).
Energy of earlier sessions (a resumed run) is not in it: it becomes one observation per phase
at the run's start, lasting the earlier sessions' duration, so nothing is dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from nn_tracker.energy import JOULES_PER_KWH
from nn_tracker.errors import ValidationError
from nn_tracker.report.carbon import centre_row_for
from nn_tracker.report.document import Report


def _stamp(start: datetime, offset_s: float) -> str:
    return (start + timedelta(seconds=offset_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(report: Report) -> dict[str, Any]:
    """The manifest as a dict."""
    centres = report.datacentres
    if report.started_at is None:
        raise ValidationError("report.started_at", None, "must be the run's start time to export an IF manifest")
    start = datetime.fromisoformat(report.started_at)
    session = report.session
    session_start = datetime.fromisoformat(session.started_at) if session and session.started_at else start
    earlier_s = sum(s.duration_s for s in report.sessions if not s.current)
    plugins: dict[str, Any] = {
        f"operational-carbon-{i}": {
            "path": "builtin",
            "method": "Coefficient",
            "config": {
                "input-parameter": "energy",
                "coefficient": centre.intensity_g_per_kwh / centre.transport_factor,
                "output-parameter": "carbon-operational",
            },
        }
        for i, centre in enumerate(centres)
    }
    plugins["total-carbon"] = {
        "path": "builtin",
        "method": "Sum",
        "config": {"input-parameters": ["carbon-operational", "carbon-embodied"], "output-parameter": "carbon"},
    }
    children: dict[str, Any] = {}
    for phase in (name for name in report.phases if "/" not in name):
        index = centre_row_for(phase, centres)
        inputs = _phase_inputs(report, phase, centres[index].pue, start, session_start, earlier_s)
        if inputs:
            children[phase] = {
                "pipeline": {"compute": [f"operational-carbon-{index}", "total-carbon"]},
                "defaults": {"carbon-embodied": 0},
                "inputs": inputs,
            }
    embodied = report.footprint.embodied_carbon_amortised_g
    if embodied:
        children["embodied"] = {
            "pipeline": {"compute": ["total-carbon"]},
            "inputs": [
                {
                    "timestamp": _stamp(start, 0),
                    "duration": round(report.duration_s, 6),
                    "carbon-operational": 0,
                    "carbon-embodied": embodied,
                }
            ],
        }
    return {
        "name": f"nn_tracker {report.project_name} {report.run_id}",
        "description": "Energy measured by nn_tracker; carbon = facility energy x intensity / transport factor "
        "(builtin Coefficient) + amortised embodied carbon (Sum). The sum of 'carbon' over all "
        f"outputs is the report's total carbon ({report.total_carbon_g!r} g).",
        "tags": {"kind": "nn_tracker export", "status": report.status},
        "initialize": {"plugins": plugins},
        "tree": {"children": children},
    }


def _phase_inputs(
    report: Report, phase: str, pue: float, start: datetime, session_start: datetime, earlier_s: float
) -> list[dict[str, Any]]:
    """One observation per timeline bucket of a root phase (facility energy), and one for earlier sessions'."""
    inputs = []
    timeline_j = 0.0
    for point in report.timeline.points if report.timeline else []:
        joules = point.phase_energy_j.get(phase, 0.0)
        if joules > 0:
            timeline_j += joules
            inputs.append(
                {
                    "timestamp": _stamp(session_start, point.start_s),
                    "duration": round(point.end_s - point.start_s, 6),
                    "energy": joules / JOULES_PER_KWH * pue,
                }
            )
    carried_kwh = report.phases[phase].inclusive_energy_kwh - timeline_j / JOULES_PER_KWH
    if carried_kwh > 1e-12:  # measured in an earlier session (resumed): no bucket of this timeline holds it
        inputs.insert(0, {"timestamp": _stamp(start, 0), "duration": round(earlier_s, 6), "energy": carried_kwh * pue})
    return inputs


def render(report: Report) -> str:
    """The manifest as YAML (timestamps quoted, as IF expects strings)."""
    from nn_tracker.inputs import dump_yaml  # PyYAML only when a manifest is written: importing it costs ~80 ms

    return dump_yaml(build(report), sort_keys=False, default_flow_style=False, width=1000)
