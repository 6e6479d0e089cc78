"""Energy per request: the attribution rule against an independent sweep, conservation, settling, bad input."""

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_tracker import ValidationError
from nn_tracker.run.requests import Distribution, RequestLedger


class Now:
    """A fake monotonic clock."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


# A schedule: steps of (seconds to wait, what happens then)
ACTIONS = st.one_of(
    st.tuples(st.just("begin"), st.sampled_from([0.5, 1.0, 2.0, 3.0])),
    st.tuples(st.just("end"), st.integers(0, 50)),
    st.tuples(st.just("reweigh"), st.tuples(st.integers(0, 50), st.sampled_from([0.25, 1.0, 4.0]))),
    st.tuples(st.just("read"), st.integers(0, 3)),  # a device reads its counter (it lags the others by 0-3 steps)
)
SCHEDULES = st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.25, 1.0]), ACTIONS), min_size=1, max_size=60)
POWERS = st.lists(st.sampled_from([0.0, 50.0, 120.0, 300.0]), min_size=1, max_size=3)  # W per device, changing


def run(schedule, powers):
    """Play a schedule; devices draw ``powers`` in turn (a new power at each of their reads).

    Returns the ledger, the requests, the energy pieces sent and the weight history (for the sweep).
    """
    now = Now()
    ledger = RequestLedger(now, pue=1.5, carbon_g_per_facility_j=2e-4, embodied_g_per_s=0.01)
    devices = [{"read_s": 0.0, "power": powers[i % len(powers)]} for i in range(2)]
    requests, in_flight, pieces, history = [], [], [], []
    for step, (wait_s, (action, argument)) in enumerate(schedule):
        now.t += wait_s
        if action == "begin":
            request = ledger.begin(weight=argument)
            requests.append(request)
            in_flight.append(request)
            history.append((now.t, request, argument))
        elif action == "end" and in_flight:
            request = in_flight.pop(argument % len(in_flight))
            ledger.end(request)
            history.append((now.t, request, 0.0))
        elif action == "reweigh" and in_flight:
            request = in_flight[argument[0] % len(in_flight)]
            request.set_weight(argument[1])
            history.append((now.t, request, argument[1]))
        elif action == "read":
            device = devices[argument % len(devices)]
            if now.t > device["read_s"]:
                piece = (device["read_s"], now.t, device["power"] * (now.t - device["read_s"]))
                pieces.append(piece)
                device["read_s"] = now.t
                device["power"] = powers[step % len(powers)]
                ledger.add_energy([piece], min(d["read_s"] for d in devices), 0.0)
    now.t += 0.5
    for device in devices:  # the final reading of every device, as at stop
        if now.t > device["read_s"]:
            pieces.append((device["read_s"], now.t, device["power"] * (now.t - device["read_s"])))
            device["read_s"] = now.t
    open_count = len(in_flight)
    ledger.add_energy(pieces[len(pieces) - len(devices) :], now.t, 0.0)
    for request in in_flight:
        history.append((now.t, request, 0.0))
    assert ledger.close(now.t) == open_count
    return ledger, requests, pieces, history


def sweep(pieces, history):
    """The attribution rule computed directly: at every moment, power split by weight; {request: J}, idle J."""
    cuts = sorted({t for p in pieces for t in p[:2]} | {t for t, _, _ in history})
    energy, idle = {}, 0.0
    for t0, t1 in itertools.pairwise(cuts):
        power = sum(j / (e - b) for b, e, j in pieces if b <= t0 and t1 <= e and e > b)
        weights = {}
        for t, request, weight in history:  # each request's weight at t0
            if t <= t0:
                weights[id(request)] = (request, weight)
        flying = {k: v for k, v in weights.items() if v[1] > 0}
        total = sum(w for _, w in flying.values())
        if total <= 0:
            idle += power * (t1 - t0)
            continue
        for request, weight in flying.values():
            energy[id(request)] = energy.get(id(request), 0.0) + power * (t1 - t0) * weight / total
    return energy, idle


@settings(max_examples=300, deadline=None)
@given(SCHEDULES, POWERS)
def test_each_request_gets_the_power_shared_by_weight_and_everything_adds_up(schedule, powers):
    ledger, requests, pieces, history = run(schedule, powers)
    expected, idle = sweep(pieces, history)
    run_j = sum(j for _, _, j in pieces)
    assert all(r.settled for r in requests)
    for request in requests:
        assert request.energy_j == pytest.approx(expected.get(id(request), 0.0), rel=1e-9, abs=1e-9)
    assert ledger.idle_j == pytest.approx(idle, rel=1e-9, abs=1e-9)
    # conservation: requests + idle = the run, for IT energy, facility energy and carbon alike
    attributed = math.fsum(r.energy_j for r in requests)
    assert attributed + ledger.idle_j == pytest.approx(run_j, rel=1e-9, abs=1e-9)
    assert ledger.energy_j == pytest.approx(run_j, rel=1e-9, abs=1e-9)
    facility = math.fsum(r.facility_energy_j for r in requests) + ledger.idle_j * 1.5
    assert facility == pytest.approx(run_j * 1.5, rel=1e-9, abs=1e-9)
    duration_s = max([p[1] for p in pieces], default=0.0)
    carbon = math.fsum(r.carbon_g for r in requests) + ledger.idle_j * 1.5 * 2e-4 + ledger.idle_s * 0.01
    assert carbon == pytest.approx(run_j * 1.5 * 2e-4 + duration_s * 0.01, rel=1e-9, abs=1e-9)


def test_provisional_figures_use_the_last_power_and_settle_against_the_counter():
    now = Now()
    ledger = RequestLedger(now)
    request = ledger.begin()
    now.t = 2.0
    ledger.end(request)
    ledger.add_energy([], 0.0, 0.0)  # nothing read yet
    assert not request.settled and request.energy_j is None  # no power known yet: no figure, never a false 0
    now.t = 2.5
    ledger.add_energy([(0.0, 1.0, 100.0)], 1.0, 100.0)  # one device read up to 1 s at 100 W
    assert not request.settled
    now.t = 3.0
    ledger.add_energy([(1.0, 3.0, 400.0)], 3.0, 200.0)  # then 200 W: the counter covers the request
    assert request.settled and request.energy_j == pytest.approx(100.0 + 200.0)
    assert ledger.idle_j == pytest.approx(200.0)  # from 2 s to 3 s nobody was in flight


def test_a_provisional_figure_comes_from_the_last_power_sample():
    now = Now()
    ledger = RequestLedger(now)
    ledger.add_energy([], 0.0, 250.0)  # a power sample of 250 W, no counter reading yet
    request = ledger.begin()
    now.t = 4.0
    ledger.end(request)
    assert request.energy_j == pytest.approx(1000.0) and not request.settled


def test_bad_requests_are_one_line_errors():
    ledger = RequestLedger(Now())
    for weight in (0, -1, math.nan, math.inf, True, "2"):
        with pytest.raises(ValidationError, match="weight must be a finite number > 0"):
            ledger.begin(weight=weight)
    request = ledger.begin()
    with pytest.raises(ValidationError, match=r"units\.tokens must be a finite number >= 0"):
        request.add_units(tokens=-3)
    ledger.end(request)
    with pytest.raises(ValidationError, match=r"request must be used once \(it has ended already\)"):
        ledger.end(request)
    request.set_weight(2)  # over: nothing to share, nothing raised into the server
    with pytest.raises(ValidationError, match="weight must be a finite number > 0"):
        request.set_weight(-2)
    for kind in ("", "request"):
        with pytest.raises(ValidationError, match="other than 'request'"):
            request.add_units(**{kind: 1})


def test_a_late_or_instant_reading_is_idle_energy_never_lost():
    now = Now()
    ledger = RequestLedger(now)
    request = ledger.begin()
    now.t = 2.0
    ledger.add_energy([(0.0, 2.0, 200.0)], 2.0, 100.0)  # final up to 2 s
    ledger.add_energy([(1.0, 1.0, 7.0), (0.5, 1.5, 10.0)], 2.0, 100.0)  # instant and late: before the frontier
    ledger.end(request)
    ledger.close(2.0)
    assert request.energy_j == pytest.approx(200.0) and ledger.idle_j == pytest.approx(17.0)
    assert request.energy_j + ledger.idle_j == pytest.approx(ledger.energy_j) == pytest.approx(217.0)


def test_extreme_weights_lose_no_energy():
    now = Now()
    ledger = RequestLedger(now)
    big, small = ledger.begin(weight=1e16), ledger.begin(weight=3.0)
    now.t = 1.0
    ledger.end(big)
    now.t = 2.0
    ledger.end(small)
    ledger.add_energy([(0.0, 2.0, 1100.0)], 2.0, 0.0)
    assert big.energy_j + small.energy_j + ledger.idle_j == pytest.approx(1100.0)
    assert small.energy_j == pytest.approx(550.0 + 550.0 * 3 / (1e16 + 3))


def test_memory_is_bounded_however_many_requests_pass():
    now = Now()
    ledger = RequestLedger(now)
    for step in range(20_000):
        request = ledger.begin()
        now.t += 0.001
        ledger.end(request)
        if step % 100 == 99:
            ledger.add_energy([(now.t - 0.1, now.t, 10.0)], now.t, 100.0)
    assert len(ledger._events) < 500 and len(ledger._segments) < 500 and not ledger._waiting


def test_percentiles_are_within_one_bucket():
    values = [0.001 * 1.37**k for k in range(60)]
    distribution = Distribution()
    for value in values:
        distribution.add(value)
    ordered = sorted(values)
    for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
        exact = ordered[math.ceil(q * len(values)) - 1]
        assert distribution.summary()[key] == pytest.approx(exact, rel=0.13)
    assert distribution.summary()["mean"] == pytest.approx(sum(values) / len(values), rel=1e-12)


# ----- through a ServingTracker ----------------------------------------------------------------------------------
def serving(tmp_path, **options):
    from fakes import ConstantPower, sensor_set

    from nn_tracker import ManualClock
    from nn_tracker.serving import ServingTracker

    clock = ManualClock()
    tracker = ServingTracker(
        clock=clock,
        background=False,
        sensors=sensor_set(ConstantPower(power_w=100.0)),
        output_dir=tmp_path,
        intensity_g_per_kwh=360.0,  # 1e-4 g per J
        pue=1.5,
        embodied=(),
        checkpoint_interval_s=None,
        **options,
    )
    return tracker, clock


def test_a_serving_tracker_shares_power_among_requests_and_reports_them(tmp_path):
    tracker, clock = serving(tmp_path)
    with tracker:
        first = tracker.request(tokens=10).__enter__()
        clock.advance(10)
        with tracker.request(tokens=30) as second:
            clock.advance(10)
            tracker.request().__exit__  # noqa: B018 - a scope never entered ends nothing
            tracker._ledger.end(first)
            clock.advance(10)
        assert second.energy_j is None and not second.settled  # no reading yet: no provisional figure
        clock.advance(10)
        tracker.tracker.sample()
        assert first.settled and second.settled
        assert first.energy_j == pytest.approx(1500.0) and second.energy_j == pytest.approx(1500.0)
        assert second.facility_energy_j == pytest.approx(2250.0) and second.carbon_g == pytest.approx(0.225)
        assert second.duration_s == pytest.approx(20.0)
    report = tracker.tracker.report()
    section = report.requests
    assert section.count == 2 and section.open_at_stop == 0
    assert section.it_energy_kwh * 3.6e6 == pytest.approx(3000.0)
    assert section.idle_it_energy_kwh * 3.6e6 == pytest.approx(1000.0)  # 30 s to 40 s: nobody in flight
    assert (section.it_energy_kwh + section.idle_it_energy_kwh) == pytest.approx(report.energy_kwh)  # conservation
    assert section.carbon_g + section.idle_carbon_g == pytest.approx(report.total_carbon_g)
    assert section.idle_share_facility_energy_j == pytest.approx(1000.0 * 1.5 / 2)  # idle, per request
    assert section.per_unit["request"].facility_energy_j.mean == pytest.approx(2250.0)
    assert section.per_unit["tokens"].units == 40 and section.per_unit["tokens"].requests == 2
    assert section.per_unit["tokens"].facility_energy_j.mean == pytest.approx((2250 / 10 + 2250 / 30) / 2)
    (period,) = [json.loads(line) for line in tracker.periods_path.read_text().splitlines()]
    assert period["requests"]["count"] == 2
    assert period["requests"]["idle_it_energy_kwh"] * 3.6e6 == pytest.approx(1000.0)
    assert json.loads(tracker.tracker.report_path.read_text())["requests"]["count"] == 2


def test_a_stop_by_sigterm_or_at_exit_still_closes_the_requests_and_the_last_period(tmp_path):
    tracker, clock = serving(tmp_path)
    tracker.start()
    request = tracker.request().__enter__()
    clock.advance(5)
    report = tracker.tracker.stop("terminated")  # what the SIGTERM handler and the exit hook call
    assert request.settled and report.requests.open_at_stop == 1
    assert report.requests.it_energy_kwh + report.requests.idle_it_energy_kwh == pytest.approx(report.energy_kwh)
    assert json.loads(tracker.periods_path.read_text().splitlines()[-1])["requests"]["count"] == 1


def test_a_sensor_whose_reads_keep_failing_does_not_hold_the_requests_back(tmp_path):
    from fakes import ConstantPower, sensor_set

    from nn_tracker import ManualClock
    from nn_tracker.serving import ServingTracker

    broken = ConstantPower("cpu:0", 50.0, "cpu", "CPU")
    clock = ManualClock()
    tracker = ServingTracker(
        clock=clock,
        background=False,
        sensors=sensor_set(ConstantPower(power_w=100.0), broken),
        output_dir=tmp_path,
        intensity_g_per_kwh=100,
        embodied=(),
        checkpoint_interval_s=None,
    )
    with tracker:
        broken.fail = True
        done = []
        for _ in range(30):
            with tracker.request() as request:
                clock.advance(1)
            done.append(request)
            tracker.tracker.sample()
        assert sum(r.settled for r in done) >= 15  # settled within the lag allowed, not only at stop
        assert len(tracker._ledger._waiting) <= 12


def test_a_request_left_open_at_stop_is_ended_then_and_noted(tmp_path):
    tracker, clock = serving(tmp_path)
    tracker.start()
    scope = tracker.request()
    request = scope.__enter__()
    clock.advance(5)
    report = tracker.stop()
    assert request.settled and request.energy_j == pytest.approx(500.0)
    assert report.requests.open_at_stop == 1
    assert any("1 request(s) still in flight at stop" in note for note in report.notes)
    scope.__exit__(None, None, None)  # the server ends it later: nothing happens, nothing raised


def test_a_scope_entered_twice_at_once_and_bad_weights_are_one_line_errors(tmp_path):
    tracker, _clock = serving(tmp_path)
    with tracker:
        scope = tracker.request()
        with scope, pytest.raises(ValidationError, match="request must be entered once at a time"):
            scope.__enter__()
        with pytest.raises(ValidationError, match="weight must be a finite number > 0"):
            tracker.request(weight=-1)
        with pytest.raises(ValidationError, match="tokens"):
            tracker.request(tokens=math.nan)


def test_requests_as_decorators_and_in_asyncio_tasks(tmp_path):
    import asyncio

    tracker, clock = serving(tmp_path)

    @tracker.request()
    def handle(x):
        clock.advance(2)
        return x * 2

    @tracker.request(weight=3)
    async def handle_async(x):
        await asyncio.sleep(0)
        return x + 1

    async def main():
        async with tracker.request() as request:
            clock.advance(1)
        return request, await asyncio.gather(*(handle_async(i) for i in range(3)))

    with tracker:
        assert handle(21) == 42
        request, results = asyncio.run(main())
        assert results == [1, 2, 3]
    assert request.settled and request.energy_j == pytest.approx(100.0)
    assert tracker.tracker.report().requests.count == 5


def test_prometheus_histograms_of_settled_requests_and_the_idle_energy(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    tracker, clock = serving(tmp_path, prometheus_registry=registry)
    with tracker:
        for seconds in (0.5, 2.0, 30.0):
            with tracker.request():
                clock.advance(seconds)
        clock.advance(5)
        tracker.tracker.sample()
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    energy = {
        s.labels.get("le"): s.value
        for s in families["nn_tracker_request_energy_joules"].samples
        if s.name.endswith("_bucket")
    }
    # facility J: 75, 300 and 4500 (100 W x 1.5): cumulative counts by bucket
    assert energy["50.0"] == 0 and energy["100.0"] == 1 and energy["500.0"] == 2 and energy["5000.0"] == 3
    assert energy["+Inf"] == 3
    total = {s.name: s.value for s in families["nn_tracker_request_energy_joules"].samples}
    assert total["nn_tracker_request_energy_joules_sum"] == pytest.approx(75 + 300 + 4500)
    idle = families["nn_tracker_idle_energy_joules"].samples[0].value
    assert idle == pytest.approx(500.0)  # the last 5 s, nobody in flight


def test_the_markdown_and_html_show_the_distribution_and_a_histogram(tmp_path):
    tracker, clock = serving(tmp_path, formats=["json", "md", "html"])
    with tracker:
        for seconds in (0.5, 2.0, 2.0, 30.0):
            with tracker.request(tokens=5):
                clock.advance(seconds)
    markdown = next(tmp_path.glob("*.md")).read_text()
    assert "## Energy per request" in markdown and "4 requests used 3,450 J (IT)" in markdown
    assert "| tokens | 20 |" in markdown
    page = next(tmp_path.glob("*.html")).read_text()
    assert page.count('class="hbar"') == 3  # 75 J, 300 J (two) and 4,500 J: three non-empty bins
    assert 'style="width:100.0%"' in page  # the bin of two requests is the longest bar


# ----- on the replayed H200 trace ----------------------------------------------------------------------------------
def test_on_the_replayed_h200_requests_and_idle_add_up_and_provisional_figures_stay_close(fake_nvml, capsys):
    """Random overlapping requests over the 65-s H200 trace (counter in 100-ms steps, reads every 100 ms).

    Conservation holds against the counters; how far a request's provisional figure (last power sample)
    was from its settled one is printed (``pytest -s``) for the README, and bounded here.
    """
    import random

    from nn_tracker import ManualClock
    from nn_tracker.sensors.nvml import discover_gpus
    from nn_tracker.sensors.sampling import Sampler

    fake_nvml.add("NVIDIA H200", "GPU-h200", 0, limit_w=700)
    duration_s = fake_nvml.load_trace(0)
    clock = ManualClock()
    ledger = RequestLedger(clock.monotonic)
    sampler = Sampler(discover_gpus().sensors, clock, interval_s=0.1, energy_listener=ledger.add_energy)
    sampler.start(background=False)
    rng = random.Random(7)
    in_flight, ended = [], []
    for step in range(1, int((duration_s - 1) * 100)):
        clock.advance(0.01)
        fake_nvml.advance(0.01)
        if rng.random() < 0.05:
            in_flight.append(ledger.begin(weight=rng.choice([1.0, 2.0, 4.0])))
        if in_flight and rng.random() < 0.04:
            request = ledger.end(in_flight.pop(rng.randrange(len(in_flight))))
            ended.append((request, request.energy_j))
        if step % 10 == 0:
            sampler.tick()
    sampler.stop()
    ledger.close(clock.monotonic())
    measured_j = sum(t.energy_j for t in sampler.totals.values())
    settled = [r for r, _ in ended]
    assert all(r.settled for r in settled)
    attributed = math.fsum(r.energy_j for r in settled) + sum(r.energy_j for r in in_flight)
    assert attributed + ledger.idle_j == pytest.approx(measured_j, rel=1e-9)
    gaps = sorted(abs(p - r.energy_j) / r.energy_j for r, p in ended if p is not None and r.energy_j > 1.0)
    quantile = {q: gaps[min(len(gaps) - 1, int(q * len(gaps)))] for q in (0.5, 0.9, 0.99)}
    overall = math.fsum(p for _, p in ended if p) / math.fsum(r.energy_j for r in settled) - 1
    with capsys.disabled():
        print(
            f"\nreplayed H200: {len(gaps)} requests; |provisional - settled| / settled: "
            f"p50 {quantile[0.5]:.1%}, p90 {quantile[0.9]:.1%}, p99 {quantile[0.99]:.1%}; "
            f"sum of provisional vs settled: {overall:+.2%}"
        )
    assert quantile[0.5] < 0.25


def test_a_request_in_flight_for_hours_keeps_no_hours_of_segments():
    now = Now()
    ledger = RequestLedger(now)
    long = ledger.begin()
    for tick in range(1, 20_001):  # 2,000 s at 10 Hz, while short requests come and go
        now.t = tick / 10
        short = ledger.begin()
        ledger.end(short)
        ledger.add_energy([(now.t - 0.1, now.t, 10.0)], now.t, 100.0)
    assert len(ledger._segments) < 300 and len(ledger._events) < 300
    now.t += 1
    ledger.end(long)
    ledger.close(now.t)
    assert long.settled
    # alone or shared with the short ones (which last no time): it got every joule but the last second's
    assert long.energy_j == pytest.approx(20_000 * 10.0)
