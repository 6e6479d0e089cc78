"""The one merge of run states: sequential sessions add up, parallel claims of one device are refused."""

import pytest

from nn_tracker.run_state import DeviceCountedTwice, add_device, add_units, merge_parallel, unit_totals
from nn_tracker.sampling import DeviceTotals
from nn_tracker.sensors.base import SensorInfo


def totals(device_id="gpu:0", joules=100.0):
    device = DeviceTotals(SensorInfo(device_id=device_id, component="gpu", name="GPU", method="energy_counter"))
    device.energy_j, device.measured_s, device.energy_by_phase_j = joules, 1.0, {"training": joules}
    return device


def state(node, *devices, units=None):
    return {
        "nn_tracker_state": 1,
        "node": node,
        "duration_s": 1.0,
        "phase_time_s": {"training": 1.0},
        "units": units or {},
        "devices": [d.to_state() for d in devices],
    }


def test_sequential_sessions_of_a_device_add_up():
    devices = {}
    add_device(devices, "gpu:0", totals(joules=100), parallel=False)
    add_device(devices, "gpu:0", totals(joules=50), parallel=False)
    assert devices["gpu:0"].energy_j == 150 and devices["gpu:0"].energy_by_phase_j == {"training": 150}


def test_two_parallel_claims_of_one_device_are_an_error_never_a_sum():
    devices = {}
    add_device(devices, "gpu:0", totals(joules=100), parallel=True)
    with pytest.raises(DeviceCountedTwice, match="gpu:0 was measured by two processes"):
        add_device(devices, "gpu:0", totals(joules=90), parallel=True)
    assert devices["gpu:0"].energy_j == 100


def test_the_same_measurement_gathered_twice_is_kept_once():
    devices = {}
    add_device(devices, "gpu:0", totals(joules=100), parallel=True)
    add_device(devices, "gpu:0", totals(joules=100), parallel=True)
    assert devices["gpu:0"].energy_j == 100


def test_merge_parallel_keys_other_nodes_and_sums_units():
    first = state("a", totals("gpu:0"), units={"training": {"sample": 8}})
    other = state("b", totals("gpu:0", 70), units={"training": {"sample": 8, "token": 5}})
    merged = merge_parallel([first, other], lambda t, s: f"{s['node']}/{t.info.device_id}")
    assert sorted(d["info"]["device_id"] for d in merged["devices"]) == ["b/gpu:0", "gpu:0"]
    assert merged["units"] == {"training": {"sample": 16, "token": 5}}
    assert first["units"] == {"training": {"sample": 8}}  # the inputs are left as they were
    with pytest.raises(DeviceCountedTwice):
        merge_parallel([first, state("a", totals("gpu:0", 70))], lambda t, s: t.info.device_id)


def test_units_add_per_phase_and_kind():
    into = {"training": {"sample": 1}}
    add_units(into, {"training": {"sample": 2, "batch": 1}, "querying": {"query": 3}})
    assert into == {"training": {"sample": 3, "batch": 1}, "querying": {"query": 3}}
    assert unit_totals(into) == {"sample": 3, "batch": 1, "query": 3}
