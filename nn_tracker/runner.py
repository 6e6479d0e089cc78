"""``nn-tracker run -- CMD``: track a command and all its child processes.

The command is started without a shell; the process tree of nn-tracker and the
command is the CPU/RAM attribution (``attribution="process"`` unless told
otherwise); GPUs are measured whole. nn-tracker behaves like a transparent wrapper:

- SIGINT, SIGQUIT and SIGHUP that the terminal sent to the whole foreground process group
  (Ctrl-C, Ctrl-backslash, hang-up) already reached the command: they are not sent again. Sent to
  nn-tracker alone (``kill``), they and SIGTERM, SIGUSR1 and SIGUSR2 are forwarded, once;
  nn-tracker itself keeps tracking until the command ends.
- On Linux the command gets SIGTERM if nn-tracker dies (even by SIGKILL): it never runs on
  untracked (``PR_SET_PDEATHSIG``). Elsewhere it can outlive a killed nn-tracker.
- A signal that arrives before the command has started is delivered to it as soon as it starts.
- When the command ends, whatever it started and left running (its orphans come back to
  nn-tracker, a Linux child subreaper) gets SIGTERM, then SIGKILL after 2 s: nothing it started
  runs on untracked. (A SIGKILL of nn-tracker itself reaches only the command.)

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
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from nn_tracker.config import RUN_DEFAULTS, TrackerConfig
from nn_tracker.errors import ValidationError, say
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
    started: list[subprocess.Popen[bytes]] = []
    early: list[int] = []  # signals that came before the command started

    def forward(signum: int, _frame: object) -> None:
        if signum in FROM_TERMINAL and _terminal_signalled_our_group() and started:
            return  # the command is in our process group: the terminal signalled it too
        if not started:
            early.append(signum)
        for child in started:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        _become_subreaper()
        try:
            # the user's own command, without a shell; on Linux it dies with us
            started.append(subprocess.Popen(list(command), preexec_fn=_die_with_parent()))
            for signum in early:  # before it started: it gets them now, once
                started[0].send_signal(signum)
        except FileNotFoundError:
            say(f"nn-tracker: {command[0]}: command not found")
            return 127
        except OSError as exc:
            say(f"nn-tracker: {command[0]}: cannot run it ({exc.strerror or exc})")
            return 126
        code, tracker = _track(started[0], options, status_line, status_every_s or STATUS_EVERY_S)
        ended = _end_leftovers()
        if ended:
            tracker.add_note(f"{ended} process(es) the command left running were ended when it ended (SIGTERM).")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _finish(tracker, code)


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
    """End what the command left running (SIGTERM, then SIGKILL after a grace); return how many there were."""
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


def _die_with_parent() -> Any:
    """A ``preexec_fn`` that makes the command receive SIGTERM when nn-tracker dies (Linux; else ``None``)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # nn-tracker died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def _track(
    child: subprocess.Popen[bytes], options: dict[str, Any], status_line: bool | None, status_every_s: float
) -> tuple[int, Tracker]:
    """Track until the command ends; return its status and the (still running) tracker."""
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
        code = child.wait()
        stop.set()
        if display:
            display.join(timeout=5)
    except BaseException:
        child.kill()
        child.wait()
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
