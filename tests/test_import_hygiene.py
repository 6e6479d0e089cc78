"""Importing nn_tracker touches no hardware, no network and no data files."""

import subprocess
import sys

PROBE = r"""
import sys
events = []
CODE = (".py", ".pyc", ".so", ".pth")
def hook(event, args):
    if event == "open" and not str(args[0]).endswith(CODE):
        events.append(str(args[0]))
    elif event.startswith(("socket.", "subprocess.", "os.exec", "os.posix_spawn", "ctypes.dlopen")):
        events.append(event)
sys.addaudithook(hook)
import nn_tracker, nn_tracker.cli  # noqa
EXTRA
print(repr(events))
"""


def probe(extra: str = "") -> str:
    code = PROBE.replace("EXTRA", extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout


def test_import_opens_no_data_file_device_or_socket():
    assert probe().strip() == "[]"


def test_the_probe_sees_a_file_read():
    assert "/proc/cpuinfo" in probe("open('/proc/cpuinfo').close()")


FRAMEWORKS = (
    "torch",
    "transformers",
    "lightning",
    "pytorch_lightning",
    "prometheus_client",
    "accelerate",
    "yaml",  # ~80 ms: only for IF manifests, model cards and config files, imported when used
    "pynvml",  # at the first tracker's start, never at import
    "nn_tracker.report.document",  # ~9 ms of dataclasses: when the first report is built or read
)


def test_import_loads_no_framework_and_no_yaml():
    code = "import sys, nn_tracker, nn_tracker.cli, nn_tracker.serving; print(sorted(set(sys.modules) & set(%r)))"
    result = subprocess.run(
        [sys.executable, "-c", code % (FRAMEWORKS,)], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_framework_probe_sees_an_integration_import():
    code = "import sys, nn_tracker.integrations.transformers; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "True"


def test_the_lazy_names_resolve():
    code = "import nn_tracker, nn_tracker.report as r; print(nn_tracker.Report is r.Report, r.SCHEMA_VERSION)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["True", "5"]
