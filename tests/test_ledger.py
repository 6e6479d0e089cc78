"""The ledger and the laws every figure obeys, over random runs (hypothesis), with a fake clock and fake sensors.

Laws (README "How figures add up"):
- Σ phases' own energy = Σ devices = the run; each root phase's inclusive energy = its subtree's;
- Σ datacentres' operational carbon = Σ devices' operational carbon = the footprint's;
- Σ sessions = a resumed run = the same run uninterrupted (energy, duration, time per phase, units);
- Σ CSV rows of a run's sessions = the run; writing a report again adds no row;
- Σ ranks = the job; a record gathered twice counts once; a device claimed twice is never summed;
- Σ serving periods = the serving report;
- cumulative series (live figures, logged series, Prometheus counters) never decrease.

Integer watts and seconds keep every sum exact, so "=" is equality where the law is exact.
"""

import asyncio
import csv
import itertools
import json
import re
import threading
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn_tracker import Datacentre, ManualClock, Tracker, ValidationError
from nn_tracker.accounting.ledger import DeviceRecord, Ledger, Record
from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.core.structs import replace
from nn_tracker.integrations.stages import LoggedSeries
from nn_tracker.report import codecarbon_csv
from nn_tracker.report.live import CUMULATIVE_METRICS

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

PHASES = st.sampled_from(
    [None, ("training",), ("training", "validation"), ("querying",), ("querying", "test"), ("a", "b")]
)
STEP = st.tuples(st.integers(1, 50), st.integers(0, 700), st.integers(0, 700), st.integers(0, 9))  # s, W, W, units
BLOCK = st.tuples(PHASES, st.lists(STEP, min_size=1, max_size=4))
RUN = st.lists(BLOCK, min_size=1, max_size=6)

CENTRES = (
    Datacentre(intensity_g_per_kwh=400, pue=1.5, transport_factor=0.8, name="train"),
    Datacentre(intensity_g_per_kwh=50, pue=1.25, phases=("querying",), name="serve"),
)


class Machine:
    """A fake clock and two fake devices, shared by the sessions of one run."""

    def __init__(self):
        self.clock = ManualClock()
        self.gpu = ConstantPower("gpu:GPU-1", power_w=0.0)
        self.cpu = ConstantPower("cpu:estimate", power_w=0.0, component="cpu", name="CPU")

    def tracker(self, tmp_path, **options):
        options.setdefault("datacentres", CENTRES)
        options.setdefault("embodied", ())
        return Tracker(
            clock=self.clock,
            background=False,
            sensors=sensor_set(self.gpu, self.cpu),
            output_dir=tmp_path,
            checkpoint_interval_s=None,
            formats=("json", "csv"),
            **options,
        )

    def run(self, tracker, blocks, seen=None):
        """Play blocks of steps: each in its (nested) phase; ``seen`` collects the live figures after each step."""
        for phases, steps in blocks:
            with _nested(tracker, phases or ()):
                for seconds, gpu_w, cpu_w, units in steps:
                    self.gpu.power_w, self.cpu.power_w = float(gpu_w), float(cpu_w)
                    self.clock.advance(seconds)
                    tracker.add_units(units, kind="sample")
                    tracker.sample()
                    if seen is not None:
                        seen.append(tracker.live())


class _nested:
    def __init__(self, tracker, names):
        self._phases = [tracker.phase(n) for n in names]

    def __enter__(self):
        for phase in self._phases:
            phase.__enter__()

    def __exit__(self, *exc):
        for phase in reversed(self._phases):
            phase.__exit__(None, None, None)


def expected_joules(blocks):
    return sum((gpu + cpu) * s for _, steps in blocks for s, gpu, cpu, _ in steps)


# ----- Σ phases = Σ devices = the run; Σ datacentres = operational carbon -------------------------------
@SETTINGS
@given(blocks=RUN)
def test_phases_devices_and_datacentres_add_up_to_the_run(tmp_path, blocks):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        machine.run(tracker, blocks)
    report = tracker.report()
    total_kwh = report.energy_kwh
    assert total_kwh * JOULES_PER_KWH == pytest.approx(expected_joules(blocks), rel=1e-12, abs=1e-9)
    assert sum(p.energy_kwh for p in report.phases.values()) == pytest.approx(total_kwh, rel=1e-12, abs=1e-15)
    assert sum(d.energy_kwh for d in report.devices) == pytest.approx(total_kwh, rel=1e-12, abs=1e-15)
    roots = {name: p for name, p in report.phases.items() if "/" not in name}
    assert sum(p.inclusive_energy_kwh for p in roots.values()) == pytest.approx(total_kwh, rel=1e-12, abs=1e-15)
    for name, phase in report.phases.items():  # inclusive = own + its subtree's own
        subtree = sum(p.energy_kwh for n, p in report.phases.items() if n == name or n.startswith(name + "/"))
        assert phase.inclusive_energy_kwh == pytest.approx(subtree, rel=1e-12, abs=1e-15)
    assert sum(p.duration_s for p in report.phases.values()) == report.duration_s  # exact: integer seconds
    footprint = report.footprint
    assert sum(c.it_energy_kwh for c in report.datacentres) == pytest.approx(total_kwh, rel=1e-12, abs=1e-15)
    assert sum(c.operational_carbon_g for c in report.datacentres) == pytest.approx(
        footprint.operational_carbon_g, rel=1e-12, abs=1e-12
    )
    assert sum(d.operational_carbon_g for d in report.devices) == pytest.approx(
        footprint.operational_carbon_g, rel=1e-12, abs=1e-12
    )
    querying_j = sum(
        (gpu + cpu) * s for phases, steps in blocks if phases and phases[0] == "querying" for s, gpu, cpu, _ in steps
    )
    assert report.datacentres[1].it_energy_kwh * JOULES_PER_KWH == pytest.approx(querying_j, rel=1e-12, abs=1e-9)


