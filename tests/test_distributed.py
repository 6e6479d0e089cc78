"""Distributed training: each node's hardware measured once, one merged report."""

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nn_tracker.distributed import assign_roles

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


def test_gpus_are_owned_by_uuid_across_the_whole_job():
    """Two containers on one machine with different host names: one node (the same kernel)."""
    entries = [
        {"node": "boot:k1", "host": "pod-a", "rank": 0, "pid": 10, "gpu_uuids": ["GPU-1"]},
        {"node": "boot:k1", "host": "pod-b", "rank": 1, "pid": 20, "gpu_uuids": ["GPU-1", "GPU-2"]},
    ]
    roles = {r.rank: r for r in assign_roles(entries)}
    assert roles[0].node_sensors and not roles[1].node_sensors  # the machine's CPU and RAM once
    assert roles[0].gpu_uuids == ("GPU-1",) and roles[1].gpu_uuids == ("GPU-2",)
    assert roles[0].node_pids == (10, 20)  # process attribution covers both containers' ranks


def test_same_host_name_on_two_nodes_measures_both():
    entries = [
        {"node": "boot:k1", "host": "localhost", "rank": 0, "pid": 10, "gpu_uuids": ["GPU-1"]},
        {"node": "boot:k2", "host": "localhost", "rank": 1, "pid": 10, "gpu_uuids": ["GPU-2"]},
    ]
    roles = {r.rank: r for r in assign_roles(entries)}
    assert roles[0].node_sensors and roles[1].node_sensors
    assert roles[0].node_pids == (10,) and roles[1].node_pids == (10,)


def test_node_identity_is_the_boot_id_then_the_machine_id_then_the_host_name(tmp_path, monkeypatch):
    from nn_tracker.core.node import NodeLabels, hostname, node_id

    monkeypatch.delenv("NN_TRACKER_NODE_ID", raising=False)
    proc, etc = tmp_path / "proc", tmp_path / "etc"
    assert node_id(proc, etc) == f"host:{hostname()}"
    etc.mkdir()
    (etc / "machine-id").write_text("abc123\n")
    assert node_id(proc, etc) == "machine:abc123"
    (proc / "sys" / "kernel" / "random").mkdir(parents=True)
    (proc / "sys" / "kernel" / "random" / "boot_id").write_text("8f1c-77\n")
    assert node_id(proc, etc) == "boot:8f1c-77"
    monkeypatch.setenv("NN_TRACKER_NODE_ID", "node-b")
    assert node_id(proc, etc) == "node-b"
    labels = NodeLabels("boot:own", "gpu-host")
    assert labels.label("boot:other", "gpu-host") == "gpu-host~other"  # same host name, another node
    assert labels.label("boot:third", "gpu-2") == "gpu-2"
    assert labels.label("boot:other", "gpu-host") == "gpu-host~other"


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def double_counting_problems(data: dict, gpu_watts: dict[str, float], nodes: int) -> list[str]:
    """What a report shows of counting something twice (or missing it); empty when right.

    Each simulated GPU draws a set power, so its energy must be that power over the run (within a
    counter step at each end and the ranks' start skew), measured for no longer than the run lasted;
    each node's CPU and RAM are measured once, for no longer than the run.
    """
    problems = []
    duration = data["duration_s"]
    devices = data["devices"]
    gpus = {d["device_id"].rsplit("/", 1)[-1]: d for d in devices if d["component"] == "gpu"}
    if sorted(gpus) != sorted(f"gpu:{u}" for u in gpu_watts):
        problems.append(f"GPUs {sorted(gpus)} != {sorted(gpu_watts)}")
    for uuid, watts in gpu_watts.items():
        device = gpus.get(f"gpu:{uuid}")
        if device is None:
            continue
        joules = device["energy_kwh"] * 3.6e6
        if abs(joules - watts * duration) > watts * (0.4 + 0.1 * duration):
            problems.append(f"{uuid}: {joules:.0f} J, expected {watts * duration:.0f} J")
        if device["measured_s"] > duration * 1.1 + 0.3:
            problems.append(f"{uuid}: measured {device['measured_s']:.1f} s of a {duration:.1f} s run")
    for component in ("cpu", "ram"):
        measured = [d for d in devices if d["component"] == component]
        if len({d["node"] for d in measured}) != nodes or len(measured) != nodes:
            problems.append(f"{component}: {len(measured)} devices on {len({d['node'] for d in measured})} nodes")
        problems += [
            f"{d['device_id']}: measured {d['measured_s']:.1f} s of a {duration:.1f} s run"
            for d in measured
            if d["measured_s"] > duration * 1.1 + 0.3
        ]
    return problems


