"""The tracked processes and their live descendants, refreshed every few seconds.

The descendants are listed from ``/proc/<pid>/task/<tid>/children`` (psutil's
``Process.children(recursive=True)`` where the kernel lacks it), at most every
``refresh_s``; CPU time and memory of the cached processes are cheap to read at every
tick. Several roots (every rank of a node in a distributed job) are one tree: each process
is counted once, whoever started it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any


class ProcessTree:
    """Some processes (default: this one) and their descendants, each counted once.

    Args:
        pid: Root of the tree (default: this process); ignored when ``pids`` is given.
        refresh_s: Minimum seconds between two listings of the children.
        clock: Monotonic clock in seconds.
        pids: Several roots (e.g. the ranks of a distributed job on this node).
        proc_root: Where ``/proc`` is (tests).

    """

    def __init__(
        self,
        pid: int | None = None,
        refresh_s: float = 5.0,
        clock: Callable[[], float] | None = None,
        pids: Sequence[int] | None = None,
        proc_root: str = "/proc",
    ) -> None:
        import time

        self.root_pids = list(pids or [pid if pid is not None else os.getpid()])
        self._refresh_s = refresh_s
        self._proc_root = proc_root
        self._clock = clock or time.monotonic
        self._roots: dict[int, Any] = {}  # psutil's Process of each root, made when first needed
        self._children: list[Any] = []
        self._listed_at_s: float | None = None
        # CPU seconds of children that ended (so their time is never lost or counted twice).
        self._ended_cpu_s: dict[int, float] = {}
        self._last_child_cpu_s: dict[int, float] = {}
        self._last_root_cpu_s: dict[int, float] = {}

    @property
    def _psutil(self) -> Any:
        """The psutil module, imported only when a process other than this one is read (its import costs ~6 ms)."""
        import psutil  # imported on use: psutil reads /proc when imported

        return psutil

    def _root(self, pid: int) -> Any:
        """The psutil Process of a root (raises psutil's error where it is gone)."""
        if pid not in self._roots:
            self._roots[pid] = self._psutil.Process(pid)
        return self._roots[pid]

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if self._listed_at_s is None or now - self._listed_at_s >= self._refresh_s:
            root_pids = set(self.root_pids)
            known = {child.pid: child for child in self._children}  # keep the objects: psutil checks pid reuse
            children: dict[int, object] = {}
            for root_pid in self.root_pids:
                for pid in self._descendants(root_pid):
                    if pid not in root_pids and pid not in children:  # a rank started by another is a root itself
                        child = known.get(pid) or self._process(pid)
                        if child is not None:
                            children[pid] = child
            self._children = list(children.values())
            self._listed_at_s = now

    def _descendants(self, root_pid: int) -> list[int]:
        """The pids of a root's live descendants.

        From ``/proc/<pid>/task/<tid>/children`` where the kernel has it (it reads only the tree: ~0.1 ms
        where psutil's ``children(recursive=True)`` reads the stat file of every process of the machine,
        ~2 ms on an idle machine, far more on a busy node); else from psutil.
        """
        found: list[int] = []
        todo = [root_pid]
        while todo:
            pid = todo.pop()
            try:
                tasks = os.listdir(f"{self._proc_root}/{pid}/task")
            except OSError:
                if pid == root_pid:  # no /proc (not Linux), or the root ended: psutil knows which
                    return self._descendants_from_psutil(root_pid)
                continue  # a descendant that ended meanwhile
            for task in tasks:
                try:
                    with open(f"{self._proc_root}/{pid}/task/{task}/children", "rb") as file:
                        pids = [int(p) for p in file.read().split()]
                except FileNotFoundError:
                    if not os.path.exists(f"{self._proc_root}/{pid}/task/{task}"):
                        continue  # the thread ended meanwhile
                    return self._descendants_from_psutil(root_pid)  # a kernel without the file
                except (OSError, ValueError):
                    continue
                found += pids
                todo += pids
        return found

    def _descendants_from_psutil(self, root_pid: int) -> list[int]:
        try:
            return [child.pid for child in self._root(root_pid).children(recursive=True)]
        except self._psutil.Error:
            return []

    def _process(self, pid: int) -> Any:
        try:
            return self._psutil.Process(pid)
        except self._psutil.Error:
            return None

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the roots, their waited-for children, and live descendants."""
        self._maybe_refresh()
        total = waited = 0.0
        own_pid = os.getpid()
        for pid in self.root_pids:
            if pid == own_pid:  # this process: the kernel's counters of /proc/self/stat, without reading it
                times: Any = os.times()
            else:
                try:
                    times = self._root(pid).cpu_times()
                except self._psutil.Error:  # a root that ended keeps what it had used
                    total += self._last_root_cpu_s.get(pid, 0.0)
                    continue
            self._last_root_cpu_s[pid] = times.user + times.system
            total += times.user + times.system
            # Children that were waited for appear in children_user/system: count those once.
            waited += times.children_user + times.children_system
        live_total = 0.0
        for child in self._children:
            try:
                child_times = child.cpu_times()
                used = child_times.user + child_times.system
                self._last_child_cpu_s[child.pid] = used
                live_total += used
            except self._psutil.Error:
                # Ended since the listing: keep what it had used when last seen.
                self._ended_cpu_s[child.pid] = self._last_child_cpu_s.pop(child.pid, 0.0)
        return total + max(waited, sum(self._ended_cpu_s.values())) + live_total

    def rss_bytes(self) -> int:
        """Resident memory of the roots and their live descendants (shared pages counted in each)."""
        self._maybe_refresh()
        total = 0
        for pid in self.root_pids:
            try:
                total += self._root(pid).memory_info().rss
            except self._psutil.Error:
                continue
        for process in self._children:
            try:
                total += process.memory_info().rss
            except self._psutil.Error:
                continue
        return total
