"""How a tracker built on :class:`~nn_tracker.tracker.Tracker` takes part in its run (``Tracker.hooks``).

:class:`~nn_tracker.serving.ServingTracker` sets them to attribute energy to requests. Each hook is
optional (``None``); a hook that raises is logged and never stops the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report, Requests

log = logging.getLogger("nn_tracker")


class RunHooks:
    """The hooks of a run.

    Attributes:
        energy_listener: After every sampler tick: the energy read in it as ``(start, end, joules)``
            pieces, the time up to which every sensor has read its energy, and the power now (W).
        requests_section: Gives the report's ``requests`` section (``None``: the report has none).
        sampling_ended: Called once the last reading is taken, before the final report is built.
        final_report: Called with the final report, however the run stopped (``stop()``, SIGTERM, exit).
    """

    __slots__ = ("energy_listener", "final_report", "requests_section", "sampling_ended")

    def __init__(self) -> None:
        self.energy_listener: Callable[[list[tuple[float, float, float]], float, float], None] | None = None
        self.requests_section: Callable[[], Requests | None] | None = None
        self.sampling_ended: Callable[[], None] | None = None
        self.final_report: Callable[[Report | IncompleteReport], None] | None = None


def call_safely(hook: Callable[..., Any] | None, *args: Any) -> None:
    """Call a hook if set; its failure is logged, never raised (the report is written all the same)."""
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("nn_tracker: a stop hook failed (the report is written all the same)")
