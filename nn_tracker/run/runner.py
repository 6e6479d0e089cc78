"""``nn-tracker run -- CMD``: track a command and all its child processes.

The command is started without a shell; the process tree of nn-tracker and the
command is the CPU/RAM attribution (``attribution="process"`` unless told
otherwise); GPUs are measured whole. nn-tracker behaves like a transparent wrapper:

- SIGINT, SIGQUIT and SIGHUP that the terminal sent to the whole foreground process group
  (Ctrl-C, Ctrl-backslash, hang-up) already reached the command: they are not sent again. Sent to
  nn-tracker alone (``kill``, even while it is in the terminal's foreground), they and SIGTERM,
  SIGUSR1 and SIGUSR2 are forwarded, once; nn-tracker itself keeps tracking until the command ends.
- A signal that arrives before the command has started is delivered to it as soon as it starts.
- The command is started by ``reaper``, a small process that (on Linux, a child subreaper) ends the
  command's whole tree with it: when the command ends, whatever it left running gets SIGTERM, then
  SIGKILL after 2 s; when nn-tracker dies, even by SIGKILL, the command and everything it started get
  the same. Nothing it started runs on untracked. (A process that left the tree by a double fork
  *and* was reparented before the reaper became its parent cannot be found; there is none on Linux.)

When the command ends, the report is written and nn-tracker exits with the command's exit
status (``128 + N`` for a death by signal N, as a shell reports it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from nn_tracker.config import RUN_DEFAULTS, TrackerConfig
from nn_tracker.core.errors import ValidationError, say
from nn_tracker.report import units
from nn_tracker.tracker import Tracker

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)  # sent by the tty to the foreground group


class CommandEnded(Exception):
    """Stands for the command's exit status in the report's ``error`` field."""


STATUS_EVERY_S = 30.0


def _status_line(tracker: Tracker, stop: threading.Event, stream: TextIO, every_s: float) -> None:
    """Every ``every_s``, one whole line of its own: elapsed, power, energy, carbon so far.

    Never a line rewritten in place with a carriage return: the command's own output would run into it.
    """
    while not stop.wait(every_s):
        try:
            live = tracker.live()
            line = (
                f"[nn-tracker] {units.duration(tracker.elapsed_s())} · {units.power(live['power/total_w'])} · "
                f"{units.energy(live['energy/total_kwh'])} · {units.carbon(live['carbon/total_g'])}\n"
            )
            stream.write(line)  # one write: a whole line
            stream.flush()
        except Exception:  # noqa: BLE001 - the display must never hurt the run
            continue


def run_command(
    command: Sequence[str],
    options: dict[str, Any],
    status_line: bool | None = None,
    status_every_s: float | None = None,
    on_start: Callable[[], None] | None = None,
) -> int:
    """Run and track ``command``; return the exit status nn-tracker should end with.

    A command that cannot be found exits 127 and one that cannot be run 126, as shells do,
    with one line on stderr.

    Raises:
        ValidationError: no command, or bad options.
    """
    options = {**RUN_DEFAULTS, **options, "handle_sigterm": False}
    TrackerConfig(**options)  # every option is checked before the command starts
    if not command:
        raise ValidationError("command", "", "must be given after --, e.g. nn-tracker run -- python train.py")
    if on_start is not None:  # every input is good: the command starts now
        on_start()
    signals = _Signals()  # from here no signal is lost: those before the command starts wait for it
    try:
        _become_subreaper()
        started = _Command.start(command)
        if isinstance(started, tuple):
            code, message = started
            say(f"nn-tracker: {command[0]}: {message}")
            return code
        code, tracker = _track(started, signals, options, status_line, status_every_s or STATUS_EVERY_S)
        ended = started.leftovers + _end_leftovers()
        if ended:
            tracker.add_note(f"{ended} process(es) the command left running were ended when it ended (SIGTERM).")
    finally:
        signals.restore()
    return _finish(tracker, code)


SI_KERNEL = 0x80  # Linux's si_code of a signal the kernel sent (the terminal's Ctrl-C), not kill()


class _Signals:
    """The signals nn-tracker forwards, held until the loop that waits for the command takes them.

    On Linux they are blocked and taken with ``sigtimedwait``, which says who sent each: one the terminal
    sent to the foreground group already reached the command and is not sent again; one sent with
    ``kill`` to nn-tracker alone is. Elsewhere a handler queues them and the foreground group is asked.
    """

    def __init__(self) -> None:
        self.waits = hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")
        self.queue: list[tuple[int, bool]] = []
        if self.waits:
            self.previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
        else:
            self.previous = {signum: signal.signal(signum, self._queue) for signum in FORWARDED}

    def _queue(self, signum: int, _frame: object) -> None:
        self.queue.append((signum, signum in FROM_TERMINAL and _terminal_signalled_our_group()))

    def next(self, timeout_s: float) -> tuple[int, bool] | None:
        """The next signal and whether the terminal sent it to the whole group, or ``None`` after ``timeout_s``."""
        if self.queue:
            return self.queue.pop(0)
        if not self.waits:
            time.sleep(timeout_s)
            return self.queue.pop(0) if self.queue else None
        info = signal.sigtimedwait({*FORWARDED, signal.SIGCHLD}, timeout_s)
        if info is None or info.si_signo == signal.SIGCHLD:
            return None
        return info.si_signo, info.si_signo in FROM_TERMINAL and info.si_code == SI_KERNEL

    def restore(self) -> None:
        if self.waits:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.previous_mask)
        else:
            for signum, handler in self.previous.items():
                signal.signal(signum, handler)


class _Command:
    """The command, started by ``reaper`` (a small process that ends the command's whole tree with it)."""

    def __init__(self, reaper: subprocess.Popen[bytes], alive_fd: int, status: Any, pid: int) -> None:
        self.reaper, self.alive_fd, self.status, self.pid = reaper, alive_fd, status, pid
        self.pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(pid)  # never a reused pid
        self.leftovers = 0

    @classmethod
    def start(cls, command: Sequence[str]) -> _Command | tuple[int, str]:
        """Start it; a command that cannot start gives its shell-like exit status and one line."""
        alive_r, alive_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            script = os.path.join(os.path.dirname(__file__), "reaper.py")
            reaper = subprocess.Popen(
                [sys.executable, "-I", "-S", script, str(alive_r), str(status_w), *command],
                pass_fds=(alive_r, status_w),
            )
        except OSError as exc:  # no interpreter to start it with (an embedded Python...)
            os.close(alive_w)
            os.close(status_r)
            return 126, f"cannot run it (nn-tracker cannot start its helper process: {exc.strerror or exc})"
        finally:
            os.close(alive_r)
            os.close(status_w)
        status = os.fdopen(status_r, "r")
        first = status.readline().split(" ", 2)
        if first[0] == "started":
            return cls(reaper, alive_w, status, int(first[1]))
        reaper.wait()
        status.close()
        os.close(alive_w)
        if first[0] == "error":
            return int(first[1]), first[2].strip()
        return 126, "cannot run it (nn-tracker's process that starts it failed)"

    def send(self, signum: int) -> None:
        with contextlib.suppress(OSError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            else:
                os.kill(self.pid, signum)

    def running(self) -> bool:
        return self.reaper.poll() is None

    def finish(self) -> int:
        """Once the reaper has ended: the command's return code (negative: the signal that ended it)."""
        self.reaper.wait()
        ended = self.status.readline().split()
        self._close()
        if len(ended) == 3 and ended[0] == "ended":
            self.leftovers = int(ended[2])
            return int(ended[1])
        return self.reaper.returncode  # the reaper itself was killed: its death stands for the command's

    def abandon(self) -> None:
        """nn-tracker ends early: the reaper ends the command's tree (as when nn-tracker is killed)."""
        self._close()
        try:
            self.reaper.wait(timeout=3 * LEFTOVER_GRACE_S)
        except subprocess.TimeoutExpired:
            self.reaper.kill()
            self.reaper.wait()

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.alive_fd)
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None
        self.status.close()


def _terminal_signalled_our_group() -> bool:
    """Whether this process's group is the foreground group of its controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal: the signal came from kill
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


LEFTOVER_GRACE_S = 2.0


def _become_subreaper() -> None:
    """Linux: orphans of the command's tree become this process's children, so they can be ended with it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_child_subreaper = 36
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    except (OSError, AttributeError):
        return


def _end_leftovers() -> int:
    """End what is left under nn-tracker (the reaper was killed and its orphans came here); return how many."""
    import psutil

    try:
        leftovers = psutil.Process().children(recursive=True)
    except psutil.Error:
        return 0
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _gone, alive = psutil.wait_procs(leftovers, timeout=LEFTOVER_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=LEFTOVER_GRACE_S)
    return len(leftovers)


def _track(
    command: _Command, signals: _Signals, options: dict[str, Any], status_line: bool | None, status_every_s: float
) -> tuple[int, Tracker]:
    """Track until the command ends, forwarding signals; return its status and the (still running) tracker."""
    # The tracked tree is this process and its children: the command's CPU time stays counted after it
    # exits (it moves to our children's times when waited for); our own share is the sampler's, tiny.
    tracker = Tracker(**options)
    try:
        tracker.start()
        stop = threading.Event()
        show = (sys.stderr is not None and sys.stderr.isatty()) if status_line is None else status_line
        display = (
            threading.Thread(target=_status_line, args=(tracker, stop, sys.stderr, status_every_s), daemon=True)
            if show
            else None
        )
        if display:
            display.start()
        while command.running():
            arrived = signals.next(timeout_s=0.2)
            if arrived is not None and not arrived[1]:  # the terminal's reached the command already
                command.send(arrived[0])
        code = command.finish()
        stop.set()
        if display:
            display.join(timeout=5)
    except BaseException:
        command.abandon()
        raise
    return code, tracker


def _signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``SIGRTMIN+6`` for a real-time signal; ``signal 99`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
    if low is not None and high is not None and low <= signum <= high:
        return f"SIGRTMIN+{signum - low}"
    return f"signal {signum}"


def _finish(tracker: Tracker, code: int) -> int:
    """Write the report with the status the exit code means; return nn-tracker's own exit status."""
    if code == 0:
        report = tracker.stop("completed")
    elif code < 0:
        report = tracker.stop("terminated", CommandEnded(f"killed by {_signal_name(-code)}"))
    else:
        report = tracker.stop("failed", CommandEnded(f"exit status {code}"))
    if code == 0:
        ended = "the command completed"
    elif code < 0:
        ended = f"the command was terminated by {_signal_name(-code)}"
    else:
        ended = f"the command failed (exit status {code})"
    say(
        f"nn-tracker: {ended}; {units.energy(report.energy_kwh)} (IT), "
        f"{units.carbon(report.total_carbon_g)}; report status {report.status}"
    )
    for path in report.paths:
        say(f"nn-tracker: wrote {path}")
    return 128 - code if code < 0 else code
