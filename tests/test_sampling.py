"""Sampler and timeline: exact totals, errors never raised, bounded memory."""

import threading
import time

import pytest
from fakes import ConstantPower

from nn_tracker.accounting.timeline import Timeline
from nn_tracker.core.clock import ManualClock, SystemClock
from nn_tracker.sensors.sampling import Sampler


def test_totals_phases_and_peak():
    clock = ManualClock()
    gpu = ConstantPower(power_w=100)
    sampler = Sampler([gpu], clock)
    sampler.start(background=False)
    for _ in range(10):
        clock.advance(0.1)
        sampler.tick()
    sampler.switch_phase("training/validation")
    gpu.power_w = 50
    for _ in range(4):
        clock.advance(0.5)
        sampler.tick()
    totals = sampler.totals["gpu:fake"]
    assert totals.energy_j == pytest.approx(100 + 100)
    assert totals.energy_by_phase_j == pytest.approx({"training": 100, "training/validation": 100})
    assert sampler.phase_time_s == pytest.approx({"training": 1.0, "training/validation": 2.0})
    assert totals.peak_power_w == 100
    assert totals.measured_s == pytest.approx(3.0)


def test_errors_are_counted_never_raised_and_the_next_read_covers_the_gap(caplog):
    clock = ManualClock()
    gpu = ConstantPower(power_w=10)
    sampler = Sampler([gpu], clock)
    sampler.start(background=False)
    gpu.fail = True
    for _ in range(3):
        clock.advance(1.0)
        sampler.tick()
    gpu.fail = False
    clock.advance(1.0)
    sampler.tick()
    totals = sampler.totals["gpu:fake"]
    assert totals.errors == 3 and totals.first_error == "RuntimeError: sensor glitch"
    warnings = [r.getMessage() for r in caplog.records if r.name == "nn_tracker"]
    assert len(warnings) == 1 and "reading gpu:fake failed (RuntimeError: sensor glitch)" in warnings[0]
    assert totals.energy_j == pytest.approx(40.0)


def test_a_sensor_that_cannot_start_is_dropped_with_a_note():
    class Broken(ConstantPower):
        def start(self, now_s):
            raise OSError("device vanished")

    sampler = Sampler([Broken("cpu:x", component="cpu"), ConstantPower()], ManualClock())
    sampler.start(background=False)
    sampler.tick()
    assert "could not start" in sampler.totals["cpu:x"].info.notes[0]
    assert sampler.totals["gpu:fake"].readings == 1


def test_background_thread_ticks_and_stops_with_a_final_reading():
    gpu = ConstantPower(power_w=1000)
    sampler = Sampler([gpu], SystemClock(), interval_s=0.01)
    sampler.start()
    time.sleep(0.15)
    names = [t.name for t in threading.enumerate()]
    assert "nn_tracker-sampler" in names
    sampler.stop()
    assert "nn_tracker-sampler" not in [t.name for t in threading.enumerate()]
    totals = sampler.totals["gpu:fake"]
    assert sampler.ticks >= 5
    elapsed = sampler.last_tick_s - sampler.started_s
    assert totals.energy_j == pytest.approx(1000 * elapsed, rel=1e-9)


def test_timeline_is_bounded_and_conserves_energy():
    timeline = Timeline(max_points=100)
    total = 0.0
    for i in range(100_000):
        energy = 1.0 + (i % 7)
        timeline.add(i * 0.1, (i + 1) * 0.1, {"gpu": energy}, {"gpu": energy * 10})
        total += energy
    assert len(timeline.points) <= 100
    assert sum(p.energy_j["gpu"] for p in timeline.points) == pytest.approx(total)
    assert max(p.peak_power_w["gpu"] for p in timeline.points) == 70
    assert timeline.points[0].start_s == 0 and timeline.points[-1].end_s == pytest.approx(10_000.0)
    # contiguous buckets
    assert all(a.end_s == b.start_s for a, b in zip(timeline.points, timeline.points[1:], strict=False))


def test_timeline_to_dict_mean_power():
    timeline = Timeline(max_points=10)
    timeline.add(5.0, 7.0, {"gpu": 100.0}, {"gpu": 60.0})
    data = timeline.to_dict(origin_s=5.0)
    assert data["points"][0]["mean_power_w"] == {"gpu": 50.0}
    assert data["points"][0]["start_s"] == 0.0


def test_slow_sensors_are_read_at_their_own_pace_without_losing_energy():
    clock = ManualClock()
    slow = ConstantPower("cpu:estimate", power_w=10, component="cpu")
    slow.energy_interval_s = 1.0
    reads = []
    original = slow.read_energy
    slow.read_energy = lambda now: reads.append(now) or original(now)
    sampler = Sampler([slow], clock)
    sampler.start(background=False)
    for _ in range(25):
        clock.advance(0.1)
        sampler.tick()
    assert len(reads) == 2  # at 1.0 s and 2.0 s, not 25 times
    sampler.switch_phase("validation")  # without a background thread a phase switch reads at once
    assert len(reads) == 3
    totals = sampler.totals["cpu:estimate"]
    assert totals.energy_j == pytest.approx(25.0)
    assert totals.energy_by_phase_j == pytest.approx({"training": 25.0})


