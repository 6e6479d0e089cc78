"""RAPL against fake powercap trees."""

from pathlib import Path

import pytest
from conftest import set_energy

from nn_tracker.core.clock import ManualClock
from nn_tracker.footprint.catalogue import bundled
from nn_tracker.sensors import SensorOptions, discover_sensors
from nn_tracker.sensors.rapl import discover_rapl
from nn_tracker.sensors.sampling import Sampler


def test_packages_and_dram_only_never_core_uncore_psys_or_mmio(intel_tree):
    found = discover_rapl(intel_tree)
    zones = sorted((s.info.component, s.info.details["zone"]) for s in found.sensors)
    assert zones == [("cpu", "package-0"), ("cpu", "package-1"), ("ram", "package-0/dram"), ("ram", "package-1/dram")]
    assert found.has_dram and not found.problems


def test_exact_joules_and_wrap_around(intel_tree):
    found = discover_rapl(intel_tree)
    clock = ManualClock()
    sampler = Sampler(found.sensors, clock)
    sampler.start(background=False)
    set_energy(intel_tree / "intel-rapl:0", 1_000_000 + 50_000_000)  # +50 J
    set_energy(intel_tree / "intel-rapl:0" / "intel-rapl:0:2", 2_000_000 + 10_000_000)  # +10 J
    clock.advance(1.0)
    sampler.tick()
    # package-1 wraps: from 3 J to max, then 1 J  ->  (max - 3 J) + 1 J
    max_uj = 262_143_328_850
    set_energy(intel_tree / "intel-rapl:1", max_uj - 1_000_000)
    clock.advance(1.0)
    sampler.tick()
    set_energy(intel_tree / "intel-rapl:1", 1_000_000)
    clock.advance(1.0)
    sampler.tick()
    totals = sampler.totals
    assert totals["cpu:rapl:intel-rapl:0"].energy_j == pytest.approx(50.0)
    assert totals["ram:rapl:intel-rapl:0:2"].energy_j == pytest.approx(10.0)
    # 1st tick: 3 J -> max-1 J is implausible (262 kJ in 1 s) and dropped; 2nd: wrap of 2 J is kept
    assert totals["cpu:rapl:intel-rapl:1"].dropped_intervals == 1
    assert totals["cpu:rapl:intel-rapl:1"].energy_j == pytest.approx(2.0)


def test_wrap_at_high_power_is_kept(amd_tree):
    found = discover_rapl(amd_tree)
    clock = ManualClock()
    sampler = Sampler(found.sensors, clock)
    sampler.start(background=False)
    zone = amd_tree / "intel-rapl:0"
    max_uj = 65_532_610_987
    for step in range(1, 6):  # 400 W for 5 x 60 s: the counter wraps once on the way
        set_energy(zone, (step * 24_000_000_000) % max_uj)
        clock.advance(60.0)
        sampler.tick()
    assert sampler.totals["cpu:rapl:intel-rapl:0"].energy_j == pytest.approx(5 * 24_000.0)
    assert sampler.totals["cpu:rapl:intel-rapl:0"].dropped_intervals == 0


def test_amd_without_dram_measures_cpu_and_estimates_ram(amd_tree, no_nvml):
    found = discover_sensors(SensorOptions(rapl_root=str(amd_tree)), bundled())
    methods = {(s.info.component, s.info.method) for s in found.sensors}
    assert methods == {("cpu", "counter"), ("ram", "estimate")}


def test_intel_with_dram_does_not_estimate_ram(intel_tree, no_nvml):
    found = discover_sensors(SensorOptions(rapl_root=str(intel_tree)), bundled())
    assert {s.info.method for s in found.sensors} == {"counter"}
    assert len([s for s in found.sensors if s.info.component == "ram"]) == 2


def test_unreadable_counters_give_one_message_with_the_fix_then_the_estimate(intel_tree, no_nvml, monkeypatch):
    def read_text(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    found = discover_rapl(intel_tree, read_text=read_text)
    assert found.sensors == []
    assert len(found.problems) == 1
    assert "readable only by root since Linux 5.10" in found.problems[0]
    assert "chmod a+r" in found.problems[0] and "udev" in found.problems[0]

    import nn_tracker.sensors as sensors_module

    monkeypatch.setattr(sensors_module, "discover_rapl", lambda root: found)
    chosen = discover_sensors(SensorOptions(rapl_root=str(intel_tree)), bundled())
    assert {s.info.device_id for s in chosen.sensors} == {"cpu:estimate", "ram:estimate"}
    assert any("chmod a+r" in n for n in chosen.notes)


def test_missing_powercap_is_a_problem_not_an_error(tmp_path):
    found = discover_rapl(tmp_path / "absent")
    assert found.sensors == [] and "no RAPL interface" in found.problems[0]
