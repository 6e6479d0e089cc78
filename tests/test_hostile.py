"""A bad day and an attacker: reads that block, FIFOs and devices where files should be, signals at bad moments.

Each test failed on the code before the fix it pins (issue 21).
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set
from hypothesis import given
from hypothesis import strategies as st

from nn_tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
BLOCK_US = 600e6  # ten minutes: a driver that does not answer


def block_nvml(fake_nvml):
    for function in (fake_nvml.COUNTER, fake_nvml.POWER_USAGE, fake_nvml.FIELD_INSTANT, fake_nvml.FIELD_ENERGY):
        fake_nvml.set_latency_us(function, BLOCK_US)


def test_a_gpu_whose_reads_block_is_lost_and_stop_returns_within_seconds(fake_nvml, tmp_path):
    fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-stuck", 300)
    fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-fine", 200)
    fake_nvml.set_realtime(1)
    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=100, interval_s=0.05, node_sensors=False).start()
    time.sleep(1.3)
    fake_nvml.set_latency_us(fake_nvml.FIELD_INSTANT, 0)
    block_nvml(fake_nvml)
    time.sleep(0.5)
    started = time.monotonic()
    report = tracker.stop()
    assert time.monotonic() - started < 8
    assert report.status == "completed"
    gpus = [d for d in report.devices if d.component == "gpu"]
    assert all(d.lost_at_s is not None for d in gpus)  # both ask the one blocked driver
    assert any("did not return within 2 s" in n for d in gpus for n in d.notes)
    assert all(d.energy_kwh and d.energy_kwh > 0 for d in gpus)  # what was measured before is kept
    assert json.loads(Path(report.paths[0]).read_text())["status"] == "completed"


def test_sigterm_ends_the_process_even_when_a_gpu_read_blocks(fake_gpu_env, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(f"""
        import ctypes, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import pynvml
        import nn_tracker
        tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100, run_id="stuck",
                                     interval_s=0.05, node_sensors=False)
        tracker.start()
        time.sleep(0.3)
        lib = pynvml.nvmlLib
        lib.fake_set_latency_us.argtypes = [ctypes.c_int, ctypes.c_double]
        for function in range(4):
            lib.fake_set_latency_us(function, {BLOCK_US})
        print("ready", flush=True)
        time.sleep(60)
    """)
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=fake_gpu_env)
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert time.monotonic() - started < 15
    assert json.loads((tmp_path / "nn_tracker-stuck.json").read_text())["status"] == "terminated"


def test_a_fifo_in_place_of_a_rapl_counter_never_blocks(intel_tree, tmp_path):
    energy = intel_tree / "intel-rapl:0" / "energy_uj"
    energy.unlink()
    os.mkfifo(energy)
    tracker = Tracker(
        output_dir=tmp_path, intensity_g_per_kwh=100, interval_s=0.05, gpus=False, rapl_root=str(intel_tree)
    )
    done = threading.Event()
    threading.Thread(target=lambda: (tracker.start(), time.sleep(0.2), tracker.stop(), done.set()), daemon=True).start()
    assert done.wait(10), "a FIFO blocked the tracker"
    assert tracker.report().status == "completed"


def test_stop_never_waits_for_a_checkpoint_that_waits_for_stop(tmp_path):
    """stop() joined the sampler while holding the lock the sampler's checkpoint needs: 5-s stalls."""

    class CheckpointsAtEveryTick(Tracker):
        def _on_tick(self, now_s):  # a checkpoint due at every tick: the sampler's thread takes the state lock
            with self._state_lock:
                time.sleep(0.001)

    class SlowRead(ConstantPower):
        def read_energy(self, now_s):  # the sampler's thread is in a tick most of the time
            time.sleep(0.008)
            return super().read_energy(now_s)

    worst = 0.0
    for i in range(8):
        tracker = CheckpointsAtEveryTick(
            output_dir=tmp_path / str(i), intensity_g_per_kwh=100, interval_s=0.01, sensors=sensor_set(SlowRead())
        ).start()
        time.sleep(0.1 + 0.0025 * i)  # stop at different moments of the sampler's cycle (about 20 ms)
        started = time.monotonic()
        tracker.stop()
        worst = max(worst, time.monotonic() - started)
    assert worst < 2.0, f"stop() took {worst:.1f} s"