def test_thread_wakes_at_the_interval_unless_every_sensor_is_slower():
    slow = ConstantPower("cpu:estimate", component="cpu")
    slow.energy_interval_s = 1.0
    assert Sampler([slow], ManualClock(), interval_s=0.1).wake_interval_s == 1.0
    assert Sampler([slow, ConstantPower()], ManualClock(), interval_s=0.1).wake_interval_s == 0.1
    assert Sampler([], ManualClock(), interval_s=0.1).wake_interval_s == 0.1
    assert Sampler([slow], ManualClock(), interval_s=0.1, max_wake_s=0.3).wake_interval_s == 0.3  # checkpoints


def test_timeline_points_cover_the_run_without_holes_when_sensors_skip_ticks():
    clock = ManualClock()
    slow = ConstantPower("cpu:estimate", power_w=10, component="cpu")
    slow.energy_interval_s = 1.0
    sampler = Sampler([slow], clock)
    sampler.start(background=False)
    for _ in range(30):
        clock.advance(0.1)
        sampler.tick()
    points = sampler.timeline.points
    assert len(points) == 30  # each 1-s reading is spread over the ten ticks it covers: no spikes
    assert points[0].start_s == sampler.started_s and points[-1].end_s == pytest.approx(sampler.started_s + 3.0)
    assert all(p.mean_power_w("cpu:estimate") == pytest.approx(10.0) for p in points)


def test_a_sensor_that_keeps_failing_stays_bounded_in_memory_and_loses_nothing_when_it_recovers():
    from nn_tracker.sensors.sampling import MAX_PENDING

    clock = ManualClock()
    gpu = ConstantPower(power_w=10)
    sampler = Sampler([gpu], clock)
    sampler.start(background=False)
    gpu.fail = True
    for step in range(3 * MAX_PENDING):
        clock.advance(0.1)
        sampler.mark_phase("a" if step % 2 else "b")  # phases alternate at every tick: the worst case
        sampler.tick()
        assert len(sampler.totals["gpu:fake"].pending) <= MAX_PENDING + 1
    gpu.fail = False
    clock.advance(0.1)
    sampler.tick()
    totals = sampler.totals["gpu:fake"]
    assert totals.energy_j == pytest.approx(10 * 0.1 * (3 * MAX_PENDING + 1))
    assert sum(totals.energy_by_phase_j.values()) == pytest.approx(totals.energy_j)
    assert sum(p.energy_j.get("gpu:fake", 0) for p in sampler.timeline.points) == pytest.approx(totals.energy_j)


def test_phase_switches_only_record_a_time_and_the_next_tick_splits_by_power_samples():
    class Sampled(ConstantPower):
        """Cheap power samples every tick; energy read rarely (like a GPU counter)."""

        has_power = True
        energy_interval_s = 1.0
        phase_read_after_s = None

        def read_power(self, now_s):
            return self.power_w

    clock = ManualClock()
    gpu = Sampled(power_w=100)
    reads = []
    original = gpu.read_energy
    gpu.read_energy = lambda now: reads.append(now) or original(now)
    sampler = Sampler([gpu], clock)
    sampler.start(background=False)
    clock.advance(0.1)
    sampler.tick()
    clock.advance(0.05)
    sampler.mark_phase("validation")  # no read here
    assert reads == []
    clock.advance(0.05)
    sampler.tick()
    for _ in range(8):
        clock.advance(0.1)
        sampler.tick()
    assert len(reads) == 1  # one energy read for the whole second
    totals = sampler.totals["gpu:fake"]
    # constant power: the read's 100 J splits at the switch's time, 15 J before and 85 J after
    assert totals.energy_by_phase_j == pytest.approx({"training": 15.0, "validation": 85.0})
    assert sampler.phase_time_s == pytest.approx({"training": 0.15, "validation": 0.85})


def test_a_burst_of_phase_switches_wakes_the_sampler_at_most_ten_times_a_second():
    cpu = ConstantPower("cpu:estimate", power_w=10, component="cpu")
    cpu.energy_interval_s = 1.0
    cpu.phase_read_after_s = 0.1  # a switch makes its read due (on the sampler's thread)
    sampler = Sampler([cpu], SystemClock(), interval_s=1.0)
    sampler.start()
    started = time.monotonic()
    while time.monotonic() - started < 0.5:
        sampler.mark_phase("a")
        sampler.mark_phase("b")
    sampler.stop()
    assert sampler.ticks <= 0.5 / 0.1 + 3  # not one tick per switch (there were thousands)
    assert sampler.totals["cpu:estimate"].energy_j == pytest.approx(10 * (sampler.last_tick_s - sampler.started_s))
