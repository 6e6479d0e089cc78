"""Time-resolved carbon and carbon-aware scheduling: exact results on hand-made series, clear errors."""

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from fakes import ConstantPower, sensor_set
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_tracker import ManualClock, Tracker
from nn_tracker.core.errors import ValidationError
from nn_tracker.footprint.intensity_series import IntensitySeries
from nn_tracker.footprint.scheduling import JobProfile, schedule

JAN_1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def series_file(tmp_path, values, start_hour=0, header="timestamp,carbon_intensity", name="series.csv"):
    lines = [header] + [f"2026-01-01T{start_hour + h:02d}:00:00Z,{v}" for h, v in enumerate(values)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_flexible_start_and_pause_and_resume_exact(tmp_path):
    series = IntensitySeries.from_csv(series_file(tmp_path, [400, 100, 300, 50, 200, 500, 600, 700]))
    plan = schedule(series, JobProfile.constant(2 * 3600, 1000), window_h=3)
    assert plan["now"]["emissions_g"] == pytest.approx(500.0)  # 400 + 100
    assert plan["flexible_start"]["start"] == "2026-01-01T03:00:00+00:00"  # 50 + 200
    assert plan["flexible_start"]["emissions_g"] == pytest.approx(250.0)
    assert plan["flexible_start"]["saving_g"] == pytest.approx(250.0) and plan["flexible_start"]["saving_pct"] == 50
    runs = plan["pause_and_resume"]["runs"]
    assert [r["start"] for r in runs] == ["2026-01-01T01:00:00+00:00", "2026-01-01T03:00:00+00:00"]  # time order
    assert plan["pause_and_resume"]["emissions_g"] == pytest.approx(150.0)  # 100 + 50


def test_pause_and_resume_with_a_partial_step_and_a_power_profile(tmp_path):
    series = IntensitySeries.from_csv(series_file(tmp_path, [300, 100, 200, 400]))
    job = JobProfile(((1800.0, 2000.0), (3600.0, 1000.0)))  # 1 kWh in 30 min, then 1 kWh in 1 h
    plan = schedule(series, job, window_h=0.5)
    # now: 00:00-01:30 -> 1 kWh + 0.5 kWh at 300, then 0.5 kWh at 100 = 500 g
    assert plan["now"]["emissions_g"] == pytest.approx(500.0)
    # window 0.5 h + 1.5 h = 00:00-02:00; cleanest: 01:00-02:00 (100) then 00:00-00:30 (300), run in time order
    assert [r["intensity_g_per_kwh"] for r in plan["pause_and_resume"]["runs"]] == [300.0, 100.0]
    # first 30 min of the job (1 kWh) at 300, the remaining hour (1 kWh) at 100
    assert plan["pause_and_resume"]["emissions_g"] == pytest.approx(400.0)
    # no series step starts within 0.5 h of now, so Flexible Start is starting now
    assert plan["flexible_start"]["start"] == "2026-01-01T00:00:00+00:00"
    assert plan["flexible_start"]["saving_g"] == 0


def test_job_longer_than_the_series_is_a_clear_error(tmp_path):
    series = IntensitySeries.from_csv(series_file(tmp_path, [100, 200, 300]))
    with pytest.raises(ValidationError, match="job duration must fit in the intensity series"):
        schedule(series, JobProfile.constant(4 * 3600, 100), window_h=1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when,what\n2026-01-01T00:00:00Z,1\n", "header must name a time column"),
        ("timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\nyesterday,200\n", "line 3 timestamp must be an ISO"),
        (
            "timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n2026-01-01T01:00:00Z,lots\n",
            "line 3 carbon_intensity must be a number (gCO2e/kWh), got 'lots'",
        ),
        (
            "timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n2026-01-01T01:00:00Z,-5\n",
            "must be a finite number >= 0",
        ),
        (
            "timestamp,carbon_intensity\n2026-01-01T01:00:00Z,100\n2026-01-01T00:00:00Z,100\n",
            "must be later than the previous row",
        ),
        ("timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n2026-01-01T01:00:00Z\n", "must have 2 columns"),
        ("timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n", "must have at least two rows"),
        ("", "must not be empty"),
    ],
)
def test_malformed_series_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValidationError) as info:
        IntensitySeries.from_csv(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_electricity_maps_style_header_and_naive_times_are_read(tmp_path):
    path = series_file(tmp_path, [10, 20], header="Datetime (UTC),Carbon Intensity gCO2eq/kWh (LCA)")
    path.write_text(path.read_text().replace("Z,", ","))
    series = IntensitySeries.from_csv(path)
    assert series.times_s[0] == JAN_1 and series.values_g_per_kwh == (10.0, 20.0)


def test_time_resolved_carbon_of_a_tracked_run(tmp_path):
    # 1 kW for 3 h from 00:30; series 00:00-02:00 hourly (2 rows -> covers 00:00-02:00): 1.5 h covered
    path = series_file(tmp_path, [100, 300])
    clock = ManualClock(start_s=0.0, wall_start_s=JAN_1 + 1800)
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(ConstantPower(power_w=1000)),
        output_dir=tmp_path,
        intensity_g_per_kwh=200,
        pue=1.5,
        intensity_series=str(path),
        checkpoint_interval_s=None,
    )
    with tracker:
        for _ in range(180):
            clock.advance(60)
            tracker.sample()
    resolved = tracker.report().to_dict()["footprint"]["time_resolved"]
    # facility 1.5 kW: 00:30-01:00 at 100 (0.75 kWh), 01:00-02:00 at 300 (1.5 kWh), 02:00-03:30 uncovered at 200
    assert resolved["operational_carbon_g"] == pytest.approx(0.75 * 100 + 1.5 * 300 + 2.25 * 200)
    assert resolved["uncovered_energy_kwh"] == pytest.approx(2.25)
    assert resolved["yearly_average_operational_carbon_g"] == pytest.approx(4.5 * 200)
    assert tracker.report().to_dict()["footprint"]["operational_carbon_g"] == pytest.approx(4.5 * 200)


