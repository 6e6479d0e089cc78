"""Multi-process and multi-node tracking through ``torch.distributed``, counting nothing twice.

Every process of the job runs a tracker. Each node's CPU and RAM are measured by one process
only (the lowest rank on that node; a node is one running kernel, see :mod:`nn_tracker.core.node`),
and each GPU by exactly one process in the whole job (the lowest rank that sees it, matched by
UUID whatever ``CUDA_VISIBLE_DEVICES`` says). With ``attribution="process"`` the node's measuring
process charges the process trees of every rank on its node. Every rank's tracker files its
record under one session (rank 0's) in the run's ledger (:mod:`nn_tracker.accounting.ledger`).

The ending sequence: every rank waits until all have reached ``stop()`` (sampling on, so a rank's
energy while it waits for others is counted), then takes its last reading and stops sampling, then
the records are gathered on global rank 0, which writes one report with per-node and per-device
breakdowns. After a failure or SIGTERM nothing is gathered: rank 0 writes what it measured, with a
note naming the ranks that are missing.

nn_tracker's own collectives never touch the job's backend: they run on a gloo group created
for the purpose (CPU tensors and pickled objects), so they work whatever the job uses (NCCL
serves only CUDA tensors) and whether or not ``torch.cuda.set_device`` was called yet. Without
an initialised process group everything degrades to a single-process
:class:`~nn_tracker.Tracker`.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from nn_tracker.core.errors import NNTrackerError
from nn_tracker.core.node import hostname, node_id
from nn_tracker.core.structs import struct
from nn_tracker.run.endings import stop_as_block_ends
from nn_tracker.tracker import Tracker

if TYPE_CHECKING:
    from nn_tracker.accounting.ledger import Ledger
    from nn_tracker.report.document import IncompleteReport, Report

log = logging.getLogger("nn_tracker")


@struct(frozen=True)
class Role:
    """What one process measures."""

    node: str
    rank: int
    world_size: int
    node_sensors: bool
    gpu_uuids: tuple[str, ...]
    node_pids: tuple[int, ...] = ()

    @property
    def visible_devices(self) -> str:
        """The GPUs to measure as a ``CUDA_VISIBLE_DEVICES``-style list of UUIDs ('' for none)."""
        return ",".join(self.gpu_uuids)


def assign_roles(entries: list[dict[str, Any]]) -> list[Role]:
    """Decide who measures what from every process's ``{"node", "rank", "gpu_uuids", "pid"}`` (pure).

    ``node`` is the node's identity (not its host name). The lowest rank of each node measures its
    CPU and RAM and gets the pids of every rank on the node; the lowest rank that sees a GPU measures it.
    """
    by_node: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_node.setdefault(entry["node"], []).append(entry)
    owner: dict[str, int] = {}
    for entry in sorted(entries, key=lambda e: e["rank"]):
        for uuid in entry["gpu_uuids"]:
            owner.setdefault(uuid, entry["rank"])  # a GPU UUID is unique in the whole job
    first_rank = {node: min(e["rank"] for e in members) for node, members in by_node.items()}
    roles = []
    for entry in entries:
        node, rank = entry["node"], entry["rank"]
        mine = tuple(u for u in entry["gpu_uuids"] if owner[u] == rank)
        measures_node = rank == first_rank[node]
        pids = tuple(sorted(e["pid"] for e in by_node[node] if "pid" in e)) if measures_node else ()
        roles.append(Role(node, rank, len(entries), measures_node, mine, pids))
    return roles


def torch_distributed() -> Any | None:
    """``torch.distributed`` when a process group is initialised, else ``None`` (torch is optional)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


