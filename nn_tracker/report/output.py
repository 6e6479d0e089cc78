"""A run's report files: the name claimed at start, the JSON rewritten at each checkpoint, every format at the end.

Writing never raises into the tracked program: a failed write is logged once and counted (the
report says so), and a bug in a writer is logged as one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from nn_tracker.report.files import claim, remove_stale_temporaries

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report

log = logging.getLogger("nn_tracker")


class ReportFiles:
    """The files of one run, named ``<output_dir>/<project>-<run id>.<ext>``.

    Args:
        output_dir: The folder.
        stem: ``<project>-<run id>`` (``-2``... is added if another run already has the name).
        formats: The formats written at the end (JSON always, first).
    """

    def __init__(self, output_dir: str | Path, stem: str, formats: tuple[str, ...]) -> None:
        self.output_dir = Path(output_dir)
        self.stem = stem
        self.formats = formats
        self.errors = 0  # failed writes so far

    @property
    def json_path(self) -> Path:
        """Where the JSON report is written."""
        return self.output_dir / f"{self.stem}.json"

    def claim(self, first: Report | IncompleteReport) -> None:
        """Write the first report under a name no other run has (``-2``... if the run id was reused)."""
        from nn_tracker.report import writers

        remove_stale_temporaries(self.output_dir)
        try:
            # not synced (an fsync costs 1-20 ms on a network file system): it holds nothing measured yet,
            # and every later write, the first checkpoint on, is synced
            self.stem = claim(self.json_path, writers.render(first, "json", compact=True), sync=False).stem
        except (OSError, ValueError) as exc:
            self._failed(self.json_path, exc)

    def write(self, report: Report | IncompleteReport, final: bool = False) -> None:
        """Write the JSON report (checkpoints and final) and, at the end, every other format; sets ``report.paths``."""
        from nn_tracker.report import writers

        formats = ["json", *(f for f in self.formats if f != "json")] if final else ["json"]
        if report.incomplete:
            formats = ["json"]  # the other formats need the figures it lacks
        paths = []
        for fmt in formats:
            path = writers.default_path(self.output_dir, self.stem, fmt)
            try:
                paths.append(str(writers.write(report, fmt, path, compact=not final)))  # checkpoints: one line
            except (OSError, ValueError) as exc:
                self._failed(path, exc)
            except Exception:  # a bug in a writer must not reach the tracked program
                log.exception(
                    "nn_tracker: writing %s failed (a bug: please report it); the other files are written", path
                )
        report.paths = paths

    def _failed(self, path: Path, exc: BaseException) -> None:
        self.errors += 1
        if self.errors == 1:
            log.error("nn_tracker: cannot write %s (%s); tracking continues and the report stays in memory", path, exc)
