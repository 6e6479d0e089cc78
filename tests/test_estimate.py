"""The what-if estimate: published results, provenance of every input, defaults said aloud."""

import pytest

from nn_tracker import estimate
from nn_tracker.core.errors import LookupFailed, ValidationError


def test_reproduces_patterson_2021_gpt3_within_one_percent():
    result = estimate(
        hardware="Tesla V100-SXM2-32GB", power_w=330, count=10_000, hours=14.8 * 24, pue=1.10, intensity_g_per_kwh=429
    )
    assert result.energy_kwh / 1000 == pytest.approx(1287, rel=0.01)
    assert result.operational_carbon_g / 1e6 == pytest.approx(552, rel=0.01)
    assert result.inputs["power_w"].source == "user"


def test_nn_et_slot_is_the_original_formula():
    result = estimate(
        power_w=300,
        count=10_000,
        servers=625,
        server_power_w=250,
        hours=360,
        pue=1.1,
        intensity_g_per_kwh=429,
        transport_factor=0.95,
    )
    assert result.energy_kwh == 1249875.0000000002
    assert result.operational_carbon_g == 1249875.0000000002 * (429 / 0.95)


def test_querying_phase_uses_nn_eq():
    result = estimate(
        phase="querying", count=0, servers=3620, server_power_w=250, hours=24, pue=1.1, intensity_g_per_kwh=429
    )
    assert result.energy_kwh == 23892.000000000004


def test_catalogue_tdp_region_pue_and_embodied_are_sourced():
    result = estimate(hardware="A100 SXM", count=8, hours=24, location="gcp:europe-west1")
    assert result.inputs["power_w"].value == 400
    assert "TDP" in result.inputs["power_w"].source
    assert result.inputs["pue"].value == 1.09 and "published PUE" in result.inputs["pue"].source
    assert result.inputs["embodied_kg_per_unit"].value == 150
    assert result.embodied_carbon_unamortised_g == 8 * 150 * 1000
    expected = 8 * 150_000 * (24 / (6 * 8766 * 0.85))
    assert result.embodied_carbon_amortised_g == pytest.approx(expected)
    assert result.total_carbon_g == pytest.approx(result.operational_carbon_g + expected)
    assert any("TDP" in note for note in result.notes)


def test_missing_location_uses_world_average_and_says_so():
    result = estimate(power_w=100, hours=10)
    assert result.inputs["intensity_g_per_kwh"].value == 475
    assert any("No location given" in note for note in result.notes)
    assert any("PUE assumed 1.0" in note for note in result.notes)
    assert result.embodied_carbon_amortised_g is None
    assert any("Embodied carbon not included" in note for note in result.notes)


def test_sci_per_functional_unit():
    result = estimate(power_w=1000, hours=1, intensity_g_per_kwh=100, functional_units=1000, functional_unit="query")
    assert result.sci_g_per_unit == pytest.approx(0.1)
    assert result.functional_unit == "query"


def test_user_lifetime_without_utilisation_means_fully_used():
    result = estimate(power_w=100, hours=8766, intensity_g_per_kwh=0, embodied_kg_per_unit=100, lifetime_years=4)
    assert result.embodied_carbon_amortised_g == pytest.approx(100_000 / 4)
    assert result.inputs["utilisation"].value == 1.0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"hours": 1, "count": 1}, ValidationError, "power_w must be given"),
        ({"hours": 1, "power_w": 1, "pue": 0.9}, ValidationError, "pue must be >= 1, got 0.9"),
        ({"hours": 1, "power_w": 1, "phase": "fine-tuning"}, ValidationError, "phase must be one of"),
        ({"hours": 1, "power_w": 1, "location": "Atlantis"}, LookupFailed, "unknown location 'Atlantis'"),
        ({"hours": 1, "hardware": "GTX 9999"}, LookupFailed, "unknown hardware 'GTX 9999'"),
        ({"hours": 1, "power_w": 1, "functional_units": 0}, ValidationError, "functional_units must be > 0"),
        (
            {"hours": 1, "power_w": 1, "embodied_kg_per_unit": 1, "utilisation": 1.5},
            ValidationError,
            "utilisation must be in (0, 1]",
        ),
    ],
)
def test_bad_input(kwargs, error, message):
    with pytest.raises(error) as info:
        estimate(**kwargs)
    assert message in str(info.value)


def test_estimate_says_which_inputs_are_defaults():
    from nn_tracker import estimate

    result = estimate(hours=2, hardware="T4", location="FR")
    sources = {name: item.source for name, item in result.inputs.items()}
    assert sources["servers"].startswith("default") and sources["server_power_w"].startswith("default")
    assert sources["count"].startswith("default") and sources["transport_factor"].startswith("default")
    assert sources["hours"] == "user"
    given = estimate(hours=2, hardware="T4", location="FR", count=2, servers=0, server_power_w=0, transport_factor=1)
    assert {given.inputs[n].source for n in ("count", "servers", "server_power_w", "transport_factor")} == {"user"}


def test_die_only_embodied_figures_only_on_request():
    from nn_tracker import estimate

    default = estimate(hours=10, hardware="NVIDIA H100 80GB HBM3", location="FR")
    assert default.embodied_carbon_unamortised_g is None
    assert any("die alone" in n for n in default.notes)
    asked = estimate(hours=10, hardware="NVIDIA H100 80GB HBM3", location="FR", embodied_scope="die")
    assert asked.embodied_carbon_unamortised_g == pytest.approx(14.652 * 1000)
    whole = estimate(hours=10, hardware="NVIDIA A100-SXM4-80GB", location="FR")
    assert whole.embodied_carbon_unamortised_g == pytest.approx(150 * 1000)
