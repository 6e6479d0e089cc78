"""Phases and functional units: which phase the run is in, and what it counted in each (bounded, thread-safe).

Phases nest (``training/validation``); energy is counted in the innermost one by the sampler, told of
every switch. Units (samples, queries, tokens...) are counted in the phase current when they are
added. Costs stay bounded whatever a program does: at most :data:`MAX_PHASES` distinct phase paths
(later new ones count as ``<parent>/other``) and :data:`MAX_UNIT_KINDS` kinds of units (``other``),
each overflow said once in :attr:`PhaseBook.notes`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from nn_tracker import validation as check
from nn_tracker.config import check_phase_name
from nn_tracker.errors import ValidationError
from nn_tracker.run_state import Units, add_units, unit_totals

log = logging.getLogger("nn_tracker")

MAX_PHASES = 10_000  # distinct phase paths per run; beyond, '<parent>/other'
MAX_UNIT_KINDS = 1_000  # distinct kinds of functional units per run; beyond, 'other'


class PhaseBook:
    """The current phase and the units counted per phase.

    Args:
        default_phase: The phase outside any ``phase()`` block.
        on_switch: Told the new current phase at every switch (under the switch lock: keep it short).
    """

    def __init__(self, default_phase: str, on_switch: Callable[[str], None]) -> None:
        self.default_phase = default_phase
        self._on_switch = on_switch
        self._stack: list[str] = []
        self._names: set[str] = {default_phase}
        self._overflow = False
        self._switch_lock = threading.Lock()
        self._units: Units = {}
        self._kinds: set[str] = set()
        self._units_lock = threading.Lock()
        self.notes: list[str] = []

    @property
    def current(self) -> str:
        """The innermost phase path, e.g. ``training/validation``."""
        return self._stack[-1] if self._stack else self.default_phase

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[str]:
        """Be in ``name`` (nested in the current phase) inside the block; yields its path."""
        check_phase_name(name)
        parent = self._stack[-1] if self._stack else None
        path = self._bounded(f"{parent}/{name}" if parent else name, parent)
        self._switch(path, push=True)
        try:
            yield path
        finally:
            self._switch(path, push=False)

    def _bounded(self, path: str, parent: str | None) -> str:
        """``path``, or ``<parent>/other`` once :data:`MAX_PHASES` distinct phases exist."""
        if path in self._names or len(self._names) < MAX_PHASES:
            self._names.add(path)
            return path
        if not self._overflow:
            self._overflow = True
            self._note(f"More than {MAX_PHASES:,} distinct phases: later new names are counted as '<parent>/other'.")
        other = f"{parent}/other" if parent else "other"
        self._names.add(other)
        return other

    def _switch(self, path: str, push: bool) -> None:
        with self._switch_lock:
            if push:
                self._stack.append(path)
            elif path in self._stack:
                del self._stack[self._stack.index(path) :]
            self._on_switch(self.current)

    def add_units(self, count: float, kind: str) -> None:
        """Count ``count`` units of ``kind`` in the current phase (cheap, thread-safe).

        Raises:
            ValidationError: a count that is not a non-negative number, or a bad kind name.
        """
        if isinstance(count, bool) or not isinstance(count, (int, float)):
            raise ValidationError("count", count, "must be a number")
        check.non_negative("count", count)
        check_phase_name(kind, "kind")
        phase = self.current
        with self._units_lock:
            if kind not in self._kinds:
                if len(self._kinds) >= MAX_UNIT_KINDS:
                    if "other" not in self._kinds:
                        self._note(
                            f"More than {MAX_UNIT_KINDS:,} kinds of units: later new kinds are counted as 'other'."
                        )
                    kind = "other"
                self._kinds.add(kind)
            per_phase = self._units.setdefault(phase, {})  # called per batch: no temporary dicts
            per_phase[kind] = per_phase.get(kind, 0) + count

    def carry(self, units: Units) -> None:
        """Add units counted elsewhere (an earlier session, another process)."""
        with self._units_lock:
            add_units(self._units, units)

    def units(self) -> Units:
        """A copy of the units per phase and kind."""
        with self._units_lock:
            return {phase: dict(kinds) for phase, kinds in self._units.items()}

    def totals(self) -> dict[str, float]:
        """Units per kind over all phases."""
        with self._units_lock:
            return unit_totals(self._units)

    def _note(self, message: str) -> None:
        log.warning("nn_tracker: %s", message)
        self.notes.append(message)
