"""nn_tracker: measure and report the energy and carbon footprint of neural-network jobs.

Importing this package touches no hardware, network or files.
"""

from nn_tracker.clock import ManualClock
from nn_tracker.config import Datacentre, EmbodiedHardware, TrackerConfig
from nn_tracker.errors import LookupFailed, NNTrackerError, ValidationError
from nn_tracker.estimate import Estimate, estimate
from nn_tracker.report import Report
from nn_tracker.tracker import Tracker, track

__version__ = "0.1.0"

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
