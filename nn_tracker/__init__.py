"""nn_tracker: measure and report the energy and carbon footprint of neural-network jobs.

Importing this package touches no hardware, network or files.
"""

from nn_tracker.errors import LookupFailed, NNTrackerError, ValidationError
from nn_tracker.estimate import Estimate, estimate

__version__ = "0.1.0"

__all__ = ["Estimate", "LookupFailed", "NNTrackerError", "ValidationError", "__version__", "estimate"]