# ----- Σ sessions = resumed = uninterrupted; Σ CSV rows = the run ----------------------------------------
@SETTINGS
@given(blocks=RUN, split=st.integers(0, 6), twice=st.booleans())
def test_a_resumed_run_is_the_same_run_uninterrupted(tmp_path_factory, blocks, split, twice):
    split = min(split, len(blocks))
    whole_dir, resumed_dir = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("resumed")
    machine = Machine()
    whole = machine.tracker(whole_dir)
    with whole:
        machine.run(whole, blocks)

    machine = Machine()
    first = machine.tracker(resumed_dir)
    with first:
        machine.run(first, blocks[:split])
        checkpoint = json.loads(json.dumps(first.export_state(public=True)))  # as a checkpoint file holds it
    second = machine.tracker(resumed_dir)
    with second:
        second.carry_over(checkpoint)
        if twice:
            second.carry_over(checkpoint)  # the same records twice: kept once
        machine.run(second, blocks[split:])

    a, b = whole.report(), second.report()
    assert b.energy_kwh == a.energy_kwh and b.duration_s == a.duration_s
    assert {n: (p.energy_kwh, p.duration_s, p.units) for n, p in b.phases.items() if p.duration_s or p.energy_kwh} == {
        n: (p.energy_kwh, p.duration_s, p.units) for n, p in a.phases.items() if p.duration_s or p.energy_kwh
    }
    assert {k: u.count for k, u in b.units.items()} == {k: u.count for k, u in a.units.items()}
    assert [(d.device_id, d.energy_kwh) for d in b.devices] == [(d.device_id, d.energy_kwh) for d in a.devices]
    assert b.footprint.operational_carbon_g == pytest.approx(a.footprint.operational_carbon_g, rel=1e-12, abs=1e-12)
    sessions = b.sessions
    assert len(sessions) == 2 and [s.current for s in sessions] == [False, True]
    assert sum(s.duration_s for s in sessions) == b.duration_s
    assert sum(s.it_energy_kwh for s in sessions) == pytest.approx(b.energy_kwh, rel=1e-12, abs=1e-15)
    assert sum(s.total_carbon_g for s in sessions) == pytest.approx(b.total_carbon_g, rel=1e-12, abs=1e-12)
    # each session wrote its own CSV row to the same file: the rows add up to the run
    csv_path = resumed_dir / "rows.csv"
    for report in (first.report(), b, b):  # the final report written twice: one row
        codecarbon_csv.append(csv_path, report)
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert sum(float(r["energy_consumed"]) for r in rows) == pytest.approx(
        b.footprint.facility_energy_kwh, rel=1e-12, abs=1e-15
    )
    assert sum(float(r["duration"]) for r in rows) == b.duration_s
    assert sum(float(r["emissions"]) for r in rows) * 1000 == pytest.approx(b.total_carbon_g, rel=1e-12, abs=1e-12)


def test_a_resumed_report_states_the_run_and_each_session(tmp_path):
    machine = Machine()
    first = machine.tracker(tmp_path)
    with first:
        machine.run(first, [(("training",), [(100, 200, 10, 4)])])
    machine.clock.advance(3600)  # an hour until the job is resumed
    second = machine.tracker(tmp_path)
    with second:
        second.carry_over(first.export_state(public=True))
        machine.run(second, [(("training",), [(50, 200, 10, 4)])])
    report = second.report()
    earlier, current = report.sessions
    assert report.started_at == earlier.started_at == first.report().started_at  # the run's start
    assert report.ended_at == current.ended_at and current.started_at == second.report().sessions[1].started_at
    assert (earlier.duration_s, current.duration_s, report.duration_s) == (100, 50, 150)
    assert earlier.run_id == first.run_id and current.run_id == second.run_id
    assert any("2 sessions; includes 100.0 s measured in earlier sessions" in n for n in report.notes)


