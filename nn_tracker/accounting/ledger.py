"""The ledger: what each process measured in each session of a run, and every total computed from it.

A **run** has one or more **sessions**: a session lasts from a tracker's start to its stop, and a run
resumed from a checkpoint is a new session of the same run. In a session every **process** (a
distributed rank) measures its own devices. What one process measured in one session is one
:class:`Record`, keyed ``(session, process)``: its devices' energy per phase, its time per phase, its
functional units, and how each figure was obtained. Records are never changed or added into one
another; a checkpoint carries the records of earlier sessions, and gathering ranks is a union.

The rules, all here:

- **Union by key.** The same record seen twice is kept once. Two records with one key and different
  values: the first is kept, the second refused with a one-line note (never a sum, never an exception).
- **One claim per device and session.** A device (node, device id) is measured by one process per
  session; a second claim in the same session is left out with a note (the lowest rank's is kept).
- **Projections** (every figure of every output comes from these):

  - a device's figures: the sum over sessions of its record;
  - a session's duration and time per phase: those of its writer (its lowest rank), whose phase
    times add up to its duration;
  - the run's duration, time per phase, energy and units: the sum over sessions (units over every
    record: each process counts its own batches).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from nn_tracker.core import validation as check
from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import asdict, field, fields, replace, struct

LEDGER_VERSION = 2  # the ``nn_tracker_state`` of exported ledgers; 1: a run's merged totals (upgraded)
Units = dict[str, dict[str, float]]  # phase -> kind -> count
Key = tuple[str, str]  # (session, process)


def node_pseudonym(node_id: str) -> str:
    """A node's name in records, stable for one boot: a hash of its identity (:func:`nn_tracker.core.node.node_id`).

    A boot id or machine id (random 128 bits) cannot be recovered from it; where neither exists and
    the identity is the host name, the hash only hides it from a casual reader.
    """
    return "node-" + hashlib.sha256(f"nn_tracker node {node_id}".encode()).hexdigest()[:10]


MAX_WALL_S = 253402300799.0  # 9999-12-31T23:59:59Z: the latest time a report can write


@struct(frozen=True)
class DeviceRecord:
    """What one process measured of one device in one session, and how."""

    device_id: str
    component: str
    name: str
    method: str
    model: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    energy_j: float = 0.0
    energy_by_phase_j: Mapping[str, float] = field(default_factory=dict)
    measured_s: float = 0.0
    gap_s: float = 0.0
    peak_power_w: float | None = None
    last_power_w: float | None = None
    readings: int = 0
    errors: int = 0
    first_error: str = ""
    dropped_intervals: int = 0
    bridged_intervals: int = 0
    lost_at_s: float | None = None  # seconds from its session's start

    def to_state(self) -> dict[str, Any]:
        """JSON-ready."""
        state = asdict(self)
        state["notes"] = list(self.notes)
        return state

    @classmethod
    def from_state(cls, state: Any, where: str) -> DeviceRecord:
        """Read and check one device of an exported ledger (one-line errors name ``where``)."""
        if not isinstance(state, dict):
            raise ValidationError(where, type(state).__name__, "must be a device record (a mapping)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise ValidationError(f"{where}.{unknown[0]}", state[unknown[0]], "is not a device record field")
        for name in ("device_id", "component", "name", "method"):
            if not isinstance(state.get(name), str) or not state.get(name):
                raise ValidationError(f"{where}.{name}", state.get(name), "must be a non-empty string")
        for name in ("model", "first_error"):
            if state.get(name) is not None and not isinstance(state[name], str):
                raise ValidationError(f"{where}.{name}", state[name], "must be a string or null")
        for name in ("energy_j", "measured_s", "gap_s", "readings", "errors", "dropped_intervals", "bridged_intervals"):
            check.non_negative(f"{where}.{name}", state.get(name, 0))
        for name in ("peak_power_w", "last_power_w", "lost_at_s"):
            if state.get(name) is not None:
                check.non_negative(f"{where}.{name}", state[name])
        by_phase = _phases(f"{where}.energy_by_phase_j", state.get("energy_by_phase_j", {}))
        for phase, joules in by_phase.items():
            check.non_negative(f"{where}.energy_by_phase_j.{phase}", joules)
        energy_j = float(state.get("energy_j", 0))
        if abs(math.fsum(by_phase.values()) - energy_j) > 1e-9 * max(1.0, energy_j):
            raise ValidationError(
                f"{where}.energy_by_phase_j", "their sum", f"must add up to energy_j ({energy_j:g} J)"
            )
        details = _mapping(f"{where}.details", state.get("details", {}))
        notes = state.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValidationError(f"{where}.notes", notes, "must be a list of strings")
        return cls(**{**state, "details": dict(details), "notes": tuple(notes), "energy_by_phase_j": dict(by_phase)})


@struct(frozen=True)
class Record:
    """What one process measured in one session of a run."""

    session: str
    process: str
    rank: int
    node: str  # a pseudonym (:func:`node_pseudonym`)
    run_id: str
    started_wall_s: float | None
    ended_wall_s: float | None
    duration_s: float
    phase_time_s: Mapping[str, float]
    units: Mapping[str, Mapping[str, float]]
    devices: tuple[DeviceRecord, ...]
    host: str | None = None  # kept in memory to label nodes; never in a checkpoint

    @property
    def key(self) -> Key:
        """``(session, process)``."""
        return (self.session, self.process)

    def to_state(self, public: bool = False) -> dict[str, Any]:
        """JSON-ready; ``public`` (for checkpoints, which get published) leaves the host name out."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "devices"}
        state["phase_time_s"] = dict(self.phase_time_s)
        state["units"] = {phase: dict(kinds) for phase, kinds in self.units.items()}
        state["devices"] = [d.to_state() for d in self.devices]
        if public:
            del state["host"]
        return state

    @classmethod
    def from_state(cls, state: Any, where: str) -> Record:
        """Read and check one record of an exported ledger."""
        if not isinstance(state, dict):
            raise ValidationError(where, type(state).__name__, "must be a record (a mapping)")
        missing = [n for n in ("session", "process", "rank", "node", "duration_s", "devices") if n not in state]
        if missing:
            raise ValidationError(f"{where}.{missing[0]}", None, "is required in a record")
        for name in ("session", "process", "node"):
            if not isinstance(state[name], str) or not state[name]:
                raise ValidationError(f"{where}.{name}", state[name], "must be a non-empty string")
        if isinstance(state["rank"], bool) or not isinstance(state["rank"], int) or state["rank"] < 0:
            raise ValidationError(f"{where}.rank", state["rank"], "must be an integer >= 0")
        check.non_negative(f"{where}.duration_s", state["duration_s"])
        for name in ("started_wall_s", "ended_wall_s"):
            if state.get(name) is not None and check.non_negative(f"{where}.{name}", state[name]) > MAX_WALL_S:
                raise ValidationError(f"{where}.{name}", state[name], f"must be at most {MAX_WALL_S:.0f} (year 9999)")
        phase_time = _phases(f"{where}.phase_time_s", state.get("phase_time_s", {}))
        for phase, seconds in phase_time.items():
            check.non_negative(f"{where}.phase_time_s.{phase}", seconds)
        units = _units(f"{where}.units", state.get("units", {}))
        if not isinstance(state["devices"], list):
            raise ValidationError(f"{where}.devices", type(state["devices"]).__name__, "must be a list")
        devices = tuple(DeviceRecord.from_state(d, f"{where}.devices[{i}]") for i, d in enumerate(state["devices"]))
        seen: set[str] = set()
        for i, device in enumerate(devices):
            if device.device_id in seen:
                raise ValidationError(
                    f"{where}.devices[{i}].device_id", device.device_id, "must appear once in a record"
                )
            seen.add(device.device_id)
        host = state.get("host")
        return cls(
            session=state["session"],
            process=state["process"],
            rank=state["rank"],
            node=state["node"],
            run_id=str(state.get("run_id") or ""),
            started_wall_s=state.get("started_wall_s"),
            ended_wall_s=state.get("ended_wall_s"),
            duration_s=float(state["duration_s"]),
            phase_time_s=dict(phase_time),
            units=units,
            devices=devices,
            host=host if isinstance(host, str) else None,
        )


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationError(where, type(value).__name__, "must be a mapping with string keys")
    return value


