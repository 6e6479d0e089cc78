"""Distributed training: each node's hardware measured once, one merged report."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nn_tracker.distributed import assign_roles, merge_states

HERE = Path(__file__).resolve().parent


def test_roles_node_sensors_once_per_node_and_each_gpu_once():
    entries = [
        {"node": "a", "rank": 0, "gpu_uuids": ["GPU-1", "GPU-2"]},
        {"node": "a", "rank": 1, "gpu_uuids": ["GPU-1", "GPU-2"]},  # all GPUs visible to every rank
        {"node": "b", "rank": 2, "gpu_uuids": ["GPU-3"]},  # CUDA_VISIBLE_DEVICES set per rank
        {"node": "b", "rank": 3, "gpu_uuids": ["GPU-4"]},
    ]
    roles = {r.rank: r for r in assign_roles(entries)}
    assert [roles[i].node_sensors for i in range(4)] == [True, False, True, False]
    assert roles[0].gpu_uuids == ("GPU-1", "GPU-2") and roles[1].gpu_uuids == ()
    assert roles[2].visible_devices == "GPU-3" and roles[3].visible_devices == "GPU-4"
    assert roles[1].visible_devices == ""  # CUDA semantics: empty means no GPU


def state(node, devices, units):
    return {
        "nn_tracker_state": 1,
        "node": node,
        "duration_s": 10.0,
        "phase_time_s": {"training": 10.0},
        "units": units,
        "devices": [
            {
                "info": {
                    "device_id": d,
                    "component": d.split(":")[0],
                    "name": d,
                    "method": "counter",
                    "model": "",
                    "details": {},
                    "notes": [],
                },
                "energy_j": j,
                "energy_by_phase_j": {"training": j},
                "measured_s": 10.0,
                "gap_s": 0.0,
                "peak_power_w": None,
                "readings": 1,
                "errors": 0,
                "first_error": "",
                "dropped_intervals": 0,
                "node": None,
            }
            for d, j in devices
        ],
    }


def test_merge_keys_other_nodes_devices_by_node_and_sums_units():
    merged = merge_states(
        [
            state("a", [("cpu:estimate", 100.0), ("gpu:GPU-1", 500.0)], {"training": {"sample": 32}}),
            state("a", [("gpu:GPU-2", 400.0)], {"training": {"sample": 32}}),
            state("b", [("cpu:estimate", 90.0)], {"training": {"sample": 32}}),
        ]
    )
    by_id = {d["info"]["device_id"]: d for d in merged["devices"]}
    assert set(by_id) == {"cpu:estimate", "gpu:GPU-1", "gpu:GPU-2", "b/cpu:estimate"}
    assert by_id["b/cpu:estimate"]["node"] == "b" and by_id["cpu:estimate"]["energy_j"] == 100.0
    assert merged["units"] == {"training": {"sample": 96}}
    assert merged["duration_s"] == 10.0


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@pytest.fixture
def fake_gpu_env(fake_nvml_build):
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=str(fake_nvml_build.parent),
        FAKE_NVML_DEVICES="NVIDIA A100-SXM4-80GB|GPU-aaaa|300;NVIDIA A100-SXM4-80GB|GPU-bbbb|300",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_lightning_ddp_two_processes_counts_node_energy_once(tmp_path, fake_gpu_env):
    pytest.importorskip("torch")
    env = dict(fake_gpu_env, MASTER_PORT=free_port())
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_lightning_job.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = list((tmp_path / "reports").glob("*.json"))
    assert [p.name for p in reports] == ["nn_tracker-ddp.json"]  # one report, from global rank 0
    data = json.loads(reports[0].read_text())
    components = sorted(d["component"] for d in data["devices"])
    assert components == ["cpu", "gpu", "gpu", "ram"]  # node-wide sensors once, each GPU once
    assert sorted(d["device_id"] for d in data["devices"] if d["component"] == "gpu") == [
        "gpu:GPU-aaaa",
        "gpu:GPU-bbbb",
    ]
    assert any("Merged from 2 processes on 1 node(s)" in n for n in data["notes"])
    assert data["phases"]["training"]["units"]["sample"] == 128  # 64 samples x 2 epochs over both ranks
    assert data["nodes"][socket.gethostname()]["energy_kwh"] == pytest.approx(data["energy"]["it_kwh"])


def test_plain_torch_distributed_two_processes(tmp_path, fake_gpu_env):
    pytest.importorskip("torch")
    result = subprocess.run(
        [sys.executable, str(HERE / "torch_distributed_job.py"), str(tmp_path), free_port()],
        env=fake_gpu_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("*.json")] == ["nn_tracker-plain.json"]
    data = json.loads((tmp_path / "nn_tracker-plain.json").read_text())
    assert sorted(d["component"] for d in data["devices"]) == ["cpu", "gpu", "gpu", "ram"]
    assert data["phases"]["training"]["units"]["sample"] == 30
    assert data["status"] == "completed"
