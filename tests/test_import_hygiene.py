"""Importing nn_tracker touches no hardware, no network and no data files."""

import os
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
    "nn_tracker.report.document",  # the report types (~1 ms): when the first report is built or read
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


# What `import nn_tracker` and a first tracker (start, stop, JSON report) may load beyond the standard library and
# nn_tracker itself: a new dependency on this path costs every user's cold start, so it must be added here knowingly.
ALLOWED_THIRD_PARTY: set[str] = set()  # not even psutil: /proc is read directly until a child process appears
ALLOWED_REPORT_MODULES = {  # a JSON report: the typed report and what builds it, no other format's writer
    "nn_tracker.footprint.equivalents",
    "nn_tracker.report.carbon",
    "nn_tracker.report.codec",
    "nn_tracker.report.document",
    "nn_tracker.report.model",
    "nn_tracker.report.units",
    "nn_tracker.report.tables",
}
FIRST_TRACKER = r"""
import json, sys
before = set(sys.modules)
import nn_tracker
imported = set(sys.modules)
tracker = nn_tracker.Tracker(output_dir=sys.argv[1], location="FR", gpus=False)
tracker.start()
tracker.stop()
print(json.dumps([sorted(imported - before), sorted(set(sys.modules) - imported)]))
"""


def test_import_and_a_first_tracker_load_only_the_allowed_modules(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", FIRST_TRACKER, str(tmp_path)], capture_output=True, text=True, timeout=120, check=True
    )
    import json

    at_import, at_first_run = json.loads(result.stdout.splitlines()[-1])

    def beyond(modules: list[str], allowed: set[str]) -> list[str]:
        top = {m.split(".")[0] for m in modules}
        return sorted(t for t in top if t not in sys.stdlib_module_names and t != "nn_tracker" and t not in allowed)

    assert beyond(at_import, set()) == []
    assert beyond(at_first_run, ALLOWED_THIRD_PARTY) == []
    new_reports = {m for m in at_first_run if m.startswith(("nn_tracker.report.", "nn_tracker.footprint.equivalents"))}
    assert new_reports <= ALLOWED_REPORT_MODULES | {"nn_tracker.report.writers"}
    assert not {"datetime", "decimal", "email", "zipfile", "yaml"} & {m.split(".")[0] for m in at_import + at_first_run}


# Every container object (tuple, dict, function, class...) that Python allocates counts towards its garbage
# collector's next pass; right after `import torch` a full pass over torch's heap (70-85 ms) is ~4,700 of them
# away. What nn_tracker keeps from its import and first tracker (counted with the collector off, bytecode
# compiled) is held under a budget, so the cold path cannot grow back: building every catalogue location
# (~1,300 objects) or the report's types with dataclasses (~1,800) would exceed it.
KEPT_OBJECTS_BUDGET = 5_800
KEPT_OBJECTS = r"""
import gc, sys
import torch  # what a training script imports first (and the standard library modules nn_tracker needs)
gc.disable()
before = gc.get_count()[0]
import nn_tracker
tracker = nn_tracker.Tracker(output_dir=sys.argv[1], gpus=False)
tracker.start()
tracker.stop()
print(gc.get_count()[0] - before)
"""


def test_import_and_a_first_tracker_keep_few_objects_for_the_garbage_collector(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "bytecode")  # compiled as `pip install` leaves it, outside the tree
    counts = [
        subprocess.run(
            [sys.executable, "-c", KEPT_OBJECTS, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=env,
        ).stdout.split()[-1]
        for _ in range(2)  # the first run compiles
    ]
    assert 1_000 < int(counts[1]) < KEPT_OBJECTS_BUDGET, counts
