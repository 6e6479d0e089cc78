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
from nn_tracker.config import ALL_OTHER_PHASES, TrackerConfig, datacentre_index
from nn_tracker.energy import JOULES_PER_KWH, j_to_kwh
from nn_tracker.equivalents import equivalents, what_if
from nn_tracker.node import hostname
from nn_tracker.report.document import (
    SCHEMA_VERSION,
    Datacentre,
    Device,
    EmbodiedItem,
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
    TimeResolved,
    UnitKind,
    UnitPhase,
    WhatIf,
)
from nn_tracker.sampling import Sampler

QUERYING_PHASE = "querying"


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
    centres, slots, operational_g = _operational(state.config, phases)
    embodied = _embodied(state.config, devices, state.duration_s, notes)
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
            time_resolved=_time_resolved(state, buckets, energy.it_kwh, facility_kwh, centres),
            method="measured IT energy x PUE in nn-et/nn-eq slots; nn-c per datacentre; embodied amortised "
            "by the SCI over the run's duration",
        ),
        units=per_unit(state.units, phases, centres, amortised_g, state.duration_s),
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


def _time_resolved(
    state: RunState,
    buckets: list[tuple[float, float, float]],
    it_kwh: float,
    facility_kwh: float,
    centres: list[Datacentre],
) -> TimeResolved | None:
    """Operational carbon as sum of E(t) x I(t) over the timeline, when an intensity series is configured.

    Each timeline bucket's energy is spread evenly over its time; the share of it that the
    series covers takes the series' intensity, the rest the datacentre's yearly average
    (reported as ``uncovered_energy_kwh``). Facility energy = IT x the run's overall PUE;
    the first datacentre's transport factor applies (a series describes one grid).
    """
    series = state.config.series
    if series is None:
        return None
    pue = facility_kwh / it_kwh if it_kwh > 0 else 1.0
    tau = centres[0].transport_factor
    average = centres[0].intensity_g_per_kwh
    grams = uncovered_kwh = bucket_kwh = 0.0
    for start_s, end_s, joules in buckets:
        kwh = joules / JOULES_PER_KWH * pue
        bucket_kwh += kwh
        covered_g, share = series.carbon_of(state.started_wall_s + start_s, state.started_wall_s + end_s, kwh)
        grams += covered_g / tau + kwh * (1 - share) * average / tau
        uncovered_kwh += kwh * (1 - share)
    # energy this process did not time (other ranks, earlier sessions): the yearly average, said so
    not_in_timeline_kwh = max(facility_kwh - bucket_kwh, 0.0)
    grams += not_in_timeline_kwh * average / tau
    direct = not any(k in series.column.lower() for k in ("life", "lca"))
    return TimeResolved(
        series=series.source,
        series_column=series.column,
        operational_carbon_g=grams,
        energy_kwh=facility_kwh,
        uncovered_energy_kwh=uncovered_kwh + not_in_timeline_kwh,
        not_in_timeline_energy_kwh=not_in_timeline_kwh,
        series_scope="direct emissions only: lower than the life-cycle yearly averages it is compared with"
        if direct and "direct" in series.column.lower()
        else "as the column says",
        yearly_average_operational_carbon_g=facility_kwh * average / tau,
        rule="each row holds until the next row for at most one step (the median spacing); energy in time the "
        "series does not cover uses the datacentre's average intensity",
    )


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


def _operational(config: TrackerConfig, phases: dict[str, Phase]) -> tuple[list[Datacentre], dict[str, float], float]:
    """Carbon per datacentre (nn-c) from the facility energy of the root phases it runs."""
    centres = config.resolved
    it_kwh = [0.0] * len(centres)
    slots = {"training": 0.0, "querying": 0.0}
    for name, phase in phases.items():
        if "/" in name:
            continue  # nested phases are inside their root's inclusive energy
        index = datacentre_index(name, [c.phases for c in centres])
        it_kwh[index] += phase.inclusive_energy_kwh
        slots["querying" if name == QUERYING_PHASE else "training"] += phase.inclusive_energy_kwh * centres[index].pue
    facility_kwh = [e * c.pue for e, c in zip(it_kwh, centres, strict=True)]
    operational_g = footprint.operational_carbon_g(
        facility_kwh, [c.intensity_g_per_kwh for c in centres], [c.transport_factor for c in centres]
    )
    rows = [
        Datacentre(
            name=centre.name,
            phases=list(centre.phases) or [ALL_OTHER_PHASES],
            intensity_g_per_kwh=centre.intensity_g_per_kwh,
            intensity_source=centre.intensity_source,
            intensity_year=centre.intensity_year,
            pue=centre.pue,
            pue_source=centre.pue_source,
            transport_factor=centre.transport_factor,
            it_energy_kwh=it,
            facility_energy_kwh=facility,
            operational_carbon_g=footprint.operational_carbon_g(
                [facility], [centre.intensity_g_per_kwh], [centre.transport_factor]
            ),
            default_location=centre.default_location,
            location_code=centre.location_code,
            location_kind=centre.location_kind,
        )
        for centre, it, facility in zip(centres, it_kwh, facility_kwh, strict=True)
    ]
    return rows, slots, operational_g


