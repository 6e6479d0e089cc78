"""A run's exportable state and the one way to merge states: resume, stages and distributed gathering.

A state (:meth:`~nn_tracker.tracker.Tracker.export_state`) holds a run's totals: duration, time per
phase, functional units per phase and the totals of every device. Two states combine in one of two
ways, and only here:

- **sequential** (an earlier session of the same run, resumed from a checkpoint): the same device's
  energy, time and units add up, the durations too;
- **parallel** (processes running at the same time, gathered at the end of a distributed job): units
  add up, but every device must be measured by exactly one process. Two states claiming the same
  device is an error (:class:`DeviceCountedTwice`), never a silent sum, unless they carry the very same
  measurement (the same state gathered twice), which is kept once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from nn_tracker import validation as check
from nn_tracker.errors import DeviceCountedTwice, ValidationError
from nn_tracker.node import NodeLabels
from nn_tracker.sampling import DeviceTotals, Sampler, add_device

Units = dict[str, dict[str, float]]  # phase -> kind -> count
STATE_VERSION = 1

__all__ = [  # add_device lives beside DeviceTotals in sampling; it is part of this module's one merge
    "STATE_VERSION",
    "CarriedTotals",
    "DeviceCountedTwice",
    "Units",
    "add_device",
    "add_units",
    "carry_devices",
    "check_state",
    "merge_parallel",
    "remote_device_key",
    "snapshot",
    "unit_totals",
]


def add_units(into: Units, other: Units) -> None:
    """Add ``other``'s units to ``into``, phase by phase and kind by kind."""
    for phase, kinds in other.items():
        per_phase = into.setdefault(phase, {})
        for kind, count in kinds.items():
            per_phase[kind] = per_phase.get(kind, 0) + count


def unit_totals(units: Units) -> dict[str, float]:
    """Units per kind over all phases."""
    totals: dict[str, float] = {}
    for kinds in units.values():
        for kind, count in kinds.items():
            totals[kind] = totals.get(kind, 0) + count
    return totals


def merge_parallel(states: list[dict[str, Any]], key_of: Any) -> dict[str, Any]:
    """One state from the states of processes that ran at the same time (the first is the writer's).

    Args:
        states: Every process's exported state, the writer's first.
        key_of: ``key_of(totals, state)``: the key of a device of ``state`` in the merged state (devices
            of other nodes are keyed by node).

    Raises:
        DeviceCountedTwice: two processes claim one device.
    """
    first = states[0]
    merged = dict(first, units={p: dict(k) for p, k in first["units"].items()})
    devices: dict[str, DeviceTotals] = {}
    for state in states:
        for device_state in state["devices"]:
            totals = DeviceTotals.from_state(device_state)
            key = totals.info.device_id if state is first else key_of(totals, state)
            add_device(devices, key, totals, parallel=True)
        if state is not first:
            add_units(merged["units"], state["units"])
    merged["devices"] = [t.to_state() for t in devices.values()]
    return merged


def remote_device_key(totals: DeviceTotals, state: dict[str, Any], own_node: str, labels: NodeLabels) -> str:
    """Key of a device measured by another process: ``host/device`` when on another node.

    Nodes are told apart by their identity (``state["node"]``); the host name only labels them.
    """
    if state["node"] == own_node or totals.node:
        return totals.info.device_id
    totals.node = labels.label(state["node"], state.get("host"))
    return f"{totals.node}/{totals.info.device_id}"