# ----- the ledger: union by key, refusals, one claim per device and session ------------------------------
def device(device_id="gpu:GPU-1", joules=100.0, phase="training", component="gpu"):
    return DeviceRecord(
        device_id=device_id,
        component=component,
        name=device_id,
        method="counter",
        energy_j=joules,
        energy_by_phase_j={phase: joules},
        measured_s=10.0,
        readings=1,
    )


def record(session="s1", process="p0", rank=0, node="node-a", devices=(), duration=10.0, start=100.0, units=None):
    return Record(
        session=session,
        process=process,
        rank=rank,
        node=node,
        run_id=f"run-{session}",
        started_wall_s=start,
        ended_wall_s=start + duration,
        duration_s=duration,
        phase_time_s={"training": duration},
        units=units or {"training": {"sample": 8}},
        devices=tuple(devices),
    )


RECORDS = st.lists(
    st.builds(
        record,
        session=st.sampled_from(["s1", "s2", "s3"]),
        process=st.sampled_from(["p0", "p1", "p2"]),
        rank=st.integers(0, 2),
        node=st.sampled_from(["node-a", "node-b"]),
        devices=st.lists(
            st.builds(
                device,
                device_id=st.sampled_from(["gpu:GPU-1", "gpu:GPU-2", "cpu:estimate"]),
                joules=st.integers(0, 900),
            ),
            max_size=3,
            unique_by=lambda d: d.device_id,
        ),
        duration=st.integers(0, 100),
        start=st.sampled_from([100.0, 200.0, 300.0]),
    ),
    max_size=8,
    unique_by=lambda r: (r.session, r.process),
)


def projection(ledger):
    return (
        sorted((d.node, d.record.device_id, d.record.energy_j) for d in ledger.devices()),
        ledger.duration_s(),
        ledger.phase_time_s(),
        ledger.units(),
        sorted(ledger.claim_notes()),
    )


@SETTINGS
@given(records=RECORDS, order=st.randoms(use_true_random=False))
def test_a_union_of_records_is_the_same_in_any_order_and_counts_a_record_once(records, order):
    shuffled = list(records)
    order.shuffle(shuffled)
    assert projection(Ledger(records)) == projection(Ledger(shuffled + records))  # seen twice: kept once
    ledger = Ledger(records)
    assert projection(Ledger.from_state(json.loads(json.dumps(ledger.to_state())))) == projection(ledger)
    # a GPU is one device wherever it is (its UUID); any other device is one per node
    claimed = {(r.session, "" if d.component == "gpu" else r.node, d.device_id) for r in records for d in r.devices}
    assert len(claimed) == sum(d.sessions for d in ledger.devices())  # one figure per device and session
    assert sum(d.record.energy_j for d in ledger.devices()) <= sum(d.energy_j for r in records for d in r.devices)


def test_another_record_under_a_key_is_refused_with_a_note_never_summed():
    ledger = Ledger([record(devices=[device(joules=100.0)])])
    assert not ledger.add(record(devices=[device(joules=250.0)]))
    assert ledger.energy_j() == 100.0
    (note,) = ledger.notes
    assert note.startswith("Not merged: a second, different record of process p0") and "\n" not in note


def test_a_device_claimed_by_two_ranks_of_a_session_counts_once_the_lowest_rank():
    ledger = Ledger([record(process="p1", rank=1, devices=[device(joules=90.0)]), record(devices=[device()])])
    ((kept,),) = [[d.record.energy_j for d in ledger.devices()]]
    assert kept == 100.0  # rank 0's, whatever the order they arrived in
    (note,) = ledger.claim_notes()
    assert "ranks 0 and 1" in note and "counting both would count it twice" in note
    assert ledger.units() == {"training": {"sample": 16}}  # units are each process's own


def test_sessions_add_a_device_ranks_share_a_session_and_nodes_keep_devices_apart():
    ledger = Ledger(
        [
            record("s1", "p0", 0, "node-a", [device("gpu:GPU-1", 100), device("cpu:estimate", 10, component="cpu")]),
            record("s1", "p1", 1, "node-b", [device("gpu:GPU-2", 200), device("cpu:estimate", 20, component="cpu")]),
            record("s2", "q0", 0, "node-a", [device("gpu:GPU-1", 50)], duration=5.0, start=500.0),
        ]
    )
    energy = {(d.node, d.record.device_id): d.record.energy_j for d in ledger.devices()}
    assert energy == {
        ("node-a", "gpu:GPU-1"): 150,
        ("node-a", "cpu:estimate"): 10,
        ("node-b", "gpu:GPU-2"): 200,
        ("node-b", "cpu:estimate"): 20,
    }
    assert ledger.duration_s() == 15.0  # s1 (its writer's 10 s) + s2 (5 s): ranks run at the same time
    first, second = ledger.sessions()
    assert (first.processes, first.energy_j, second.energy_j) == (2, 330.0, 50.0)