def _phases(where: str, value: Any) -> Mapping[str, Any]:
    """A mapping keyed by phase paths (names joined by ``/``, each as a tracker takes them)."""
    mapping = _mapping(where, value)
    for phase in mapping:
        if not all(check.is_name(name, check.PHASE_NAME_MOST) for name in phase.split("/")):
            raise ValidationError(where, phase, f"must be keyed by phases: {check.PHASE_NAME_RULE} a name")
    return mapping


def _units(where: str, value: Any) -> Units:
    units: Units = {}
    for phase, kinds in _phases(where, value).items():
        for kind, count in _mapping(f"{where}.{phase}", kinds).items():
            units.setdefault(phase, {})[kind] = check.non_negative(f"{where}.{phase}.{kind}", count)
    return units


def add_units(into: Units, other: Mapping[str, Mapping[str, float]]) -> None:
    """Add ``other``'s units to ``into``, phase by phase and kind by kind."""
    for phase, kinds in other.items():
        per_phase = into.setdefault(phase, {})
        for kind, count in kinds.items():
            per_phase[kind] = per_phase.get(kind, 0) + count


def unit_totals(units: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Units per kind over all phases."""
    totals: dict[str, float] = {}
    for kinds in units.values():
        for kind, count in kinds.items():
            totals[kind] = totals.get(kind, 0) + count
    return totals


@struct(frozen=True)
class DeviceFigures:
    """A device's figures over the sessions of a run (a projection of its records)."""

    node: str
    host: str | None
    record: DeviceRecord  # the sums over sessions, in one record's shape
    sessions: int
    duration_s: float  # the durations of the sessions it was measured in, added up


@struct(frozen=True)
class SessionFigures:
    """One session of a run: its writer's times, every process's energy and units."""

    session: str
    run_id: str
    started_wall_s: float | None
    ended_wall_s: float | None
    duration_s: float
    phase_time_s: dict[str, float]
    processes: int
    energy_by_phase_j: dict[str, float]
    energy_by_component_j: dict[str, float]
    units: Units

    @property
    def energy_j(self) -> float:
        """Energy of every device of the session."""
        return math.fsum(self.energy_by_phase_j.values())


class Ledger:
    """The records of a run (union by key) and the projections every figure comes from.

    Args:
        records: Records to add (see :meth:`add`).
    """

    def __init__(self, records: Iterable[Record] = ()) -> None:
        self._records: dict[Key, Record] = {}
        self._cache: dict[str, Any] = {}  # projections, until the next record is added
        self.notes: list[str] = []
        for record in records:
            self.add(record)

    def _cached(self, name: str, compute: Any) -> Any:
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    @property
    def records(self) -> list[Record]:
        """Every record, in session order (by start), then by rank."""
        return list(self._cached("records", self._sorted))

    def _sorted(self) -> list[Record]:
        bounds: dict[str, tuple[float, float]] = {}  # a session's (start, end): sessions sort by them
        for record in self._records.values():
            start = record.started_wall_s if record.started_wall_s is not None else -math.inf
            end = record.ended_wall_s if record.ended_wall_s is not None else start
            first, last = bounds.get(record.session, (math.inf, -math.inf))
            bounds[record.session] = (min(first, start), max(last, end))
        return sorted(self._records.values(), key=lambda r: (*bounds[r.session], r.session, r.rank, r.process))

    def add(self, record: Record) -> bool:
        """Add a record; ``False`` (with a note) when another record with its key and other values is here."""
        existing = self._records.get(record.key)
        if existing is None:
            self._records[record.key] = record
            self._cache.clear()
            return True
        if _same(existing, record):
            return True
        self._note(
            f"Not merged: a second, different record of process {record.process[:12]} in session "
            f"{record.session[:12]} ({_joules(record):.6g} J; kept: {_joules(existing):.6g} J) was refused"
        )
        return False

    def merge(self, other: Ledger) -> None:
        """Add every record (and note) of ``other``."""
        for record in other.records:
            self.add(record)
        for note in other.notes:
            self._note(note)

    def with_record(self, record: Record) -> Ledger:
        """A copy with ``record`` in place of any record with its key (a process's newest own record)."""
        view = Ledger()
        view._records = {**self._records, record.key: record}
        view.notes = list(self.notes)
        return view

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # ----- exported form -----------------------------------------------------------------------------
    def to_state(self, public: bool = False) -> dict[str, Any]:
        """JSON-ready (``public``: no host names), for checkpoints and gathering ranks."""
        return {"nn_tracker_state": LEDGER_VERSION, "records": [r.to_state(public) for r in self.records]}

    @classmethod
    def from_state(cls, state: Any) -> Ledger:
        """Read an exported ledger (or a version-1 state, upgraded with a note).

        Raises:
            ValidationError: ``state`` is not an nn_tracker state (one line naming the field).
        """
        if not isinstance(state, dict) or "nn_tracker_state" not in state:
            raise ValidationError("state", type(state).__name__, "must be a dict from Tracker.export_state()")
        version = state["nn_tracker_state"]
        if type(version) is int and version == 1:
            return _from_version_1(state)
        if type(version) is not int or version != LEDGER_VERSION:
            raise ValidationError("state.nn_tracker_state", version, f"must be 1 or {LEDGER_VERSION}")
        records = state.get("records")
        if not isinstance(records, list):
            raise ValidationError("state.records", type(records).__name__, "must be a list")
        return cls(Record.from_state(r, f"state.records[{i}]") for i, r in enumerate(records))

    # ----- projections -------------------------------------------------------------------------------
    def sessions(self) -> list[SessionFigures]:
        """Each session's figures, in order of start."""
        return list(self._cached("sessions", self._sessions))

    def _sessions(self) -> list[SessionFigures]:
        by_session: dict[str, list[Record]] = {}
        for record in self.records:
            by_session.setdefault(record.session, []).append(record)
        claimed = self._claims()
        result = []
        for session, records in by_session.items():
            writer = records[0]
            energy: dict[str, float] = {}
            by_component: dict[str, float] = {}
            units: Units = {}
            for record in records:
                add_units(units, record.units)
                for device in record.devices:
                    if claimed[(session, _claim_node(record, device), device.device_id)] is record:
                        for phase, joules in device.energy_by_phase_j.items():
                            energy[phase] = energy.get(phase, 0.0) + joules
                        if device.readings:  # a device never read is unknown, not 0
                            component = device.component
                            by_component[component] = by_component.get(component, 0.0) + device.energy_j
            result.append(
                SessionFigures(
                    session=session,
                    run_id=writer.run_id,
                    started_wall_s=min(
                        (r.started_wall_s for r in records if r.started_wall_s is not None), default=None
                    ),
                    ended_wall_s=writer.ended_wall_s,
                    duration_s=writer.duration_s,
                    phase_time_s=dict(writer.phase_time_s),
                    processes=len(records),
                    energy_by_phase_j=energy,
                    energy_by_component_j=by_component,
                    units=units,
                )
            )
        return result

    def duration_s(self) -> float:
        """The run's duration: its sessions' durations added up."""
        return sum(s.duration_s for s in self.sessions())

    def phase_time_s(self) -> dict[str, float]:
        """The run's own time per phase, added up over sessions."""
        totals: dict[str, float] = {}
        for session in self.sessions():
            for phase, seconds in session.phase_time_s.items():
                totals[phase] = totals.get(phase, 0.0) + seconds
        return totals

    def units(self) -> Units:
        """Units per phase and kind over every record."""
        units: Units = {}
        for record in self.records:
            add_units(units, record.units)
        return units

    def devices(self) -> list[DeviceFigures]:
        """Each device's figures over the sessions (claims refused in a session are left out, with a note).

        A GPU is one device wherever it was measured (its id holds its UUID); other devices are one per node.
        """
        return list(self._cached("devices", self._devices))

    def _devices(self) -> list[DeviceFigures]:
        claimed = self._claims()
        durations = {s.session: s.duration_s for s in self.sessions()}
        combined: dict[tuple[str, str], DeviceFigures] = {}
        for record in self.records:
            for device in record.devices:
                if claimed[(record.session, _claim_node(record, device), device.device_id)] is not record:
                    continue
                key = (_claim_node(record, device), device.device_id)
                earlier = combined.get(key)
                session_s = durations[record.session]
                if earlier is None:
                    combined[key] = DeviceFigures(record.node, record.host, device, 1, session_s)
                else:
                    combined[key] = DeviceFigures(
                        record.node,  # the latest session's node
                        record.host or earlier.host,
                        _add_sessions(earlier.record, device),
                        earlier.sessions + 1,
                        earlier.duration_s + session_s,
                    )
        return list(combined.values())

    def energy_j(self) -> float:
        """Energy of every device over every session."""
        return sum(d.record.energy_j for d in self.devices())

    def claim_notes(self) -> list[str]:
        """One note per device claimed by two processes of one session (what :meth:`devices` left out)."""
        notes = []
        claimed = self._claims()
        for record in self.records:
            for device in record.devices:
                kept = claimed[(record.session, _claim_node(record, device), device.device_id)]
                if kept is not record:
                    kept_j = next(d.energy_j for d in kept.devices if d.device_id == device.device_id)
                    notes.append(
                        f"Not merged: device {device.device_id} was measured by two processes at the same time "
                        f"(ranks {kept.rank} and {record.rank}: {kept_j:.6g} J and {device.energy_j:.6g} J); "
                        f"rank {record.rank}'s figure is left out: counting both would count it twice"
                    )
        return notes

    def _claims(self) -> dict[tuple[str, str, str], Record]:
        """Which record's figure of a device counts in each session: the lowest rank's."""
        return self._cached("claims", self._first_claims)  # type: ignore[no-any-return]

    def _first_claims(self) -> dict[tuple[str, str, str], Record]:
        claimed: dict[tuple[str, str, str], Record] = {}
        for record in self.records:  # by rank within a session: the first claim is the lowest rank's
            for device in record.devices:
                claimed.setdefault((record.session, _claim_node(record, device), device.device_id), record)
        return claimed


def _claim_node(record: Record, device: DeviceRecord) -> str:
    """The node part of a device's key: none for a GPU (its UUID is unique everywhere), else the record's node."""
    return "" if device.component == "gpu" else record.node


def _joules(record: Record) -> float:
    return sum(d.energy_j for d in record.devices)


def _same(a: Record, b: Record) -> bool:
    """The same measurement, whatever is only a label (the host name)."""
    return a.to_state(public=True) == b.to_state(public=True)


def _add_sessions(earlier: DeviceRecord, later: DeviceRecord) -> DeviceRecord:
    """One device's figures over two sessions (the later one's last power and loss)."""
    by_phase = dict(earlier.energy_by_phase_j)
    for phase, joules in later.energy_by_phase_j.items():
        by_phase[phase] = by_phase.get(phase, 0.0) + joules
    peaks = [p for p in (earlier.peak_power_w, later.peak_power_w) if p is not None]
    return replace(
        later,
        notes=tuple(dict.fromkeys((*earlier.notes, *later.notes))),
        energy_j=earlier.energy_j + later.energy_j,
        energy_by_phase_j=by_phase,
        measured_s=earlier.measured_s + later.measured_s,
        gap_s=earlier.gap_s + later.gap_s,
        peak_power_w=max(peaks) if peaks else None,
        readings=earlier.readings + later.readings,
        errors=earlier.errors + later.errors,
        first_error=earlier.first_error or later.first_error,
        dropped_intervals=earlier.dropped_intervals + later.dropped_intervals,
        bridged_intervals=earlier.bridged_intervals + later.bridged_intervals,
    )


def _from_version_1(state: dict[str, Any]) -> Ledger:
    """A version-1 state (a run's merged totals) as the records of one earlier session, with a note.

    Its devices of other nodes were filed as ``<host label>/<device>``: each such node becomes a record
    of its own, and every node is named by a pseudonym (a version-1 state held boot ids and host labels).
    """
    for name in ("duration_s", "phase_time_s", "units", "devices"):
        if name not in state:
            raise ValidationError(f"state.{name}", None, "is required in a version-1 state")
    if not isinstance(state["devices"], list):
        raise ValidationError("state.devices", type(state["devices"]).__name__, "must be a list")
    by_node: dict[str, list[dict[str, Any]]] = {"": []}
    for i, device in enumerate(state["devices"]):
        if not isinstance(device, dict) or not isinstance(device.get("info"), dict):
            raise ValidationError(f"state.devices[{i}]", type(device).__name__, "must be a device's totals")
        flat = {**device["info"], **{k: v for k, v in device.items() if k not in ("info", "node")}}
        flat["first_error"] = flat.get("first_error") or ""
        flat["model"] = flat.get("model") or None
        label, _, own_id = str(flat.get("device_id", "")).rpartition("/")
        flat["device_id"] = own_id
        by_node.setdefault(label, []).append(DeviceRecord.from_state(flat, f"state.devices[{i}]").to_state())
    digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]
    own_node = node_pseudonym(str(state.get("node") or "checkpoint"))
    records = [
        Record.from_state(
            {
                "session": f"v1-{digest}",
                "process": f"v1-{digest}-{rank}",
                "rank": rank,
                "node": node_pseudonym(f"v1 label {label}") if label else own_node,
                "duration_s": state["duration_s"],
                "phase_time_s": state["phase_time_s"] if rank == 0 else {},
                "units": state["units"] if rank == 0 else {},
                "devices": devices,
            },
            "state",
        )
        for rank, (label, devices) in enumerate(by_node.items())
    ]
    ledger = Ledger(records)
    ledger.notes.append(
        "Resumed from a checkpoint of an older nn_tracker (state version 1): its earlier sessions count as one."
    )
    return ledger
