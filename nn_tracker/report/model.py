"""The report of a tracked run, built from the sampler's totals and the footprint model.

Measured energy replaces ``P * hours``: the facility energy of training phases
(IT energy x PUE) fills nn-et's slot, that of the ``querying`` phase nn-eq's;
nn-c turns each datacentre's energy into carbon; embodied carbon is amortised
over the run. Every figure carries how it was obtained.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, cast

from nn_tracker.accounting.ledger import DeviceFigures, Ledger, SessionFigures, unit_totals
from nn_tracker.config import TrackerConfig
from nn_tracker.core.energy import j_to_kwh
from nn_tracker.core.node import NodeLabels, hostname
from nn_tracker.core.structs import field, struct
from nn_tracker.footprint import formulas as footprint
from nn_tracker.footprint.equivalents import equivalents, what_if
from nn_tracker.report import carbon
from nn_tracker.report.codec import IsoTime, iso_time
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
    Requests,
    RunError,
    SamplerHealth,
    Session,
    Settings,
    Status,
    Timeline,
    TimelinePoint,
    TrainingType,
    WhatIf,
    whole,
)
from nn_tracker.sensors.sampling import Sampler


def _iso(wall_s: float | None) -> IsoTime | None:
    if wall_s is None:
        return None
    return iso_time(wall_s)


def _software() -> dict[str, str | None]:
    """Versions of what measured and of the frameworks already loaded (nothing is imported for this)."""
    loaded = sys.modules  # a package is there once any of its modules is
    return {
        "nn_tracker": _version("nn-tracker", "nn_tracker"),
        "python": sys.version.split()[0],
        "nvidia-ml-py": _version("nvidia-ml-py", "pynvml") if _nvml_loaded() else None,
        "psutil": _version("psutil", "psutil"),
        "torch": _version("torch", "torch") if "torch" in loaded else None,
        "lightning": _version("lightning", "lightning") if "lightning" in loaded else None,
        "pytorch-lightning": (
            _version("pytorch-lightning", "pytorch_lightning") if "pytorch_lightning" in loaded else None
        ),
    }


def _nvml_loaded() -> bool:
    """Whether pynvml loaded NVIDIA's library (``import torch`` imports pynvml without using it).

    The legacy ``pynvml`` package keeps the library in its ``pynvml.nvml`` module.
    """
    return any(getattr(sys.modules.get(name), "nvmlLib", None) is not None for name in ("pynvml", "pynvml.nvml"))


@functools.cache
def _version(distribution: str, module: str) -> str | None:
    """A loaded package's version: its ``__version__`` (cheap), else its metadata, once a process.

    ``None`` for a package not loaded: it took no part in this run (``pynvml`` without a GPU).
    """
    loaded = sys.modules.get(module)
    if loaded is None:
        return None
    found = getattr(loaded, "__version__", None)
    if isinstance(found, str):
        return found
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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
        memory_total_gib=_memory_total_gib(),
    )
    if identity:
        machine.hostname, machine.pid = hostname(), os.getpid()
        machine.user = os.environ.get("USER") or os.environ.get("LOGNAME")
    return machine


def _memory_total_gib() -> float | None:
    """The machine's total memory in GiB (as CodeCarbon's ``ram_total_size``), ``None`` if unknown.

    ``sysconf`` gives the kernel's total RAM pages, psutil's ``MemTotal`` (the same figure) without a
    ``/proc/meminfo`` parse; psutil elsewhere.
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (AttributeError, ValueError, OSError):  # not POSIX, or not this name
        pass
    try:
        import psutil

        result: float = psutil.virtual_memory().total / 2**30
        return result
    except Exception:  # noqa: BLE001 - a missing figure, never a failed report
        return None


@struct
class RunState:
    """What the report is built from besides the sampler's health and timeline: the run's ledger and labels."""

    config: TrackerConfig
    run_id: str
    status: str
    ledger: Ledger
    session: str  # this session's key in the ledger
    node: str  # this process's node (its pseudonym in the ledger)
    started_wall_s: float
    ended_wall_s: float | None
    notes: list[str]
    cpu_model: str | None
    error: RunError | None = None
    related_runs: list[RelatedRun] = field(default_factory=list)
    built_wall_s: float | None = None
    requests: Requests | None = None


def incomplete_report(state: RunState, failure: BaseException) -> IncompleteReport:
    """The little that is known when the report cannot be built: never nothing, never a wrong figure."""
    return IncompleteReport(
        schema_version=SCHEMA_VERSION,
        run_id=state.run_id,
        project_name=state.config.project_name,
        status=cast("Status", state.status),  # one of STATUSES: the tracker's own
        incomplete=True,
        duration_s=_safe_duration(state.ledger),
        error=state.error,
        notes=[f"The report could not be built ({type(failure).__name__}: {failure}); no figures given."],
    )


