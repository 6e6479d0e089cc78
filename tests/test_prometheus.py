"""ServingTracker as Prometheus metrics, scraped over HTTP and parsed with prometheus_client's own parser."""

import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from fakes import ConstantPower, sensor_set
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nn_tracker import ValidationError
from nn_tracker.config import EmbodiedHardware
from nn_tracker.core.clock import ManualClock
from nn_tracker.serving import ServingTracker


def serving(tmp_path, **options):
    return ServingTracker(
        clock=ManualClock(),
        background=False,
        output_dir=tmp_path,
        run_id="svc",
        project_name="api",
        sensors=sensor_set(
            ConstantPower(device_id="gpu:fake", power_w=300),
            ConstantPower(device_id="cpu:fake", component="cpu", name="Fake CPU", power_w=100),
        ),
        intensity_g_per_kwh=100,
        pue=1.5,
        embodied=(EmbodiedHardware("Acme X1", embodied_kg_per_unit=1000, lifetime_years=1, utilisation=1),),
        checkpoint_interval_s=None,
        **options,
    )


def parse(text):
    """{(sample name, frozen labels): value} and {family name: type}, as Prometheus reads them."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples, types


def scrape(address):
    host, port = address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return response.read().decode()


GPU = frozenset({"device": "gpu:fake", "component": "gpu", "method": "integrated_power"}.items())
CPU = frozenset({"device": "cpu:fake", "component": "cpu", "method": "integrated_power"}.items())
QUERY = frozenset({"unit": "query"}.items())
NONE = frozenset()


def test_an_endpoint_on_a_chosen_port_serves_every_figure_in_base_units(tmp_path):
    service = serving(tmp_path, prometheus_port=0, prometheus_addr="127.0.0.1")
    assert service.prometheus_address is None  # nothing listens before start
    with service:
        service.tracker.clock.advance(3600)
        service.tracker.sample()
        service.count(120)
        samples, types = parse(scrape(service.prometheus_address))
        report = service.tracker.live_report()
        address = service.prometheus_address

    assert samples["nn_tracker_device_energy_joules_total", GPU] == pytest.approx(300 * 3600)
    assert samples["nn_tracker_device_energy_joules_total", CPU] == pytest.approx(100 * 3600)
    assert samples["nn_tracker_it_energy_joules_total", NONE] == pytest.approx(400 * 3600)
    assert samples["nn_tracker_facility_energy_joules_total", NONE] == pytest.approx(1.5 * 400 * 3600)
    assert samples["nn_tracker_operational_carbon_grams_total", NONE] == pytest.approx(0.6 * 100)  # 0.6 kWh
    assert samples["nn_tracker_device_carbon_grams_total", GPU] == pytest.approx(45)
    assert samples["nn_tracker_device_carbon_grams_total", CPU] == pytest.approx(15)
    embodied = report.footprint.embodied_carbon_amortised_g
    assert embodied == pytest.approx(1e6 / (365 * 24), rel=0.01)  # 1 t over a year, for one hour
    assert samples["nn_tracker_embodied_carbon_grams_total", NONE] == pytest.approx(embodied)
    assert samples["nn_tracker_carbon_grams_total", NONE] == pytest.approx(60 + embodied)
    assert samples["nn_tracker_power_watts", NONE] == pytest.approx(400)
    assert samples["nn_tracker_device_power_watts", GPU] == pytest.approx(300)
    assert samples["nn_tracker_units_total", QUERY] == 120
    assert samples["nn_tracker_facility_energy_joules_per_unit", QUERY] == pytest.approx(1.5 * 400 * 3600 / 120)
    assert samples["nn_tracker_carbon_grams_per_unit", QUERY] == pytest.approx((60 + embodied) / 120)
    info = frozenset({"run_id": "svc", "project": "api", "unit": "query"}.items())
    assert samples["nn_tracker_run_info", info] == 1

    assert types["nn_tracker_device_energy_joules"] == "counter"
    assert types["nn_tracker_carbon_grams"] == "counter"
    assert types["nn_tracker_units"] == "counter"
    assert types["nn_tracker_power_watts"] == "gauge"
    assert types["nn_tracker_carbon_grams_per_unit"] == "gauge"
    assert types["nn_tracker_run_info"] == "gauge"  # an info metric, as the Prometheus text format has it

    assert service.prometheus_address is None  # stopped: nothing listens any more
    with pytest.raises(OSError), socket.create_connection(address, timeout=2):
        pass


def test_into_the_application_s_registry_once_at_a_time(tmp_path):
    registry = CollectorRegistry(auto_describe=True)
    first = serving(tmp_path, prometheus_registry=registry)
    with first:
        first.tracker.clock.advance(60)
        first.tracker.sample()
        samples, _ = parse(generate_latest(registry).decode())
        assert samples["nn_tracker_device_energy_joules_total", GPU] == pytest.approx(300 * 60)
        assert ("nn_tracker_facility_energy_joules_per_unit", QUERY) not in samples  # no query yet: no figure
        assert samples["nn_tracker_units_total", QUERY] == 0
        second = serving(tmp_path / "b", prometheus_registry=registry)
        message = "prometheus_registry must not hold nn_tracker's metrics already"
        with pytest.raises(ValidationError, match=message) as info:
            second.start()
        assert "\n" not in str(info.value)
        assert not second.tracker.running
    assert "nn_tracker_" not in generate_latest(registry).decode()  # unregistered at stop
    with serving(tmp_path / "c", prometheus_registry=registry):
        assert "nn_tracker_it_energy_joules_total" in generate_latest(registry).decode()


def test_a_port_in_use_is_a_one_line_error_before_anything_runs(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = serving(tmp_path, prometheus_port=port, prometheus_addr="127.0.0.1")
        with pytest.raises(ValidationError, match=f"prometheus_port must be free to listen on.*got {port}"):
            service.start()
    assert not service.tracker.running and not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prometheus_port": "9464"}, "prometheus_port must be an integer from 0 to 65535, got '9464'"),
        ({"prometheus_port": 70000}, "prometheus_port must be an integer from 0 to 65535, got 70000"),
        ({"prometheus_port": True}, "prometheus_port must be an integer from 0 to 65535"),
        ({"prometheus_port": 9464, "prometheus_addr": ""}, "prometheus_addr must be a host name or IP address"),
        ({"prometheus_registry": object()}, "prometheus_registry must be a prometheus_client registry"),
        ({"unit": "two words"}, "unit must be 1-64 letters"),
    ],
)
def test_bad_prometheus_options_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        serving(tmp_path, **kwargs)


def test_nothing_listens_and_nothing_is_imported_by_default(tmp_path):
    code = (
        "import sys, json; from nn_tracker.serving import ServingTracker\n"
        f"s = ServingTracker(output_dir={str(tmp_path)!r}, gpus=False, intensity_g_per_kwh=1).start()\n"
        "print(json.dumps([s.prometheus_address, 'prometheus_client' in sys.modules])); s.stop()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout) == [None, False]