def test_an_old_state_is_carried_with_a_note(tmp_path):
    old = {
        "nn_tracker_state": 1,
        "node": "checkpoint",
        "duration_s": 30.0,
        "phase_time_s": {"training": 30.0},
        "units": {"training": {"sample": 5}},
        "devices": [
            {
                "info": {"device_id": "gpu:GPU-1", "component": "gpu", "name": "G", "method": "counter", "model": ""},
                "energy_j": 900.0,
                "energy_by_phase_j": {"training": 900.0},
                "measured_s": 30.0,
                "readings": 3,
                "node": None,
            }
        ],
    }
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        tracker.carry_over(old)
        machine.run(tracker, [(None, [(10, 100, 0, 1)])])
    report = tracker.report()
    assert report.duration_s == 40.0 and report.energy_kwh * JOULES_PER_KWH == pytest.approx(1900.0)
    assert any("older nn_tracker (state version 1)" in n for n in report.notes)


def test_a_checkpoint_holds_no_host_name_nor_node_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_TRACKER_NODE_ID", "boot:secret-boot-id")
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        machine.run(tracker, [(None, [(1, 1, 1, 1)])])
    text = json.dumps(tracker.export_state(public=True))
    assert "secret-boot-id" not in text and '"host"' not in text
    assert "host" in json.dumps(tracker.export_state())  # in memory (gathering ranks) the label is kept


# ----- Σ ranks = the job -----------------------------------------------------------------------------------
@SETTINGS
@given(ranks=st.lists(st.tuples(st.integers(0, 500), st.integers(1, 30)), min_size=1, max_size=4))
def test_ranks_of_a_session_add_up_to_the_job(tmp_path, ranks):
    """Each rank measures its own GPU; rank 0 gathers their ledgers (as DistributedTracker does)."""
    clock = ManualClock()
    trackers, gpus = [], []
    for rank, (watts, _) in enumerate(ranks):
        gpu = ConstantPower(f"gpu:GPU-{rank}", power_w=float(watts))
        gpus.append(gpu)
        trackers.append(
            Tracker(
                clock=clock,
                background=False,
                sensors=sensor_set(gpu),
                session="job",
                rank=rank,
                write_report=False,
                intensity_g_per_kwh=100,
                embodied=(),
            ).start()
        )
    for rank, (_, seconds) in enumerate(ranks):  # ranks reach the end apart; each samples until all are there
        clock.advance(seconds)
        trackers[rank].add_units(rank + 1, "sample")
    for tracker in trackers:
        tracker.end_sampling()
    states = [json.loads(json.dumps(t.export_state())) for t in trackers]
    for state in states[1:] + states[1:]:  # gathered twice: counted once
        trackers[0].carry_over(state)
    report = trackers[0].stop()
    waited = sum(s for _, s in ranks)
    assert report.energy_kwh * JOULES_PER_KWH == pytest.approx(sum(w for w, _ in ranks) * waited, rel=1e-12, abs=1e-9)
    assert report.duration_s == waited  # the ranks ran at the same time: rank 0's duration
    assert report.units["sample"].count == sum(range(1, len(ranks) + 1))
    (session,) = report.sessions
    assert session.processes == len(ranks)


# ----- Σ serving periods = the report -------------------------------------------------------------------
@SETTINGS
@given(
    steps=st.lists(st.tuples(st.integers(1, 100), st.integers(0, 500), st.integers(0, 5), st.booleans()), max_size=12)
)
def test_serving_periods_add_up_to_the_report(tmp_path_factory, steps):
    from nn_tracker.serving import ServingTracker

    tmp_path = tmp_path_factory.mktemp("serving")
    clock = ManualClock()
    gpu = ConstantPower(power_w=0.0)
    serving = ServingTracker(
        period_s=1e9,
        clock=clock,
        background=False,
        sensors=sensor_set(gpu),
        output_dir=tmp_path,
        checkpoint_interval_s=None,
        datacentres=CENTRES,
        embodied=(),
    ).start()
    for seconds, watts, queries, close in steps:
        gpu.power_w = float(watts)
        clock.advance(seconds)
        serving.count(queries)
        if close:
            serving.close_period()
    report = serving.stop()
    path = serving.periods_path
    periods = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    assert periods or report.duration_s == 0  # a run in which nothing happened has no period
    assert [p["start_s"] for p in periods[:1]] in ([], [0]) and [p["end_s"] for p in periods[-1:]] in (
        [],
        [report.duration_s],
    )
    assert all(a["end_s"] == b["start_s"] for a, b in itertools.pairwise(periods))
    assert sum(p["it_energy_kwh"] for p in periods) == pytest.approx(report.energy_kwh, rel=1e-12, abs=1e-15)
    assert sum(p["carbon_g"] for p in periods) == pytest.approx(report.total_carbon_g, rel=1e-12, abs=1e-12)
    assert sum(p["query_count"] for p in periods) == sum(q for *_, q, _ in steps)


