"""The footprint report: its model (built from a run) and its writers."""

from nn_tracker.report.model import SCHEMA_VERSION, Report

__all__ = ["SCHEMA_VERSION", "Report"]
