"""CPU and RAM estimates: model names, TDP choice, attribution, cgroup limits."""

import csv
import os
import re
import subprocess
import sys
import time
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nn_tracker.footprint.data
from nn_tracker.footprint.catalogue import bundled
from nn_tracker.sensors.cpu_model import (
    CpuEstimateSensor,
    CpuPowerModel,
    count_sockets,
    cpu_power_model,
    match_cpu_tdp,
    normalise_model,
    read_cpu_model,
)
from nn_tracker.sensors.process_tree import ProcessTree
from nn_tracker.sensors.ram_model import RamEstimateSensor, cgroup_memory_limit_bytes

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait")


@pytest.mark.parametrize(
    ("model", "name", "tdp"),
    [
        ("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "intel xeon gold 6148", 150),
        ("AMD EPYC 7763 64-Core Processor", "amd epyc 7763", 280),
        ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "intel core i7-8700k", 95),
    ],
)
def test_cpu_model_matching(model, name, tdp):
    assert match_cpu_tdp(model, bundled()) == (name, tdp)


@pytest.mark.parametrize("model", ["AMD EPYC", "Intel Xeon Processor (Skylake, IBRS)", "Common KVM processor", None])
def test_brand_only_models_match_nothing(model):
    assert match_cpu_tdp(model, bundled()) is None


CPU_TABLE = Path(nn_tracker.footprint.data.__file__).parent / "cpu_tdp.csv"
CPU_ROWS = list(csv.DictReader(CPU_TABLE.open(encoding="utf-8")))
CPU_TDP_W = {" ".join(row["name"].casefold().split()): float(row["tdp_w"]) for row in CPU_ROWS}


def reference_match(model):
    """The whole table parsed, then the longest catalogue name inside the model (the lookup's contract)."""
    wanted = normalise_model(model).casefold()
    if not re.search(r"\d", wanted):
        return None
    if wanted in CPU_TDP_W:
        return wanted, CPU_TDP_W[wanted]
    best = None
    for name, tdp in CPU_TDP_W.items():
        if re.search(r"\d", name) and f" {name} " in f" {wanted} " and (best is None or len(name) > len(best[0])):
            best = (name, tdp)
    return best


words = st.sampled_from(["Intel(R)", "Xeon(R)", "CPU", "@", "2.40GHz", "Processor", "64-Core", "v4", "Gold", ",", '"'])


@settings(max_examples=300, deadline=None)
@given(
    row=st.sampled_from(CPU_ROWS),
    before=st.lists(words, max_size=3),
    after=st.lists(words, max_size=3),
    case=st.sampled_from([str, str.upper, str.lower]),
)
def test_the_lazy_cpu_lookup_finds_what_the_whole_table_finds(row, before, after, case):
    """Law: reading only the model's word sequences finds the same entry as scanning every row."""
    model = case(" ".join([*before, row["name"], *after]))
    assert match_cpu_tdp(model, bundled()) == reference_match(model)


def test_a_long_model_name_costs_lookups_in_proportion_to_its_length(monkeypatch):
    """A long model name (a hostile /proc/cpuinfo) looks up at most (words x longest name) word sequences."""
    from nn_tracker.footprint import catalogue

    rows = catalogue._cpu_tdp_rows()
    looked_up = []
    monkeypatch.setattr(type(rows), "get", lambda self, key: looked_up.append(key))
    model = " ".join(f"w{i}" for i in range(300))  # 45,150 word sequences in all
    assert match_cpu_tdp(model, bundled()) is None  # every lookup answered "no" here
    assert 0 < len(looked_up) <= 300 * rows.most_words and rows.most_words < 30


def test_every_cpu_name_is_one_key():
    """The lookup reads the table as text: every name is stored in lookup form (case-folded, single
    spaces), once, with at most the words the lookup tries."""
    from nn_tracker.footprint.catalogue import CPU_NAME_MOST_WORDS

    assert all(row["name"] == " ".join(row["name"].casefold().split()) for row in CPU_ROWS)
    assert max(len(row["name"].split()) for row in CPU_ROWS) <= CPU_NAME_MOST_WORDS
    assert len(CPU_TDP_W) == len(CPU_ROWS)