# ----- cumulative series never decrease ----------------------------------------------------------------
@SETTINGS
@given(blocks=RUN)
def test_live_figures_never_go_down(tmp_path, blocks):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    seen = []
    with tracker:
        machine.run(tracker, blocks, seen)
    for name in CUMULATIVE_METRICS:
        values = [s[name] for s in seen if s[name] is not None]
        assert values == sorted(values), name


class OneProcess:
    """What a trainer callback's ``StageRun.run`` offers the logged series, for one process."""

    def __init__(self, tracker):
        self.tracker = tracker

    def merged_ledger(self):
        return self.tracker.ledger()


@SETTINGS
@given(
    stages=st.lists(st.tuples(RUN, st.booleans(), st.integers(0, 6)), min_size=1, max_size=3),
)
def test_logged_series_never_go_down_across_stages_and_resumes(tmp_path, stages):
    """Stages of one callback, some resumed from a checkpoint of the stage before: each session counted once."""
    machine, series, logged, own_j = Machine(), LoggedSeries(), [], 0.0
    checkpoint = None
    for blocks, resumes, cut in stages:
        tracker = machine.tracker(tmp_path, write_report=False).start()
        if resumes and checkpoint is not None:
            tracker.carry_over(checkpoint)  # a copy of (part of) a session that is already in the history
        run = OneProcess(tracker)
        for i, block in enumerate(blocks):
            machine.run(tracker, [block])
            logged.append(series.values(run))
            if i == cut:
                checkpoint = tracker.export_state(public=True)
        report = tracker.stop()
        logged.append(series.values(run))  # the stage's last log, after its last reading
        series.stage_ended(tracker)
        own_j += report.session.it_energy_kwh * JOULES_PER_KWH
        checkpoint = checkpoint or tracker.export_state(public=True)
    for name in CUMULATIVE_METRICS:
        values = [m[name] for m in logged if name in m]
        assert values == sorted(values), name
    assert logged[-1]["energy/total_kwh"] * JOULES_PER_KWH == pytest.approx(own_j, rel=1e-12, abs=1e-9)


@SETTINGS
@given(blocks=RUN)
def test_prometheus_counters_never_go_down(tmp_path, blocks):
    prometheus_client = pytest.importorskip("prometheus_client")
    from nn_tracker.serving import ServingTracker

    registry = prometheus_client.CollectorRegistry()
    machine = Machine()
    serving = ServingTracker(
        period_s=1e9,
        prometheus_registry=registry,
        clock=machine.clock,
        background=False,
        sensors=sensor_set(machine.gpu, machine.cpu),
        output_dir=tmp_path,
        write_report=False,
        datacentres=CENTRES,
        embodied=(),
    ).start()
    scrapes = []
    for phases, steps in blocks:
        with _nested(serving.tracker, phases or ()):
            for seconds, gpu_w, cpu_w, units in steps:
                machine.gpu.power_w, machine.cpu.power_w = float(gpu_w), float(cpu_w)
                machine.clock.advance(seconds)
                serving.count(units)
                serving.tracker.sample()
                scrapes.append(
                    {
                        (m.name, tuple(sorted(s.labels.items()))): s.value
                        for m in registry.collect()
                        if m.type == "counter"
                        for s in m.samples
                        if s.name.endswith("_total")
                    }
                )
    report = serving.stop()
    for earlier, later in itertools.pairwise(scrapes):
        for key, value in earlier.items():
            assert later.get(key, value) >= value, key
    device_carbon = [v for (name, _), v in scrapes[-1].items() if name == "nn_tracker_device_carbon_grams"]
    assert sum(device_carbon) == pytest.approx(report.footprint.operational_carbon_g, rel=1e-9, abs=1e-12)


# ----- phases per thread and task ------------------------------------------------------------------------
def test_phases_of_two_threads_never_nest_into_each_other(tmp_path):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    inside, leave = threading.Barrier(2), threading.Event()
    paths = []

    def worker(name):
        with tracker.phase(name) as path, tracker.phase("inner") as inner:
            paths.extend([path, inner])
            tracker.add_units(1, kind=name)
            inside.wait()
            leave.wait(5)

    with tracker:
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        while len(paths) < 4:
            pass
        machine.clock.advance(10)
        tracker.sample()
        leave.set()
        for thread in threads:
            thread.join()
    report = tracker.report()
    assert sorted(paths) == ["a", "a/inner", "b", "b/inner"]
    assert report.phases["a/inner"].units == {"a": 1} and report.phases["b/inner"].units == {"b": 1}
    assert not any(name.startswith(("a/b", "b/a")) for name in report.phases)


