"""Phases and functional units as a tracker offers them: where energy and counts are attributed.

Part of :class:`~nn_tracker.tracker.Tracker` (a base class of it); the bookkeeping itself is
:class:`~nn_tracker.run.phases.PhaseBook`'s.
"""

from __future__ import annotations

import contextlib

from nn_tracker.run.state import TrackerState


class RunPhases(TrackerState):
    """A tracker's phases and units: ``phase()``, ``add_units()``, readings on demand."""

    @property
    def current_phase(self) -> str:
        """The innermost phase path of the calling thread or task, e.g. ``training/validation``."""
        return self._phases.here

    def phase(self, name: str) -> contextlib.AbstractContextManager[str]:
        """Attribute energy and time to ``name`` inside the block; nests as ``outer/name``.

        Energy is counted in the innermost phase ("exclusive") and, in the report,
        also in every enclosing phase ("inclusive"). Phases nest per thread and per asyncio task;
        while phases of several threads are open, energy goes to the one entered last.
        """
        return self._phases.phase(name)

    def _on_switch(self, phase: str) -> None:
        # Never waits for a sensor or a report: the sampler only records the switch's time.
        if self._sampler is not None and self.running:
            self._sampler.switch_phase(phase)

    def add_units(self, count: float = 1, kind: str = "sample") -> None:
        """Count functional units (samples, queries, tokens...) in the current phase; cheap, thread-safe."""
        self._phases.add_units(count, kind)

    def sample(self) -> None:
        """Take one reading now (with ``background=False``, the only readings besides start and stop)."""
        if self.running:
            self._started_sampler().tick(force=True)
            self._on_tick(self._clock.monotonic())

    def units(self) -> dict[str, float]:
        """Functional units counted so far in this process and session, per kind, over all phases."""
        return self._phases.totals()

    def elapsed_s(self) -> float:
        """Seconds since :meth:`start` on the tracker's clock."""
        return self._clock.monotonic() - self._started_s
