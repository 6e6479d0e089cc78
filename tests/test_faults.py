"""Fault injection across the pipeline (the rest is in test_nvml, test_rapl, test_tracker, test_sampling)."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set

from nn_tracker import ManualClock, Tracker

ROOT = Path(__file__).resolve().parents[1]


def test_disk_full_keeps_tracking_and_the_last_good_report_intact(tmp_path, monkeypatch, caplog):
    from nn_tracker.report import files

    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower()),
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        checkpoint_interval_s=10,
        run_id="full",
    )
    tracker.start()
    clock.advance(10)
    tracker.sample()
    good = tracker.report_path.read_text()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    for _ in range(5):
        clock.advance(10)
        tracker.sample()  # checkpoints fail
    report = tracker.stop()
    assert report.status == "completed" and report.to_dict()["duration_s"] == 60
    assert tracker.report_path.read_text() == good  # the last good checkpoint is untouched, valid JSON
    json.loads(good)
    assert [p.name for p in tmp_path.iterdir()] == ["nn_tracker-full.json"]  # no temporary files left
    assert sum("No space left" in r.getMessage() for r in caplog.records) == 1  # one clear error


def run_script(tmp_path, body):
    path = tmp_path / "job.py"
    path.write_text(
        textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import nn_tracker
    """)
        + textwrap.dedent(body)
    )
    return subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigint_in_the_tracked_job_gives_a_terminated_report(tmp_path):
    process = run_script(
        tmp_path,
        f"""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
        with nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="int"):
            print("ready", flush=True)
            time.sleep(30)
    """,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) != 0  # KeyboardInterrupt propagates unchanged
    data = json.loads((tmp_path / "nn_tracker-int.json").read_text())
    assert data["status"] == "terminated" and data["error"]["type"] == "KeyboardInterrupt"


def test_fork_never_duplicates_the_sampler_or_its_output(tmp_path):
    tracker = Tracker(
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        sensors=sensor_set(ConstantPower()),
        interval_s=0.01,
        checkpoint_interval_s=None,
        run_id="parent",
    )
    tracker.start()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a DataLoader worker: works, stops the tracker, and exits through atexit
        import threading

        os.write(write, b"1" if any(t.name == "nn_tracker-sampler" for t in threading.enumerate()) else b"0")
        time.sleep(0.1)
        tracker.stop()
        import atexit

        atexit._run_exitfuncs()  # what the worker's interpreter does at exit, our hook included
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    os.close(write)
    sampler_in_child = os.read(read, 1).decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert sampler_in_child == "0"  # threads do not survive fork
    assert not tracker.report_path.exists()  # the child wrote nothing: the run belongs to the parent
    assert tracker.running
    tracker.stop()
    assert json.loads(tracker.report_path.read_text())["status"] == "completed"


def test_a_sensor_failing_at_every_read_never_reaches_the_host(tmp_path):
    sensor = ConstantPower()
    sensor.fail = True
    with Tracker(
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        sensors=sensor_set(sensor),
        interval_s=0.01,
        checkpoint_interval_s=None,
    ) as tracker:
        time.sleep(0.2)
    data = tracker.report().to_dict()
    device = data["devices"][0]
    assert device["errors"] >= 5 and device["energy_kwh"] is None and device["readings"] == 0  # unknown, not 0
    assert device["gap_s"] > 0.15  # the whole run is a gap, not zero energy measured
    assert any("read errors" in note for note in data["notes"])


@pytest.mark.parametrize("jump_s", [-86400.0, 86400.0])
def test_wall_clock_jumps_change_timestamps_not_energy(tmp_path, jump_s):
    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower(power_w=10)),
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        checkpoint_interval_s=None,
    )
    with tracker:
        clock.advance(30)
        tracker.sample()
        clock.jump_wall(jump_s)
        clock.advance(30)
        tracker.sample()
    data = tracker.report().to_dict()
    assert data["duration_s"] == 60 and data["energy"]["it_kwh"] == pytest.approx(600 / 3.6e6)
