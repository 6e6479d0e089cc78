"""SIGTERM during a run: record it, let a watcher thread write the report, then end as the process would have.

The handler itself only records the signal: it runs in the main thread between two steps of whatever
was running, possibly with one of the tracker's locks held, so stopping there could wait forever.
The previous handler is put back as soon as the signal arrives (and at the end of the run), and is
called, so a program's own SIGTERM handling goes on as without nn_tracker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
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
