"""The tracked process and its live children, refreshed every few seconds.

``Process.children(recursive=True)`` costs about a millisecond, so the list is
refreshed at most every ``refresh_s``; CPU time and memory of the cached
processes are cheap to read at every tick.
"""

from __future__ import annotations

from collections.abc import Callable


class ProcessTree:
    """A process (default: this one) and its descendants.

    Args:
        pid: Root of the tree.
        refresh_s: Minimum seconds between two listings of the children.
        clock: Monotonic clock in seconds.

    """

    def __init__(
        self, pid: int | None = None, refresh_s: float = 5.0, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        import psutil  # imported on use: psutil reads /proc when imported

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self._refresh_s = refresh_s
        self._clock = clock or time.monotonic
        self._children: list = []
        self._listed_at_s: float | None = None
        # CPU seconds of children that ended (so their time is never lost or counted twice).
        self._ended_cpu_s: dict[int, float] = {}
        self._last_child_cpu_s: dict[int, float] = {}

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if self._listed_at_s is None or now - self._listed_at_s >= self._refresh_s:
            try:
                self._children = self.root.children(recursive=True)
            except self._psutil.Error:
                self._children = []
            self._listed_at_s = now

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the root, its waited-for children, and live descendants."""
        self._maybe_refresh()
        times = self.root.cpu_times()
        total = times.user + times.system
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
        # Children that were waited for appear in children_user/system: count those once.
        waited = times.children_user + times.children_system
        return total + max(waited, sum(self._ended_cpu_s.values())) + live_total

    def rss_bytes(self) -> int:
        """Resident memory of the root and its live descendants (shared pages counted in each)."""
        self._maybe_refresh()
        total = self.root.memory_info().rss
        for child in self._children:
            try:
                total += child.memory_info().rss
            except self._psutil.Error:
                continue
        return total
