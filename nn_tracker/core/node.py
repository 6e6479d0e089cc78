"""What a node is: one running kernel, with its CPUs, memory and GPUs.

Processes on the same node share those devices, so they must be measured once per node. A
node is identified by the kernel's boot id (``/proc/sys/kernel/random/boot_id``): containers
on one machine share it (they share the hardware), two machines never do, even when their
host names are equal (``localhost``, a fixed pod name). Without it, the systemd machine id,
then the host name. ``NN_TRACKER_NODE_ID`` overrides it (tests, or setups where one kernel
should count as several nodes). The host name is only the label people read.
"""

from __future__ import annotations

import os
from pathlib import Path

from nn_tracker.core.inputs import read_system_file

NODE_ID_VARIABLE = "NN_TRACKER_NODE_ID"


def hostname() -> str:
    """The name of this machine (``uname``: no socket, no network)."""
    return os.uname().nodename


def node_id(proc_root: str | Path = "/proc", etc_root: str | Path = "/etc") -> str:
    """The identity of this node: the override, the kernel's boot id, the machine id, or the host name."""
    override = os.environ.get(NODE_ID_VARIABLE, "").strip()
    if override:
        return override
    if (proc_root, etc_root) == ("/proc", "/etc"):
        return _this_node()
    return _read_node_id(proc_root, etc_root)


_boot_node: list[str] = []  # this machine's boot id, once read: a process does not outlive its kernel's boot


def _this_node() -> str:
    """The identity of this machine; a boot id is kept for the process (a fallback is read again)."""
    if _boot_node:
        return _boot_node[0]
    found = _read_node_id("/proc", "/etc")
    if found.startswith("boot:"):
        _boot_node.append(found)
    return found


def _read_node_id(proc_root: str | Path, etc_root: str | Path) -> str:
    for prefix, path in (
        ("boot", Path(proc_root) / "sys" / "kernel" / "random" / "boot_id"),
        ("machine", Path(etc_root) / "machine-id"),
    ):
        try:
            value = read_system_file(path, limit=256).strip()
        except OSError:
            continue
        if value:
            return f"{prefix}:{value}"
    return f"host:{hostname()}"


class NodeLabels:
    """Readable, unique labels for the nodes of a job: the host name, plus part of the id when two share it."""

    def __init__(self, own_id: str, own_host: str) -> None:
        self._labels = {own_id: own_host}

    def label(self, node: str, host: str | None) -> str:
        """The label of node ``node`` whose host name is ``host``."""
        if node in self._labels:
            return self._labels[node]
        label = host or node
        if label in self._labels.values():
            label = f"{label}~{node.rsplit(':', 1)[-1][:8]}"
        self._labels[node] = label
        return label
