"""The command line: output, exit codes, one-line errors with no traceback."""

import json
import os
import subprocess
import sys

import pytest

from nn_tracker.cli import build_parser, main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=60)


def test_estimate_json_gpt3(capsys):
    assert (
        main(
            [
                "estimate",
                "--hardware",
                "Tesla V100-SXM2-32GB",
                "--power-w",
                "330",
                "--count",
                "10000",
                "--days",
                "14.8",
                "--pue",
                "1.1",
                "--intensity",
                "429",
                "--format",
                "json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["energy_kwh"] == pytest.approx(1_287_000, rel=0.01)
    assert data["operational_carbon_g"] == pytest.approx(552e6, rel=0.01)
    assert data["inputs"]["hours"]["value"] == pytest.approx(355.2)


def test_estimate_table_echoes_inputs_and_sources(capsys):
    assert main(["estimate", "--hardware", "T4", "--hours", "5", "--location", "FR"]) == 0
    out = capsys.readouterr().out
    assert "energy" in out and "0.350 kWh" in out
    assert "[catalogue: 56.039 gCO2e/kWh for France (FRA), 2023" in out
    assert "Note: PUE assumed 1.0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["estimate", "--hours", "1", "--power-w", "100", "--pue", "0.5"],
            "nn-tracker: error: pue must be >= 1, got 0.5",
        ),
        (["estimate", "--hours", "abc"], "argument --hours: invalid float value: 'abc'"),
        (["estimate", "--hours", "1", "--power-w", "100", "--location", "Narnia"], "unknown location 'Narnia'"),
        (["estimate", "--hours", "nan", "--power-w", "100"], "hours must be finite, got nan"),
        (["estimate", "--days", "-1", "--power-w", "100"], "days must be >= 0, got -1.0"),
        (["estimate", "--power-w", "100"], "one of the arguments --hours --days is required"),
        (
            ["estimate", "--hours", "1", "--power-w", "1", "--transport-factor", "0"],
            "transport_factor must be in (0, 1]",
        ),
        (["list", "gpus"], "argument what: invalid choice: 'gpus'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_list_locations_and_hardware_json(capsys):
    assert main(["list", "locations", "--format", "json"]) == 0
    codes = {row["code"] for row in json.loads(capsys.readouterr().out)}
    assert {"FRA", "US-CA", "WORLD", "aws:us-east-1"} <= codes
    assert main(["list", "hardware"]) == 0
    assert "A100 SXM4 80 GB\tgpu\t400.0\t150.0" in capsys.readouterr().out


def test_catalogue_override_from_cli(tmp_path, capsys):
    path = tmp_path / "cat.yml"
    path.write_text("locations:\n  - {code: LAB, intensity_g_per_kwh: 10, source: our meter}\n")
    assert (
        main(
            [
                "estimate",
                "--hours",
                "10",
                "--power-w",
                "100",
                "--location",
                "lab",
                "--catalogue",
                str(path),
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["operational_carbon_g"] == pytest.approx(10.0)


def test_console_script_is_installed():
    import shutil

    exe = shutil.which("nn-tracker") or str(__import__("pathlib").Path(sys.executable).with_name("nn-tracker"))
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "estimate" in result.stdout


def test_sensors_on_this_machine_explains_the_fallbacks(tmp_path):
    result = run("sensors", "--format", "json", "--rapl-root", str(tmp_path / "none"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    cpu = next(s for s in data["sensors"] if s["component"] == "cpu")
    assert cpu["method"] == "estimate" and "tdp_source" in cpu["details"]
    assert any("no RAPL interface" in p for p in data["rapl"]["problems"])


def test_sensors_lists_gpus_through_the_simulated_driver(fake_nvml_build, intel_tree):
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=str(fake_nvml_build.parent),
        FAKE_NVML_DEVICES="NVIDIA A100-SXM4-80GB|GPU-aaaa|250;Tesla T4|GPU-bbbb|70",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "sensors", "--rapl-root", str(intel_tree)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "NVML: found, driver 550.54.15" in result.stdout
    assert "gpu:GPU-aaaa" in result.stdout and "power_source: instant-power field 186" in result.stdout
    assert "readable package-0, package-0/dram, package-1, package-1/dram" in result.stdout


def test_sensors_bad_tdp_is_one_line():
    result = run("sensors", "--cpu-tdp-w", "-5")
    assert result.returncode == 2 and result.stderr.strip() == "nn-tracker: error: cpu_tdp_w must be > 0, got -5.0"


# ----- a CLI that behaves like a good Unix tool ---------------------------------------------------------------
def nn_tracker_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, **kwargs)


def test_piping_into_head_prints_no_traceback():
    result = subprocess.run(
        f"{sys.executable} -m nn_tracker list locations | head -1", shell=True, capture_output=True, text=True
    )
    assert result.stdout.startswith("code\t") and result.stderr == ""


def test_version():
    from nn_tracker import __version__

    result = nn_tracker_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"nn-tracker {__version__}"


def test_run_of_a_missing_or_non_executable_command_exits_as_a_shell_does(tmp_path):
    missing = nn_tracker_cli("run", "--output-dir", str(tmp_path), "--", "no-such-command-anywhere")
    assert missing.returncode == 127 and missing.stderr.strip().splitlines() == [
        "nn-tracker: no-such-command-anywhere: command not found"
    ]
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    blocked = nn_tracker_cli("run", "--output-dir", str(tmp_path), "--", str(script))
    assert blocked.returncode == 126 and len(blocked.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json"))  # nothing ran, nothing tracked


def test_run_says_how_the_command_ended_and_every_file_it_wrote(tmp_path):
    result = nn_tracker_cli(
        "run",
        "--output-dir",
        str(tmp_path),
        "--intensity",
        "100",
        "--format",
        "html",
        "--format",
        "csv",
        "--",
        sys.executable,
        "-c",
        "import sys; sys.exit(4)",
    )
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert "the command failed (exit status 4)" in lines[0] and "report status failed" in lines[0]
    written = sorted(line.removeprefix("nn-tracker: wrote ") for line in lines[1:])
    assert written == sorted(str(p) for p in tmp_path.iterdir())  # json, html and the CSV
    killed = nn_tracker_cli(
        "run",
        "--output-dir",
        str(tmp_path / "k"),
        "--intensity",
        "100",
        "--",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    )
    assert killed.returncode == 128 + 15 and "the command was terminated by SIGTERM" in killed.stderr


def test_the_status_line_never_runs_into_the_command_s_output_on_a_terminal(tmp_path):
    import pty

    script = "import time\nfor i in range(40):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.05)\n"
    args = [
        sys.executable,
        "-m",
        "nn_tracker",
        "run",
        "--status-every",
        "0.3",
        "--output-dir",
        str(tmp_path),
        "--intensity",
        "100",
        "--",
        sys.executable,
        "-c",
        script,
    ]
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, args)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    status = [line for line in lines if line.startswith("[nn-tracker]")]
    assert len(status) >= 3  # shown on a terminal, at the chosen pace
    assert all(line.startswith(("tick ", "[nn-tracker] ", "nn-tracker: ")) for line in lines), lines
    assert "\r" not in text.replace("\r\n", "\n")  # no line rewritten in place
    assert [int(line.split()[1]) for line in lines if line.startswith("tick")] == list(range(40))


def test_list_locations_shows_the_source_and_pue_columns():
    result = nn_tracker_cli("list", "locations")
    header, *rows = result.stdout.splitlines()
    assert header.split("\t") == ["code", "kind", "intensity_g_per_kwh", "year", "pue", "name", "source"]
    gcp = next(r.split("\t") for r in rows if r.startswith("gcp:europe-west1\t"))
    assert gcp[4] == "1.09" and "Google" in gcp[6]


def test_an_unknown_option_suggests_the_closest(tmp_path):
    config = tmp_path / "nn-tracker.yml"
    config.write_text("locaton: FR\n")
    result = nn_tracker_cli("run", "--config", str(config), "--", "true")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "nn-tracker: error: nn-tracker.yml: locaton is not a tracker option (did you "
        "mean 'location'?), got '(its value, not shown)'"
    )
    from nn_tracker import Tracker, ValidationError

    with pytest.raises(ValidationError, match="locaton is not a TrackerConfig field \\(did you mean 'location'\\?\\)"):
        Tracker(locaton="FR")


def test_every_option_is_declared_once_and_the_docs_table_is_current():
    from pathlib import Path

    from nn_tracker.config import options, options_table

    readme = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "tracker.md").read_text()
    start = readme.index("<!-- options: generated")
    block = readme[readme.index("\n", start) + 1 : readme.index("<!-- options: end -->")]
    assert block == options_table(), "docs/guides/tracker.md option table is stale: paste options_table()"
    flagged = [o for o in options() if o.metadata["flag"]]
    assert len(flagged) >= 15
    parser = build_parser()
    for option in flagged:  # every declared flag reaches its option, nothing else is needed
        value = {"float": "2.5", "list": None}.get(option.metadata["kind"], "x")
        if option.metadata["choices"]:
            value = option.metadata["choices"][-1]
        value = value or "FR"
        args = parser.parse_args(["run", option.metadata["flag"], value, "--", "true"])
        expected = float(value) if option.metadata["kind"] == "float" else value
        got = getattr(args, option.name)
        assert got == ([expected] if option.metadata["kind"] == "list" else expected), option.name
