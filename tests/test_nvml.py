"""GPU sensors through the real pynvml bindings against a simulated NVML library."""

import json
import os
import sys

import pytest

from nn_tracker.core.clock import ManualClock
from nn_tracker.sensors.base import METHOD_COUNTER, METHOD_POWER
from nn_tracker.sensors.nvml import PARTIAL_SAMPLING_NOTE, discover_gpus
from nn_tracker.sensors.sampling import Sampler


def run(sampler: Sampler, clock: ManualClock, fake, seconds: float, step: float = 0.1) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        fake.advance(step)
        sampler.tick()


def started(fake, visible=None):
    found = discover_gpus(visible)
    clock = ManualClock()
    sampler = Sampler(found.sensors, clock, interval_s=0.1)
    sampler.start(background=False)
    return found, clock, sampler


def test_counter_energy_is_exact_for_known_power(fake_nvml):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 300)
    fake_nvml.add("Tesla V100-SXM2-32GB", "GPU-bbbb", 150, limit_w=300)
    found, clock, sampler = started(fake_nvml)
    assert [s.info.method for s in found.sensors] == [METHOD_COUNTER, METHOD_COUNTER]
    run(sampler, clock, fake_nvml, 10)
    totals = sampler.totals
    assert totals["gpu:GPU-aaaa"].energy_j == pytest.approx(3000.0, abs=1e-9)
    assert totals["gpu:GPU-bbbb"].energy_j == pytest.approx(1500.0, abs=1e-9)
    assert totals["gpu:GPU-aaaa"].peak_power_w == 300
    info = found.sensors[0].info
    assert info.name == "NVIDIA A100-SXM4-80GB"
    assert info.details["power_limit_w"] == 400
    assert PARTIAL_SAMPLING_NOTE in info.notes
    assert found.driver_version == "550.54.15"
    found.close()


def test_no_energy_counter_integrates_instant_power_never_zero(fake_nvml):
    index = fake_nvml.add("Tesla P100-PCIE-16GB", "GPU-cccc", 100)
    fake_nvml.set_energy_supported(index, 0)
    found, clock, sampler = started(fake_nvml)
    sensor = found.sensors[0]
    assert sensor.info.method == METHOD_POWER
    assert sensor.info.details["power_source"] == "instant-power field 186"
    run(sampler, clock, fake_nvml, 1.0)  # 100 W for 1 s
    fake_nvml.set_power(index, 200)
    clock.advance(1.0)
    sampler.tick()  # linear from 100 W to 200 W over 1 s: 150 J
    assert sampler.totals["gpu:GPU-cccc"].energy_j == pytest.approx(100.0 + 150.0)
    assert any("total-energy counter cannot be read" in n for n in sensor.info.notes)


@pytest.mark.parametrize(
    ("name", "averaged"), [("NVIDIA A10G", True), ("NVIDIA A100-SXM4-80GB", False), ("Tesla K80", False)]
)
def test_fallback_to_power_usage_when_instant_field_unsupported(fake_nvml, name, averaged):
    index = fake_nvml.add(name, "GPU-dddd", 60)
    fake_nvml.set_energy_supported(index, 0)
    fake_nvml.set_instant_supported(index, 0)
    fake_nvml.set_usage_is_average(index, int(averaged))
    found, clock, sampler = started(fake_nvml)
    assert found.sensors[0].info.details["power_source"] == "nvmlDeviceGetPowerUsage"
    # the caveat follows the architecture (Ampere and newer except GA100), not the name
    assert any("1-second average" in n for n in found.sensors[0].info.notes) == averaged
    run(sampler, clock, fake_nvml, 2.0)
    assert sampler.totals["gpu:GPU-dddd"].energy_j == pytest.approx(120.0)