# ----- true statuses -------------------------------------------------------------------------------------
def test_a_command_killed_by_a_real_time_signal_is_terminated_with_its_name(tmp_path):
    from test_run_and_serving import nn_tracker_run, only_report

    result = nn_tracker_run(tmp_path, "sh", "-c", "kill -40 $$")
    assert result.returncode == 128 + 40, result.stderr
    assert "Traceback" not in result.stderr and "ValueError" not in result.stderr
    data = only_report(tmp_path)
    rt = 40 - signal.SIGRTMIN
    assert data["status"] == "terminated" and data["error"]["message"] == f"killed by SIGRTMIN+{rt}"


def test_an_exception_whose_message_cannot_be_shown_still_gives_a_failed_report(tmp_path):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=100, sensors=sensor_set(ConstantPower()))
    try:
        with tracker:
            raise Unprintable
    except Unprintable:
        pass
    report = tracker.report()
    assert report.status == "failed" and report.error.message == "<Unprintable whose message cannot be shown>"
    assert json.loads(Path(report.paths[0]).read_text())["status"] == "failed"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -5.0, 1e9])
def test_an_implausible_power_sample_is_dropped_and_counted_and_the_report_stays_whole(tmp_path, bad):
    from nn_tracker import ManualClock

    class Glitchy(ConstantPower):
        has_power = True

        glitch = False

        def read_power(self, now_s):
            return bad if self.glitch else self.power_w

    sensor, clock = Glitchy(power_w=100.0), ManualClock()
    tracker = Tracker(
        clock=clock, background=False, sensors=sensor_set(sensor), output_dir=tmp_path, intensity_g_per_kwh=100
    )
    with tracker:
        for glitch in (False, True, False):
            sensor.glitch = glitch
            clock.advance(10)
            tracker.sample()
    report = tracker.report()
    assert not report.incomplete and report.status == "completed"
    (device,) = report.devices
    assert device.errors == 1 and "implausible power sample" in device.first_error
    assert device.peak_power_w == 100.0 and report.energy_kwh == pytest.approx(3000 / 3.6e6)


def test_track_measures_a_coroutine_and_generators_while_they_run(tmp_path):
    import asyncio

    from nn_tracker import track

    options = {"output_dir": str(tmp_path), "intensity_g_per_kwh": 100, "gpus": False}

    @track(**options)
    async def coroutine():
        await asyncio.sleep(0.3)
        return "done"

    @track(**options)
    def generator():
        for i in range(3):
            time.sleep(0.1)
            yield i

    @track(**options)
    async def async_generator():
        for i in range(3):
            await asyncio.sleep(0.1)
            yield i

    async def consume():
        return [i async for i in async_generator()]

    assert asyncio.run(coroutine()) == "done" and coroutine.last_report.duration_s >= 0.3
    assert list(generator()) == [0, 1, 2] and generator.last_report.duration_s >= 0.3
    assert asyncio.run(consume()) == [0, 1, 2] and async_generator.last_report.duration_s >= 0.3
    early = generator()
    next(early)
    early.close()  # closed before its end: as asked
    assert generator.last_report.status == "completed"


def test_a_long_bad_value_gives_a_short_one_line_error():
    from nn_tracker import ValidationError

    with pytest.raises(ValidationError) as caught:
        Tracker(project_name="x" * 120_000 + "\n")
    message = str(caught.value)
    assert len(message) < 700 and "\n" not in message and "more characters" in message


