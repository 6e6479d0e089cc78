"""The small process between ``nn-tracker run`` and the command: the command's whole tree ends with it.

Run as a script (standard library only, ``python -I -S reaper.py ALIVE_FD STATUS_FD COMMAND...``) by
``runner``. It starts the command and, on Linux, is its child subreaper: whatever the command starts and
leaves behind comes back to it. Through ``STATUS_FD`` it tells nn-tracker ``started PID``, then
``ended RETURNCODE LEFTOVERS`` (or ``error 127|126 MESSAGE`` when the command cannot start).

- When the command ends, what it left running gets SIGTERM, then SIGKILL after ``GRACE_S``.
- When nn-tracker ends without waiting for it (even by SIGKILL: ``ALIVE_FD`` reaches end of file),
  the command and everything it started get the same: nothing runs on untracked.
- If this process itself is killed, the command gets SIGTERM (``PR_SET_PDEATHSIG``) and its orphans go
  to nn-tracker, a subreaper too.

It never acts on a signal itself: the terminal's signals reach the command directly, nn-tracker forwards
the others to the command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

GRACE_S = 2.0
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
IGNORED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def _prctl() -> Callable[..., int] | None:
    """Linux's ``prctl``, or ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def descendants(root: int) -> list[int]:
    """Every live process under ``root`` (Linux ``/proc``; elsewhere none), nearest first."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if fields and fields[0] != b"Z":  # a zombie has nothing left to end
                children.setdefault(int(fields[1]), []).append(int(name))
    found, queue = [], [root]
    while queue:
        for pid in children.get(queue.pop(0), []):
            found.append(pid)
            queue.append(pid)
    return found


def _reap() -> None:
    """Collect every child that has ended (orphans come back here)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def end_tree(root: int, grace_s: float = GRACE_S) -> int:
    """SIGTERM every process under ``root``, SIGKILL those left after ``grace_s``; return how many there were."""
    first = descendants(root)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in first if signum == signal.SIGTERM else descendants(root):
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace_s
        while descendants(root) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.02)
    _reap()
    return len(first)


def main(argv: list[str]) -> int:
    """Start the command, report to nn-tracker, end what is left; see the module's docstring."""
    for name in IGNORED:  # a handler (not SIG_IGN): the command starts with the default disposition
        signal.signal(getattr(signal, name), lambda _signum, _frame: None)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # nn-tracker's blocked signals are not the command's
    alive_fd, status_fd, command = int(argv[0]), int(argv[1]), argv[2:]
    stream = os.fdopen(status_fd, "w", buffering=1)

    def tell(line: str) -> None:
        with contextlib.suppress(OSError):  # nn-tracker is gone: nobody to tell
            stream.write(line + "\n")

    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()

    def die_with_me() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != me:  # this process died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        child = subprocess.Popen(command, preexec_fn=die_with_me if prctl is not None else None)
    except FileNotFoundError:
        tell("error 127 command not found")
        return 0
    except OSError as exc:
        tell(f"error 126 cannot run it ({exc.strerror or exc})")
        return 0
    tell(f"started {child.pid}")

    def watch_nn_tracker() -> None:
        with contextlib.suppress(OSError):
            while os.read(alive_fd, 64):
                pass
        end_tree(me)  # nn-tracker ended without waiting for the command
        os._exit(1)

    threading.Thread(target=watch_nn_tracker, daemon=True).start()
    code = child.wait()
    leftovers = end_tree(me)
    tell(f"ended {code} {leftovers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
