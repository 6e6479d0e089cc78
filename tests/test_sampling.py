"""Sampler and timeline: exact totals, errors never raised, bounded memory."""

import threading
import time

import pytest
from fakes import ConstantPower

from nn_tracker.clock import ManualClock, SystemClock
from nn_tracker.sampling import Sampler
from nn_tracker.timeline import Timeline


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