NO_LOCATION_NOTE = (
    "No location given: the world-average grid intensity was used. Set location "
    "(country, zone or cloud region) for a meaningful carbon figure."
)


def _safe_duration(ledger: Ledger) -> float:
    try:
        return ledger.duration_s()
    except Exception:  # noqa: BLE001 - the incomplete report must be written whatever broke
        return 0.0


def build_report(state: RunState, sampler: Sampler, timeline: bool = True) -> Report:
    """Assemble the report from the run's ledger and this process's sampler (``timeline=False``: a cheap summary).

    Every figure is a projection of the ledger (:mod:`nn_tracker.accounting.ledger`); the sampler gives only
    this process's timeline and sampling health.
    """
    ledger = state.ledger
    with sampler.lock:
        timeline_data = _timeline(sampler) if timeline else None
        buckets = [
            (p.start_s - (sampler.started_s or 0.0), p.end_s - (sampler.started_s or 0.0), sum(p.energy_j.values()))
            for p in sampler.timeline.points
        ]
        sampler_health = _sampler_health(state, sampler)
    duration_s = ledger.duration_s()
    sessions = ledger.sessions()
    figures = ledger.devices()
    devices = _devices(figures, state)
    units = ledger.units()
    phases = _phases(figures, ledger.phase_time_s(), units)
    device_notes = (n for d in devices for n in d.notes)
    notes = list(dict.fromkeys([*_ledger_notes(ledger, sessions, state.session), *state.notes, *device_notes]))
    energy = _energy(devices)
    centres, slots, operational_g = carbon.operational(state.config, phases)
    carbon.charge_devices(state.config, devices, centres)
    device_s = {row.device_id: figure.duration_s for row, figure in zip(devices, figures, strict=True)}
    embodied = carbon.embodied(state.config, devices, duration_s, notes, device_s)
    amortised_g = sum(i.amortised_g for i in embodied) if embodied else None
    total_g = footprint.total_carbon_g(amortised_g or 0.0, operational_g)
    if any(c.default_location for c in centres):
        notes.insert(0, NO_LOCATION_NOTE)
    facility_kwh = slots["training"] + slots["querying"]
    catalogue = state.config.catalogue
    what_if_data = what_if(facility_kwh, amortised_g, catalogue, state.config.what_if_locations)
    return Report(
        **_header(state, sessions, duration_s),
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
        units=carbon.per_unit(units, phases, centres, amortised_g, duration_s),
        equivalents=[Equivalent(**row) for row in equivalents(total_g, facility_kwh, catalogue)],
        what_if=WhatIf(**{**what_if_data, "places": [Place(**row) for row in what_if_data["places"]]}),
        sampler=sampler_health,
        notes=notes,
        related_runs=list(state.related_runs),
        sessions=_sessions(state, sessions, duration_s, amortised_g),
        timeline=timeline_data,
        requests=state.requests,
    )


def _ledger_notes(ledger: Ledger, sessions: list[SessionFigures], current: str) -> list[str]:
    """What the reader must know of how the ledger's records were combined."""
    notes = [*ledger.notes, *ledger.claim_notes()]
    if len(sessions) > 1:
        earlier_s = sum(s.duration_s for s in sessions if s.session != current)
        notes.append(
            f"Resumed: {len(sessions)} sessions; includes {earlier_s:.1f} s measured in earlier sessions "
            "(see sessions)."
        )
    return notes


def _sessions(
    state: RunState, sessions: list[SessionFigures], duration_s: float, amortised_g: float | None
) -> list[Session]:
    """Each session's own figures: its phases' energy through the run's datacentres, its share of embodied carbon."""
    rows = []
    for figures in sessions:
        own = {
            name: Phase(
                energy_kwh=0.0,
                inclusive_energy_kwh=j_to_kwh(joules),
                duration_s=0.0,
                inclusive_duration_s=0.0,
                units={},
            )
            for name, joules in _roots(figures.energy_by_phase_j).items()
        }
        _centres, slots, operational_g = carbon.operational(state.config, own)
        embodied_g = amortised_g * figures.duration_s / duration_s if amortised_g and duration_s > 0 else None
        rows.append(
            Session(
                run_id=figures.run_id,
                current=figures.session == state.session,
                started_at=_iso(figures.started_wall_s),
                ended_at=_iso(figures.ended_wall_s),
                duration_s=figures.duration_s,
                processes=figures.processes,
                it_energy_kwh=j_to_kwh(figures.energy_j),
                it_energy_kwh_by_component={c: j_to_kwh(j) for c, j in figures.energy_by_component_j.items()},
                facility_energy_kwh=slots["training"] + slots["querying"],
                operational_carbon_g=operational_g,
                embodied_carbon_amortised_g=embodied_g,
                total_carbon_g=footprint.total_carbon_g(embodied_g or 0.0, operational_g),
                units={kind: whole(count) for kind, count in unit_totals(figures.units).items()},
            )
        )
    return rows


