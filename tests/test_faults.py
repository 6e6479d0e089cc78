"""Fault injection across the pipeline (the rest is in test_nvml, test_rapl, test_tracker, test_sampling)."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set
from hypothesis import given
from hypothesis import strategies as st

from nn_tracker import ManualClock, Tracker, ValidationError

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
    first = tracker.report_path.read_text()  # the report is claimed (written) at start
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
    assert tracker.report_path.read_text() == first  # the child wrote nothing: the run belongs to the parent
    assert [p.name for p in tmp_path.iterdir()] == ["nn_tracker-parent.json"]
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


def test_the_tracked_code_s_exception_always_wins_and_a_report_is_still_written(tmp_path, monkeypatch):
    import nn_tracker.report.model as model_module

    def broken_build(*args, **kwargs):
        raise OverflowError("an internal failure")

    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
    with pytest.raises(KeyError, match="the user's own"), tracker:
        monkeypatch.setattr(model_module, "build_report", broken_build)
        raise KeyError("the user's own")
    data = json.loads(tracker.report_path.read_text())
    assert data["status"] == "failed" and data["incomplete"] is True
    assert data["error"] == {"type": "KeyError", "message": '"the user\'s own"'}
    assert "OverflowError: an internal failure" in data["notes"][0]
    assert tracker.report().energy_kwh is None and tracker.report().total_carbon_g is None  # unknown, not 0
    rendered = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(tracker.report_path), "--format", "md"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rendered.returncode == 2 and rendered.stdout == ""
    assert rendered.stderr.count("\n") == 1 and "incomplete" in rendered.stderr and "OverflowError" in rendered.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"transport_factor": 1e-320}, "transport_factor must be at least 1e-06"),
        ({"pue": 10**400}, "pue must be a finite number"),
        ({"intensity_g_per_kwh": 1e300}, "intensity_g_per_kwh must be at most 1e+15 in magnitude"),
        ({"interval_s": 1e-300}, "interval_s must be at least 1e-09"),
        ({"interval_s": 0.001}, "interval_s must be in [0.01, 3600] seconds"),
        ({"checkpoint_interval_s": 1e-300}, "checkpoint_interval_s must be at least 1e-09"),
        ({"checkpoint_interval_s": 0.5}, "checkpoint_interval_s must be at least 1 s"),
    ],
)
def test_values_that_would_overflow_or_busy_loop_are_refused_at_the_input(options, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Tracker(**options)


def test_unit_counts_stay_finite():
    tracker = Tracker(write_report=False, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
    with pytest.raises(ValidationError, match="count must be at most 1e\\+15"):
        tracker.add_units(1e308)
    with pytest.raises(ValidationError, match="count must be a finite number"):
        tracker.add_units(10**400)


@pytest.mark.parametrize(
    ("count", "kind", "message"),
    [
        (-1, "sample", "count must be >= 0, got -1"),
        (-0.5, "sample", "count must be >= 0, got -0.5"),
        (float("nan"), "sample", "count must be finite"),
        (float("inf"), "sample", "count must be finite"),
        (True, "sample", "count must be a number, got True"),
        ("3", "sample", "count must be a number, got '3'"),
        (1, "bad kind", "kind must be 1-64 letters"),
        (1, "", "kind must be 1-64 letters"),
        (1, ["x"], "kind must be 1-64 letters"),
        (1, None, "kind must be 1-64 letters"),
    ],
)
def test_bad_unit_counts_and_kinds_are_refused_before_and_after_good_ones(count, kind, message):
    """The fast path for plain numbers and known kinds refuses what the full checks refuse."""
    tracker = Tracker(write_report=False, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
    for _ in range(2):  # the same call fails the second time too (nothing was cached from it)
        with pytest.raises(ValidationError, match=re.escape(message)):
            tracker.add_units(count, kind)
        tracker.add_units(2, "sample")
    assert tracker.units() == {"sample": 4}


class FullDisk:
    """``os.write`` that fails with ENOSPC once ``room`` more bytes were written (a tiny full filesystem)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.real = os.write

    def __call__(self, fd, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), self.room)
        self.room -= n
        return self.real(fd, data[:n])


def report_for_csv(tmp_path, run_id):
    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), run_id=run_id)
    with tracker:
        pass
    return tracker.report()


@pytest.mark.parametrize("room", [0, 1, 40, 150])
def test_a_full_disk_never_damages_emissions_csv(tmp_path, monkeypatch, room):
    from nn_tracker.report import codecarbon_csv, files

    path = tmp_path / "emissions.csv"
    codecarbon_csv.append(path, report_for_csv(tmp_path, "first"))
    before = path.read_bytes()
    monkeypatch.setattr(files.os, "write", FullDisk(room))
    with pytest.raises(OSError, match="No space"):
        codecarbon_csv.append(path, report_for_csv(tmp_path, "second"))
    monkeypatch.undo()
    assert path.read_bytes() == before  # the partial row was taken back
    codecarbon_csv.append(path, report_for_csv(tmp_path, "third"))
    rows = path.read_text().splitlines()
    assert len(rows) == 3 and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)