def test_lost_gpu_keeps_energy_and_reports_the_gap(fake_nvml):
    fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-eeee", 500, limit_w=700)
    other = fake_nvml.add("NVIDIA H100 80GB HBM3", "GPU-ffff", 400, limit_w=700)
    found, clock, sampler = started(fake_nvml)
    run(sampler, clock, fake_nvml, 5.0)
    fake_nvml.set_lost(0, 1)
    run(sampler, clock, fake_nvml, 3.0)  # must not raise
    lost = sampler.totals["gpu:GPU-eeee"]
    assert lost.energy_j == pytest.approx(2500.0)
    assert lost.lost_at_s == pytest.approx(1005.1)
    assert lost.gap_s == pytest.approx(3.0)
    assert any("GPU lost" in n for n in lost.info.notes)
    assert not found.sensors[0].active
    assert sampler.totals["gpu:GPU-ffff"].energy_j == pytest.approx(400 * 8.0)
    assert other == 1


def test_transient_error_is_counted_and_the_next_read_covers_the_interval(fake_nvml):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 250)
    _, clock, sampler = started(fake_nvml)
    run(sampler, clock, fake_nvml, 1.0)
    fake_nvml.set_error(0, 999)
    run(sampler, clock, fake_nvml, 0.5)
    fake_nvml.set_error(0, 0)
    run(sampler, clock, fake_nvml, 0.5)
    totals = sampler.totals["gpu:GPU-aaaa"]
    assert totals.errors == 5
    assert "NVMLError" in totals.first_error
    assert totals.energy_j == pytest.approx(500.0)  # nothing lost
    assert totals.gap_s == 0


def test_counter_going_backwards_is_bridged_with_power_samples_not_lost(fake_nvml):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 100)
    _, clock, sampler = started(fake_nvml)
    run(sampler, clock, fake_nvml, 1.0)
    fake_nvml.set_energy(0, 5)  # driver reload resets the counter
    run(sampler, clock, fake_nvml, 2.0)
    totals = sampler.totals["gpu:GPU-aaaa"]
    assert totals.bridged_intervals == 1 and totals.dropped_intervals == 0
    assert totals.energy_j == pytest.approx(300.0)  # the interval with the reset comes from the power samples
    assert totals.gap_s == 0


@pytest.mark.parametrize(
    ("visible", "expected", "note"),
    [
        ("1", ["GPU-2222"], None),
        ("2,0", ["GPU-1111", "GPU-3333"], None),
        ("GPU-33", ["GPU-3333"], None),
        ("0,bogus,1", ["GPU-1111"], "entry 'bogus' matches no GPU"),
        ("7", [], "entry '7' matches no GPU"),
        ("", [], "no visible GPU"),
    ],
)
def test_cuda_visible_devices_forms(fake_nvml, visible, expected, note):
    for i in range(3):
        fake_nvml.add("Tesla T4", f"GPU-{str(i + 1) * 4}", 70)
    found = discover_gpus(visible)
    assert sorted(s.info.details["uuid"] for s in found.sensors) == expected
    if note:
        assert any(note in n for n in found.notes), found.notes
    found.close()


def test_cuda_visible_devices_from_environment(fake_nvml, monkeypatch):
    fake_nvml.add("Tesla T4", "GPU-1111", 70)
    fake_nvml.add("Tesla T4", "GPU-2222", 70)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [s.info.details["uuid"] for s in discover_gpus().sensors] == ["GPU-2222"]


def test_mig_slices_measure_the_parent_once_and_label_it_shared(fake_nvml):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-1111", 200)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-2222", 200)
    fake_nvml.set_mig_uuid(1, b"MIG-aaaa-bbbb")
    found = discover_gpus("MIG-aaaa-bbbb,1")
    assert [s.info.details["uuid"] for s in found.sensors] == ["GPU-2222"]
    assert found.sensors[0].info.details["mig_shared"] is True
    assert any("MIG slice" in n for n in found.sensors[0].info.notes)


def test_no_library_is_a_note_not_an_error(no_nvml):
    found = discover_gpus()
    assert found.sensors == [] and not found.available
    assert any("libnvidia-ml.so.1 not found" in n for n in found.notes)


