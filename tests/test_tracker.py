"""Tracker: footprint from measured energy, phases, units, crash safety, signals, decorator."""

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set

import nn_tracker
from nn_tracker import Datacentre, EmbodiedHardware, ManualClock, Tracker, TrackerConfig, ValidationError
from nn_tracker.accounting.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]


def fake_tracker(tmp_path, power_w=100.0, clock=None, **options):
    clock = clock or ManualClock()
    gpu = ConstantPower(power_w=power_w)
    options.setdefault("intensity_g_per_kwh", 400)
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(gpu),
        output_dir=tmp_path,
        checkpoint_interval_s=None,
        **options,
    )
    return tracker, clock, gpu


def test_measured_energy_fills_the_footprint_model(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path, power_w=100, pue=1.5, transport_factor=0.8, embodied=())
    with tracker:
        clock.advance(3600)
        tracker.sample()
    data = json.loads(Path(tracker.report().paths[0]).read_text())
    assert data["status"] == "completed"
    assert data["energy"]["it_kwh"] == pytest.approx(0.1)
    assert data["energy"]["by_component_kwh"] == {"gpu": pytest.approx(0.1), "cpu": None, "ram": None}
    assert data["footprint"]["training_energy_kwh"] == pytest.approx(0.15)
    assert data["footprint"]["querying_energy_kwh"] == 0
    assert data["footprint"]["operational_carbon_g"] == pytest.approx(0.15 * 400 / 0.8)
    assert data["footprint"]["total_carbon_g"] == pytest.approx(75.0)
    assert data["duration_s"] == 3600
    assert data["devices"][0]["method"] == "integrated_power"
    assert data["devices"][0]["mean_power_w"] == pytest.approx(100)


def test_querying_phase_goes_to_nn_eq_and_its_own_datacentre(tmp_path):
    centres = (
        Datacentre(intensity_g_per_kwh=400, pue=1.1, name="train-dc"),
        Datacentre(location="FR", pue=1.2, phases=("querying",)),
    )
    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower(power_w=1000)),
        output_dir=tmp_path,
        datacentres=centres,
        embodied=(),
        checkpoint_interval_s=None,
    )
    with tracker:
        clock.advance(3600)
        with tracker.phase("querying"):
            clock.advance(1800)
            tracker.add_units(1000, kind="query")
    data = tracker.report().to_dict()
    assert data["footprint"]["training_energy_kwh"] == pytest.approx(1.1)
    assert data["footprint"]["querying_energy_kwh"] == pytest.approx(0.6)
    france = data["datacentres"][1]
    assert france["intensity_g_per_kwh"] == 56.039 and "Ember" in france["intensity_source"]
    assert data["footprint"]["operational_carbon_g"] == pytest.approx(1.1 * 400 + 0.6 * 56.039)
    assert data["units"]["query"]["count"] == 1000
    per_query = data["units"]["query"]["by_phase"]["querying"]
    assert per_query["carbon_g_per_unit"] == pytest.approx(0.6 * 56.039 / 1000)  # France's grid, not 400 g
    assert per_query["facility_energy_kwh_per_unit"] == pytest.approx(0.6 / 1000)  # querying's own energy
    assert data["phases"]["querying"]["units"] == {"query": 1000}


def test_nested_phases_are_exclusive_and_inclusive(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path, power_w=3600)  # 1 Wh per second
    with tracker:
        with tracker.phase("training"):
            clock.advance(10)
            with tracker.phase("validation") as path:
                assert path == "training/validation"
                assert tracker.current_phase == "training/validation"
                clock.advance(2)
            clock.advance(3)
        assert tracker.current_phase == "training"  # the default phase
    phases = tracker.report().to_dict()["phases"]
    assert phases["training"]["energy_kwh"] == pytest.approx(0.013)
    assert phases["training"]["inclusive_energy_kwh"] == pytest.approx(0.015)
    assert phases["training/validation"]["energy_kwh"] == pytest.approx(0.002)
    assert phases["training"]["inclusive_duration_s"] == pytest.approx(15)