# ----- never destroy -------------------------------------------------------------------------------------
def cli(*args, cwd=None, timeout=30):
    return subprocess.run(
        [sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def a_report_file(tmp_path):
    tracker = Tracker(output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), run_id="r")
    with tracker:
        pass
    return tracker.report_path


@pytest.mark.skipif(os.geteuid() != 0, reason="only root could replace /dev/null")
def test_an_output_on_a_device_or_fifo_is_refused_never_replaced(tmp_path):
    report = a_report_file(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in ("/dev/null", str(fifo)):
        result = cli("report", str(report), "--format", "md", "-o", target)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "must be a regular file or a new name" in result.stderr
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()


def test_a_fifo_given_as_an_input_is_a_one_line_error_never_a_hang(tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    result = cli("report", str(fifo), timeout=20)
    assert result.returncode == 2 and "must be a regular file (not a FIFO, device or folder)" in result.stderr


def test_an_output_name_as_long_as_the_folder_allows_is_written(tmp_path):
    report = a_report_file(tmp_path)
    target = tmp_path / ("n" * 250 + ".md")
    result = cli("report", str(report), "--format", "md", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith("# Footprint")


def test_a_run_id_used_a_thousand_times_never_overwrites_the_first_report(tmp_path):
    from nn_tracker.report.files import claim

    first = claim(tmp_path / "run.json", "first")
    for n in range(2, 1000):
        (tmp_path / f"run-{n}.json").write_text("taken")
    extra = claim(tmp_path / "run.json", "the thousandth")
    assert first.read_text() == "first" and extra.read_text() == "the thousandth" and extra.name.startswith("run-")


def test_an_unterminated_last_csv_row_is_completed_not_deleted(tmp_path):
    from test_faults import report_for_csv

    from nn_tracker.report import codecarbon_csv

    path = tmp_path / "emissions.csv"
    codecarbon_csv.append(path, report_for_csv(tmp_path, "first"))
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # edited by hand: the last row lost its newline
    codecarbon_csv.append(path, report_for_csv(tmp_path, "second"))
    rows = path.read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[2] == "first" and rows[2].split(",")[2] == "second"
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(codecarbon_csv.COLUMNS))  # a file without any newline
    codecarbon_csv.append(header_only, report_for_csv(tmp_path, "third"))
    assert header_only.read_text().splitlines()[0] == ",".join(codecarbon_csv.COLUMNS)


def test_appending_to_a_csv_with_another_header_is_refused(tmp_path):
    from test_faults import report_for_csv

    from nn_tracker.report import codecarbon_csv

    path = tmp_path / "emissions.csv"
    path.write_text("name,age\nada,36\n")
    with pytest.raises(OSError, match=r"its header is not that of an emissions\.csv"):
        codecarbon_csv.append(path, report_for_csv(tmp_path, "x"))
    assert path.read_text() == "name,age\nada,36\n"


# ----- privacy and injection -------------------------------------------------------------------------------
HOSTILE = (
    "<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror=alert(1)> \x1b[31mred "
    "https://phish.example/login www.phish.example ![i](https://track.example/p.png) <https://a.example>"
)


def hostile_report(tmp_path, **options):
    tracker = Tracker(
        output_dir=tmp_path, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()), project_name="p", **options
    )
    with tracker:
        tracker.add_note(HOSTILE)
    return tracker.report()


def test_text_from_a_report_is_inert_in_markdown_the_model_card_csv_and_terminal_tables(tmp_path):
    import cmarkgfm

    from nn_tracker.report import compare, writers

    report = hostile_report(tmp_path)
    markdown = writers.render(report, "md")
    assert not re.search(r"(?<!\\)[<>\[\]]", markdown.split("\n", 3)[3])  # no bare markup in the body
    assert "\\<script\\>" in markdown and "\\[x\\](javascript" in markdown  # shown, as text
    html = cmarkgfm.github_flavored_markdown_to_html(markdown)  # GitHub's own renderer (cmark-gfm)
    assert not re.search(r"<(script|img|a)\b", html), html
    card = writers.render(report, "model-card")
    assert "<" not in card and "\x1b" not in card
    row = writers.render(report, "csv")
    assert "\x1b" not in row
    table = compare.render([("a", report), ("b", report)], "table")
    assert "\x1b" not in table


def test_a_report_names_files_without_their_folders_unless_identity_is_asked(tmp_path):
    secret = tmp_path / "home-of-ada" / "private"
    secret.mkdir(parents=True)
    for identity in (False, True):
        tracker = Tracker(
            output_dir=tmp_path / str(identity),
            intensity_g_per_kwh=1,
            sensors=sensor_set(ConstantPower()),
            identity=identity,
        )
        try:
            with tracker:
                open(secret / "data.csv")  # noqa: SIM115 - raises
        except FileNotFoundError:
            pass
        message = tracker.report().error.message
        assert "data.csv" in message and (str(secret) in message) == identity


def test_a_config_found_in_the_working_folder_is_announced(tmp_path):
    (tmp_path / "nn-tracker.yml").write_text("intensity_g_per_kwh: 100\n")
    result = cli("run", "--output-dir", str(tmp_path / "r"), "--", sys.executable, "-c", "pass", cwd=tmp_path)
    assert result.returncode == 0 and "using the options of ./nn-tracker.yml" in result.stderr


def test_errors_never_repeat_what_a_file_given_by_mistake_holds(tmp_path):
    secret = tmp_path / "shadow"
    for text in ("password: hunter2-secret\n", "key: [hunter2-secret\n"):
        secret.write_text(text)
        result = cli("run", "--config", str(secret), "--", sys.executable, "-c", "pass")
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "hunter2" not in result.stderr


# ----- bounded and honest inputs --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--lifetime-years", "nan"], "lifetime_years must be finite"), (["--utilisation", "7"], "utilisation")],
)
def test_estimate_refuses_a_life_or_utilisation_it_would_not_use(flags, message):
    result = cli("estimate", "--hardware", "Tesla V100-SXM2-32GB", "--count", "8", "--hours", "10", *flags)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_status_line_or_a_period_cannot_flood_the_disk():
    from nn_tracker import ValidationError
    from nn_tracker.serving import ServingTracker

    with pytest.raises(ValidationError, match=r"period_s must be at least 0\.1 s"):
        ServingTracker(period_s=1e-6)
    result = cli("run", "--status-every", "1e-9", "--", sys.executable, "-c", "pass")
    assert result.returncode == 2 and "status_every must be at least 0.1 s" in result.stderr


def test_a_report_without_datacentres_is_a_one_line_error(tmp_path):
    data = json.loads(a_report_file(tmp_path).read_text())
    data.update(schema_version=2, datacentres=[])
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    for args in (["report", str(path)], ["compare", str(path), str(path)]):
        result = cli(*args)
        assert result.returncode == 2 and "datacentres must be a list with at least 1 item(s)" in result.stderr


def test_output_errors_are_one_line_and_never_change_a_command_s_exit_status(tmp_path):
    with open("/dev/full", "w") as full:
        listed = subprocess.run(
            [sys.executable, "-m", "nn_tracker", "list", "locations"], stdout=full, stderr=subprocess.PIPE, text=True
        )
        assert listed.returncode == 2 and "Traceback" not in listed.stderr
        assert listed.stderr.strip().endswith("cannot write the output (No space left on device)")
        ran = subprocess.run(
            [sys.executable, "-m", "nn_tracker", "run", "--output-dir", str(tmp_path), "--", "sh", "-c", "exit 3"],
            stderr=full,
            timeout=60,
        )
    assert ran.returncode == 3


def test_the_prometheus_endpoint_bounds_its_connections_and_leaves_nothing_after_stop(tmp_path):
    import socket
    import urllib.request

    pytest.importorskip("prometheus_client")
    from nn_tracker.report.prometheus import MAX_CONNECTIONS
    from nn_tracker.serving import ServingTracker

    before = threading.active_count()
    serving = ServingTracker(
        prometheus_port=0,
        prometheus_addr="127.0.0.1",
        sensors=sensor_set(ConstantPower()),
        write_report=False,
        intensity_g_per_kwh=1,
    ).start()
    host, port = serving.prometheus_address
    idle = [socket.create_connection((host, port)) for _ in range(100)]  # connect, never send a request
    time.sleep(0.5)
    assert threading.active_count() - before <= MAX_CONNECTIONS + 8  # not one thread per client
    for sock in idle:
        sock.close()  # the slots free up: a scraper gets through again
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
                assert b"nn_tracker_it_energy_joules_total" in response.read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the endpoint never served again"
            time.sleep(0.1)
    lingering = [socket.create_connection((host, port)) for _ in range(5)]  # open while the tracker stops
    serving.stop()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before, [t.name for t in threading.enumerate()]
    for sock in lingering:
        sock.close()


# ----- processes ---------------------------------------------------------------------------------------------
def test_what_the_command_left_running_ends_with_it(tmp_path):
    """A command that starts a grandchild in the background and exits: the grandchild does not run on."""
    from test_run_and_serving import nn_tracker_run, only_report

    marker = tmp_path / "still-running"
    grandchild = f"import time; time.sleep(3); open({str(marker)!r}, 'w').write('yes')"
    script = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {grandchild!r}])"
    result = nn_tracker_run(tmp_path, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    time.sleep(4)
    assert not marker.exists()
    assert any("1 process(es) the command left running were ended" in n for n in only_report(tmp_path)["notes"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is Linux's")
def test_what_the_command_started_never_outlives_a_killed_nn_tracker(tmp_path):
    """SIGKILL to nn-tracker: the command's children, even one in a session of its own, end too."""
    from test_run_and_serving import run_argv

    markers = [tmp_path / "child-ran-on", tmp_path / "daemon-ran-on"]
    survivor = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(4); "
    survivor += "open(sys.argv[1], 'w')"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {survivor!r}, {str(markers[0])!r}])
        subprocess.Popen([sys.executable, "-c", {survivor!r}, {str(markers[1])!r}], start_new_session=True)
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen(run_argv(tmp_path, sys.executable, "-c", script), stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.kill()
    process.wait(timeout=10)
    time.sleep(6)  # SIGTERM is ignored: SIGKILL follows after the 2-s grace, before the markers are due
    assert not [marker.name for marker in markers if marker.exists()]


@pytest.mark.parametrize("delay_s", [0.05, 0.15, 0.3, 0.6])
def test_ctrl_c_early_is_never_dropped(tmp_path, delay_s):
    """SIGINT in nn-tracker's first fraction of a second: it ends before the command, or the command gets it."""
    from test_run_and_serving import run_argv

    finished = tmp_path / "finished"
    script = f"import time; time.sleep(3); open({str(finished)!r}, 'w').write('yes')"
    process = subprocess.Popen(run_argv(tmp_path, sys.executable, "-c", script), stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert not finished.exists(), "the command ran to its end: Ctrl-C was dropped"
    # 130 or -2; during the interpreter's own start-up (before any of nn-tracker's code) it may fail otherwise
    assert process.returncode != 0, stderr


def test_a_signal_in_the_window_before_the_command_exists_is_delivered_once_it_does(tmp_path):
    """The window from nn-tracker's handlers to the command's start is widened to 0.5 s to land in it surely."""
    command = "import time; time.sleep(10)"
    wrapper = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from nn_tracker import cli
        from nn_tracker.run import runner
        def slow_window():
            print("window", flush=True)
            time.sleep(0.5)
        runner._become_subreaper = slow_window
        sys.exit(cli.main(["run", "--no-status", "--output-dir", {str(tmp_path)!r}, "--", sys.executable, "-c",
                           {command!r}]))
    """)
    process = subprocess.Popen([sys.executable, "-c", wrapper], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "window"
    process.send_signal(signal.SIGUSR1)  # forwarded to a command that does not exist yet
    assert process.wait(timeout=30) == 128 + signal.SIGUSR1  # delivered at its start: it ended by it
    (report,) = tmp_path.glob("*.json")
    assert json.loads(report.read_text())["error"]["message"] == "killed by SIGUSR1"


# ----- escaping the host --------------------------------------------------------------------------------------
def test_a_rapl_zone_name_or_cgroup_file_that_is_not_utf8_never_reaches_the_program(intel_tree, tmp_path):
    from nn_tracker.sensors.ram_model import cgroup_memory_limit_bytes
    from nn_tracker.sensors.rapl import discover_rapl

    (intel_tree / "intel-rapl:0" / "name").write_bytes(b"package-\xff\xfe\n")
    found = discover_rapl(intel_tree)  # the zone is not recognised: no exception
    assert all(s.info.device_id != "cpu:package-0" or s for s in found.sensors)
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_bytes(b"0::/\xff\xfe\n")
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "memory.max").write_bytes(b"\xff\n")
    assert cgroup_memory_limit_bytes(tmp_path / "cg", tmp_path / "proc") is None


def test_a_node_identity_file_that_never_ends_is_not_read_to_its_end(tmp_path, monkeypatch):
    from nn_tracker.core.node import hostname, node_id

    monkeypatch.delenv("NN_TRACKER_NODE_ID", raising=False)
    boot = tmp_path / "proc" / "sys" / "kernel" / "random"
    boot.mkdir(parents=True)
    (boot / "boot_id").symlink_to("/dev/zero")  # a device: refused at once, never read
    assert node_id(tmp_path / "proc", tmp_path / "etc") == f"host:{hostname()}"


def test_a_yaml_alias_shared_by_two_if_nodes_gives_each_its_own_outputs():
    from nn_tracker.core import inputs
    from nn_tracker.integrations.impact_framework import run_manifest

    text = textwrap.dedent("""
        initialize:
          plugins:
            mul: {path: builtin, method: Multiply, config: {input-parameters: [a, b], output-parameter: c}}
        tree:
          children:
            one:
              pipeline: {compute: [mul]}
              defaults: {b: 3}
              inputs: &shared
                - {timestamp: '2024-01-01T00:00:00Z', duration: 1, a: 2}
            two:
              pipeline: {compute: [mul]}
              defaults: {b: 10}
              inputs: *shared
    """)
    children = run_manifest(inputs.load_yaml(text, "manifest"))["tree"]["children"]
    assert children["one"]["outputs"][0]["c"] == 6 and children["two"]["outputs"][0]["c"] == 20


def test_no_table_prints_inf_or_nan():
    from nn_tracker.report import units

    assert units.carbon(float("inf")) == units.energy(float("nan")) == "beyond float range"


def test_an_implausible_power_beside_a_good_energy_reading_keeps_the_energy(tmp_path):
    from nn_tracker import ManualClock
    from nn_tracker.sensors.base import Measurement

    class OddPower(ConstantPower):
        def read_energy(self, now_s):
            reading = super().read_energy(now_s)
            return Measurement(reading.energy_j, float("nan"))

    clock = ManualClock()
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(OddPower(power_w=100.0)),
        write_report=False,
        intensity_g_per_kwh=1,
    )
    with tracker:
        clock.advance(10)
        tracker.sample()
    (device,) = tracker.report().devices
    assert device.energy_kwh == pytest.approx(1000 / 3.6e6) and device.gap_s == 0
    assert device.errors >= 1 and "implausible power sample" in device.first_error


# ----- what the second adversarial review found (each failed before its fix) ---------------------------------
def test_a_file_that_is_not_an_emissions_csv_is_left_exactly_as_it_was(tmp_path):
    from test_faults import report_for_csv

    from nn_tracker.report import codecarbon_csv

    for name, content in (("scores.csv", b"id,name,score\n1,alice,10\n2,bob"), ("notes.txt", b"a note")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(OSError, match="not that of an emissions"):
            codecarbon_csv.append(path, report_for_csv(tmp_path, "x"))
        assert path.read_bytes() == content


def test_stop_re_entered_from_the_same_thread_never_waits_for_itself(tmp_path):
    """A program's SIGTERM handler calling stop() while stop() runs (here: from the last reading)."""
    from nn_tracker import ManualClock

    inner = []

    class Reentering(ConstantPower):
        def read_energy(self, now_s):
            if tracker._stopping and not inner:
                inner.append(tracker.stop())
            return super().read_energy(now_s)

    tracker = Tracker(
        clock=ManualClock(),
        background=False,
        sensors=sensor_set(Reentering()),
        write_report=False,
        intensity_g_per_kwh=1,
    )
    with tracker:
        pass
    assert inner and inner[0].status == "running" and tracker.report().status == "completed"


def test_closed_standard_streams_never_kill_the_command_nor_print_a_traceback(tmp_path):
    marker = tmp_path / "marker"
    script = f"{sys.executable} -m nn_tracker run --output-dir {tmp_path} -- sh -c 'touch {marker}; exit 5' 2>&-"
    assert subprocess.run(["sh", "-c", script], timeout=60).returncode == 5 and marker.exists()
    report = a_report_file(tmp_path / "r")
    closed = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m nn_tracker report {report} --format md >&-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert closed.returncode == 2 and "Traceback" not in closed.stderr and len(closed.stderr.splitlines()) == 1


def test_sigterm_ends_a_forked_child_at_once_and_a_tracker_started_later_is_handled(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from fakes import ConstantPower, sensor_set
        import nn_tracker
        def tracker():
            return nn_tracker.Tracker(write_report=False, intensity_g_per_kwh=1, sensors=sensor_set(ConstantPower()))
        a = tracker().start()
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        time.sleep(0.5)  # a worker that has started (CPython drops a signal landing during the fork itself)
        started = time.monotonic()
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
        print(f"child {{time.monotonic() - started:.1f}}", flush=True)
        signal.signal(signal.SIGTERM, lambda *a: None)  # the program's own, then gone again
        a.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        b = tracker().start()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(15)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGTERM, result.stderr[-2000:]
    assert float(result.stdout.split()[1]) < 3  # the child had no run to write: it ended at once


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("sys.exit(3)", "failed", "exit status 3"),
        ("sys.exit(0)", "completed", None),
        ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)", "terminated", "SIGTERM received"),
    ],
)
def test_statuses_say_how_the_run_ended(tmp_path, body, status, message):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import nn_tracker
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # the program's own: it ends the program
        with nn_tracker.Tracker(output_dir={str(tmp_path)!r}, run_id="s", intensity_g_per_kwh=1, gpus=False):
            {body}
    """)
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    data = json.loads((tmp_path / "nn_tracker-s.json").read_text())
    assert data["status"] == status and (data["error"] or {}).get("message") == message


def test_a_config_value_is_never_repeated_and_the_file_is_named(tmp_path):
    config = tmp_path / "nn-tracker.yml"
    config.write_text("pue: SECRET_PUE\n")
    result = cli("run", "--", sys.executable, "-c", "pass", cwd=tmp_path)
    assert result.returncode == 2 and "SECRET" not in result.stderr and "nn-tracker.yml: pue" in result.stderr


def test_names_from_a_user_catalogue_reach_the_terminal_without_escapes(tmp_path):
    catalogue = tmp_path / "cat.yml"
    catalogue.write_text(
        'hardware:\n  - name: "Evil\\e[31mGPU\\a"\n    kind: gpu\n    tdp_w: 300\n    source: "x\\e[2Jy"\n'
    )
    for args in (
        ["list", "hardware", "--catalogue", str(catalogue)],
        ["estimate", "--catalogue", str(catalogue), "--hardware", "Evil\x1b[31mGPU\x07", "--hours", "1"],
    ):
        result = cli(*args)
        assert "Evil" in result.stdout and "\x1b" not in result.stdout and "\x07" not in result.stdout, result.stderr


def test_file_urls_and_folders_are_cut_from_messages():
    from nn_tracker.core.errors import without_folders

    assert without_folders("read file:///home/ada/x.csv and /srv/ada/y.csv") == "read x.csv and y.csv"
    assert without_folders("</b> and https://example.org/a/b") == "</b> and https://example.org/a/b"
    spaced = "[Errno 2] No such file or directory: '/Users/Ada Lovelace/My Data/grid 2024.csv'"
    assert without_folders(spaced) == "[Errno 2] No such file or directory: 'grid 2024.csv'"
    assert without_folders("read /Users/Ada Lovelace/x.csv (see the docs)") == "read x.csv (see the docs)"
    assert without_folders("ratio 3/4 of /a") == "ratio 3/4 of a"


def test_a_helper_process_that_cannot_start_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from nn_tracker.run import runner

    monkeypatch.setattr(runner.sys, "executable", str(tmp_path / "no-python"))
    code = runner.run_command(["true"], {"output_dir": str(tmp_path)}, status_line=False)
    assert code == 126 and "cannot start its helper process" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))  # nothing was tracked, nothing half-written


@given(st.text(max_size=70) | st.from_regex(r"[A-Za-z0-9_.-]{1,70}\n?", fullmatch=True), st.integers(0, 70))
def test_a_name_is_only_letters_digits_and_three_marks(text, most):
    """Names go into file names, CSV rows and Prometheus labels: nothing else passes, a trailing newline neither."""
    from nn_tracker.core.validation import is_name

    assert is_name(text, most) == (re.fullmatch(r"[A-Za-z0-9_.-]+", text, re.ASCII) is not None and len(text) <= most)


@pytest.mark.parametrize("field", ["project_name", "run_id", "phase"])
def test_a_name_with_a_trailing_newline_is_refused(tmp_path, field):
    from nn_tracker.core.errors import ValidationError

    with pytest.raises(ValidationError, match=f"{field} .*must be 1-"):
        if field == "phase":
            with Tracker(output_dir=tmp_path, location="FR", sensors=sensor_set(ConstantPower())) as tracker:
                tracker.phase("training\n").__enter__()
        else:
            Tracker(output_dir=tmp_path, **{field: "run\n"})
