"""How a run ends when the program does: SIGTERM, an uncaught exception, the interpreter's exit.

:class:`RunEnding` (a base class of :class:`~nn_tracker.tracker.Tracker`) gives a run its status then.

SIGTERM: the handler itself only records the signal: it runs in the main thread between two steps of whatever
was running, possibly with one of the tracker's locks held, so stopping there could wait forever.
A program's own SIGTERM handler is called and decides (the runs go on, their reports say when SIGTERM
came); without one, each run's ``terminated`` report is written from a thread and the process then ends
by SIGTERM, as it would have without nn_tracker.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nn_tracker.report.document import IncompleteReport, Report
    from nn_tracker.sensors.sampling import Sampler

log = logging.getLogger("nn_tracker")


STOP_DEADLINE_S = 10.0  # after SIGTERM, the process ends by it within this, whatever writing the reports does

_active: list[SigtermGuard] = []  # the guards of the runs going on, in order of start
_original: Any = None  # the SIGTERM handler before nn_tracker's; ours is in place while _installed
_installed = False


def _handle(signum: int, frame: Any) -> None:
    """nn_tracker's SIGTERM handler (main thread): tell every run, then do what the program's handler would."""
    global _installed
    guards = [guard for guard in _active if guard.pid == os.getpid()]  # a forked child has no run of its own
    original = _original
    if callable(original):  # the program handles SIGTERM itself: its handler decides, the runs go on
        for guard in guards:
            guard.notice(ends_process=False)
        original(signum, frame)
        return
    with contextlib.suppress(ValueError, OSError):  # the default action is back: a second SIGTERM ends at once
        signal.signal(signal.SIGTERM, original if original is not None else signal.SIG_DFL)
    _installed = False
    if original == signal.SIG_IGN:
        return
    if not guards:  # no run of this process (a forked child, or after the last one): end as without us
        os.kill(os.getpid(), signal.SIGTERM)
        return
    for guard in guards:
        guard.notice(ends_process=True)
    threading.Thread(target=_end_process, args=(guards,), name="nn_tracker-sigterm-end", daemon=True).start()
    atexit.register(_end_process, guards)  # a program that reaches its end first still ends by SIGTERM


def _end_process(guards: list[SigtermGuard]) -> None:
    """Wait (bounded) for every run's ``terminated`` report, then end by SIGTERM as without nn_tracker."""
    deadline = time.monotonic() + STOP_DEADLINE_S
    for guard in guards:
        guard.stopped.wait(max(deadline - time.monotonic(), 0.0))
    os.kill(os.getpid(), signal.SIGTERM)


class SigtermGuard:
    """Ends a run on SIGTERM, from a thread of its own; the program's own SIGTERM handling goes on as before.

    One nn_tracker handler serves every run of the process (trackers started and stopped in any order):
    it is installed with the first run and the program's handler put back with the last. Without a
    handler of the program's, the run writes its ``terminated`` report and the process then ends by
    SIGTERM (within :data:`STOP_DEADLINE_S`). With one, the program's handler runs and decides: the run
    goes on, and its report says when SIGTERM came.

    Args:
        stop_run: Writes the run's ``terminated`` report (called once, by the watcher thread).
    """

    def __init__(self, stop_run: Callable[[], Any]) -> None:
        self._stop_run = stop_run
        self.received = False  # SIGTERM came while the run went on
        self.handled_by_program = False  # ... and the program's own handler took it
        self.stopped = threading.Event()  # the run's report after SIGTERM is written
        self._wake = threading.Event()
        self.pid = os.getpid()

    def install(self) -> None:
        """Handle SIGTERM from now on.

        From the main thread the handler is installed; a run started in another thread is only told of
        SIGTERM while a run of the main thread has the handler installed.
        """
        global _original, _installed
        if threading.current_thread() is not threading.main_thread():
            if not _installed or signal.getsignal(signal.SIGTERM) is not _handle:
                return
        elif signal.getsignal(signal.SIGTERM) is not _handle:  # ours is not in place (any more): put it there
            try:
                _original = signal.signal(signal.SIGTERM, _handle)
            except (ValueError, OSError):  # not the main interpreter, or signals unavailable
                return
            _installed = True
        self.pid = os.getpid()
        _active.append(self)
        threading.Thread(target=self._watch, name="nn_tracker-sigterm", daemon=True).start()

    def restore(self) -> None:
        """End of this run: leave the handler to the others, or put the program's back after the last one.

        Off the main thread the OS handler cannot be changed: nn_tracker's stays and, with no run going
        on, passes SIGTERM on as the program's own handling would.
        """
        global _installed
        with contextlib.suppress(ValueError):
            _active.remove(self)
        self._wake.set()  # ends the watcher
        if _active or not _installed or threading.current_thread() is not threading.main_thread():
            return
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is _handle:
                signal.signal(signal.SIGTERM, _original if _original is not None else signal.SIG_DFL)
                _installed = False

    def notice(self, ends_process: bool) -> None:
        """SIGTERM came (called by the handler): stop the run if the process is to end, else only record it."""
        self.received = True
        self.handled_by_program = not ends_process
        if ends_process:
            self._wake.set()

    def _watch(self) -> None:
        """Stop the run when SIGTERM is to end the process."""
        self._wake.wait()
        if not self.received or self.handled_by_program:
            return  # the run ended normally
        try:
            self._stop_run()
        except Exception:
            log.exception("nn_tracker: final report on SIGTERM failed")
        finally:
            self.stopped.set()