def test_a_full_disk_leaves_no_empty_emissions_csv(tmp_path, monkeypatch):
    from nn_tracker.report import codecarbon_csv, files

    monkeypatch.setattr(files.os, "write", FullDisk(0))
    with pytest.raises(OSError):
        codecarbon_csv.append(tmp_path / "emissions.csv", report_for_csv(tmp_path, "only"))
    assert not (tmp_path / "emissions.csv").exists()


def test_a_row_torn_by_an_earlier_crash_is_cut_before_appending(tmp_path):
    from nn_tracker.report import codecarbon_csv

    path = tmp_path / "emissions.csv"
    codecarbon_csv.append(path, report_for_csv(tmp_path, "first"))
    whole = path.read_bytes()
    path.write_bytes(whole + b"2026-11-26T10:00:00,proj,torn-ro")  # a crash in the middle of a row
    codecarbon_csv.append(path, report_for_csv(tmp_path, "second"))
    rows = path.read_text().splitlines()
    assert path.read_bytes().startswith(whole) and len(rows) == 3 and "torn-ro" not in path.read_text()
    assert all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)


def test_output_files_are_never_followed_through_symlinks(tmp_path):
    from nn_tracker.report import codecarbon_csv

    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "emissions.csv").symlink_to(outside)
    with pytest.raises(OSError):
        codecarbon_csv.append(reports / "emissions.csv", report_for_csv(tmp_path, "x"))
    (reports / "nn_tracker-planted.json").symlink_to(outside)
    tracker = Tracker(output_dir=reports, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), run_id="planted")
    with tracker:
        pass
    assert outside.read_text() == "precious\n"  # nothing written through either link
    assert tracker.report_path.name == "nn_tracker-planted-2.json"  # the name was taken: another is used


def test_a_reused_run_id_never_overwrites_another_run_s_report(tmp_path):
    first = Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), run_id="same")
    second = Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), run_id="same")
    with first, second:
        pass
    assert first.report_path.name == "nn_tracker-same.json" and second.report_path.name == "nn_tracker-same-2.json"
    assert json.loads(first.report_path.read_text())["status"] == "completed"


def test_run_ids_carry_96_random_bits_and_sort_by_start_time():
    ids = {Tracker(write_report=False, intensity_g_per_kwh=1).run_id for _ in range(20_000)}
    assert len(ids) == 20_000
    stamp, random_part = next(iter(ids)).split("-")
    assert len(random_part) == 24 and len(stamp) == 16 and stamp.endswith("Z")


def test_stale_temporary_files_are_removed_at_the_next_start(tmp_path):
    stale = tmp_path / ".nn_tracker-old.json.0123abcd.tmp"
    fresh = tmp_path / ".nn_tracker-now.json.89abcdef.tmp"  # maybe another process writing right now
    other = tmp_path / ".mine.tmp"
    for path in (stale, fresh, other):
        path.write_text("x")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    with Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower())):
        pass
    assert not stale.exists() and fresh.exists() and other.exists()


@given(st.text(max_size=30) | st.from_regex(r"\.[a-z.\n-]{0,6}\.[0-9a-fA-F]{6,10}\.tmp\n?", fullmatch=True))
def test_a_temporary_file_is_named_as_nn_tracker_names_them(name):
    """Only names of the form `.<name>.<8+ hex digits>.tmp` are nn_tracker's to remove, nothing looser."""
    from nn_tracker.report.files import is_temporary

    assert is_temporary(name) == (re.fullmatch(r"\..+\.[0-9a-f]{8,}\.tmp", name, re.DOTALL) is not None)


def test_folders_are_created_with_the_umask_but_never_world_writable(tmp_path):
    previous = os.umask(0)
    try:
        with Tracker(output_dir=tmp_path / "a" / "b", intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower())):
            pass
    finally:
        os.umask(previous)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert folder.stat().st_mode & 0o777 == 0o775


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: s["records"][0]["devices"].append({}), "state.records[0].devices[1].device_id must be a non-empty"),
        (lambda s: s["records"][0].update(units={"training": 5}), "state.records[0].units.training must be a mapping"),
        (lambda s: s["records"][0]["devices"][0].update(energy_j="x"), "devices[0].energy_j must be a number"),
        (lambda s: s["records"][0]["devices"][0].update(energy_j=-1.0), "records[0].devices[0].energy_j must be >= 0"),
        (
            lambda s: s["records"][0]["devices"][0]["energy_by_phase_j"].update(training=-5),
            "devices[0].energy_by_phase_j.training must be >= 0",
        ),
        (lambda s: s["records"][0].update(duration_s=float("inf")), "state.records[0].duration_s must be finite"),
        (lambda s: s["records"][0].update(rank=-1), "state.records[0].rank must be an integer >= 0"),
        (lambda s: s.update(nn_tracker_state=7), "state.nn_tracker_state must be 1 or 2"),
        (lambda s: s.update(records="all"), "state.records must be a list"),
    ],
)
def test_a_malformed_state_is_refused_by_carry_over_and_leaves_no_thread(tmp_path, mangle, message):
    import threading

    first = Tracker(write_report=False, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
    with first:
        pass
    state = first.export_state()
    mangle(state)
    second = Tracker(write_report=False, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
    with pytest.raises(ValidationError, match=re.escape(message)):
        second.carry_over(state)
    second.start().stop()  # the tracker is still usable and nothing was left running
    assert not [t for t in threading.enumerate() if t.name == "nn_tracker-sampler"]