def test_phases_of_two_asyncio_tasks_never_nest_into_each_other(tmp_path):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    paths = []

    async def request(name, started):
        with tracker.phase(name) as path:
            started.set()
            await asyncio.sleep(0.01)
            with tracker.phase("model") as inner:
                paths.extend([path, inner])

    async def main():
        with tracker.phase("querying"):
            first, second = asyncio.Event(), asyncio.Event()
            await asyncio.gather(request("one", first), request("two", second))

    with tracker:
        asyncio.run(main())
    assert sorted(paths) == ["querying/one", "querying/one/model", "querying/two", "querying/two/model"]
    assert tracker.current_phase == "training"


def test_a_root_phase_without_time_of_its_own_keeps_its_nested_phases_in_the_footprint(tmp_path):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        machine.run(tracker, [(("a", "b"), [(100, 360, 0, 0)])])
    report = tracker.report()
    assert report.phases["a"].duration_s == 0 and report.phases["a"].inclusive_energy_kwh == pytest.approx(0.01)
    assert report.datacentres[0].it_energy_kwh == pytest.approx(0.01)
    assert report.footprint.operational_carbon_g == pytest.approx(0.01 * 1.5 * 400 / 0.8)


def test_a_bad_state_is_one_line_naming_the_field(tmp_path):
    state = record(devices=[device()]).to_state()
    state["devices"][0]["energy_j"] = -3.0
    with pytest.raises(ValidationError, match=r"^state\.records\[0\]\.devices\[0\]\.energy_j must be >= 0, got -3\.0$"):
        Ledger.from_state({"nn_tracker_state": 2, "records": [state]})
    assert Path(tmp_path).exists()


def test_a_parallel_state_files_under_this_session_and_counts_once(tmp_path):
    machine = Machine()
    other = machine.tracker(tmp_path, write_report=False).start()
    tracker = machine.tracker(tmp_path, write_report=False).start()
    machine.clock.advance(10)
    other.end_sampling()
    state = other.export_state()
    tracker.carry_over(state, parallel=True)
    tracker.carry_over(state, parallel=True)
    report = tracker.stop()
    assert report.duration_s == 10 and len(report.sessions) == 1 and report.sessions[0].processes == 2
    assert [replace(r, devices=()).session for r in tracker.ledger().records] == [tracker.session] * 2


def test_serving_periods_add_up_to_the_report_in_real_time(tmp_path):
    """With time passing between the calls: the first and last fractions of a second are in a period too."""
    from nn_tracker.serving import ServingTracker

    serving = ServingTracker(
        period_s=1e9,
        sensors=sensor_set(ConstantPower(power_w=1000.0)),
        output_dir=tmp_path,
        checkpoint_interval_s=None,
        intensity_g_per_kwh=300,
        embodied=(),
    ).start()
    for _ in range(3):
        time.sleep(0.02)
        serving.count(1)
        serving.close_period()
    time.sleep(0.02)
    report = serving.stop()
    periods = [json.loads(line) for line in serving.periods_path.read_text().splitlines()]
    assert len(periods) == 4 and periods[-1]["end_s"] == report.duration_s
    assert sum(p["it_energy_kwh"] for p in periods) == pytest.approx(report.energy_kwh, rel=1e-9)
    assert sum(p["carbon_g"] for p in periods) == pytest.approx(report.total_carbon_g, rel=1e-9)


def test_the_if_export_of_a_resumed_run_holds_every_session_at_its_time(tmp_path):
    from datetime import datetime

    from nn_tracker.report import if_manifest

    machine = Machine()
    first = machine.tracker(tmp_path)
    with first:
        machine.run(first, [(("training",), [(100, 200, 10, 4)]), (("querying",), [(20, 100, 0, 1)])])
    machine.clock.advance(3600)
    second = machine.tracker(tmp_path)
    with second:
        second.carry_over(first.export_state(public=True))
        machine.run(second, [(("training",), [(50, 200, 10, 4)])])
    report = second.report()
    manifest = if_manifest.build(report)
    inputs = [i for child in manifest["tree"]["children"].values() for i in child["inputs"] if "energy" in i]
    assert sum(i["energy"] for i in inputs) == pytest.approx(report.footprint.facility_energy_kwh, rel=1e-12)
    carried = [i for i in inputs if i["timestamp"] == report.started_at.replace("+00:00", "Z")]
    assert carried and all(i["duration"] == 120 for i in carried)  # the earlier session's 120 s
    session_start = datetime.fromisoformat(report.session.started_at)
    later = [datetime.fromisoformat(i["timestamp"].replace("Z", "+00:00")) for i in inputs if i not in carried]
    assert later and min(later) >= session_start  # this session's buckets, placed from its own start


