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

from typing import Any

from nn_tracker.errors import NNTrackerError
from nn_tracker.sampling import DeviceTotals

Units = dict[str, dict[str, float]]  # phase -> kind -> count


class DeviceCountedTwice(NNTrackerError):
    """Two processes running at the same time both measured one device."""


def add_units(into: Units, other: Units) -> None:
    """Add ``other``'s units to ``into``, phase by phase and kind by kind."""
    for phase, kinds in other.items():
        per_phase = into.setdefault(phase, {})
        for kind, count in kinds.items():
            per_phase[kind] = per_phase.get(kind, 0) + count


def unit_totals(units: Units) -> dict[str, float]:
    """Units per kind over all phases."""
    totals: Units = {"": {}}
    for kinds in units.values():
        add_units(totals, {"": kinds})
    return totals[""]


def add_device(devices: dict[str, DeviceTotals], key: str, totals: DeviceTotals, parallel: bool) -> None:
    """Put ``totals`` under ``key``: sequential sessions of a device add up; parallel claims must not collide.

    Raises:
        DeviceCountedTwice: ``parallel`` and ``key`` is already there with a different measurement.
    """
    existing = devices.get(key)
    if existing is None:
        totals.info.device_id = key
        devices[key] = totals
    elif not parallel:
        existing.absorb(totals)
    elif _measurement(existing) != _measurement(totals):
        raise DeviceCountedTwice(
            f"device {key} was measured by two processes at the same time "
            f"({existing.energy_j:.6g} J and {totals.energy_j:.6g} J): counting both would count it twice"
        )


def _measurement(totals: DeviceTotals) -> dict[str, Any]:
    """What a device's totals say, whatever key they are filed under."""
    state = totals.to_state()
    return {**state, "info": {k: v for k, v in state["info"].items() if k != "device_id"}}


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
