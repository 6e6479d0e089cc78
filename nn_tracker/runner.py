"""``nn-tracker run -- CMD``: track a command and all its child processes.

The command is started without a shell; the process tree of nn-tracker and the
command is the CPU/RAM attribution (``attribution="process"`` unless told
otherwise); GPUs are measured whole. SIGINT and SIGTERM are forwarded to the command; when it ends, the report
is written and nn-tracker exits with the command's exit status (``128 + N`` for a
death by signal N, as a shell reports it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from nn_tracker.config import TrackerConfig
from nn_tracker.errors import ValidationError
from nn_tracker.report import units
from nn_tracker.tracker import Tracker

FORWARDED = (signal.SIGINT, signal.SIGTERM)


class CommandEnded(Exception):
    """Stands for the command's exit status in the report's ``error`` field."""


def _status_line(tracker: Tracker, stop: threading.Event, stream: TextIO) -> None:
    """Rewrite one line on the terminal every second: elapsed, power, energy, carbon so far."""
    while not stop.wait(1.0):
        try:
            live = tracker.live()
        except Exception:  # noqa: BLE001 - the display must never hurt the run
            continue
        stream.write(
            f"\r[nn-tracker] {units.duration(tracker.elapsed_s())} · {units.power(live['power/total_w'])} · "
            f"{units.energy(live['energy/total_kwh'])} · {units.carbon(live['carbon/total_g'])}   "
        )
        stream.flush()
    stream.write("\n")
    stream.flush()


def run_command(command: Sequence[str], options: dict[str, Any], status_line: bool | None = None) -> int:
    """Run and track ``command``; return the exit status nn-tracker should end with.

    Raises:
        ValidationError: no command, a command that cannot be started, or bad options.
    """
    options = {"attribution": "process", **options, "handle_sigterm": False}
    TrackerConfig(**options)  # every option is checked before the command starts
    if not command:
        raise ValidationError("command", "", "must be given after --, e.g. nn-tracker run -- python train.py")
    started: list[subprocess.Popen[bytes]] = []
    previous = {
        signum: signal.signal(signum, lambda n, _f: [c.send_signal(n) for c in started]) for signum in FORWARDED
    }
    try:
        try:
            started.append(subprocess.Popen(list(command)))  # the user's own command, without a shell
        except OSError as exc:
            raise ValidationError("command", command[0], f"must be an executable program ({exc.strerror})") from None
        code, tracker = _track(started[0], options, status_line)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _finish(tracker, code)


def _track(child: subprocess.Popen[bytes], options: dict[str, Any], status_line: bool | None) -> tuple[int, Tracker]:
    """Track until the command ends; return its status and the (still running) tracker."""
    # The tracked tree is this process and its children: the command's CPU time stays counted after it
    # exits (it moves to our children's times when waited for); our own share is the sampler's, tiny.
    tracker = Tracker(**options)
    try:
        tracker.start()
        stop = threading.Event()
        show = sys.stderr.isatty() if status_line is None else status_line
        display = threading.Thread(target=_status_line, args=(tracker, stop, sys.stderr), daemon=True) if show else None
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


def _finish(tracker: Tracker, code: int) -> int:
    """Write the report with the status the exit code means; return nn-tracker's own exit status."""
    if code == 0:
        report = tracker.stop("completed")
    elif code < 0:
        name = signal.Signals(-code).name
        report = tracker.stop("terminated", CommandEnded(f"killed by {name}"))
    else:
        report = tracker.stop("failed", CommandEnded(f"exit status {code}"))
    data = report.to_dict()
    where = f"; report: {report.paths[0]}" if report.paths else ""
    print(
        f"nn-tracker: {units.energy(data['energy']['it_kwh'])} (IT), "
        f"{units.carbon(data['footprint']['total_carbon_g'])}{where}",
        file=sys.stderr,
    )
    return 128 - code if code < 0 else code