def run_job(tmp_path, env, nodes, per_node, *flags, backend="cuda:gloo"):
    """The plain torch.distributed job; ``cuda:gloo`` serves only CUDA tensors, like NCCL."""
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "torch_distributed_job.py"),
            str(tmp_path),
            free_port(),
            str(nodes),
            str(per_node),
            backend,
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("*.json")] == ["nn_tracker-plain.json"]  # one report, from rank 0
    return json.loads((tmp_path / "nn_tracker-plain.json").read_text())


def job_gpus(nodes: int) -> dict[str, float]:
    """The simulated GPUs of torch_distributed_job.py: GPU-nN-I at 100 + 50 x I W, two per node."""
    return {f"GPU-n{n}-{i}": 100.0 + 50.0 * i for n in range(nodes) for i in range(2)}


def test_two_nodes_of_two_processes_that_share_a_host_name_count_everything_once(tmp_path, fake_gpu_env):
    """Two nodes with the same host name (containers with a fixed name): each node's CPU and RAM counted."""
    pytest.importorskip("torch")
    data = run_job(tmp_path, fake_gpu_env, 2, 2)
    assert data["status"] == "completed"
    assert double_counting_problems(data, job_gpus(2), nodes=2) == []
    assert len(data["nodes"]) == 2  # the same host name, told apart by node identity
    assert data["phases"]["training"]["units"]["sample"] == 10 + 20 + 30 + 40
    assert any("Merged from 4 processes on 2 node(s)" in n for n in data["notes"])


def test_one_node_of_four_processes_with_four_gpus(tmp_path, fake_gpu_env):
    pytest.importorskip("torch")
    env = dict(fake_gpu_env)
    env["NN_TRACKER_TEST_GPUS"] = "4"
    data = run_job(tmp_path, env, 1, 4)
    gpus = {f"GPU-n0-{i}": 100.0 + 50.0 * i for i in range(4)}
    assert double_counting_problems(data, gpus, nodes=1) == []


def test_every_rank_measuring_everything_is_refused_at_the_merge(tmp_path, fake_gpu_env):
    """The mutation these tests exist for: two ranks claiming one device are never summed."""
    pytest.importorskip("torch")
    data = run_job(tmp_path, fake_gpu_env, 1, 2, "--every-rank-measures-all")
    notes = [n for n in data["notes"] if n.startswith("Not merged: device ")]
    assert len(notes) == 4  # rank 1's CPU, RAM and two GPUs: each left out, with its own note
    assert all("measured by two processes at the same time (ranks 0 and 1" in n for n in notes)
    assert not any(n.startswith("Merged from") for n in data["notes"])
    assert double_counting_problems(data, job_gpus(1), nodes=1) == []  # rank 0's own figures, counted once


def test_the_checks_catch_a_device_summed_twice():
    """What the merge now refuses, summed anyway, is what double_counting_problems exists to see."""
    data = {
        "duration_s": 10.0,
        "devices": [
            {"device_id": "gpu:GPU-n0-0", "component": "gpu", "energy_kwh": 2 * 100 * 10 / 3.6e6, "measured_s": 10.0},
            {"device_id": "gpu:GPU-n0-1", "component": "gpu", "energy_kwh": 150 * 10 / 3.6e6, "measured_s": 10.0},
        ],
        "nodes": {"local": {}},
    }
    problems = double_counting_problems(data, {"GPU-n0-0": 100.0, "GPU-n0-1": 150.0}, nodes=1)
    assert any("GPU-n0-0" in p for p in problems) and not any("GPU-n0-1" in p for p in problems), problems


def test_lightning_ddp_on_a_backend_like_nccl_counts_node_energy_once(tmp_path, fake_gpu_env):
    """Every collective nn_tracker issued on the job's group failed like NCCL; now it uses its own."""
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
    assert double_counting_problems(data, {"GPU-aaaa": 300.0, "GPU-bbbb": 200.0}, nodes=1) == []
    assert any("Merged from 2 processes on 1 node(s)" in n for n in data["notes"])
    assert data["phases"]["training"]["units"]["sample"] == 128  # 64 samples x 2 epochs over both ranks
    assert data["nodes"]["local"]["energy_kwh"] == pytest.approx(data["energy"]["it_kwh"])  # one node: no host name
    with open(next((tmp_path / "logs").rglob("metrics.csv"))) as handle:
        logged = [float(r["energy/gpu_kwh"]) for r in csv.DictReader(handle) if r.get("energy/gpu_kwh")]
    assert logged and logged[-1] == pytest.approx(
        sum(d["energy_kwh"] for d in data["devices"] if d["component"] == "gpu"), rel=1e-9
    )  # summed over the processes on nn_tracker's own group, the final figures after the last reading