def write_cpuinfo(root, model):
    root.mkdir(exist_ok=True)
    (root / "cpuinfo").write_text(f"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t: fpu\n")
    return root


def test_known_model_uses_the_catalogue_tdp(tmp_path):
    proc = write_cpuinfo(tmp_path / "proc", "AMD EPYC 7763 64-Core Processor")
    model = cpu_power_model(bundled(), proc_root=proc, sys_root=tmp_path / "sys")
    assert model.tdp_w == 280 and not model.assumed
    assert "catalogue TDP of 'amd epyc 7763'" in model.source
    assert read_cpu_model(proc) == "AMD EPYC 7763 64-Core Processor"


def test_unknown_model_says_what_was_assumed_and_how_to_fix_it(tmp_path):
    proc = write_cpuinfo(tmp_path / "proc", "AMD EPYC")
    model = cpu_power_model(bundled(), proc_root=proc, logical_cpus=4, sys_root=tmp_path / "sys")
    assert model.assumed and model.tdp_w == 14.0
    assert "'AMD EPYC' is not in the catalogue" in model.source
    assert "3.5 W per logical CPU x 4" in model.source and "cpu_tdp_w" in model.source
    sensor = CpuEstimateSensor(model, logical_cpus=4)
    assert any("assumed" in n for n in sensor.info.notes)


def test_user_tdp_wins(tmp_path):
    proc = write_cpuinfo(tmp_path / "p", "AMD EPYC")
    model = cpu_power_model(bundled(), tdp_w=65, proc_root=proc, sys_root=tmp_path / "sys")
    assert (
        model.tdp_w == 65
        and model.source == "given by the user: 65 W per package x 1 socket (count unknown: 1 assumed)"
    )


def fake_topology(root, packages_of_cpus):
    for cpu, package in enumerate(packages_of_cpus):
        topology = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
    decoy = root / "devices" / "system" / "cpu" / "cpufreq" / "topology"  # not a CPU (cpu[0-9]*): ignored
    decoy.mkdir(parents=True)
    (decoy / "physical_package_id").write_text("7\n")
    return root


def test_a_two_socket_server_gets_the_tdp_of_both_packages(tmp_path):
    proc = write_cpuinfo(tmp_path / "proc", "AMD EPYC 7763 64-Core Processor")
    sys_root = fake_topology(tmp_path / "sys", [0, 0, 1, 1])
    model = cpu_power_model(bundled(), proc_root=proc, sys_root=sys_root)
    assert model.tdp_w == 560 and model.sockets == 2
    assert "280 W per package x 2 sockets" in model.source
    assert cpu_power_model(bundled(), tdp_w=100, proc_root=proc, sys_root=sys_root).tdp_w == 200
    # the per-logical-CPU default already covers the whole machine: no multiplication
    unknown = cpu_power_model(
        bundled(), proc_root=write_cpuinfo(tmp_path / "p2", "AMD EPYC"), logical_cpus=4, sys_root=sys_root
    )
    assert unknown.tdp_w == 14.0