def test_add_units_is_thread_safe(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path)
    with tracker:
        workers = [
            threading.Thread(target=lambda: [tracker.add_units(1, "token") for _ in range(10_000)]) for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        clock.advance(1)
    assert tracker.report().to_dict()["units"]["token"]["count"] == 80_000


def test_exception_gives_a_failed_report_and_propagates_unchanged(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path)
    error = ValueError("boom")
    with pytest.raises(ValueError) as info, tracker:
        clock.advance(5)
        raise error
    assert info.value is error
    data = json.loads(tracker.report_path.read_text())
    assert data["status"] == "failed"
    assert data["error"] == {"type": "ValueError", "message": "boom"}
    assert data["energy"]["it_kwh"] == pytest.approx(500 / 3.6e6)


def test_keyboard_interrupt_is_terminated(tmp_path):
    tracker, _, _ = fake_tracker(tmp_path)
    with pytest.raises(KeyboardInterrupt), tracker:
        raise KeyboardInterrupt
    assert tracker.report().status == "terminated"


def test_decorator_makes_a_fresh_tracker_per_call(tmp_path):
    @nn_tracker.track(output_dir=tmp_path, intensity_g_per_kwh=100, gpus=False, checkpoint_interval_s=None)
    def work(n):
        return sum(range(n))

    assert work(10) == 45
    first = work.last_report
    assert work(100) == 4950
    assert work.last_report is not first
    assert first.to_dict()["run_id"] != work.last_report.to_dict()["run_id"]
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_decorator_validates_options_at_decoration():
    with pytest.raises(ValidationError, match="pue must be >= 1"):
        nn_tracker.track(pue=0.2)


def test_checkpoints_are_rewritten_while_running(tmp_path, monkeypatch):
    """Each write is atomic; every one but the first (nothing measured yet) is synced to disk; a checkpoint is
    written on one line (3x faster to encode, every checkpoint_interval_s), the final report indented."""
    from nn_tracker.report import files

    synced = []
    monkeypatch.setattr(files.os, "fsync", synced.append)
    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower()),
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        checkpoint_interval_s=60,
    )
    tracker.start()
    first = json.loads(tracker.report_path.read_text())
    assert first["status"] == "running" and first["duration_s"] == 0 and not synced
    clock.advance(61)
    tracker.sample()
    text = tracker.report_path.read_text()
    second = json.loads(text)
    assert second["status"] == "running" and second["duration_s"] == 61 and len(synced) == 1
    assert text.count("\n") == 1 and text == json.dumps(second) + "\n"
    from nn_tracker.report.schema import load_report
    from nn_tracker.report.writers import render

    shown = render(load_report(tracker.report_path), "json")  # as `nn-tracker report` shows it: indented
    assert shown == json.dumps(second, indent=2) + "\n"
    tracker.stop()
    text = tracker.report_path.read_text()
    assert json.loads(text)["status"] == "completed" and len(synced) == 2
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == [tracker.report_path.name]  # no temporary files left


def test_report_file_respects_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        tracker, clock, _ = fake_tracker(tmp_path)
        with tracker:
            clock.advance(1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(tracker.report_path.stat().st_mode) == 0o640


def test_unwritable_output_keeps_tracking_with_one_clear_error(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower()),
        output_dir=blocker / "reports",
        intensity_g_per_kwh=1,
        checkpoint_interval_s=1,
    )
    with caplog.at_level(logging.ERROR, logger="nn_tracker"), tracker:
        for _ in range(5):
            clock.advance(1)
            tracker.sample()
    report = tracker.report()
    assert report.status == "completed" and report.energy_kwh > 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage()
    assert any("report writes failed" in n for n in report.to_dict()["notes"])
    assert blocker.read_text() == "a file where the folder should be"


def test_no_location_uses_world_average_with_a_warning(tmp_path, caplog):
    tracker = Tracker(
        clock=ManualClock(),
        background=False,
        sensors=sensor_set(ConstantPower()),
        output_dir=tmp_path,
        checkpoint_interval_s=None,
    )
    with caplog.at_level(logging.WARNING, logger="nn_tracker"), tracker:
        pass
    assert any("no location given" in r.getMessage() for r in caplog.records)
    data = tracker.report().to_dict()
    assert data["notes"][0].startswith("No location given")
    assert data["datacentres"][0]["intensity_g_per_kwh"] == 475


def test_wall_clock_jump_does_not_change_durations(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path)
    with tracker:
        clock.advance(10)
        clock.jump_wall(-3600)
        clock.advance(10)
    data = tracker.report().to_dict()
    assert data["duration_s"] == 20
    assert data["energy"]["it_kwh"] == pytest.approx(100 * 20 / 3.6e6)