def test_time_resolved_carbon_covers_energy_carried_from_other_processes(tmp_path):
    """Another rank's (or an earlier session's) energy is not on this timeline: priced at the average, said so."""
    path = series_file(tmp_path, [100, 100, 100, 100])
    clock = ManualClock(start_s=0.0, wall_start_s=JAN_1)
    other = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(ConstantPower(power_w=1000)),
        write_report=False,
        intensity_g_per_kwh=200,
    )
    with other:
        clock.advance(3600)
        other.sample()
    tracker = Tracker(
        clock=ManualClock(start_s=0.0, wall_start_s=JAN_1),
        background=False,
        sensors=sensor_set(ConstantPower("gpu:mine", power_w=1000)),
        write_report=False,
        intensity_g_per_kwh=200,
        intensity_series=str(path),
    )
    with tracker:
        tracker.carry_over(other.export_state(), parallel=True)  # 1 kWh measured by another process
        tracker.clock.advance(3600)
        tracker.sample()
    resolved = tracker.report().to_dict()["footprint"]["time_resolved"]
    assert resolved["energy_kwh"] == pytest.approx(2.0)  # all the energy in the report, not 1.0
    assert resolved["not_in_timeline_energy_kwh"] == pytest.approx(1.0)
    assert resolved["uncovered_energy_kwh"] == pytest.approx(1.0)
    assert resolved["operational_carbon_g"] == pytest.approx(1.0 * 100 + 1.0 * 200)


def test_electricity_maps_life_cycle_column_is_chosen_by_name_and_named(tmp_path):
    path = tmp_path / "em.csv"
    path.write_text(
        "Datetime (UTC),Country,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
        "Carbon Intensity gCO₂eq/kWh (Life cycle),Carbon-free energy percentage (CFE%)\n"
        "2026-01-01 00:00:00,France,FR,20,40,90\n2026-01-01 01:00:00,France,FR,22,44,90\n"
    )
    series = IntensitySeries.from_csv(path)
    assert series.values_g_per_kwh == (40.0, 44.0) and "Life cycle" in series.column
    direct_only = tmp_path / "direct.csv"
    direct_only.write_text("datetime,carbon intensity (direct)\n2026-01-01T00:00Z,20\n2026-01-01T01:00Z,22\n")
    assert IntensitySeries.from_csv(direct_only).column == "carbon intensity (direct)"