def test_without_the_library_pynvml_is_not_imported_and_the_note_is_the_same(no_nvml):
    """A process that has not loaded pynvml checks for the library first (pynvml's import is 3.4 MB)."""
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom nn_tracker.sensors.nvml import discover_gpus\n"
        "found = discover_gpus()\nprint(json.dumps([found.notes, 'pynvml' in sys.modules, found.available]))"
    )
    env = {**os.environ, "LD_LIBRARY_PATH": ""}  # no directory with a libnvidia-ml.so.1 of the tests
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    notes, pynvml_loaded, available = json.loads(result.stdout)
    assert notes == discover_gpus().notes and not pynvml_loaded and not available  # in-process: through pynvml


def test_driver_not_loaded_is_a_note(fake_nvml):
    fake_nvml.set_init_error(9)
    found = discover_gpus()
    assert found.sensors == []
    assert any("driver is not loaded" in n for n in found.notes)


# ----- start failures: what works is kept, what does not is unmeasured (null), never 0 -----------------------
def test_gpu_without_power_readings_keeps_its_counter(fake_nvml):
    index = fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 200)
    fake_nvml.set_instant_supported(index, 0)
    fake_nvml.set_usage_supported(index, 0)  # some vGPUs
    found, clock, sampler = started(fake_nvml)
    sensor = found.sensors[0]
    assert sensor.info.method == METHOD_COUNTER and not sensor.has_power
    assert any("Power cannot be read" in n for n in sensor.info.notes)
    run(sampler, clock, fake_nvml, 3.0)
    sampler.tick(force=True)
    assert sampler.totals["gpu:GPU-aaaa"].energy_j == pytest.approx(600.0)


def test_gpu_with_neither_counter_nor_power_is_unmeasured_not_zero(fake_nvml, tmp_path):
    from nn_tracker import Tracker
    from nn_tracker.sensors import SensorSet

    index = fake_nvml.add("GRID A100D-4C", "GPU-vvvv", 200)
    fake_nvml.set_energy_supported(index, 0)
    fake_nvml.set_instant_supported(index, 0)
    fake_nvml.set_usage_supported(index, 0)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 100)
    found = discover_gpus()
    clock = ManualClock()
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=SensorSet(sensors=found.sensors, nvml=found),
        output_dir=tmp_path,
        intensity_g_per_kwh=100,
        checkpoint_interval_s=None,
    )
    with tracker:
        clock.advance(2.0)
        fake_nvml.advance(2.0)
        tracker.sample()
    data = tracker.report().to_dict()
    devices = {d["device_id"]: d for d in data["devices"]}
    assert devices["gpu:GPU-vvvv"]["energy_kwh"] is None
    assert any("could not start" in n for n in devices["gpu:GPU-vvvv"]["notes"])
    assert devices["gpu:GPU-aaaa"]["energy_kwh"] == pytest.approx(200 / 3.6e6)
    assert data["energy"]["it_kwh"] == pytest.approx(200 / 3.6e6)
    assert data["energy"]["unmeasured_devices"] == ["gpu:GPU-vvvv"]
    found.close()


def test_every_gpu_unmeasured_gives_null_gpu_energy(fake_nvml, tmp_path):
    from nn_tracker import Tracker
    from nn_tracker.sensors import SensorSet

    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-aaaa", 100)
    found = discover_gpus()
    fake_nvml.set_lost(0, 1)  # falls off the bus between discovery and start
    tracker = Tracker(
        clock=ManualClock(),
        background=False,
        sensors=SensorSet(sensors=found.sensors, nvml=found),
        write_report=False,
        intensity_g_per_kwh=100,
    )
    with tracker:
        pass
    data = tracker.report().to_dict()
    assert data["devices"][0]["energy_kwh"] is None
    assert data["energy"]["by_component_kwh"]["gpu"] is None
    assert data["energy"]["it_kwh"] == 0 and data["energy"]["unmeasured_devices"] == ["gpu:GPU-aaaa"]
    found.close()


def test_one_unreadable_gpu_is_skipped_and_the_others_measured(fake_nvml):
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-1111", 100)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-2222", 100)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-3333", 100)
    fake_nvml.set_handle_error(1, 15)  # fallen off the bus
    found = discover_gpus()
    assert [s.info.details["uuid"] for s in found.sensors] == ["GPU-1111", "GPU-3333"]
    assert any("GPU 1 (NVML index) cannot be read" in n for n in found.notes)
    found.close()


