"""Calls into a driver that may never return (a lost GPU can block NVML), made on a thread of their own.

A :class:`Deadline` runs each call on its worker thread and waits at most ``timeout_s``: a call that
has not returned by then raises :class:`ReadTimedOut`, the worker is left to its call (a daemon
thread: it cannot keep the program alive), and every later call raises at once. So a blocked driver
costs the caller at most ``timeout_s`` once, then nothing: the device is lost from then on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
READ_DEADLINE_S = 2.0  # NVML answers in milliseconds (2.4-6 ms on an H200); two seconds is a hung driver


class ReadTimedOut(Exception):
    """A driver call did not return within its deadline; the device is not asked again."""


class Deadline:
    """A worker thread for one device's driver calls, each waited for at most ``timeout_s``.

    Args:
        name: Names the worker thread (``nn_tracker-<name>``).
        timeout_s: The longest a caller waits for one call.
    """

    def __init__(self, name: str, timeout_s: float = READ_DEADLINE_S) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.hung = False  # a call missed its deadline: the worker may never come back
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], _Result] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, function: Callable[[], T]) -> T:
        """``function()``, run on the worker; its exception is raised here.

        Raises:
            ReadTimedOut: it did not return within ``timeout_s`` (or an earlier call did not).
        """
        if self.hung:
            raise ReadTimedOut(f"{self.name}: an earlier call never returned")
        result = _Result()
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=f"nn_tracker-{self.name}", daemon=True)
                self._worker.start()
            self._requests.put((function, result))
        if not result.done.wait(self.timeout_s):
            self.hung = True
            raise ReadTimedOut(f"{self.name}: no answer within {self.timeout_s:g} s")
        if result.error is not None:
            raise result.error
        return result.value  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the worker (at once if idle; a hung one is left to its call)."""
        with self._lock:
            if self._worker is not None:
                self._requests.put(None)
                self._worker = None

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            function, result = request
            try:
                result.value = function()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result.error = exc
            result.done.set()


class _Result:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