def test_embodied_amortised_over_the_run(tmp_path):
    hardware = (
        EmbodiedHardware("A100 SXM4 80 GB", count=8),
        EmbodiedHardware("HPE Apollo 6500 Gen10 Plus server"),
        EmbodiedHardware("lab box", embodied_kg_per_unit=100, lifetime_years=4),
    )
    tracker, clock, _ = fake_tracker(tmp_path, embodied=hardware)
    with tracker:
        clock.advance(3600)
    footprint = tracker.report().to_dict()["footprint"]
    hours_life_bloom = 6 * 365.25 * 24 * 0.85
    expected = (8 * 150_000 + 2_500_000) / hours_life_bloom + 100_000 / (4 * 365.25 * 24)
    assert footprint["embodied_carbon_unamortised_g"] == 8 * 150_000 + 2_500_000 + 100_000
    assert footprint["embodied_carbon_amortised_g"] == pytest.approx(expected)
    assert footprint["total_carbon_g"] == pytest.approx(footprint["operational_carbon_g"] + expected)
    assert footprint["embodied"][0]["method"] == "estimate per A100 GPU (BLOOM paper)"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pue": 0.5}, "pue must be >= 1, got 0.5"),
        ({"interval_s": -1}, "interval_s must be > 0"),
        ({"location": "Atlantis"}, "unknown location 'Atlantis'"),
        ({"attribution": "gpu"}, "attribution must be 'machine' or 'process'"),
        ({"transport_factor": 0}, "transport_factor must be in (0, 1]"),
        ({"formats": ("pdf",)}, "formats must be among json"),
        ({"project_name": "a/b"}, "project_name must be"),
        ({"embodied": (EmbodiedHardware("Tesla T4"),)}, "the catalogue has no figure for 'T4'"),
        ({"datacentres": (Datacentre(), Datacentre())}, "at most one entry without phases"),
        ({"datacentres": (Datacentre(),), "pue": 1.2}, "datacentres must be used alone"),
        ({"colour": "red"}, "colour is not a TrackerConfig field, got 'red'"),
    ],
)
def test_bad_configuration_fails_at_construction(options, message):
    with pytest.raises(nn_tracker.NNTrackerError) as info:
        Tracker(**options)
    assert message in str(info.value)


def test_bad_phase_and_units():
    tracker = Tracker(intensity_g_per_kwh=1, write_report=False)
    with pytest.raises(ValidationError, match="phase must be"), tracker.phase("a/b"):
        pass
    with pytest.raises(ValidationError, match="count must be >= 0"):
        tracker.add_units(-1)