def test_sockets_from_cpuinfo_when_sysfs_has_no_topology(tmp_path):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cpuinfo").write_text("".join(f"processor\t: {i}\nphysical id\t: {i // 2}\n\n" for i in range(6)))
    assert count_sockets(tmp_path / "nosys", proc) == 3
    assert count_sockets(tmp_path / "nosys", tmp_path / "noproc") is None


def test_machine_attribution_is_tdp_times_busy_share():
    samples = iter([CpuTimes(10, 0, 10, 80, 0), CpuTimes(40, 0, 10, 100, 0)])  # 30 busy of 50 s -> 60 %
    sensor = CpuEstimateSensor(CpuPowerModel(100, "test", None, False), cpu_times=lambda: next(samples), logical_cpus=1)
    sensor.start(0.0)
    reading = sensor.read_energy(2.0)
    assert reading.power_w == pytest.approx(60.0)
    assert reading.energy_j == pytest.approx(120.0)


def test_process_attribution_counts_live_children():
    """A child burning CPU for ~1 s is attributed to this process tree."""
    tree = ProcessTree(refresh_s=0.0)
    sensor = CpuEstimateSensor(
        CpuPowerModel(100, "test", None, False), attribution="process", tree=tree, logical_cpus=os.cpu_count()
    )
    sensor.start(time.monotonic())
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.0: pass"])
    time.sleep(0.8)  # the child is alive and not yet waited for
    busy = tree.cpu_seconds()
    child.wait()
    assert busy >= 0.5
    share = sensor.utilisation(time.monotonic())
    assert 0.1 < share <= 1.0


def test_descendants_are_listed_from_proc_as_psutil_lists_them(tmp_path):
    """Children and grandchildren from /proc/<pid>/task/<tid>/children; psutil where a kernel lacks the file."""
    import psutil

    nested = "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
    nested += "time.sleep(30)"
    children = [subprocess.Popen([sys.executable, "-c", nested]) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        expected: set[int] = set()
        while len(expected) < 4 and time.monotonic() < deadline:  # both children and their children started
            time.sleep(0.05)
            expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert len(expected) == 4
        tree = ProcessTree()
        assert {int(pid) for pid in tree._descendants(os.getpid())} == expected
        tree.cpu_seconds()
        assert {child.pid for child in tree._children} == expected
        lacking = tmp_path / "proc" / str(os.getpid()) / "task" / str(os.getpid())
        lacking.mkdir(parents=True)  # a kernel without the children file: psutil lists them
        old_kernel = ProcessTree(proc_root=str(tmp_path / "proc"))
        assert set(old_kernel._descendants(os.getpid())) == expected
    finally:
        for child in children:
            for process in psutil.Process(child.pid).children(recursive=True):
                process.kill()
            child.kill()
            child.wait()


def test_without_proc_the_descendants_come_from_psutil(tmp_path):
    """Not Linux (no /proc): psutil lists the children, as it did before /proc was read directly."""
    import psutil

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)]
    try:
        tree = ProcessTree(refresh_s=0.0, proc_root=str(tmp_path / "no-proc"))
        tree.cpu_seconds()
        expected = {p.pid for p in psutil.Process().children(recursive=True)}
        assert {child.pid for child in tree._children} == expected >= {c.pid for c in children}
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_this_process_cpu_time_is_what_psutil_reads_from_proc():
    """The tree reads this process's CPU time with os.times(): the same kernel counters as /proc/self/stat."""
    import psutil

    waited = subprocess.run([sys.executable, "-c", "sum(range(3_000_000))"], check=True)  # children_* time
    assert waited.returncode == 0
    started = time.process_time()
    while time.process_time() - started < 0.3:
        pass
    tree = ProcessTree()
    times = psutil.Process().cpu_times()
    expected = times.user + times.system + times.children_user + times.children_system
    assert expected > 0.3 and tree.cpu_seconds() == pytest.approx(expected, abs=0.03)


def test_several_ranks_are_one_tree_each_process_counted_once():
    """Under DDP the node's measuring process charges every rank; a rank started by another is counted once."""
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass\ntime.sleep(30)"
    ranks = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]  # e.g. torchrun's workers
    try:
        time.sleep(1.5)  # each has burnt its 0.5 s of CPU and sleeps, alive
        alone = ProcessTree(pid=ranks[0].pid).cpu_seconds()
        both = ProcessTree(pids=[r.pid for r in ranks]).cpu_seconds()
        # this process is the parent of both: as a root too, it must not add them a second time
        with_parent = ProcessTree(pids=[os.getpid(), *(r.pid for r in ranks)], refresh_s=0.0)
        mine = ProcessTree(pid=os.getpid(), refresh_s=0.0).cpu_seconds()  # this process and both children
        assert 0.45 < alone < 0.7 and both == pytest.approx(2 * alone, rel=0.25)
        assert with_parent.cpu_seconds() == pytest.approx(mine, abs=0.05)
        assert with_parent.rss_bytes() == pytest.approx(ProcessTree(pid=os.getpid()).rss_bytes(), rel=0.1)
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()


def test_ram_estimate_uses_memory_in_use_capped_by_cgroup():
    coefficient = bundled().power_models["ram_w_per_gb"]
    sensor = RamEstimateSensor(coefficient, used_bytes=lambda: 16_000_000_000, limit_bytes=4_000_000_000)
    sensor.start(0.0)
    reading = sensor.read_energy(10.0)
    assert reading.power_w == pytest.approx(4 * 0.392)
    assert reading.energy_j == pytest.approx(4 * 0.392 * 10)
    assert any("cgroup limit" in n for n in sensor.info.notes)