def status_for_exception(exc: BaseException | None) -> str:
    """The report status an exception leaving the tracked code means."""
    if exc is None:
        return "completed"
    if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "CancelledError":  # Ctrl-C; a task cancelled
        return "terminated"
    if isinstance(exc, GeneratorExit):  # a tracked generator closed before its end: it ended as asked
        return "completed"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return "completed"
    return "failed"


def stop_as_block_ends(stop: Callable[..., Any], exc: BaseException | None) -> None:
    """End a run as its ``with`` block ends: the status ``exc`` means; the block's own exception always wins.

    Args:
        stop: The run's ``stop(status, error)``.
        exc: The exception leaving the block (``None``: it ended normally, and an error in ``stop`` is raised).
    """
    if exc is None:
        stop()
        return
    try:
        stop(status_for_exception(exc), exc)
    except Exception:  # the tracked code's exception wins: ours is only logged
        log.exception("nn_tracker: stopping failed; the tracked code's exception is raised unchanged")


class ExitGuard:
    """Stops a run still going when the interpreter exits, with the status an uncaught exception means.

    When an uncaught exception ends the program (Python sets ``sys.last_value`` before the exit
    handlers run), the report says so: ``failed``, or ``terminated`` for Ctrl-C.

    Args:
        stop_run: Called with the status and the exception (``None`` for a normal exit).
    """

    def __init__(self, stop_run: Callable[[str, BaseException | None], Any]) -> None:
        self._stop_run = stop_run

    def install(self) -> None:
        """Watch for the interpreter's exit."""
        atexit.register(self._at_exit)

    def restore(self) -> None:
        """Stop watching (the run ended)."""
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        uncaught = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if isinstance(uncaught, BaseException):
            self._stop_run(status_for_exception(uncaught), uncaught)
        else:
            self._stop_run("completed", None)


class Terminated(Exception):
    """Stands for the signal in the report's ``error`` field."""


class RunEnding:
    """A tracker's status when SIGTERM or the program's exit ends its run."""

    _sigterm: SigtermGuard
    _at_exit: bool
    _exit_status: tuple[str, BaseException] | None
    _sampler: Sampler | None
    _report: Report | IncompleteReport | None
    _owner_pid: int | None

    if TYPE_CHECKING:  # Tracker's and RunReports'

        def add_note(self, text: str) -> None:
            """Defined by the tracker (see :class:`~nn_tracker.tracker.Tracker`)."""

        def stop(self, status: str = "completed", error: BaseException | None = None) -> Any:
            """Defined by the tracker (see :class:`~nn_tracker.tracker.Tracker`)."""

    def _sigterm_status(self, status: str, error: BaseException | None) -> tuple[str, BaseException | None]:
        """The status once SIGTERM came: ``terminated`` unless the program handled it and the run ended in code."""
        if not self._sigterm.received:
            return status, error
        if self._sigterm.handled_by_program and not self._at_exit and not isinstance(error, SystemExit):
            self.add_note("SIGTERM came during the run; the program's own handler took it and the run went on.")
            return status, error
        if status in ("completed", "failed"):
            return "terminated", Terminated("SIGTERM received")
        return status, error

    def end_at_exit_as(self, status: str, error: BaseException) -> None:
        """If the program ends with this run still going and no exception says why, end it so (e.g. ``failed``).

        For integrations whose framework has no exception event: a stage still open when the program
        exits never got its end event.
        """
        self._exit_status = (status, error)

    def _stop_at_exit(self, status: str, error: BaseException | None) -> None:
        self._at_exit = True
        if status == "completed" and self._exit_status is not None:
            status, error = self._exit_status
        if self._sampler is not None and self._report is None and self._owner_pid == os.getpid():
            self.stop(status, error)
