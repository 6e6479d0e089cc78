"""nn_tracker: measure and report the energy and carbon footprint of neural-network jobs.

Importing this package touches no hardware, network or files.

Sub-packages by concern form layers; each imports only the layers below it
(``tests/test_architecture.py``, which also keeps at most 8 modules loose at the top):

1. **base**: ``core`` (``errors``, ``validation``, ``clock``, ``energy`` units, ``node``, ``inputs``:
   reading users' files; ``structs``: how record types are declared) and ``accounting`` (``ledger``:
   the run's records and every total computed from them; ``timeline``).
2. **footprint model**: ``footprint`` (``formulas``: the NN-CI formulas and the SCI; ``catalogue`` and
   its ``data`` tables; ``equivalents``, ``intensity_series``, ``scheduling``).
3. **measuring**: ``sensors`` (one module per source: NVML, RAPL, CPU and RAM estimates; ``sampling``).
4. **configuration**: ``config`` (every option, declared once), ``estimate`` (what-ifs).
5. **reports**: ``report`` (the typed report and its one JSON codec, building it from a run and its
   footprint, reading saved ones, every writer, ``compare``, Prometheus exposition, ``live`` figures).
6. **running**: ``run`` (``phases``, ``endings``: SIGTERM, uncaught exceptions, exit; ``requests``:
   energy per request; ``runner`` with ``reaper``, the process between it and the command),
   ``tracker``, ``distributed``, ``serving``.
7. **integrations**: Lightning, transformers, ASGI, the Impact Framework.
8. **command line**: ``cli``.
"""

from typing import Any

from nn_tracker.config import Datacentre, EmbodiedHardware, TrackerConfig
from nn_tracker.core.clock import ManualClock
from nn_tracker.core.errors import LookupFailed, NNTrackerError, ValidationError
from nn_tracker.estimate import Estimate, estimate
from nn_tracker.tracker import Tracker, track

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``nn_tracker.Report``, imported when first used: building the report's types costs ~9 ms."""
    if name == "Report":
        from nn_tracker.report.document import Report

        return Report
    raise AttributeError(f"module 'nn_tracker' has no attribute {name!r}")


__all__ = [
    "Datacentre",
    "EmbodiedHardware",
    "Estimate",
    "LookupFailed",
    "ManualClock",
    "NNTrackerError",
    "Report",
    "Tracker",
    "TrackerConfig",
    "ValidationError",
    "__version__",
    "estimate",
    "track",
]
