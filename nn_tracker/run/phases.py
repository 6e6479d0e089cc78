"""Phases and functional units: which phase the run is in, and what it counted in each (bounded, thread-safe).

Phases nest (``training/validation``) within one thread of control: each thread and each asyncio task
has its own stack of phases (a ``contextvars`` variable: a task starts inside the phases of the code
that created it, a new thread outside any), so phases of concurrent threads or tasks never nest into
each other. The run is in one phase at a time: the phase entered most recently that is still open,
whichever thread entered it (else the default phase); the sampler, told of every switch, charges
energy to it. Units (samples, queries, tokens...) are counted in the innermost phase of the thread or
task that adds them, or in the run's phase when it has none of its own. Costs stay bounded whatever
a program does: at most :data:`MAX_PHASES` distinct phase paths
(later new ones count as ``<parent>/other``) and :data:`MAX_UNIT_KINDS` kinds of units (``other``),
each overflow said once in :attr:`PhaseBook.notes`.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import threading
from collections.abc import Callable, Iterator

from nn_tracker.accounting.ledger import Units, unit_totals
from nn_tracker.config import check_phase_name
from nn_tracker.core import validation as check
from nn_tracker.core.errors import ValidationError

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
        # this thread's or task's open phases, innermost last: ((entry, path), ...)
        self._stack: contextvars.ContextVar[tuple[tuple[int, str], ...]] = contextvars.ContextVar(
            "nn_tracker_phases", default=()
        )
        self._open: dict[int, tuple[str, frozenset[int]]] = {}  # every open phase: entry -> (path, outer entries)
        self._entries = itertools.count()
        self._names: set[str] = {default_phase}
        self._overflow = False
        self._switch_lock = threading.Lock()
        self._units: Units = {}
        self._kinds: set[str] = set()
        self._units_lock = threading.Lock()
        self.notes: list[str] = []

    @property
    def current(self) -> str:
        """The run's phase: the one entered most recently that is still open (any thread), else the default."""
        if not self._open:
            return self.default_phase
        return next(reversed(self._open.values()))[0]

    def _own_stack(self) -> tuple[tuple[int, str], ...]:
        """The calling thread's or task's phases still open (one closed elsewhere, or out of order, is left out)."""
        stack = self._stack.get()
        return tuple(item for item in stack if item[0] in self._open) if stack else stack

    @property
    def here(self) -> str:
        """The innermost phase of the calling thread or task, else the run's phase."""
        for entry, path in reversed(self._stack.get()):
            if entry in self._open:  # the innermost still open (see _own_stack)
                return path
        return self.current

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[str]:
        """Be in ``name`` (nested in this thread's or task's phase) inside the block; yields its path."""
        check_phase_name(name)
        stack = self._own_stack()
        parent = stack[-1][1] if stack else None
        path = self._bounded(f"{parent}/{name}" if parent else name, parent)
        entry = next(self._entries)
        token = self._stack.set((*stack, (entry, path)))
        with self._switch_lock:
            self._open[entry] = (path, frozenset(e for e, _ in stack))
            self._on_switch(self.current)
        try:
            yield path
        finally:
            with self._switch_lock:  # leaving a phase closes the phases opened inside it, in this context
                for inner in [e for e, (_, outer) in self._open.items() if e == entry or entry in outer]:
                    del self._open[inner]
                self._on_switch(self.current)
            with contextlib.suppress(ValueError):  # left in another thread: its own stack is not ours to change
                self._stack.reset(token)

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

    def add_units(self, count: float, kind: str) -> None:
        """Count ``count`` units of ``kind`` in the current phase (cheap, thread-safe).

        Raises:
            ValidationError: a count that is not a non-negative number, or a bad kind name.
        """
        number_type = type(count)  # the common case first: a plain number in range (~0.7 us a call in all)
        if not ((number_type is int or number_type is float) and 0 <= count <= check.MAX_MAGNITUDE):
            if isinstance(count, bool) or not isinstance(count, (int, float)):
                raise ValidationError("count", count, "must be a number")
            check.non_negative("count", count)
        if type(kind) is not str or kind not in self._kinds:  # a kind counted before was checked then
            check_phase_name(kind, "kind")
        phase = self.here
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