def test_markdown_and_html_show_the_sessions_of_a_resumed_run(tmp_path):
    from nn_tracker.report import html, markdown

    machine = Machine()
    first = machine.tracker(tmp_path)
    with first:
        machine.run(first, [(None, [(100, 200, 10, 4)])])
    second = machine.tracker(tmp_path)
    with second:
        second.carry_over(first.export_state(public=True))
        machine.run(second, [(None, [(50, 200, 10, 4)])])
    text = markdown.render(second.report())
    assert "## Sessions of this resumed run" in text and "| this session |" in text and "| the run |" in text
    assert "Sessions of this resumed run" in html.render(second.report())
    assert "Sessions of" not in markdown.render(first.report())  # one session: no table


# ----- what an adversarial review found (each test failed before its fix) ----------------------------------
def test_a_run_resumed_on_another_node_counts_its_gpu_once_and_its_embodied_carbon_by_use(tmp_path, monkeypatch):
    a100 = "NVIDIA A100-SXM4-80GB"

    clock = ManualClock()

    def session(node, seconds, gpus, state=None):
        monkeypatch.setenv("NN_TRACKER_NODE_ID", node)
        tracker = Tracker(
            clock=clock,
            background=False,
            sensors=sensor_set(*(ConstantPower(f"gpu:GPU-{g}", power_w=100.0, name=a100) for g in gpus)),
            write_report=False,
            intensity_g_per_kwh=100,
        ).start()
        if state is not None:
            tracker.carry_over(state)
        clock.advance(seconds)
        return tracker.stop(), tracker.export_state(public=True)

    whole, _ = session("node-x", 150, [1])
    _, state = session("node-x", 100, [1])
    resumed, _ = session("node-y", 50, [1], state)  # after a reboot, or on another machine
    assert [d.device_id for d in resumed.devices if d.component == "gpu"] == ["gpu:GPU-1"]
    assert resumed.footprint.embodied_carbon_amortised_g == pytest.approx(whole.footprint.embodied_carbon_amortised_g)
    _, state = session("node-x", 100, [1])
    both, _ = session("node-x", 50, [1, 2], state)  # GPU-2 joins for the second session only
    (item,) = both.footprint.embodied
    assert item.count == 2
    assert item.amortised_g == pytest.approx(whole.footprint.embodied_carbon_amortised_g * (150 + 50) / 150)


def test_a_version_1_state_leaks_no_node_identity_nor_host_label(tmp_path):
    old = {
        "nn_tracker_state": 1,
        "node": "boot:51b03c3a-secret",
        "duration_s": 10.0,
        "phase_time_s": {"training": 10.0},
        "units": {},
        "devices": [
            {
                "info": {"device_id": f"{label}gpu:GPU-{i}", "component": "gpu", "name": "G", "method": "counter"},
                "energy_j": 100.0,
                "energy_by_phase_j": {"training": 100.0},
                "readings": 1,
            }
            for i, label in enumerate(["", "vm~other/"])
        ],
    }
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        tracker.carry_over(old)
    text = json.dumps(tracker.export_state(public=True)) + json.dumps(tracker.report().to_dict())
    assert "51b03c3a" not in text and "vm~other" not in text
    assert tracker.report().energy_kwh * JOULES_PER_KWH == pytest.approx(200.0)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda r: r["devices"][0].update(model=5), "devices[0].model must be a string or null"),
        (lambda r: r["devices"][0].update(first_error=["x"]), "devices[0].first_error must be a string or null"),
        (lambda r: r.update(started_wall_s=1e15), "started_wall_s must be at most 253402300799"),
        (lambda r: r["devices"].append(dict(r["devices"][0])), "devices[1].device_id must appear once in a record"),
        (lambda r: r["devices"][0].update(energy_j=5000.0), "devices[0].energy_by_phase_j must add up to energy_j"),
        # phase names as a tracker takes them (a newline would go into file names, CSV rows and tables)
        (
            lambda r: r.update(phase_time_s={"training\nx": 1.0}),
            "phase_time_s must be keyed by phases: 1-64 letters, digits, '_', '.' or '-' a name, got 'training\\nx'",
        ),
        (
            lambda r: r.update(units={"a//b": {"tokens": 1}}),
            "units must be keyed by phases: 1-64 letters, digits, '_', '.' or '-' a name, got 'a//b'",
        ),
        (
            lambda r: r["devices"][0].update(energy_by_phase_j={"train ing": r["devices"][0]["energy_j"]}),
            "devices[0].energy_by_phase_j must be keyed by phases: 1-64 letters, digits, '_', '.' or '-' a name, "
            "got 'train ing'",
        ),
    ],
)
def test_states_that_would_break_a_report_later_are_refused_now(mangle, message):
    state = record(devices=[device()]).to_state()
    mangle(state)
    with pytest.raises(ValidationError, match=re.escape(message)):
        Ledger.from_state({"nn_tracker_state": 2, "records": [state]})


@pytest.mark.parametrize("version", [True, 1.0, 2.0, "2"])
def test_a_state_version_is_an_integer(version):
    with pytest.raises(ValidationError, match=r"state\.nn_tracker_state must be 1 or 2"):
        Ledger.from_state({"nn_tracker_state": version, "records": []})


