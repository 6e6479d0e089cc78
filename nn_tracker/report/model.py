"""The report of a tracked run, built from the sampler's totals and the footprint model.

Measured energy replaces ``P * hours``: the facility energy of training phases
(IT energy x PUE) fills nn-et's slot, that of the ``querying`` phase nn-eq's;
nn-c turns each datacentre's energy into carbon; embodied carbon is amortised
over the run. Every figure carries how it was obtained.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from nn_tracker import footprint
from nn_tracker.config import TrackerConfig
from nn_tracker.energy import j_to_kwh
from nn_tracker.equivalents import equivalents, what_if
from nn_tracker.node import hostname
from nn_tracker.report import carbon
from nn_tracker.report.document import (
    SCHEMA_VERSION,
    Device,
    Energy,
    Equivalent,
    Footprint,
    IncompleteReport,
    Machine,
    Node,
    Phase,
    Place,
    RelatedRun,
    Report,
    RunError,
    SamplerHealth,
    Settings,
    Timeline,
    TimelinePoint,
    WhatIf,
    whole,
)
from nn_tracker.sampling import Sampler


def _iso(wall_s: float | None) -> str | None:
    if wall_s is None:
        return None
    return datetime.fromtimestamp(wall_s, tz=timezone.utc).isoformat(timespec="milliseconds")


def _software() -> dict[str, str | None]:
    """Versions of what measured and of the frameworks already loaded (nothing is imported for this)."""
    from importlib import metadata

    def version(distribution: str) -> str | None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return None

    loaded = {name.split(".")[0] for name in sys.modules}
    return {
        "nn_tracker": version("nn-tracker"),
        "python": sys.version.split()[0],
        "nvidia-ml-py": version("nvidia-ml-py"),
        "psutil": version("psutil"),
        "torch": version("torch") if "torch" in loaded else None,
        "lightning": version("lightning") if "lightning" in loaded else None,
        "pytorch-lightning": version("pytorch-lightning") if "pytorch_lightning" in loaded else None,
    }


def _machine(cpu_model: str | None, identity: bool) -> Machine:
    """What the machine is; who and where only with ``identity`` (reports get published with models).

    The user name comes from ``$USER``/``$LOGNAME`` only: never a password-database lookup
    (``getpwuid`` may ask nscd, sssd or LDAP over the network).
    """
    from nn_tracker import __version__

    machine = Machine(
        os="{0.sysname} {0.release} {0.machine}".format(os.uname()),  # platform.platform() may run a subprocess
        python=sys.version.split()[0],
        nn_tracker=__version__,
        cpu_model=cpu_model,
        logical_cpus=os.cpu_count(),
    )
    if identity:
        machine.hostname, machine.pid = hostname(), os.getpid()
        machine.user = os.environ.get("USER") or os.environ.get("LOGNAME")
    return machine


@dataclass
class RunState:
    """What the tracker knows besides the sampler, needed to build a report."""

    config: TrackerConfig
    run_id: str
    status: str
    started_wall_s: float
    ended_wall_s: float | None
    duration_s: float
    units: dict[str, dict[str, float]]
    notes: list[str]
    cpu_model: str | None
    error: RunError | None = None
    related_runs: list[RelatedRun] = field(default_factory=list)
    built_wall_s: float | None = None


def incomplete_report(state: RunState, failure: BaseException) -> IncompleteReport:
    """The little that is known when the report cannot be built: never nothing, never a wrong figure."""
    return IncompleteReport(
        schema_version=SCHEMA_VERSION,
        run_id=state.run_id,
        project_name=state.config.project_name,
        status=state.status,
        incomplete=True,
        duration_s=state.duration_s,
        error=state.error,
        notes=[f"The report could not be built ({type(failure).__name__}: {failure}); no figures given."],
    )


def build_report(state: RunState, sampler: Sampler, timeline: bool = True) -> Report:
    """Assemble the report from a consistent snapshot of the sampler (``timeline=False``: a cheap summary)."""
    with sampler.lock:
        devices = _devices(sampler, state.config.identity)
        phases = _phases(sampler, state.units)
        timeline_data = _timeline(sampler) if timeline else None
        buckets = [
            (p.start_s - (sampler.started_s or 0.0), p.end_s - (sampler.started_s or 0.0), sum(p.energy_j.values()))
            for p in sampler.timeline.points
        ]
        sampler_health = _sampler_health(state, sampler)
    notes = list(dict.fromkeys([*state.notes, *(n for d in devices for n in d.notes)]))
    energy = _energy(devices)
    centres, slots, operational_g = carbon.operational(state.config, phases)
    embodied = carbon.embodied(state.config, devices, state.duration_s, notes)
    amortised_g = sum(i.amortised_g for i in embodied) if embodied else None
    total_g = footprint.total_carbon_g(amortised_g or 0.0, operational_g)
    if any(c.default_location for c in centres):
        notes.insert(
            0,
            "No location given: the world-average grid intensity was used. Set location "
            "(country, zone or cloud region) for a meaningful carbon figure.",
        )
    facility_kwh = slots["training"] + slots["querying"]
    catalogue = state.config.catalogue
    what_if_data = what_if(facility_kwh, amortised_g, catalogue, state.config.what_if_locations)
    return Report(
        **_header(state),
        energy=energy,
        devices=devices,
        nodes=_nodes(devices),
        phases=phases,
        datacentres=centres,
        footprint=Footprint(
            training_energy_kwh=slots["training"],
            querying_energy_kwh=slots["querying"],
            operational_carbon_g=operational_g,
            embodied_carbon_unamortised_g=sum(i.unamortised_g or 0.0 for i in embodied) if embodied else None,
            embodied_carbon_amortised_g=amortised_g,
            embodied=embodied,
            total_carbon_g=total_g,
            time_resolved=carbon.time_resolved(
                state.config.series, state.started_wall_s, buckets, energy.it_kwh, facility_kwh, centres
            ),
            method="measured IT energy x PUE in nn-et/nn-eq slots; nn-c per datacentre; embodied amortised "
            "by the SCI over the run's duration",
        ),
        units=carbon.per_unit(state.units, phases, centres, amortised_g, state.duration_s),
        equivalents=[Equivalent(**row) for row in equivalents(total_g, facility_kwh, catalogue)],
        what_if=WhatIf(**{**what_if_data, "places": [Place(**row) for row in what_if_data["places"]]}),
        sampler=sampler_health,
        notes=notes,
        related_runs=list(state.related_runs),
        timeline=timeline_data,
    )


def _header(state: RunState) -> dict[str, Any]:
    """Who, when and how: the fields before the figures."""
    config = state.config
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": state.run_id,
        "project_name": config.project_name,
        "status": state.status,
        "started_at": _iso(state.started_wall_s),
        "ended_at": _iso(state.ended_wall_s),
        "checkpointed_at": _iso(state.built_wall_s) if state.status == "running" else None,
        "duration_s": state.duration_s,
        "error": state.error,
        "machine": _machine(state.cpu_model, config.identity),
        "software": _software(),
        "settings": Settings(
            attribution=config.attribution,
            interval_s=config.interval_s,
            checkpoint_interval_s=config.checkpoint_interval_s,
            training_type=config.training_type,
        ),
    }


def _sampler_health(state: RunState, sampler: Sampler) -> SamplerHealth:
    """How the sampling went (under the sampler's lock)."""
    return SamplerHealth(
        interval_s=state.config.interval_s,
        ticks=sampler.ticks,
        tick_errors=sampler.tick_errors,
        sensor_errors=sum(t.errors for t in sampler.totals.values()),
        gap_s=sum(t.gap_s + t.pending_s for t in sampler.totals.values()),
    )


def _timeline(sampler: Sampler) -> Timeline:
    """The downsampled timeline, times from the start (under the sampler's lock)."""
    data: dict[str, Any] = sampler.timeline.to_dict(origin_s=sampler.started_s or 0.0)
    return Timeline(
        bucket_s=data["bucket_s"], devices=data["devices"], points=[TimelinePoint(**p) for p in data["points"]]
    )


LOCAL_NODE = "local"
OTHERS_NOTABLE_SHARE = 0.25  # other processes' share of the machine's CPU time worth a note


def _devices(sampler: Sampler, identity: bool = False) -> list[Device]:
    # The host name labels this node only where it tells nodes apart (or identity was asked for).
    several_nodes = any(t.node for t in sampler.totals.values())
    own_node = hostname() if several_nodes or identity else LOCAL_NODE
    rows = []
    for totals in sampler.totals.values():
        info = totals.info
        measured = totals.readings > 0  # a sensor that never gave a reading is unmeasured, never 0
        rows.append(
            Device(
                device_id=info.device_id,
                component=info.component,
                name=info.name,
                method=info.method,
                model=info.model,
                details=info.details,
                energy_kwh=j_to_kwh(totals.energy_j) if measured else None,
                energy_kwh_by_phase={p: j_to_kwh(j) for p, j in totals.energy_by_phase_j.items()},
                mean_power_w=totals.energy_j / totals.measured_s if totals.measured_s > 0 else None,
                peak_power_w=totals.peak_power_w,
                last_power_w=totals.last_power_w,
                measured_s=totals.measured_s,
                gap_s=totals.gap_s + totals.pending_s,
                readings=totals.readings,
                errors=totals.errors,
                first_error=totals.first_error or None,
                dropped_intervals=totals.dropped_intervals,
                bridged_intervals=totals.bridged_intervals,
                lost_at_s=None if totals.lost_at_s is None else totals.lost_at_s - (sampler.started_s or 0.0),
                node=totals.node or own_node,
                notes=list(info.notes) + _device_notes(totals, measured),
            )
        )
    return rows


def _device_notes(totals: Any, measured: bool) -> list[str]:
    """What a reader must know about one device's figure."""
    device_id = totals.info.device_id
    notes = []
    if totals.errors:
        notes.append(f"{device_id}: {totals.errors} read errors, first: {totals.first_error}")
    if totals.dropped_intervals:
        notes.append(f"{device_id}: {totals.dropped_intervals} implausible readings dropped (counted as a gap)")
    if totals.bridged_intervals:
        notes.append(
            f"{device_id}: the energy counter went back {totals.bridged_intervals} time(s) (driver reload); "
            "those intervals were integrated from the power samples"
        )
    if not measured:
        notes.append(f"{device_id} was not measured: energy unknown (null), not zero")
    others = totals.info.details.get("other_processes_cpu_share")
    if others is not None and others > OTHERS_NOTABLE_SHARE:
        notes.append(
            f"Other processes used {others:.0%} of the CPU time the machine spent during this run: with "
            "attribution='machine' their energy is counted here; attribution='process' counts only this job."
        )
    return notes


def _nodes(devices: list[Device]) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for device in devices:
        node = nodes.setdefault(device.node, Node(energy_kwh=0.0, devices=[]))
        node.energy_kwh += device.energy_kwh or 0.0  # unmeasured devices are listed, not added
        node.devices.append(device.device_id)
    return nodes


def _energy(devices: list[Device]) -> Energy:
    by_component: dict[str, float | None] = {}
    by_method: dict[str, float] = {}
    measured = [d for d in devices if d.energy_kwh is not None]
    for device in measured:
        by_component[device.component] = (by_component.get(device.component) or 0.0) + (device.energy_kwh or 0.0)
        by_method[device.method] = by_method.get(device.method, 0.0) + (device.energy_kwh or 0.0)
    for component in ("gpu", "cpu", "ram", *(d.component for d in devices)):
        by_component.setdefault(component, None)  # None: not measured (never a silent 0)
    return Energy(
        it_kwh=sum(d.energy_kwh or 0.0 for d in measured),
        by_component_kwh=by_component,
        by_method_kwh=by_method,
        unmeasured_devices=[d.device_id for d in devices if d.energy_kwh is None],
    )


def _phases(sampler: Sampler, units: dict[str, dict[str, float]]) -> dict[str, Phase]:
    """Own and inclusive energy and time of every phase: linear in phases x nesting depth."""
    exclusive: dict[str, float] = {}
    for totals in sampler.totals.values():
        for phase, joules in totals.energy_by_phase_j.items():
            exclusive[phase] = exclusive.get(phase, 0.0) + joules
    names = set(exclusive) | set(sampler.phase_time_s) | set(units)
    inclusive_j = dict.fromkeys(names, 0.0)
    inclusive_s = dict.fromkeys(names, 0.0)
    for name in names:
        joules, seconds = exclusive.get(name, 0.0), sampler.phase_time_s.get(name, 0.0)
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in inclusive_j:
                inclusive_j[prefix] += joules
                inclusive_s[prefix] += seconds
    return {
        name: Phase(
            energy_kwh=j_to_kwh(exclusive.get(name, 0.0)),
            inclusive_energy_kwh=j_to_kwh(inclusive_j[name]),
            duration_s=sampler.phase_time_s.get(name, 0.0),
            inclusive_duration_s=inclusive_s[name],
            units={kind: whole(count) for kind, count in units.get(name, {}).items()},
        )
        for name in sorted(names)
    }