class Collectives:
    """nn_tracker's own collectives, on a gloo group created for them (all processes must create it).

    Where gloo is missing, the default group is used; object collectives then follow torch's rules
    (with NCCL, on the current CUDA device).
    """

    def __init__(self, dist: Any) -> None:
        self._dist = dist
        self.group = dist.new_group(backend="gloo") if dist.is_gloo_available() else None
        self.size = dist.get_world_size()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order."""
        out: list[Any] = [None] * self.size
        self._dist.all_gather_object(out, obj, group=self.group)
        return out

    def close(self) -> None:
        """Release the group (no communication)."""
        if self.group is not None:
            try:
                self._dist.destroy_process_group(self.group)
            except Exception:
                log.debug("nn_tracker: could not destroy its gloo group", exc_info=True)
            self.group = None


def visible_gpu_uuids(visible: str | None = None) -> list[str]:
    """UUIDs of the GPUs this process sees (none without NVML)."""
    from nn_tracker.sensors.nvml import discover_gpus

    found = discover_gpus(visible)
    try:
        return [sensor.info.details["uuid"] for sensor in found.sensors]
    finally:
        found.close()


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

        self._config = TrackerConfig(**options)  # validate in every process before any collective
        self._options = options
        self._collectives: Collectives | None = None
        self._sensors: Any = None
        self.role: Role | None = None
        self.tracker: Tracker | None = None

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the report (global rank 0)."""
        return self.role is None or self.role.rank == 0

    @property
    def world_size(self) -> int:
        """Processes in the job (1 without a process group)."""
        return self._collectives.size if self._collectives else 1

    def start(self) -> DistributedTracker:
        """Agree with the other processes on what this one measures, then start its tracker."""
        from nn_tracker.sensors import SensorOptions, discover_sensors

        dist = torch_distributed()
        if dist is not None and dist.get_world_size() > 1:
            self._collectives = Collectives(dist)
        config = self._config
        entry = {
            "node": node_id(config.proc_root),
            "host": hostname(),
            "rank": dist.get_rank() if dist is not None else 0,
            "pid": os.getpid(),
            "gpu_uuids": visible_gpu_uuids(config.visible_devices) if config.gpus else [],
            "session": os.urandom(12).hex(),
        }
        entries = self._collectives.gather(entry) if self._collectives else [entry]
        self.role = next(r for r in assign_roles(entries) if r.rank == entry["rank"])
        session = min(entries, key=lambda e: e["rank"])["session"]  # every rank files under rank 0's session
        options = SensorOptions.from_config(
            config,
            visible_devices=self.role.visible_devices,
            node_sensors=config.node_sensors and self.role.node_sensors,
            process_pids=self.role.node_pids or None,
        )
        self._sensors = discover_sensors(options, config.catalogue)
        tracker_options = dict(self._options)
        if not self.is_writer:
            tracker_options["write_report"] = False
        self.tracker = Tracker(sensors=self._sensors, session=str(session), rank=self.role.rank, **tracker_options)
        self.tracker.start()
        return self

    def _started(self) -> Tracker:
        """The tracker of this process.

        Raises:
            NNTrackerError: :meth:`start` was not called.
        """
        if self.tracker is None:
            raise NNTrackerError("this DistributedTracker was never started")
        return self.tracker

    def merged_state(self, public: bool = False) -> dict[str, Any] | None:
        """The run's ledger with every process's records (on rank 0; ``None`` elsewhere) — a collective call.

        ``public``: without host names (for checkpoints).
        """
        state = self._started().export_state()
        states = self._collectives.gather(state) if self._collectives else [state]
        return merge_states(states, public) if self.is_writer else None

    def merged_ledger(self) -> Ledger:
        """The run's ledger with every process's records as of now, on every process — a collective call."""
        from nn_tracker.accounting.ledger import Ledger

        state = self._started().export_state()
        states = self._collectives.gather(state) if self._collectives else [state]
        return Ledger.from_state(merge_states(states))

    def stop(
        self, status: str = "completed", error: BaseException | None = None, close: bool = True
    ) -> Report | IncompleteReport:
        """End the run on every process and write one report on rank 0 (collective).

        All processes meet first (each still sampling), then each takes its last reading, then
        rank 0 gathers their records. After a failure the other processes may be gone, so nothing
        is gathered: rank 0 writes what it measured itself, with a note naming the missing ranks.
        ``close=False`` keeps nn_tracker's group for a last :meth:`merged_ledger`;
        :meth:`close` releases it.
        """
        try:
            if self._collectives is None:
                return self._started().stop(status, error)
            if status != "completed":
                self._started().add_note(f"The run did not complete: {self._missing_ranks()} not in this report.")
                return self._started().stop(status, error)
            try:
                self._collectives.gather(None)  # everyone has arrived; until now every rank sampled
                self._started().end_sampling()
                states = self._collectives.gather(self._started().export_state())
            except Exception as exc:  # noqa: BLE001 - a broken process group must not lose our own data
                self._started().add_note(
                    f"Records of the other processes could not be gathered ({exc}): {self._missing_ranks()} "
                    "not in this report."
                )
            else:
                if self.is_writer:
                    self._merge(states)
            return self._started().stop(status, error)
        finally:
            if self._sensors is not None:
                self._sensors.close()
            if close:
                self.close()

    def _missing_ranks(self) -> str:
        """Which ranks' measurements a report written by this process alone lacks."""
        size = self.world_size
        others = [r for r in range(size) if r != (self.role.rank if self.role else 0)]
        listed = ", ".join(map(str, others[:8])) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
        return f"the measurements of rank{'s' if len(others) > 1 else ''} {listed} (of {size}) are"

    def _merge(self, states: list[dict[str, Any]]) -> None:
        """Add the other processes' records to rank 0's ledger (claims of one device are settled there)."""
        for state in states[1:]:
            self._started().carry_over(state)
        ledger = self._started().ledger()
        if not ledger.claim_notes():
            nodes = len({r.node for r in ledger.records if r.session == self._started().session})
            self._started().add_note(f"Merged from {len(states)} processes on {nodes} node(s).")

    def close(self) -> None:
        """Release nn_tracker's process group (after :meth:`stop`); safe to call twice."""
        if self._collectives is not None:
            self._collectives.close()
            self._collectives = None

    def report(self) -> Report | IncompleteReport:
        """The report of this process: the final one after :meth:`stop` (merged on rank 0), else a snapshot."""
        return self._started().report()

    def __enter__(self) -> DistributedTracker:
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stop_as_block_ends(self.stop, exc)


def merge_states(states: list[dict[str, Any]], public: bool = False) -> dict[str, Any]:
    """One exported ledger from those of processes that ran at the same time (a union of their records).

    A device claimed by two processes of one session is settled when figures are computed (see
    :mod:`nn_tracker.accounting.ledger`): never summed, never an exception.
    """
    from nn_tracker.accounting.ledger import Ledger

    merged = Ledger()
    for state in states:
        merged.merge(Ledger.from_state(state))
    return merged.to_state(public)