def test_an_odd_detail_in_a_carried_record_never_breaks_the_report(tmp_path):
    state = record(devices=[replace(device(), details={"other_processes_cpu_share": "lots"})]).to_state()
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        tracker.carry_over({"nn_tracker_state": 2, "records": [state]})
        assert tracker.live()["energy/total_kwh"] > 0
    assert not tracker.report().incomplete


def test_two_sessions_with_a_run_id_of_your_own_write_two_csv_rows(tmp_path):
    machine = Machine()
    first = machine.tracker(tmp_path, run_id="my-experiment-7")
    with first:
        machine.run(first, [(None, [(100, 100, 0, 1)])])
    second = machine.tracker(tmp_path, run_id="my-experiment-7")
    with second:
        second.carry_over(first.export_state(public=True))
        machine.run(second, [(None, [(50, 100, 0, 1)])])
    path = tmp_path / "rows.csv"
    for report in (first.report(), second.report(), second.report()):
        codecarbon_csv.append(path, report)
    with open(path) as handle:
        assert [float(r["duration"]) for r in csv.DictReader(handle)] == [100.0, 50.0]


def test_a_phase_left_from_another_thread_or_out_of_order_leaves_no_stale_parent(tmp_path):
    machine = Machine()
    tracker = machine.tracker(tmp_path, write_report=False)
    with tracker:
        entered = {}

        def worker():
            entered["phase"] = tracker.phase("w")
            entered["phase"].__enter__()

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        entered["phase"].__exit__(None, None, None)  # left from the main thread
        with tracker.phase("main") as path:
            assert path == "main"
        outer, inner = tracker.phase("a"), tracker.phase("b")
        outer.__enter__()
        inner.__enter__()
        outer.__exit__(None, None, None)  # out of order: closes b too
        assert tracker.current_phase == "training"
        with tracker.phase("c") as path:
            assert path == "c"
        inner.__exit__(None, None, None)
        assert tracker.current_phase == "training"


def test_a_resumed_state_carried_as_parallel_keeps_its_earlier_session(tmp_path):
    clock = ManualClock()

    def tracker(power_w, device_id):
        return Tracker(
            clock=clock,
            background=False,
            sensors=sensor_set(ConstantPower(device_id, power_w=power_w)),
            write_report=False,
            intensity_g_per_kwh=100,
        ).start()

    earlier = tracker(10.0, "gpu:GPU-1")
    clock.advance(100)
    earlier.stop()
    other = tracker(10.0, "gpu:GPU-1")  # the other process, resumed: 1000 J before, 1000 J now
    other.carry_over(earlier.export_state(public=True))
    ours = tracker(20.0, "gpu:GPU-9")
    clock.advance(100)
    other.stop()
    ours.carry_over(other.export_state(), parallel=True)
    report = ours.stop()
    assert report.energy_kwh * JOULES_PER_KWH == pytest.approx(1000 + 1000 + 2000)
    assert not any(n.startswith("Not merged") for n in report.notes)
    assert [s.processes for s in report.sessions] == [1, 2]


def test_a_failed_power_read_keeps_the_last_power(tmp_path):
    from nn_tracker.sensors.sampling import Sampler

    class Flaky(ConstantPower):
        has_power = True

        def read_power(self, now_s):
            if self.fail:
                raise RuntimeError("glitch")
            return self.power_w

    sensor, clock = Flaky(power_w=200.0), ManualClock()
    sampler = Sampler([sensor], clock)
    sampler.start(background=False)
    seen = []
    for fail in (False, True, False):
        sensor.fail = fail
        clock.advance(1)
        sampler.tick()
        seen.append(sampler.power_w())
    assert seen == [200.0, 200.0, 200.0]


def test_closing_a_period_after_stop_adds_nothing(tmp_path):
    from nn_tracker.serving import ServingTracker

    clock = ManualClock()
    serving = ServingTracker(
        clock=clock, background=False, sensors=sensor_set(ConstantPower()), output_dir=tmp_path, embodied=()
    ).start()
    clock.advance(10)
    serving.count(3)
    serving.stop()
    lines = serving.periods_path.read_text().splitlines()
    serving.close_period()
    assert serving.periods_path.read_text().splitlines() == lines and len(lines) == 1


def test_with_wall_clocks_apart_the_earlier_sessions_are_those_that_did_not_write(tmp_path):
    machine = Machine()
    first = machine.tracker(tmp_path, write_report=False)
    with first:
        machine.run(first, [(None, [(100, 1, 1, 1)])])
    machine.clock.jump_wall(-10_000)  # this machine's clock is behind the first one's
    second = machine.tracker(tmp_path, write_report=False)
    with second:
        second.carry_over(first.export_state(public=True))
        machine.run(second, [(None, [(10, 1, 1, 1)])])
    assert any("includes 100.0 s measured in earlier sessions" in n for n in second.report().notes)