def _roots(energy_by_phase_j: dict[str, float]) -> dict[str, float]:
    roots: dict[str, float] = {}
    for phase, joules in energy_by_phase_j.items():
        root = phase.split("/", 1)[0]
        roots[root] = roots.get(root, 0.0) + joules
    return roots


def _header(state: RunState, sessions: list[SessionFigures], duration_s: float) -> dict[str, Any]:
    """Who, when and how: the fields before the figures (times of the run: its first session's start)."""
    config = state.config
    starts = [s.started_wall_s for s in sessions if s.started_wall_s is not None]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": state.run_id,
        "project_name": config.project_name,
        "status": state.status,
        "started_at": _iso(min([*starts, state.started_wall_s])),
        "ended_at": _iso(state.ended_wall_s),
        "checkpointed_at": _iso(state.built_wall_s) if state.status == "running" else None,
        "duration_s": duration_s,
        "error": state.error,
        "machine": _machine(state.cpu_model, config.identity),
        "software": _software(),
        "settings": Settings(
            attribution=config.attribution,
            interval_s=config.interval_s,
            checkpoint_interval_s=config.checkpoint_interval_s,
            training_type=cast("TrainingType", config.training_type),  # checked by the configuration
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


def _devices(figures: list[DeviceFigures], state: RunState) -> list[Device]:
    """One row per device of the run; another node's devices are named ``<node label>/<device>``."""
    several_nodes = len({f.node for f in figures} | {state.node}) > 1
    own_host = hostname()
    labels = NodeLabels(state.node, own_host)
    rows = []
    for device in figures:
        record = device.record
        own = device.node == state.node
        if own:
            node = own_host if several_nodes or state.config.identity else LOCAL_NODE
        else:
            node = labels.label(device.node, device.host)
        measured = record.readings > 0  # a sensor that never gave a reading is unmeasured, never 0
        rows.append(
            Device(
                device_id=record.device_id if own else f"{node}/{record.device_id}",
                component=record.component,
                name=record.name,
                method=record.method,
                model=record.model,
                details=dict(record.details),
                energy_kwh=j_to_kwh(record.energy_j) if measured else None,
                energy_kwh_by_phase={p: j_to_kwh(j) for p, j in record.energy_by_phase_j.items()},
                mean_power_w=record.energy_j / record.measured_s if record.measured_s > 0 else None,
                peak_power_w=record.peak_power_w,
                last_power_w=record.last_power_w,
                measured_s=record.measured_s,
                gap_s=record.gap_s,
                readings=record.readings,
                errors=record.errors,
                first_error=record.first_error or None,
                dropped_intervals=record.dropped_intervals,
                bridged_intervals=record.bridged_intervals,
                lost_at_s=record.lost_at_s,
                node=node,
                notes=list(record.notes) + _device_notes(record, measured),
            )
        )
    return rows


def _device_notes(totals: Any, measured: bool) -> list[str]:
    """What a reader must know about one device's figure."""
    device_id = totals.device_id
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
    others = totals.details.get("other_processes_cpu_share")
    if isinstance(others, (int, float)) and others > OTHERS_NOTABLE_SHARE:
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


def _phases(
    figures: list[DeviceFigures], phase_time_s: dict[str, float], units: dict[str, dict[str, float]]
) -> dict[str, Phase]:
    """Own and inclusive energy and time of every phase and of every phase enclosing one.

    Each phase adds its inclusive figures to its parent's, deepest first: linear in the phases' path
    lengths (thousands of nested phases cost milliseconds).
    """
    exclusive: dict[str, float] = {}
    for device in figures:
        for phase, joules in device.record.energy_by_phase_j.items():
            exclusive[phase] = exclusive.get(phase, 0.0) + joules
    names = set(exclusive) | set(phase_time_s) | set(units)
    for name in list(names):  # a phase with no time of its own still encloses its nested phases
        parent = name.rpartition("/")[0]
        while parent and parent not in names:
            names.add(parent)
            parent = parent.rpartition("/")[0]
    inclusive_j = {name: exclusive.get(name, 0.0) for name in names}
    inclusive_s = {name: phase_time_s.get(name, 0.0) for name in names}
    for name in sorted(names, key=lambda n: n.count("/"), reverse=True):
        parent = name.rpartition("/")[0]
        if parent:
            inclusive_j[parent] += inclusive_j[name]
            inclusive_s[parent] += inclusive_s[name]
    return {
        name: Phase(
            energy_kwh=j_to_kwh(exclusive.get(name, 0.0)),
            inclusive_energy_kwh=j_to_kwh(inclusive_j[name]),
            duration_s=phase_time_s.get(name, 0.0),
            inclusive_duration_s=inclusive_s[name],
            units={kind: whole(count) for kind, count in units.get(name, {}).items()},
        )
        for name in sorted(names)
    }