def test_ram_process_attribution_uses_the_tree_rss():
    sensor = RamEstimateSensor(bundled().power_models["ram_w_per_gb"], attribution="process", tree=ProcessTree())
    assert 0 < sensor.power_w() < 0.392 * 8  # this test process uses far less than 8 GB


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "4294967296\n"}, 4294967296),
        ({"memory.max": "max\n"}, None),
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
        ({"memory/memory.limit_in_bytes": "1073741824\n"}, 1073741824),
        ({}, None),
    ],
)
def test_cgroup_limits(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_memory_limit_bytes(tmp_path, proc_root=tmp_path / "no-proc") == expected


@pytest.mark.parametrize(
    ("own", "files", "expected"),
    [
        ("0::/job/step\n", {"job/step/memory.max": "max\n", "job/memory.max": "2000000000\n"}, 2_000_000_000),
        ("0::/job/step\n", {"job/step/memory.max": "1000\n", "memory.max": "5000\n"}, 1000),  # the tightest
        ("0::/\n", {"memory.max": "3000\n"}, 3000),  # a container's own cgroup namespace
        ("5:cpu,memory:/slurm/job7\n1:name=systemd:/x\n", {"memory/slurm/job7/memory.limit_in_bytes": "4096\n"}, 4096),
        ("0::/other\n", {"job/step/memory.max": "1000\n"}, None),  # another process's limit is not ours
    ],
)
def test_cgroup_limit_of_this_process_s_own_cgroup(tmp_path, own, files, expected):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(own)
    for name, text in files.items():
        (tmp_path / "cg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cg" / name).write_text(text)
    assert cgroup_memory_limit_bytes(tmp_path / "cg", tmp_path / "proc") == expected


def test_guest_time_is_not_counted_twice():
    from collections import namedtuple

    Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
    samples = iter([Times(10, 0, 0, 10, 0, 0, 0, 0, 0, 0), Times(20, 0, 0, 20, 0, 0, 0, 0, 10, 0)])
    sensor = CpuEstimateSensor(CpuPowerModel(100, "test", None, False), cpu_times=lambda: next(samples), logical_cpus=1)
    sensor.start(0.0)
    assert sensor.utilisation(1.0) == pytest.approx(0.5)  # 10 s busy (the guest's 10 s are inside user) of 20 s


def test_a_machine_attributed_run_says_when_other_processes_were_busy(tmp_path):
    from collections import namedtuple

    from fakes import sensor_set

    from nn_tracker import ManualClock, Tracker

    Times = namedtuple("Times", "user system idle")
    machine = iter([Times(0, 0, 100), Times(60, 0, 140)])  # 60 s of the machine's CPU time busy
    own = iter([0.0, 15.0])  # of which this job's process tree used 15 s
    sensor = CpuEstimateSensor(
        CpuPowerModel(100, "test", None, False),
        cpu_times=lambda: next(machine),
        logical_cpus=1,
        own_cpu_s=lambda: next(own),
    )
    clock = ManualClock()
    tracker = Tracker(
        clock=clock, background=False, sensors=sensor_set(sensor), write_report=False, intensity_g_per_kwh=100
    )
    with tracker:
        clock.advance(100)
    device = tracker.report().to_dict()["devices"][0]
    assert device["details"]["other_processes_cpu_share"] == 0.75
    assert any("Other processes used 75% of the CPU time" in n for n in device["notes"])


def test_a_read_shorter_than_a_kernel_tick_keeps_the_last_power_never_a_false_zero():
    """A read right after a phase switch may cover no /proc/stat tick: no information, not 0 W."""
    from nn_tracker.core.clock import ManualClock
    from nn_tracker.sensors.sampling import Sampler

    Times = namedtuple("Times", "user idle")
    samples = iter([Times(0, 0), Times(8, 2), Times(8, 2), Times(16, 4)])  # the third read: no tick since
    sensor = CpuEstimateSensor(CpuPowerModel(100, "test", None, False), cpu_times=lambda: next(samples), logical_cpus=1)
    clock = ManualClock()
    sampler = Sampler([sensor], clock, interval_s=0.1)
    sampler.start(background=False)
    clock.advance(1.0)
    sampler.tick(force=True)
    assert sampler.power_w() == pytest.approx(80.0)
    clock.advance(0.005)
    sampler.tick(force=True)  # covers no tick of the kernel's CPU time
    assert sampler.power_w() == pytest.approx(80.0)
    clock.advance(1.0)
    sampler.tick(force=True)
    assert sampler.power_w() == pytest.approx(80.0)
    assert sampler.totals["cpu:estimate"].energy_j == pytest.approx(80.0 + 0.0 + 80.0)  # nothing lost


@settings(max_examples=60, deadline=None)
@given(
    ticks=st.lists(st.integers(0, 2**50), min_size=10, max_size=10),  # every kernel since 2.6.33
    more=st.sampled_from(["", "\ncpu0 1 2 3 4 5 6 7\nintr 5 6"]),
)
def test_machine_cpu_times_are_psutils(tmp_path_factory, ticks, more):
    """The first line of /proc/stat read directly gives psutil.cpu_times() (psutil reading the same fake tree)."""
    import psutil

    from nn_tracker.sensors.cpu_model import machine_cpu_times

    root = tmp_path_factory.mktemp("proc")
    (root / "stat").write_text("cpu  " + " ".join(map(str, ticks)) + more + "\n")
    before = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(root)
    try:
        ours, theirs = machine_cpu_times(str(root)), psutil.cpu_times()
    finally:
        psutil.PROCFS_PATH = before
    assert ours._fields == theirs._fields and {name: getattr(ours, name) for name in theirs._fields} == theirs._asdict()


@settings(max_examples=60, deadline=None)
@given(
    total_kb=st.integers(1, 2**40),
    free_share=st.floats(0, 1),
    available_share=st.floats(0, 1.2),
    with_available=st.booleans(),
)
def test_memory_in_use_is_psutils_figure(tmp_path_factory, total_kb, free_share, available_share, with_available):
    """Reading the head of /proc/meminfo gives psutil.virtual_memory().used (psutil reading the same fake tree)."""
    import psutil

    from nn_tracker.sensors.ram_model import machine_used_bytes

    root = tmp_path_factory.mktemp("proc")
    lines = [f"MemTotal:       {total_kb} kB", f"MemFree:        {int(total_kb * free_share)} kB"]
    if with_available:
        lines.append(f"MemAvailable:   {int(total_kb * available_share)} kB")
    lines += ["Buffers: 1000 kB", "Cached: 2000 kB", "Shared: 0 kB", "SReclaimable: 0 kB"]
    lines += ["Active: 0 kB", "Inactive: 0 kB", "Slab: 0 kB"]
    (root / "meminfo").write_text("\n".join(lines) + "\n")
    before = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(root)  # psutil, and our fallback to it, read the fake tree
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # psutil warns of the fields a tiny fake file lacks
            assert machine_used_bytes(root) == psutil.virtual_memory().used
    finally:
        psutil.PROCFS_PATH = before


def test_a_cgroup_limit_read_in_the_last_seconds_is_used_again(monkeypatch, tmp_path):
    """Trackers started one after another share a reading; after LIMIT_REUSE_S the limit is read again."""
    from nn_tracker.sensors import ram_model

    reads = []
    monkeypatch.setattr(ram_model, "_limits_read", {})
    monkeypatch.setattr(ram_model, "cgroup_memory_limit_bytes", lambda cg, proc: reads.append(cg) or len(reads))
    now = [100.0]
    monkeypatch.setattr(ram_model.time, "monotonic", lambda: now[0])
    assert ram_model.recent_cgroup_memory_limit_bytes(tmp_path, "/proc") == 1
    now[0] += ram_model.LIMIT_REUSE_S - 0.01
    assert ram_model.recent_cgroup_memory_limit_bytes(tmp_path, "/proc") == 1  # reused
    assert ram_model.recent_cgroup_memory_limit_bytes(tmp_path / "other", "/proc") == 2  # another root: read
    now[0] += 0.02
    assert ram_model.recent_cgroup_memory_limit_bytes(tmp_path, "/proc") == 3  # too old: read again
    assert len(reads) == 3
