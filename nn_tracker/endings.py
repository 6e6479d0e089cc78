"""How a run ends when the program does: SIGTERM, an uncaught exception, the interpreter's exit.

SIGTERM: the handler itself only records the signal: it runs in the main thread between two steps of whatever
was running, possibly with one of the tracker's locks held, so stopping there could wait forever.
The previous handler is put back as soon as the signal arrives (and at the end of the run), and is
called, so a program's own SIGTERM handling goes on as without nn_tracker.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nn_tracker")


class SigtermGuard:
    """Stops a run on SIGTERM, from a thread of its own.

    Args:
        stop_run: Writes the run's ``terminated`` report (called once, by the watcher thread).
    """

    def __init__(self, stop_run: Callable[[], Any]) -> None:
        self._stop_run = stop_run
        self._previous: Any = None
        self._installed = False
        self.received = False  # set by the handler
        self._wake = threading.Event()  # wakes the watcher: SIGTERM received, or the run is over
        self._kill_after_stop = False

    def install(self) -> None:
        """Handle SIGTERM from now on (main thread only; elsewhere, nothing happens)."""
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            self._previous = signal.signal(signal.SIGTERM, self.handler)
        except (ValueError, OSError):  # not the main interpreter, or signals unavailable
            return
        self._installed = True
        threading.Thread(target=self._watch, name="nn_tracker-sigterm", daemon=True).start()

    def restore(self) -> None:
        """Put the previous handler back (main thread only; the handler does it itself when it runs)."""
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = False
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == self.handler:
                signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
        self._wake.set()  # ends the watcher (the run is over)

    def handler(self, signum: int, frame: Any) -> None:
        """Record the request, put the previous handler back and call it; never stop here."""
        previous = self._previous
        self._installed = False
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        self._kill_after_stop = previous in (None, signal.SIG_DFL)
        self.received = True
        self._wake.set()
        if callable(previous):
            previous(signum, frame)

    def _watch(self) -> None:
        """Stop the run when SIGTERM was received, then end as the process would have without us."""
        self._wake.wait()
        if not self.received:
            return  # the run ended normally
        try:
            self._stop_run()
        except Exception:
            log.exception("nn_tracker: final report on SIGTERM failed")
        if self._kill_after_stop:
            os.kill(os.getpid(), signal.SIGTERM)  # the default handler is back: the process ends by SIGTERM


def status_for_exception(exc: BaseException | None) -> str:
    """The report status an exception leaving the tracked code means."""
    if exc is None:
        return "completed"
    if isinstance(exc, KeyboardInterrupt):
        return "terminated"
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
