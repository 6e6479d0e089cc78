"""The footprint report: its types, how it is built from a run, read back and written in every format."""

from typing import Any

__all__ = ["SCHEMA_VERSION", "IncompleteReport", "Report"]


def __getattr__(name: str) -> Any:
    """The report's types, imported when first used (``import nn_tracker`` does not need them)."""
    if name in __all__:
        from nn_tracker.report import document

        return getattr(document, name)
    raise AttributeError(f"module 'nn_tracker.report' has no attribute {name!r}")
