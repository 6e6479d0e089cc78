"""The run's ledger as a tracker keeps it: its own record, and those carried from elsewhere.

Part of :class:`~nn_tracker.tracker.Tracker` (a base class of it): this process's record of the
session, built from one consistent snapshot of the sampler, and the records carried from earlier
sessions (a resume) and other processes (distributed ranks). Every figure is computed from them.
"""

from __future__ import annotations

from typing import Any

from nn_tracker.accounting.ledger import Ledger, Record
from nn_tracker.core.errors import NNTrackerError
from nn_tracker.core.node import hostname
from nn_tracker.report.live import live_figures
from nn_tracker.run.state import TrackerState


class RunRecords(TrackerState):
    """A tracker's ledger: resuming, merging ranks, exporting state."""

    @property
    def session(self) -> str:
        """The session this tracker measures in."""
        return self._session

    def ledger(self) -> Ledger:
        """The run's ledger: carried records and this process's own record as of now."""
        with self._state_lock:
            sampler = self._started_sampler()
            if self.running:
                sampler.tick(force=True)
            return self._ledger()

    def _ledger(self) -> Ledger:
        return self._carried.with_record(self._own_record())

    def _own_record(self) -> Record:
        """What this process measured in this session so far (one consistent snapshot of the sampler)."""
        sampler = self._started_sampler()
        with sampler.lock:
            started_s = sampler.started_s or self._started_s
            devices = tuple(t.record(started_s) for t in sampler.totals.values())
            phase_time_s = dict(sampler.phase_time_s)
        end_s = self._ended_s if self._ended_s is not None else self._clock.monotonic()
        return Record(
            session=self._session,
            process=self._process,
            rank=self._rank,
            node=self._node,
            run_id=self.run_id,
            started_wall_s=self._started_wall_s,
            ended_wall_s=self._started_wall_s + (end_s - started_s),
            duration_s=max(end_s - started_s, 0.0),
            phase_time_s=phase_time_s,
            units=self._phases.units(),
            devices=devices,
            host=hostname(),
        )

    def export_state(self, public: bool = False) -> dict[str, Any]:
        """The run's ledger as a JSON-ready dict: for checkpoints (``public``: no host names) or merging ranks."""
        return self.ledger().to_state(public)

    def carry_over(self, state: dict[str, Any], parallel: bool = False) -> None:
        """Add the records of :meth:`export_state` of another tracker to this run's ledger.

        Records keep their keys: an earlier session (resume from a checkpoint) adds its energy, time
        and units; another process of this session (a distributed rank) its energy and units. The
        same record carried twice counts once.

        Args:
            state: The exported ledger.
            parallel: The records come from a process that ran at the same time as this session but
                did not know it (not through :class:`~nn_tracker.distributed.DistributedTracker`):
                the records of its latest session are filed under this session, after this
                process's rank (their time does not add to the run's); its earlier sessions stay
                earlier sessions.

        Raises:
            ValidationError: ``state`` is not an nn_tracker state (one line naming the field).
        """
        from nn_tracker.core.structs import replace

        ledger = Ledger.from_state(state)
        with self._state_lock:
            if self._report is not None:
                raise NNTrackerError("carry_over() must come before stop()")
            latest = ledger.records[-1].session if ledger.records else None
            for record in ledger.records:
                if parallel and record.session == latest:
                    record = replace(record, session=self._session, rank=self._rank + 1 + record.rank)
                if record.key != (self._session, self._process):  # our own record: ours is the newest
                    self._carried.add(record)
            for note in ledger.notes:
                self._carried.notes.append(note)

    def figures(self, ledger: Ledger) -> dict[str, float | None]:
        """The running totals (as :meth:`live`) of another ledger of this run, e.g. every rank's records.

        ``power/total_w`` is the power at the last reading of every device measured in this session.
        """
        with self._state_lock:
            self._started_sampler()  # never started: an error, not an empty report
            report = self._build("running", None, final=False, timeline=False, ledger=ledger)
        power_w = sum(
            device.last_power_w or 0.0
            for record in ledger.records
            if record.session == self._session
            for device in record.devices
        )
        return live_figures(report, power_w)
