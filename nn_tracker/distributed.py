"""Multi-process and multi-node tracking through ``torch.distributed``, counting nothing twice.

Every process of the job runs a tracker, but each node's CPU and RAM are measured
by one process only (its lowest rank) and each GPU by exactly one process (the
lowest rank that sees it, matched by UUID whatever ``CUDA_VISIBLE_DEVICES``
says). At the end the totals are gathered on global rank 0, which writes one
report with per-node and per-device breakdowns. Without an initialised process
group everything degrades to a single-process :class:`~nn_tracker.Tracker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nn_tracker.report.model import Report, hostname
from nn_tracker.tracker import Tracker, status_for_exception


@dataclass(frozen=True)
class Role:
    """What one process measures."""

    node: str
    rank: int
    world_size: int
    node_sensors: bool
    gpu_uuids: tuple[str, ...]

    @property
    def visible_devices(self) -> str:
        """The GPUs to measure as a ``CUDA_VISIBLE_DEVICES``-style list of UUIDs ('' for none)."""
        return ",".join(self.gpu_uuids)


def assign_roles(entries: list[dict[str, Any]]) -> list[Role]:
    """Decide who measures what from every process's ``{"node", "rank", "gpu_uuids"}`` (a pure function)."""
    roles = []
    by_node: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_node.setdefault(entry["node"], []).append(entry)
    owner: dict[tuple[str, str], int] = {}
    for node, members in by_node.items():
        for member in sorted(members, key=lambda e: e["rank"]):
            for uuid in member["gpu_uuids"]:
                owner.setdefault((node, uuid), member["rank"])
    first_rank = {node: min(e["rank"] for e in members) for node, members in by_node.items()}
    for entry in entries:
        node, rank = entry["node"], entry["rank"]
        mine = tuple(u for u in entry["gpu_uuids"] if owner[(node, u)] == rank)
        roles.append(Role(node, rank, len(entries), rank == first_rank[node], mine))
    return roles


def torch_distributed() -> Any | None:
    """``torch.distributed`` when a process group is initialised, else ``None`` (torch is optional)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj`` (in rank order); ``[obj]`` without a process group."""
    dist = torch_distributed()
    if dist is None or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def visible_gpu_uuids(visible: str | None = None) -> list[str]:
    """UUIDs of the GPUs this process sees (none without NVML)."""
    from nn_tracker.sensors.nvml import discover_gpus

    found = discover_gpus(visible)
    try:
        return [sensor.info.details["uuid"] for sensor in found.sensors]
    finally:
        found.close()


def plan_role(gpus: bool = True, visible: str | None = None) -> Role:
    """Agree with the other processes on what this one measures (a collective call)."""
    dist = torch_distributed()
    rank = dist.get_rank() if dist else 0
    entry = {"node": hostname(), "rank": rank, "gpu_uuids": visible_gpu_uuids(visible) if gpus else []}
    roles = assign_roles(gather(entry))
    return next(role for role in roles if role.rank == rank)


class DistributedTracker:
    """A :class:`Tracker` per process with one merged report on global rank 0.

    ``with DistributedTracker(location="FR") as run:`` in every process (after
    ``torch.distributed.init_process_group``). :meth:`start` and :meth:`stop` are
    collective: every process must call them.

    Args:
        **options: Fields of :class:`~nn_tracker.config.TrackerConfig`.
    """

    def __init__(self, **options: Any) -> None:
        from nn_tracker.config import TrackerConfig

        TrackerConfig(**options)  # validate in every process before any collective
        self._options = options
        self.role: Role | None = None
        self.tracker: Tracker | None = None

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the report (global rank 0)."""
        return self.role is None or self.role.rank == 0

    def start(self) -> DistributedTracker:
        """Plan roles and start this process's tracker."""
        self.role = plan_role(self._options.get("gpus", True), self._options.get("visible_devices"))
        options = dict(self._options, visible_devices=self.role.visible_devices, node_sensors=self.role.node_sensors)
        if not self.is_writer:
            options["write_report"] = False
        self.tracker = Tracker(**options).start()
        return self

    def merged_state(self) -> dict[str, Any] | None:
        """Totals of every process merged (on rank 0; ``None`` elsewhere) — a collective call."""
        states = gather(self.tracker.export_state())
        if not self.is_writer:
            return None
        return merge_states(states)

    def stop(self, status: str = "completed", error: BaseException | None = None) -> Report:
        """Gather every process's totals on rank 0 and write one report there (collective).

        After a failure the other processes may be gone, so nothing is gathered: rank 0
        writes what it measured itself, and says so.
        """
        if status != "completed":
            self.tracker.add_note("The run did not complete: only this process's measurements are in the report.")
            return self.tracker.stop(status, error)
        try:
            states = gather(self.tracker.export_state())
        except Exception as exc:  # noqa: BLE001 - a broken process group must not lose our own data
            self.tracker.add_note(f"Totals of the other processes could not be gathered ({exc}).")
            return self.tracker.stop(status, error)
        if self.is_writer:
            for state in states[1:]:
                self.tracker.carry_over(state, parallel=True)
            if len(states) > 1:
                nodes = len({s["node"] for s in states})
                self.tracker.add_note(f"Merged from {len(states)} processes on {nodes} node(s).")
        return self.tracker.stop(status, error)

    def __enter__(self) -> DistributedTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.stop(status_for_exception(exc), exc)


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """One state from the states of processes that ran at the same time (rank 0's first)."""
    from nn_tracker.sampling import DeviceTotals
    from nn_tracker.tracker import remote_device_key

    merged = dict(
        states[0], devices=list(states[0]["devices"]), units={p: dict(k) for p, k in states[0]["units"].items()}
    )
    by_key = {d["info"]["device_id"]: DeviceTotals.from_state(d) for d in merged["devices"]}
    for state in states[1:]:
        for device in state["devices"]:
            totals = DeviceTotals.from_state(device)
            key = remote_device_key(totals, state["node"], merged["node"])
            if key in by_key:
                by_key[key].absorb(totals)
            else:
                totals.info.device_id = key
                by_key[key] = totals
        for phase, kinds in state["units"].items():
            per_phase = merged["units"].setdefault(phase, {})
            for kind, count in kinds.items():
                per_phase[kind] = per_phase.get(kind, 0) + count
    merged["devices"] = [t.to_state() for t in by_key.values()]
    return merged
