"""Security: no network, safe YAML, escaped HTML (see test_report), file modes, no shell, nothing executed."""

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set

from nn_tracker import ManualClock, Tracker, ValidationError
from nn_tracker.config import load_config_file
from nn_tracker.footprint.catalogue import bundled
from nn_tracker.report.writers import FORMATS

PACKAGE = Path(__file__).resolve().parents[1] / "nn_tracker"


def test_a_tracked_run_opens_no_socket_and_starts_no_process():
    probe = r"""
import sys
events = []
sys.addaudithook(lambda e, a: events.append(e) if e.startswith(("socket.", "subprocess.", "os.system",
                                                                "os.exec", "os.posix_spawn")) else None)
import nn_tracker
with nn_tracker.Tracker(location="FR", write_report=False, interval_s=0.01) as t:
    sum(range(10**6))
t.report()
print(sorted(set(events)))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_files_follow_the_umask_and_are_never_world_writable(tmp_path, umask):
    old = os.umask(umask)
    try:
        tracker = Tracker(
            clock=(clock := ManualClock()),
            background=False,
            sensors=sensor_set(ConstantPower()),
            output_dir=tmp_path,
            intensity_g_per_kwh=1,
            checkpoint_interval_s=None,
            formats=("json", "md", "html", "csv", "model-card", "if-manifest"),
        )
        with tracker:
            clock.advance(1)
    finally:
        os.umask(old)
    files = list(tmp_path.iterdir())
    assert len(files) == 6
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o664 & ~umask, (path.name, oct(mode))
        assert not mode & stat.S_IWOTH


HOSTILE_YAML = "!!python/object/apply:os.system ['touch pwned']\n"


def test_yaml_is_only_safely_loaded_everywhere(tmp_path):
    path = tmp_path / "evil.yml"
    path.write_text(HOSTILE_YAML)
    os.chdir(tmp_path)
    with pytest.raises(ValidationError, match="must be valid YAML"):
        bundled().with_overrides(path)
    with pytest.raises(ValidationError, match="must be valid YAML"):
        load_config_file(path)
    assert not (tmp_path / "pwned").exists()


def test_source_has_no_shell_eval_exec_or_unsafe_yaml():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                assert name not in ("eval", "exec", "system", "popen"), f"{path}:{node.lineno} calls {name}"
                assert name not in ("load", "unsafe_load", "full_load") or not _is_yaml(node), f"{path}:{node.lineno}"
                for keyword in node.keywords:
                    assert not (keyword.arg == "shell" and getattr(keyword.value, "value", False) is True), (
                        f"{path}:{node.lineno} uses shell=True"
                    )


def _is_yaml(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") == "yaml"


def test_reports_are_data_never_code(tmp_path):
    """A report whose strings look like code or markup is only ever displayed."""
    import json

    from nn_tracker.report import writers
    from nn_tracker.report.schema import load_report

    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower()),
        output_dir=tmp_path,
        intensity_g_per_kwh=1,
        checkpoint_interval_s=None,
        run_id="r",
    )
    with tracker:
        clock.advance(1)
    data = json.loads(Path(tracker.report().paths[0]).read_text())
    data["notes"].append("__import__('os').system('touch pwned')")
    data["project_name"] = "{{7*7}} $(touch pwned) `touch pwned`"
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(data))
    for fmt in writers.FORMATS:
        text = writers.render(load_report(path), fmt)
        assert "49" not in text.split("{{7*7}}")[0][-5:]  # no template evaluation
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_reports_name_no_person_and_no_host_by_default(tmp_path, monkeypatch):
    import getpass
    import pwd

    def forbidden(*args, **kwargs):
        raise AssertionError("a password-database lookup (it can reach nscd, sssd or LDAP)")

    monkeypatch.setattr(pwd, "getpwuid", forbidden)
    monkeypatch.setattr(getpass, "getuser", forbidden)
    monkeypatch.setenv("USER", "alice")
    tracker = Tracker(
        output_dir=tmp_path, intensity_g_per_kwh=100, sensors=sensor_set(ConstantPower()), formats=FORMATS
    )
    with tracker:
        pass
    text = "".join(p.read_text() for p in tmp_path.iterdir())
    assert "alice" not in text and os.uname().nodename not in text and '"pid"' not in text
    data = tracker.report().to_dict()
    assert set(data["machine"]) == {"os", "python", "nn_tracker", "cpu_model", "logical_cpus", "memory_total_gib"}
    assert data["devices"][0]["node"] == "local"
    opted_in = Tracker(write_report=False, intensity_g_per_kwh=100, sensors=sensor_set(ConstantPower()), identity=True)
    with opted_in:
        pass
    machine = opted_in.report().to_dict()["machine"]
    assert machine["user"] == "alice" and machine["hostname"] == os.uname().nodename and machine["pid"] == os.getpid()
    monkeypatch.delenv("USER")
    monkeypatch.delenv("LOGNAME", raising=False)
    anonymous = Tracker(write_report=False, intensity_g_per_kwh=100, sensors=sensor_set(ConstantPower()), identity=True)
    with anonymous:
        pass
    assert anonymous.report().machine.user is None  # unknown, not looked up