def check_state(state: Any) -> None:
    """Raise a one-line error unless ``state`` comes from :meth:`Tracker.export_state`."""
    keys = {"nn_tracker_state", "node", "duration_s", "phase_time_s", "units", "devices"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise ValidationError("state", type(state).__name__, "must be a dict from Tracker.export_state()")
    if state["nn_tracker_state"] != STATE_VERSION:
        raise ValidationError("state.nn_tracker_state", state["nn_tracker_state"], f"must be {STATE_VERSION}")
    check.non_negative("state.duration_s", state["duration_s"])
    for name in ("phase_time_s", "units"):
        if not isinstance(state[name], dict):
            raise ValidationError(f"state.{name}", type(state[name]).__name__, "must be a mapping")
    for phase, seconds in state["phase_time_s"].items():
        check.non_negative(f"state.phase_time_s.{phase}", seconds)
    for phase, kinds in state["units"].items():
        if not isinstance(kinds, dict):
            raise ValidationError(f"state.units.{phase}", type(kinds).__name__, "must be a mapping")
        for kind, count in kinds.items():
            check.non_negative(f"state.units.{phase}.{kind}", count)
    if not isinstance(state["devices"], list):
        raise ValidationError("state.devices", type(state["devices"]).__name__, "must be a list")
    for i, device in enumerate(state["devices"]):
        try:
            totals = DeviceTotals.from_state(device)
            check.non_negative(f"state.devices[{i}].energy_j", totals.energy_j)
            for phase, joules in totals.energy_by_phase_j.items():
                check.non_negative(f"state.devices[{i}].energy_by_phase_j.{phase}", joules)
        except (KeyError, TypeError, AttributeError) as exc:
            rule = f"must be a device's totals ({exc})"
            raise ValidationError(f"state.devices[{i}]", type(exc).__name__, rule) from None


def snapshot(sampler: Sampler, units: Units, node: str, host: str, duration_s: float) -> dict[str, Any]:
    """A run's state (JSON-ready) from its sampler's totals and its units (see :func:`check_state`)."""
    with sampler.lock:
        devices = [t.to_state() for t in sampler.totals.values()]
        phase_time_s = dict(sampler.phase_time_s)
    return {
        "nn_tracker_state": STATE_VERSION,
        "node": node,
        "host": host,
        "duration_s": duration_s,
        "phase_time_s": phase_time_s,
        "units": units,
        "devices": devices,
    }


def carry_devices(sampler: Sampler, state: dict[str, Any], parallel: bool, key_of: Any) -> None:
    """Add a state's devices (and, for an earlier session, its time per phase) to a running sampler.

    Raises:
        DeviceCountedTwice: ``parallel`` and one of the devices is measured here already.
    """
    for device_state in state["devices"]:
        totals = DeviceTotals.from_state(device_state)
        sampler.carry(totals, key_of(totals, state) if parallel else totals.info.device_id, parallel)
    if not parallel:
        sampler.carry_phase_time(state["phase_time_s"])


class CarriedTotals:
    """What a run holds besides its own measurements: earlier sessions (resume) and other processes (parallel).

    States given before the run starts wait for its sampler; each is then carried once.

    Args:
        node: This machine's node id (devices of another node are keyed ``node/device``).
        host: This machine's host name (labels another node's devices only where it tells nodes apart).
    """

    def __init__(self, node: str, host: str) -> None:
        self._key_of = functools.partial(remote_device_key, own_node=node, labels=NodeLabels(node, host))
        self._waiting: list[tuple[dict[str, Any], bool]] = []
        self.duration_s = 0.0  # earlier sessions' time: part of the run's duration
        self.notes: list[str] = []

    def add(
        self, state: dict[str, Any], parallel: bool, sampler: Sampler | None, carry_units: Callable[[Units], None]
    ) -> None:
        """Carry ``state`` into the running ``sampler`` and its units now, or at :meth:`start` without a sampler.

        Raises:
            ValidationError: ``state`` is not an nn_tracker state.
            DeviceCountedTwice: ``parallel`` and one of its devices is measured here already.
        """
        check_state(state)
        if sampler is None:
            self._waiting.append((state, parallel))
            return
        carry_devices(sampler, state, parallel, self._key_of)
        if not parallel:
            self.duration_s += state["duration_s"]
            self.notes.append(f"Includes {state['duration_s']:.1f} s measured in earlier sessions (resumed).")
        carry_units(state["units"])

    def start(self, sampler: Sampler, carry_units: Callable[[Units], None]) -> None:
        """Carry the states given before the run started."""
        waiting, self._waiting = self._waiting, []
        for state, parallel in waiting:
            self.add(state, parallel, sampler, carry_units)