Wanted = tuple[str, float, float | None, float | None, float | None, str]  # name, count, kg, life, share, scope


def _embodied(config: TrackerConfig, devices: list[Device], duration_s: float, notes: list[str]) -> list[EmbodiedItem]:
    """The embodied carbon of the hardware given (or detected GPUs), amortised over the run."""
    if config.embodied == "auto":
        counts: dict[str, int] = {}
        for device in devices:
            if device.component == "gpu":
                counts[device.name] = counts.get(device.name, 0) + 1
        wanted: list[Wanted] = [(name, count, None, None, None, "unit") for name, count in counts.items()]
    else:
        wanted = [
            (h.name, h.count, h.embodied_kg_per_unit, h.lifetime_years, h.utilisation, h.scope) for h in config.embodied
        ]
    items = [item for entry in wanted if (item := _embodied_item(entry, config, duration_s / 3600.0, notes))]
    if not wanted:
        notes.append(
            "Embodied carbon not included: no hardware with a published figure was detected or "
            "given (CPU-only machines have none in the catalogue)."
        )
    return items


def _embodied_item(wanted: Wanted, config: TrackerConfig, hours: float, notes: list[str]) -> EmbodiedItem | None:
    """One hardware's embodied carbon over ``hours``; ``None`` (with a note) when no usable figure exists."""
    name, count, kg, life, share, scope = wanted
    source, method, item_scope = "given by the user", "given by the user", "given by the user"
    if kg is None:
        try:
            spec = config.catalogue.hardware_spec(name)
        except KeyError:
            spec = None
        if spec is None or spec.embodied_kg_co2e is None:
            notes.append(
                f"Embodied carbon of {name} not included: no published per-unit figure in the "
                "catalogue (give embodied=[EmbodiedHardware(...)])."
            )
            return None
        if spec.embodied_scope == "die" and scope != "die":
            notes.append(
                f"Embodied carbon of {name} not included: the only figure in the catalogue "
                f"({spec.embodied_kg_co2e:g} kg, {spec.embodied_method}) covers the chip's die alone, not the "
                "whole card; give embodied_kg_per_unit, or scope='die' to count the die alone (labelled)."
            )
            return None
        kg, method, item_scope = spec.embodied_kg_co2e, spec.embodied_method, spec.embodied_scope
        source = spec.embodied_source.title if spec.embodied_source else "catalogue"
    terms = footprint.lifetime(life, share)
    whole_g = footprint.embodied_carbon_from_kg_g([count], [kg])
    amortised = footprint.amortised_embodied_g(
        whole_g, time_reserved_h=hours, lifetime_h=terms.years * footprint.HOURS_PER_YEAR, utilisation=terms.utilisation
    )
    return EmbodiedItem(
        name=name,
        count=count,
        embodied_kg_per_unit=kg,
        scope=item_scope,
        method=method,
        source=source,
        lifetime_years=terms.years,
        utilisation=terms.utilisation,
        lifetime_source=terms.source,
        unamortised_g=whole_g,
        amortised_g=amortised,
    )


def per_unit(
    units: dict[str, dict[str, float]],
    phases: dict[str, Phase],
    centres: list[Datacentre],
    embodied_g: float | None,
    duration_s: float,
) -> dict[str, UnitKind]:
    """Energy and carbon per functional unit, per kind and per phase, never mixing phases (a pure function).

    A phase's units divide that phase's own energy and time (its nested phases excluded: training
    samples do not share validation's energy): facility energy = own IT energy x the PUE of the
    phase's datacentre; carbon = its operational carbon (nn-c) + the amortised embodied carbon in
    proportion to the phase's own duration.
    """
    result: dict[str, UnitKind] = {}
    for phase in sorted(units):
        info = phases.get(phase)
        own_kwh, own_s = (info.energy_kwh, info.duration_s) if info else (0.0, 0.0)
        centre = centres[centre_row_for(phase.split("/", 1)[0], centres)]
        facility_kwh = own_kwh * centre.pue
        carbon_g = footprint.operational_carbon_g(
            [facility_kwh], [centre.intensity_g_per_kwh], [centre.transport_factor]
        )
        if embodied_g and duration_s > 0:
            carbon_g += embodied_g * own_s / duration_s
        for kind, count in units[phase].items():
            entry = result.setdefault(kind, UnitKind(count=0, by_phase={}))
            entry.count = whole(entry.count + count)
            entry.by_phase[phase] = UnitPhase(
                count=whole(count),
                facility_energy_kwh=facility_kwh,
                carbon_g=carbon_g,
                facility_energy_kwh_per_unit=facility_kwh / count if count else None,
                carbon_g_per_unit=carbon_g / count if count else None,
            )
    return result


def centre_row_for(root_phase: str, rows: list[Datacentre]) -> int:
    """The report's datacentre row that runs a root phase (see :func:`~nn_tracker.config.datacentre_index`)."""
    return datacentre_index(root_phase, [[] if r.phases == [ALL_OTHER_PHASES] else r.phases for r in rows])


def whole(count: float) -> float:
    """A count as an integer when it is one (``76``, not ``76.0``)."""
    return int(count) if isinstance(count, float) and count.is_integer() else count
