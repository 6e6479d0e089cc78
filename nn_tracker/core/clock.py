"""Clocks: the real one, and a manual one for tests and simulations."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the sampler needs from a clock."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps only, never for durations)."""

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Wait for ``event`` at most ``timeout_s``; return whether it was set."""


class SystemClock:
    """``time.monotonic`` for durations, ``time.time`` for timestamps."""

    def monotonic(self) -> float:
        """Seconds of ``time.monotonic()``."""
        return time.monotonic()

    def time(self) -> float:
        """Seconds of ``time.time()``."""
        return time.time()

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """``event.wait(timeout_s)``."""
        return event.wait(timeout_s)


class ManualClock:
    """A clock that moves only when told to; ``wait`` does not sleep.

    Args:
        start_s: Initial monotonic reading.
        wall_start_s: Initial wall-clock reading.

    """

    def __init__(self, start_s: float = 1000.0, wall_start_s: float = 1_700_000_000.0) -> None:
        self._now_s = start_s
        self._wall_offset_s = wall_start_s - start_s
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The current manual reading."""
        with self._lock:
            return self._now_s

    def time(self) -> float:
        """Wall clock that moves with the monotonic reading (plus any :meth:`jump_wall`)."""
        with self._lock:
            return self._now_s + self._wall_offset_s

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        with self._lock:
            self._now_s += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (NTP step, DST mistakes); durations must not change."""
        with self._lock:
            self._wall_offset_s += seconds

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Return at once (tests drive ticks by hand); a short real wait avoids a busy loop."""
        return event.wait(0.001)
