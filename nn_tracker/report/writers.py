"""Render a report in any format and write it where it belongs."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from nn_tracker.config import FORMATS as FORMATS  # the formats a report can be written in, declared once
from nn_tracker.core.errors import ValidationError
from nn_tracker.report.document import IncompleteReport, Report
from nn_tracker.report.files import write_atomic

SUFFIXES = {"json": ".json", "md": ".md", "html": ".html", "model-card": ".model-card.md", "if-manifest": ".if.yml"}
CSV_NAME = "emissions.csv"


def render(report: Report | IncompleteReport, fmt: str, compact: bool = False) -> str:
    """The report as text in ``fmt`` (CSV: header and one row); an incomplete report only as JSON.

    ``compact``: JSON on one line, three times faster to encode (a tracker's checkpoints, rewritten
    while the run goes on); else indented.

    ``report`` is built by a tracker, or loaded and checked by
    :func:`~nn_tracker.report.schema.load_report`. Nothing is re-wrapped here: an exception from a
    writer is a bug in it, not a user's error.

    Raises:
        ValidationError: an unknown format, or a format other than JSON for an incomplete report.
    """
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=None if compact else 2, allow_nan=False) + "\n"
    if isinstance(report, IncompleteReport):
        raise ValidationError("format", fmt, "must be json for an incomplete report (it has no figures)")
    # each format's module is imported when first written (some pull in PyYAML), not with nn_tracker
    module = {
        "md": "markdown",
        "html": "html",
        "csv": "codecarbon_csv",
        "model-card": "model_card",
        "if-manifest": "if_manifest",
    }.get(fmt)
    if module is not None:
        result: str = importlib.import_module(f"nn_tracker.report.{module}").render(report)
        return result
    raise ValidationError("format", fmt, f"must be one of {', '.join(FORMATS)}")


def default_path(output_dir: str | Path, stem: str, fmt: str) -> Path:
    """``<dir>/<stem>.<ext>``; CSV rows of every run go to ``<dir>/emissions.csv``."""
    return Path(output_dir) / (CSV_NAME if fmt == "csv" else stem + SUFFIXES[fmt])


def write(report: Report | IncompleteReport, fmt: str, path: str | Path, compact: bool = False) -> Path:
    """Write atomically (CSV: append one row under a lock); ``compact``: see :func:`render`."""
    text = render(report, fmt, compact)  # first, so a bad report leaves no file behind
    if fmt == "csv":
        from nn_tracker.report import codecarbon_csv

        assert isinstance(report, Report)  # render refused anything else
        return codecarbon_csv.append(path, report)
    return write_atomic(path, text)