def test_bad_series_fails_at_tracker_construction(tmp_path):
    with pytest.raises(ValidationError, match="intensity series"):
        Tracker(intensity_g_per_kwh=1, intensity_series=str(tmp_path / "missing.csv"))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=60)


def test_schedule_cli_table_json_and_errors(tmp_path):
    path = series_file(tmp_path, [400, 100, 300, 50, 200, 500, 600, 700])
    table = cli("schedule", "--series", str(path), "--duration-h", "2", "--power-w", "1000", "--window-h", "3")
    assert table.returncode == 0, table.stderr
    assert "pause and resume" in table.stdout and "350 gCO2e (70.0 %)" in table.stdout
    data = json.loads(
        cli(
            "schedule",
            "--series",
            str(path),
            "--duration-h",
            "2",
            "--power-w",
            "1000",
            "--window-h",
            "3",
            "--format",
            "json",
        ).stdout
    )
    assert data["flexible_start"]["emissions_g"] == pytest.approx(250.0)
    too_long = cli("schedule", "--series", str(path), "--duration-h", "20", "--power-w", "1")
    assert too_long.returncode == 2 and "must fit in the intensity series" in too_long.stderr
    bad = cli("schedule", "--series", str(path), "--duration-h", "-1", "--power-w", "1")
    assert bad.returncode == 2 and bad.stderr.strip() == "nn-tracker: error: duration_h must be > 0, got -1.0"


def test_schedule_from_a_saved_report(tmp_path):
    clock = ManualClock(start_s=0.0, wall_start_s=JAN_1)
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(ConstantPower(power_w=1000)),
        output_dir=tmp_path,
        intensity_g_per_kwh=200,
        checkpoint_interval_s=None,
        run_id="job",
    )
    with tracker:
        for _ in range(120):
            clock.advance(60)
            tracker.sample()
    path = series_file(tmp_path, [400, 100, 300, 50, 200, 500, 600, 700])
    result = cli(
        "schedule",
        "--series",
        str(path),
        "--report",
        str(tmp_path / "nn_tracker-job.json"),
        "--window-h",
        "3",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["job"]["duration_s"] == pytest.approx(7200) and data["job"]["energy_kwh"] == pytest.approx(2.0)
    assert data["pause_and_resume"]["emissions_g"] == pytest.approx(150.0)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(0, 1000), min_size=3, max_size=30),
    holes=st.lists(st.booleans(), min_size=30, max_size=30),
    segments=st.lists(st.tuples(st.floats(1, 7200), st.floats(0, 5000)), min_size=1, max_size=5),
    start=st.floats(0, 20000),
)
def test_flexible_start_emissions_equal_a_direct_sum_over_the_series(tmp_path_factory, values, holes, segments, start):
    """The prefix sums give what walking every step and every job segment gives."""
    from nn_tracker.footprint.scheduling import JobProfile, _emissions_contiguous, _Integral

    lines = ["timestamp,carbon_intensity"]
    t = 0
    for value, hole in zip(values, holes, strict=False):
        t += 3600 * (3 if hole else 1)  # a hole longer than a step leaves time uncovered
        lines.append(f"{datetime.fromtimestamp(1.7e9 + t, tz=timezone.utc).isoformat()},{value}")
    path = tmp_path_factory.mktemp("s") / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    series = IntensitySeries.from_csv(path)
    job = JobProfile(tuple(segments))
    at = series.times_s[0] + start

    def direct():
        grams = covered = 0.0
        for a, b, value in series.covered_intervals():
            lo, hi = max(a, at), min(b, at + job.duration_s)
            if hi > lo:
                grams += job.energy_kwh(lo - at, hi - at) * value
                covered += hi - lo
        return grams if covered >= job.duration_s - 1e-6 else None

    expected, got = direct(), _emissions_contiguous(_Integral(series), job, at)
    assert (got is None) == (expected is None)
    if expected is not None:
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)  # prefix sums subtract large cumulative sums