# ----- which GPU an index means -----------------------------------------------------------------------------
@pytest.fixture
def mixed_gpus(fake_nvml, monkeypatch):
    """A slow card on the first PCI slot, a fast one on the second (NVML numbers by PCI bus)."""
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    fake_nvml.add("Tesla T4", "GPU-slow", 70)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-fast", 300)
    return fake_nvml


@pytest.mark.parametrize(
    ("order", "visible", "expected", "assumed"),
    [
        (None, "0", "GPU-fast", True),  # CUDA's default: fastest first
        ("FASTEST_FIRST", "1", "GPU-slow", True),
        ("PCI_BUS_ID", "0", "GPU-slow", False),
        ("PCI_BUS_ID", "1", "GPU-fast", False),
    ],
)
def test_cuda_indices_follow_cuda_device_order(mixed_gpus, monkeypatch, order, visible, expected, assumed):
    if order:
        monkeypatch.setenv("CUDA_DEVICE_ORDER", order)
    found = discover_gpus(visible)
    assert [s.info.details["uuid"] for s in found.sensors] == [expected]
    assert any("fastest-first" in n for n in found.notes) == assumed
    found.close()


def test_fast_card_first_on_the_bus_needs_no_assumption_for_uuids(fake_nvml, monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    fake_nvml.add("NVIDIA A100-SXM4-80GB", "GPU-fast", 300)
    fake_nvml.add("Tesla T4", "GPU-slow", 70)
    assert [s.info.details["uuid"] for s in discover_gpus("0").sensors] == ["GPU-fast"]
    found = discover_gpus("GPU-slow")
    assert [s.info.details["uuid"] for s in found.sensors] == ["GPU-slow"] and not found.notes


def test_identical_gpus_keep_the_pci_order_without_a_note(fake_nvml, monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    for i in range(3):
        fake_nvml.add("NVIDIA H100 80GB HBM3", f"GPU-{i}{i}{i}", 100)
    found = discover_gpus("2,0")
    assert sorted(s.info.details["uuid"] for s in found.sensors) == ["GPU-000", "GPU-222"] and not found.notes


def test_torch_with_cuda_initialised_settles_which_gpus_indices_mean(mixed_gpus, monkeypatch):
    import sys
    import types

    class Props:
        def __init__(self, uuid):
            self.uuid = uuid

    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        device_count=lambda: 1,
        get_device_properties=lambda i: Props("slow"),  # torch prints UUIDs without the GPU- prefix
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    found = discover_gpus("0")  # fastest-first would say the A100; CUDA itself says the T4
    assert [s.info.details["uuid"] for s in found.sensors] == ["GPU-slow"] and not found.notes
    cuda.is_initialized = lambda: False  # never initialised: torch is not asked, nothing is initialised
    assert [s.info.details["uuid"] for s in discover_gpus("0").sensors] == ["GPU-fast"]


# ----- what a GPU is decides its caveats ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "arch", "partial"),
    [
        ("NVIDIA H200", (9, 9, 0), True),
        ("NVIDIA GH200 480GB", (9, 9, 0), True),
        ("NVIDIA A100-SXM4-80GB", (7, 8, 0), True),
        ("NVIDIA A10G", (7, 8, 6), False),  # Ampere, but not GA100
        ("Renamed by a cloud", (9, 9, 0), True),  # the name does not matter
        ("NVIDIA L4", (8, 8, 9), False),
    ],
)
def test_partial_sampling_caveat_follows_the_architecture(fake_nvml, name, arch, partial):
    fake_nvml.add(name, "GPU-aaaa", 100, arch=arch)
    sensor = discover_gpus().sensors[0]
    assert (PARTIAL_SAMPLING_NOTE in sensor.info.notes) == partial
    assert sensor.info.details["compute_capability"] == f"{arch[1]}.{arch[2]}"


def test_tracker_shutdown_leaves_the_users_own_nvml_session_working(fake_nvml):
    import pynvml

    from nn_tracker import Tracker

    fake_nvml.add("NVIDIA H200", "GPU-aaaa", 100)
    pynvml.nvmlInit()  # the user's own session
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    with Tracker(write_report=False, intensity_g_per_kwh=100, interval_s=0.05):
        pass
    assert fake_nvml.init_count() == 1
    assert pynvml.nvmlDeviceGetPowerUsage(handle) == 100_000  # still works after the tracker's shutdown
    pynvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetPowerUsage(handle)


@pytest.mark.parametrize("with_pynvml", [False, True])
def test_without_the_library_a_tracker_loads_no_nvml_code_and_starts_no_discovery_thread(
    tmp_path, no_nvml, with_pynvml
):
    """No libnvidia-ml.so.1: the first tracker notes it without importing our NVML module and without
    the discovery thread (its deadline is for a driver that hangs, and there is none), also where pynvml
    was imported but not used (``import torch`` does that)."""
    import subprocess
    import sys

    code = (
        f"import json, sys, threading, nn_tracker{', pynvml' if with_pynvml else ''}\n"
        "started = []\n"
        "original = threading.Thread.start\n"
        "threading.Thread.start = lambda self: (started.append(self.name), original(self))[1]\n"
        f"tracker = nn_tracker.Tracker(output_dir={str(tmp_path)!r}, intensity_g_per_kwh=100).start()\n"
        "report = tracker.stop()\n"
        "print(json.dumps([report.notes, sorted(m for m in sys.modules if 'nvml' in m), started]))"
    )
    env = {**os.environ, "LD_LIBRARY_PATH": ""}  # no directory with a libnvidia-ml.so.1 of the tests
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    notes, nvml_modules, threads = json.loads(result.stdout.splitlines()[-1])
    assert discover_gpus().notes[0] in notes  # the note pynvml's own error gives, in this process
    assert nvml_modules == (["pynvml"] if with_pynvml else [])
    assert not any("nvml" in name for name in threads), threads


def test_the_bindings_version_is_reported_where_they_loaded_nvidias_library(fake_nvml, monkeypatch):
    """``import torch`` imports pynvml without using it: no version then (and no metadata lookup, ~1 ms)."""
    from importlib import metadata

    import pynvml

    from nn_tracker.report import model

    assert model._software()["nvidia-ml-py"] == metadata.version("nvidia-ml-py")
    monkeypatch.setattr(pynvml, "nvmlLib", None)
    assert model._software()["nvidia-ml-py"] is None


def test_the_library_is_not_probed_on_the_callers_thread_where_ld_library_path_may_hang(monkeypatch, no_nvml):
    """LD_LIBRARY_PATH's folders may be network mounts: there the probe runs under discovery's deadline."""
    import nn_tracker.sensors as sensors

    probes = []
    monkeypatch.setattr(sensors, "_library_loads", lambda: probes.append(1) or False)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/some/mount")
    assert not sensors.nvml_library_missing(on_callers_thread=True) and probes == []
    assert sensors.nvml_library_missing() and probes == [1]  # on discovery's thread
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert sensors.nvml_library_missing(on_callers_thread=True)


def test_a_stand_in_pynvml_decides_for_itself(monkeypatch):
    """A test's stand-in module (no ``nvmlLib``) is asked, as before, instead of probing the library."""
    import types

    import nn_tracker.sensors as sensors

    stand_in = types.ModuleType("pynvml")
    monkeypatch.setitem(sys.modules, "pynvml", stand_in)
    monkeypatch.setattr(sensors, "_library_loads", lambda: False)
    assert not sensors.nvml_library_missing(on_callers_thread=True)
    stand_in.nvmlLib = None  # the real bindings before their first nvmlInit
    assert sensors.nvml_library_missing(on_callers_thread=True)


def test_the_legacy_pynvml_package_s_library_counts_as_loaded(monkeypatch):
    import types

    from nn_tracker.report import model

    legacy = types.ModuleType("pynvml.nvml")
    legacy.nvmlLib = object()
    monkeypatch.setitem(sys.modules, "pynvml", types.ModuleType("pynvml"))  # its nvmlLib: a stale None, or none
    monkeypatch.setitem(sys.modules, "pynvml.nvml", legacy)
    assert model._nvml_loaded()
    legacy.nvmlLib = None
    assert not model._nvml_loaded()