def test_sigterm_handler_is_restored_on_stop(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    tracker, _, _ = fake_tracker(tmp_path)
    with tracker:
        from nn_tracker.run import endings

        assert signal.getsignal(signal.SIGTERM) is endings._handle
    assert signal.getsignal(signal.SIGTERM) == before


def test_trackers_stopped_in_any_order_leave_the_program_s_handler(tmp_path):
    """Started A then B, stopped A then B (or B then A): the handler before A is back, never a stale one."""
    before = signal.getsignal(signal.SIGTERM)
    for order in ((0, 1), (1, 0)):
        trackers = [fake_tracker(tmp_path / f"{order}-{i}")[0].start() for i in range(2)]
        for i in order:
            trackers[i].stop()
        assert signal.getsignal(signal.SIGTERM) == before


def test_tracker_started_in_a_thread_installs_no_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    result = {}

    def run():
        tracker, clock, _ = fake_tracker(tmp_path)
        with tracker:
            result["handler"] = signal.getsignal(signal.SIGTERM)
            clock.advance(1)
        result["report"] = tracker.report()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert result["handler"] == before and result["report"].status == "completed"


def _script(body: str, tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_sigterm_writes_a_terminated_report_and_the_process_dies_by_the_signal(tmp_path):
    script = _script(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import nn_tracker
        tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="sig",
                                     interval_s=0.01)
        tracker.start()
        print("ready", flush=True)
        time.sleep(30)
    """,
        tmp_path,
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == -signal.SIGTERM
    data = json.loads((tmp_path / "nn_tracker-sig.json").read_text())
    assert data["status"] == "terminated"
    assert data["error"]["message"] == "SIGTERM received"
    assert data["sampler"]["ticks"] >= 1 and data["duration_s"] > 0.1


def test_sigterm_calls_the_previous_handler(tmp_path):
    script = _script(
        f"""
        import signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import nn_tracker
        signal.signal(signal.SIGTERM, lambda s, f: (print("previous handler ran", flush=True), sys.exit(3)))
        tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="chain")
        tracker.start()
        print("ready", flush=True)
        time.sleep(30)
    """,
        tmp_path,
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 3
    assert "previous handler ran" in process.stdout.read()
    data = json.loads((tmp_path / "nn_tracker-chain.json").read_text())
    assert data["status"] == "terminated"  # the program's handler ended it (sys.exit) because of SIGTERM
    assert data["error"]["message"] == "SIGTERM received"


SIGTERM_LOOP = """
import os, random, signal, sys, threading, time
sys.path.insert(0, {root!r})
import nn_tracker
op, runs, chained = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "chained"
received = []
def host_handler(signum, frame):  # the host's own handler: the process lives on
    received.append(signum)


if chained:
    signal.signal(signal.SIGTERM, host_handler)
random.seed(op)
for i in range(runs):
    tracker = nn_tracker.Tracker(output_dir={out!r}, intensity_g_per_kwh=100, run_id=f"{{op}}-{{i}}", interval_s=0.01,
                                 checkpoint_interval_s=None)
    tracker.start()
    threading.Timer(random.uniform(0.0, 0.03), os.kill, (os.getpid(), signal.SIGTERM)).start()
    deadline = time.monotonic() + 10
    while tracker.running and len(received) <= i and time.monotonic() < deadline:
        if op == "units":
            tracker.add_units(1)
        elif op == "phase":
            with tracker.phase("validation"):
                pass
        else:
            tracker.live()
    if chained:  # the program handled SIGTERM and works on: so does the run, until the program stops it
        assert tracker.running and len(received) == i + 1, f"run {{i}}: the run did not go on"
        report = tracker.stop()
        assert report.status == "completed" and any("SIGTERM came during the run" in n for n in report.notes)
    else:
        assert not tracker.running, f"run {{i}} was not stopped within 10 s"
        assert tracker.report().status == "terminated"
    assert signal.getsignal(signal.SIGTERM) == (host_handler if chained else signal.SIG_DFL)  # no handler kept
print("ok", len(received), flush=True)
"""


@pytest.mark.parametrize("op", ["units", "phase", "live"])
def test_sigterm_inside_add_units_a_phase_switch_or_live_never_deadlocks(tmp_path, op):
    """SIGTERM lands at random moments, often while the main thread holds one of the tracker's locks."""
    script = tmp_path / "loop.py"
    script.write_text(SIGTERM_LOOP.format(root=str(ROOT), out=str(tmp_path / "reports")))
    result = subprocess.run(
        [sys.executable, str(script), op, "40", "chained"], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0 and result.stdout.startswith("ok 40"), result.stderr[-2000:]
    statuses = {json.loads(p.read_text())["status"] for p in (tmp_path / "reports").glob("*.json")}
    assert statuses == {"completed"} and len(list((tmp_path / "reports").glob("*.json"))) == 40
    # with no handler of the host's, the process then ends by SIGTERM, as it would without nn_tracker
    killed = subprocess.run([sys.executable, str(script), op, "1", "default"], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGTERM
    # its run id was used by the first run of the chained loop: its report took the next free name
    assert json.loads((tmp_path / "reports" / f"nn_tracker-{op}-0-2.json").read_text())["status"] == "terminated"


def test_sigkill_leaves_the_last_checkpoint_as_valid_json(tmp_path):
    script = _script(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import nn_tracker
        tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="kill",
                                     interval_s=0.01, checkpoint_interval_s=1.0)
        tracker.start()
        print("ready", flush=True)
        while True:
            sum(range(10000))
    """,
        tmp_path,
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(2.3)  # two checkpoints (the floor of checkpoint_interval_s is 1 s)
    process.kill()
    process.wait(timeout=20)
    data = json.loads((tmp_path / "nn_tracker-kill.json").read_text())
    assert data["status"] == "running"
    assert data["duration_s"] > 0.9 and data["energy"]["it_kwh"] > 0
    # a kill during a write can leave a hidden temporary file, never a truncated report
    assert [p.name for p in tmp_path.glob("*.json")] == ["nn_tracker-kill.json"]


def test_forked_child_never_writes_the_parents_report(tmp_path):
    tracker, clock, _ = fake_tracker(tmp_path, run_id="parent")
    tracker.start()
    first = tracker.report_path.read_text()  # written at start
    pid = os.fork()
    if pid == 0:  # child: stopping must not write or raise
        try:
            tracker.stop()
            os._exit(0 if tracker.report_path.read_text() == first else 5)
        except BaseException:  # noqa: BLE001 - any failure in the child is the test failing
            os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    clock.advance(1)
    tracker.stop()
    assert json.loads(tracker.report_path.read_text())["status"] == "completed"


def test_two_trackers_in_one_process_are_independent(tmp_path):
    first, clock1, _ = fake_tracker(tmp_path / "a", power_w=10)
    second, clock2, _ = fake_tracker(tmp_path / "b", power_w=20)
    with first, second:
        clock1.advance(10)
        clock2.advance(5)
    assert first.report().energy_kwh == pytest.approx(100 / 3.6e6)
    assert second.report().energy_kwh == pytest.approx(100 / 3.6e6)


def test_start_twice_and_stop_without_start_are_clear_errors(tmp_path):
    tracker, _, _ = fake_tracker(tmp_path)
    with pytest.raises(nn_tracker.NNTrackerError, match="never started"):
        tracker.stop()
    for before_start in (tracker.report, tracker.live_report, tracker.ledger, lambda: tracker.figures(Ledger())):
        with pytest.raises(nn_tracker.NNTrackerError, match="never started"):
            before_start()
    with tracker, pytest.raises(nn_tracker.NNTrackerError, match="already started"):
        tracker.start()


def test_gpu_run_with_simulated_nvml_end_to_end(fake_nvml, tmp_path, intel_tree):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 300)
    clock = ManualClock()
    tracker = Tracker(
        clock=clock,
        background=False,
        output_dir=tmp_path,
        location="FR",
        pue=1.2,
        rapl_root=str(intel_tree),
        checkpoint_interval_s=None,
    )
    with tracker:
        for _ in range(100):
            clock.advance(0.1)
            fake_nvml.advance(0.1)
            tracker.sample()
    data = tracker.report().to_dict()
    gpu = next(d for d in data["devices"] if d["component"] == "gpu")
    assert gpu["energy_kwh"] == pytest.approx(3000 / 3.6e6)
    assert gpu["method"] == "counter"
    assert data["energy"]["by_component_kwh"]["cpu"] == 0.0  # RAPL counters did not move: measured 0, not missing
    item = data["footprint"]["embodied"][0]
    assert item["name"] == "NVIDIA A100-SXM4-80GB" and item["embodied_kg_per_unit"] == 150


def test_real_run_on_this_machine_gives_a_plausible_labelled_estimate(tmp_path, no_nvml):
    """Real clock, real sensors: a CPU-bound loop for ~1 s.

    No NVML (a simulated driver an earlier test loaded would answer to the driver's name): the CPU and
    RAM are estimated, read once a second (their figures are linear in time) and at the end.
    """
    with Tracker(output_dir=tmp_path, location="DE", interval_s=0.05) as tracker:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sum(range(1000))
    data = tracker.report().to_dict()
    cpu = next(d for d in data["devices"] if d["component"] == "cpu")
    assert cpu["method"] in ("estimate", "counter")
    tdp = cpu["details"].get("tdp_w", 1000)
    assert 0 < cpu["energy_kwh"] * 3.6e6 <= tdp * data["duration_s"] * 1.01
    assert data["sampler"]["ticks"] >= 1 and cpu["readings"] >= 1  # at least the final reading
    assert data["footprint"]["operational_carbon_g"] > 0
    assert json.loads(Path(tracker.report().paths[0]).read_text())["status"] == "completed"


def test_config_object_is_immutable_and_reusable(tmp_path):
    config = TrackerConfig(intensity_g_per_kwh=10, output_dir=tmp_path, checkpoint_interval_s=None)
    with pytest.raises(AttributeError):
        config.pue = 2  # type: ignore[misc]
    tracker = Tracker(config, clock=ManualClock(), background=False, sensors=sensor_set(ConstantPower()), pue=1.3)
    assert tracker.config.pue == 1.3 and config.pue is None


def test_a_slow_checkpoint_never_blocks_phase_switches_or_unit_counts(tmp_path, monkeypatch):
    """Writing a checkpoint (fsync on a slow filesystem) holds the tracker's state lock, not the phase lock."""
    from nn_tracker.report import writers

    release = threading.Event()
    original = writers.write

    def slow_write(*args, **kwargs):
        release.wait(10)  # a filesystem that takes its time
        return original(*args, **kwargs)

    tracker = Tracker(
        output_dir=tmp_path, intensity_g_per_kwh=100, sensors=sensor_set(ConstantPower()), checkpoint_interval_s=None
    )
    with tracker:
        monkeypatch.setattr(writers, "write", slow_write)
        writer = threading.Thread(target=tracker.checkpoint)
        writer.start()
        time.sleep(0.1)  # the checkpoint now holds the state lock, waiting on the disk
        started = time.monotonic()
        with tracker.phase("validation"):
            tracker.add_units(8)
        elapsed = time.monotonic() - started
        release.set()
        writer.join()
        monkeypatch.setattr(writers, "write", original)
    assert elapsed < 1.0  # not the 10 s the disk took
    assert tracker.report().to_dict()["phases"]["validation"]["units"] == {"sample": 8}


def test_distinct_phases_and_unit_kinds_are_bounded(tmp_path):
    from nn_tracker.run.phases import MAX_PHASES, MAX_UNIT_KINDS

    tracker, clock, _ = fake_tracker(tmp_path, write_report=False)
    with tracker:
        tracker.add_units(0, kind="query")
        with tracker.phase("querying"):
            for i in range(MAX_PHASES + 50):  # e.g. one phase per request id
                with tracker.phase(f"request-{i}"):
                    clock.advance(0.001)
                    tracker.add_units(1, kind=f"kind-{i}" if i < MAX_UNIT_KINDS + 5 else "query")
        started = time.perf_counter()
        data = tracker.report().to_dict()
        build_s = time.perf_counter() - started
    phases = data["phases"]
    assert len(phases) <= MAX_PHASES + 2 and "querying/other" in phases  # the root is kept: still querying
    named = sum(p.startswith("querying/request-") for p in phases)
    assert phases["querying/other"]["units"]["query"] == MAX_PHASES + 50 - named > 0  # every unit still counted
    assert phases["querying"]["inclusive_duration_s"] == pytest.approx((MAX_PHASES + 50) * 0.001)
    assert len(data["units"]) == MAX_UNIT_KINDS + 1 and data["units"]["other"]["count"] == 6  # kind-999...1004
    assert any("distinct phases" in n for n in data["notes"]) and any("kinds of units" in n for n in data["notes"])
    assert build_s < 30  # linear: quadratic building took minutes at this size


def test_auto_embodied_uses_whole_card_figures_only(tmp_path):
    from nn_tracker.sensors.base import SensorInfo

    h100 = ConstantPower("gpu:GPU-h100", power_w=500, name="NVIDIA H100 80GB HBM3")
    a100 = ConstantPower("gpu:GPU-a100", power_w=300, name="NVIDIA A100-SXM4-80GB")
    assert isinstance(h100.info, SensorInfo)
    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(h100, a100),
        write_report=False,
        intensity_g_per_kwh=100,
    )
    with tracker:
        clock.advance(3600)
    data = tracker.report().to_dict()
    items = {i["name"]: i for i in data["footprint"]["embodied"]}
    assert list(items) == ["NVIDIA A100-SXM4-80GB"] and items["NVIDIA A100-SXM4-80GB"]["scope"] == "unit"
    assert any("covers the chip's die alone" in n for n in data["notes"])
    with pytest.raises(ValidationError, match=r"embodied\[0\]\.scope must be 'die'"):
        Tracker(embodied=(EmbodiedHardware("H100 SXM", count=8),))
    die = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(h100),
        write_report=False,
        intensity_g_per_kwh=100,
        embodied=(EmbodiedHardware("H100 SXM", count=1, scope="die"),),
    )
    with die:
        clock.advance(3600)
    assert die.report().to_dict()["footprint"]["embodied"][0]["scope"] == "die"


def test_a_field_no_option_sets_is_refused_in_one_line():
    from nn_tracker.config import TrackerConfig, make_config

    with pytest.raises(ValidationError, match="resolved is not a TrackerConfig field"):
        make_config(TrackerConfig(), {"resolved": ()})
