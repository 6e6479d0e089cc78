"""`nn-tracker run -- CMD` with real subprocesses, and serving mode."""

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

from nn_tracker import ManualClock
from nn_tracker.serving import ServingTracker


def run_argv(tmp_path, *command, options=()):
    """``nn-tracker run`` of ``command``, reports in ``tmp_path/reports``."""
    return [
        sys.executable,
        "-m",
        "nn_tracker",
        "run",
        "--output-dir",
        str(tmp_path / "reports"),
        "--intensity",
        "300",
        *options,
        "--",
        *command,
    ]


def nn_tracker_run(tmp_path, *command, options=(), **kwargs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    args = run_argv(tmp_path, *command, options=("--interval", "0.05", *options))
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path, **kwargs)


def only_report(tmp_path):
    reports = list((tmp_path / "reports").glob("*.json"))
    assert len(reports) == 1, reports
    return json.loads(reports[0].read_text())


def test_exit_code_is_passed_through_and_the_report_says_failed(tmp_path):
    result = nn_tracker_run(tmp_path, sys.executable, "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3
    data = only_report(tmp_path)
    assert data["status"] == "failed" and data["error"]["message"] == "exit status 3"
    assert "\r" not in result.stderr  # not a terminal: no animated status line
    assert "the command failed (exit status 3)" in result.stderr and "nn-tracker: wrote " in result.stderr


def test_success_is_completed_and_children_are_counted(tmp_path):
    busy = textwrap.dedent("""
        import subprocess, sys
        code = "import time\\nt = time.time()\\nwhile time.time() - t < 1.5: pass"
        subprocess.run([sys.executable, "-c", code], check=True)
    """)
    idle = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(1.5)'], check=True)"
    assert nn_tracker_run(tmp_path / "busy", sys.executable, "-c", busy).returncode == 0
    assert nn_tracker_run(tmp_path / "idle", sys.executable, "-c", idle).returncode == 0
    busy_data, idle_data = only_report(tmp_path / "busy"), only_report(tmp_path / "idle")
    assert busy_data["status"] == idle_data["status"] == "completed"
    cpu = next(d for d in busy_data["devices"] if d["component"] == "cpu")
    assert cpu["details"]["attribution"] == "process"
    busy_j = busy_data["energy"]["by_component_kwh"]["cpu"] * 3.6e6
    idle_j = idle_data["energy"]["by_component_kwh"]["cpu"] * 3.6e6
    tdp_w = cpu["details"]["tdp_w"]
    # the grandchild burnt ~1.5 s of one CPU: at least half of its share of the TDP must show
    assert busy_j >= 0.5 * tdp_w * 1.5 / cpu["details"]["logical_cpus"]
    assert busy_j > 3 * idle_j


def test_death_by_signal_is_reported_as_the_shell_would(tmp_path):
    result = nn_tracker_run(tmp_path, sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert result.returncode == 128 + signal.SIGKILL
    data = only_report(tmp_path)
    assert data["status"] == "terminated" and data["error"]["message"] == "killed by SIGKILL"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_to_the_command(tmp_path, signum):
    script = textwrap.dedent(f"""
        import signal, sys, time
        def handler(n, f):
            open({str(tmp_path / "got")!r}, 'w').write(str(n))
            sys.exit(7)
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        print('ready', flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen(
        run_argv(tmp_path, sys.executable, "-c", script),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signum)
    assert process.wait(timeout=60) == 7
    assert (tmp_path / "got").read_text() == str(int(signum))
    assert only_report(tmp_path)["status"] == "failed"


def test_config_file_supplies_defaults_and_flags_override(tmp_path):
    (tmp_path / "nn-tracker.yml").write_text("location: FR\nproject_name: from-file\nformats: [json, md]\n")
    assert (
        nn_tracker_run(tmp_path, sys.executable, "-c", "pass", options=("--project-name", "from-flag")).returncode == 0
    )
    data = only_report(tmp_path)
    assert data["project_name"] == "from-flag"
    assert data["datacentres"][0]["intensity_g_per_kwh"] == 300  # --intensity given by the helper wins
    assert list((tmp_path / "reports").glob("from-flag-*.md"))


@pytest.mark.parametrize(
    ("config", "args", "message"),
    [
        ("colour: red\n", (), "nn-tracker.yml: colour is not a tracker option"),
        ("pue: 0.5\n", (), "nn-tracker.yml: pue must be >= 1, got '(its value, not shown)'"),
        ("", (), "command must be given after --"),
    ],
)
def test_run_bad_input_is_one_line_exit_2(tmp_path, config, args, message):
    (tmp_path / "nn-tracker.yml").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "run", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "nn_tracker_reports").exists()  # nothing half-written


def test_serving_periods_per_query_and_bounded_memory(tmp_path):
    clock = ManualClock()
    serving = ServingTracker(
        period_s=3600,
        clock=clock,
        background=False,
        output_dir=tmp_path,
        run_id="svc",
        sensors=sensor_set(ConstantPower(power_w=500)),
        intensity_g_per_kwh=100,
        checkpoint_interval_s=None,
        timeline_points=100,
    )
    with serving:
        for hour in range(48):
            for _ in range(60):
                clock.advance(60)
                serving.tracker.sample()
                serving.count(10 * (1 + hour % 2))
            record = serving.close_period()
            assert record["it_energy_kwh"] == pytest.approx(0.5)
            assert record["carbon_g_per_query"] == pytest.approx(50 / (600 * (1 + hour % 2)))
        assert len(serving.tracker._sampler.timeline.points) <= 100
    lines = (tmp_path / "nn_tracker-svc.periods.jsonl").read_text().splitlines()
    assert len(lines) == 48 and json.loads(lines[-1])["period"] == 47
    final = json.loads((tmp_path / "nn_tracker-svc.json").read_text())
    assert final["status"] == "completed" and final["units"]["query"]["count"] == 48 * 600 * 1.5


def test_serving_counters_from_many_threads(tmp_path):
    import threading

    serving = ServingTracker(
        period_s=3600,
        clock=ManualClock(),
        background=False,
        write_report=False,
        sensors=sensor_set(ConstantPower()),
        intensity_g_per_kwh=1,
    )
    with serving:
        threads = [threading.Thread(target=lambda: [serving.count() for _ in range(5000)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert serving.close_period()["query_count"] == 40_000


def test_serving_background_timer_writes_periods(tmp_path):
    serving = ServingTracker(
        period_s=0.2,
        output_dir=tmp_path,
        run_id="bg",
        intensity_g_per_kwh=1,
        checkpoint_interval_s=None,
        interval_s=0.05,
    )
    with serving:
        time.sleep(0.9)
    lines = Path(tmp_path / "nn_tracker-bg.periods.jsonl").read_text().splitlines()
    assert len(lines) >= 3
    assert os.path.exists(tmp_path / "nn_tracker-bg.json")


def test_status_line_shows_elapsed_power_energy_and_carbon(tmp_path):
    import io
    import threading

    from nn_tracker import Tracker
    from nn_tracker.run.runner import _status_line

    tracker = Tracker(
        output_dir=tmp_path,
        intensity_g_per_kwh=100,
        sensors=sensor_set(ConstantPower(power_w=250)),
        checkpoint_interval_s=None,
    )
    stream, stop = io.StringIO(), threading.Event()
    with tracker:
        display = threading.Thread(target=_status_line, args=(tracker, stop, stream, 0.5))
        display.start()
        time.sleep(1.3)
        stop.set()
        display.join()
    lines = stream.getvalue().splitlines(keepends=True)
    assert len(lines) == 2  # one whole line every 0.5 s
    for line in lines:
        assert line.startswith("[nn-tracker] ") and "250 W" in line and "gCO2e" in line and line.endswith("\n")
        assert "\r" not in line


GRACEFUL = """
import signal, sys, time
print("ready", flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:  # Lightning's first Ctrl-C: a graceful stop that takes a while
    print("cleanup start", flush=True)
    time.sleep(0.5)
    print("cleanup done", flush=True)
"""


def run_in_a_terminal(tmp_path, script: str, keys: bytes = b"", signum: int = 0) -> tuple[int, str]:
    """``nn-tracker run -- python script`` in a pseudo-terminal; once the script is ready, type ``keys``
    or send nn-tracker alone ``signum``."""
    import pty

    args = [
        sys.executable,
        "-m",
        "nn_tracker",
        "run",
        "--no-status",
        "--output-dir",
        str(tmp_path / "reports"),
        "--intensity",
        "300",
        "--",
        sys.executable,
        "-c",
        script,
    ]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own whose terminal is the pty, in the foreground
        os.execv(sys.executable, args)
    output = b""
    deadline = time.monotonic() + 60
    typed = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the other side closed: everything was read
            break
        if not chunk:
            break
        output += chunk
        if not typed and b"ready" in output:
            time.sleep(0.3)
            if signum:
                os.kill(pid, signum)
            else:
                os.write(fd, keys)
            typed = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_one_ctrl_c_in_a_terminal_reaches_the_command_once(tmp_path):
    for attempt in range(3):
        code, output = run_in_a_terminal(tmp_path / str(attempt), GRACEFUL, b"\x03")
        assert "cleanup start" in output and "cleanup done" in output, output  # not cut by a second SIGINT
        assert code == 0, output
        assert only_report(tmp_path / str(attempt))["status"] == "completed"


@pytest.mark.skipif(not hasattr(signal, "sigtimedwait"), reason="who sent a signal is known through sigtimedwait")
def test_kill_int_to_nn_tracker_alone_in_the_terminal_s_foreground_is_forwarded(tmp_path):
    code, output = run_in_a_terminal(tmp_path, GRACEFUL, signum=signal.SIGINT)
    assert "cleanup start" in output and "cleanup done" in output, output  # the command got it, once
    assert code == 0, output
    assert only_report(tmp_path)["status"] == "completed"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT])
def test_signals_sent_to_nn_tracker_alone_are_forwarded_once_and_it_keeps_tracking(tmp_path, signum):
    script = textwrap.dedent(f"""
        import signal, sys, time
        got = []
        signal.signal({int(signum)}, lambda n, f: got.append(n))
        print("ready", flush=True)
        time.sleep(1.5)
        open({str(tmp_path / "got")!r}, "w").write(str(got))
    """)
    process = subprocess.Popen(
        run_argv(tmp_path, sys.executable, "-c", script),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal
    )
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signum)
    assert process.wait(timeout=60) == 0
    assert (tmp_path / "got").read_text() == str([int(signum)])  # exactly once
    assert only_report(tmp_path)["status"] == "completed"  # nn-tracker was not killed by it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_command_never_outlives_a_killed_nn_tracker(tmp_path):
    script = textwrap.dedent(f"""
        import signal, sys, time
        def bye(n, f):
            open({str(tmp_path / "terminated")!r}, "w").write("1")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen(
        run_argv(tmp_path, sys.executable, "-c", script),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not (tmp_path / "terminated").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "terminated").exists()  # the command got SIGTERM when nn-tracker died