def test_a_ranks_energy_while_it_waits_for_a_slower_rank_0_is_counted(tmp_path, fake_gpu_env):
    """Rank 0 reaches stop() 1.5 s after the others: the GPUs of node 1 (measured by rank 2) drew all along."""
    pytest.importorskip("torch")
    data = run_job(tmp_path, fake_gpu_env, 2, 2, "--slow-rank-0")
    assert data["duration_s"] > 3.4
    assert double_counting_problems(data, job_gpus(2), nodes=2) == []


def test_a_resumed_multi_node_lightning_fit_continues_the_run(tmp_path, fake_gpu_env):
    """Fit, checkpoint, resume, fit: 2 simulated nodes with a GPU each; the resumed fit checkpoints again."""
    pytest.importorskip("torch")
    for mode in ("first", "resume"):
        result = subprocess.run(
            [sys.executable, str(HERE / "ddp_lightning_job.py"), str(tmp_path), mode],
            env=dict(fake_gpu_env, MASTER_PORT=free_port()),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads((tmp_path / "reports" / "nn_tracker-first.json").read_text())
    data = json.loads((tmp_path / "reports" / "nn_tracker-resume.json").read_text())
    assert data["status"] == "completed"
    earlier, current = data["sessions"]
    assert earlier["processes"] == current["processes"] == 2 and current["current"]
    assert earlier["units"] == {"sample": 64, "batch": 8}  # the first epoch, both ranks, up to the checkpoint
    assert data["phases"]["training"]["units"]["sample"] == 128  # two epochs over both ranks
    assert data["duration_s"] == pytest.approx(earlier["duration_s"] + current["duration_s"], rel=1e-12)
    assert earlier["duration_s"] <= first["duration_s"]
    assert data["energy"]["it_kwh"] == pytest.approx(earlier["it_energy_kwh"] + current["it_energy_kwh"], rel=1e-12)
    assert double_counting_problems(data, {"GPU-r0": 200.0, "GPU-r1": 300.0}, nodes=2) == []
    assert len(data["nodes"]) == 2 and not any(n.startswith("Not merged") for n in data["notes"])
    with open(next((tmp_path / "logs-resume").rglob("metrics.csv"))) as handle:
        logged = [float(r["energy/total_kwh"]) for r in csv.DictReader(handle) if r.get("energy/total_kwh")]
    assert logged == sorted(logged)  # the run-level series never goes down
    assert logged[-1] == pytest.approx(data["energy"]["it_kwh"], rel=1e-9)  # every rank and session counted once


def test_a_failed_distributed_run_names_the_ranks_missing_from_rank_0_s_report(tmp_path):
    """After a failure nothing is gathered (the others may be gone): rank 0 writes its own, and says whose is not."""
    from fakes import ConstantPower, sensor_set

    from nn_tracker.distributed import DistributedTracker, Role
    from nn_tracker.tracker import Tracker

    class Gone:
        size = 4

        def gather(self, obj):
            raise AssertionError("nothing is gathered after a failure")

        def close(self):
            pass

    run = DistributedTracker(output_dir=tmp_path, intensity_g_per_kwh=100)
    run._collectives, run.role = Gone(), Role("node-a", 0, 4, True, ())
    run.tracker = Tracker(sensors=sensor_set(ConstantPower()), output_dir=tmp_path, intensity_g_per_kwh=100).start()
    report = run.stop("failed", RuntimeError("rank 2 died"))
    assert report.status == "failed"
    assert "The run did not complete: the measurements of ranks 1, 2, 3 (of 4) are not in this report." in report.notes


def test_this_node_s_boot_id_is_read_once_and_a_fallback_again(monkeypatch):
    from nn_tracker.core import node

    reads = iter(["machine:m1", "boot:b1", "boot:b2"])
    monkeypatch.setattr(node, "_boot_node", [])
    monkeypatch.setattr(node, "_read_node_id", lambda proc, etc: next(reads))
    monkeypatch.delenv(node.NODE_ID_VARIABLE, raising=False)
    assert node.node_id() == "machine:m1"  # a fallback (a failed read?) is not kept
    assert node.node_id() == "boot:b1"
    assert node.node_id() == "boot:b1"  # kept: the boot does not change under a running process
    monkeypatch.setenv(node.NODE_ID_VARIABLE, "override")
    assert node.node_id() == "override"
