"""nn_tracker: measure and report the energy and carbon footprint of neural-network jobs.

Importing this package touches no hardware, network or files.

The modules form layers; each imports only the layers below it (``tests/test_architecture.py``):

1. **base**: ``errors``, ``validation``, ``clock``, ``energy`` (units), ``node``, ``inputs`` (reading
   users' files), ``data``, ``timeline``, ``ledger`` (the run's records and every total computed from them).
2. **footprint model**: ``catalogue`` (reference data), ``footprint`` (the NN-CI formulas and the SCI),
   ``equivalents``, ``intensity_series``, ``scheduling``.
3. **measuring**: ``sensors`` (one module per source: NVML, RAPL, CPU and RAM estimates), ``sampling``.
4. **configuration**: ``config`` (every option, declared once), ``estimate`` (what-ifs).
5. **reports**: ``report`` (the typed report and its one JSON codec, building it from a run and its
   footprint (``report.carbon``), reading saved ones, every writer, ``compare``, Prometheus exposition),
   ``live`` (the running figures).
6. **running**: ``phases``, ``endings`` (SIGTERM, uncaught
   exceptions, exit), ``tracker``, ``distributed``, ``requests`` (energy per request), ``serving``,
   ``runner`` (with ``reaper``, the process
   between it and the command).
7. **integrations**: Lightning, transformers, the Impact Framework.
8. **command line**: ``cli``.
"""

from typing import Any

from nn_tracker.clock import ManualClock
from nn_tracker.config import Datacentre, EmbodiedHardware, TrackerConfig
from nn_tracker.errors import LookupFailed, NNTrackerError, ValidationError
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
