"""The footprint formulas: the original's exact results, validation, and properties."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nn_tracker.core.errors import ValidationError
from nn_tracker.footprint import formulas as footprint

finite_pos = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
pues = st.floats(min_value=1, max_value=3, allow_nan=False)
taus = st.floats(min_value=0.01, max_value=1, allow_nan=False)


def test_training_energy_matches_original_to_the_last_bit():
    energy = footprint.training_energy_kwh(
        accelerator_count=10_000, accelerator_power_w=300, server_count=625, server_power_w=250, hours=360, pue=1.1
    )
    assert energy == 1249875.0000000002


def test_querying_energy_matches_original_to_the_last_bit():
    assert footprint.querying_energy_kwh(server_count=3620, server_power_w=250, hours=24, pue=1.1) == 23892.000000000004


def test_querying_energy_accelerator_term_is_added():
    base = footprint.querying_energy_kwh(server_count=2, server_power_w=250, hours=10, pue=1.0)
    with_acc = footprint.querying_energy_kwh(
        server_count=2, server_power_w=250, hours=10, pue=1.0, accelerator_count=4, accelerator_power_w=300
    )
    assert base == 5.0
    assert with_acc == 5.0 + 12.0


def test_embodied_matches_original_to_the_last_bit():
    assert footprint.embodied_carbon_g([100], [750], [0.389], [0.95]) == 30710.526315789473


def test_operational_carbon_over_several_datacentres():
    carbon = footprint.operational_carbon_g([1249875.0000000002, 23892.000000000004], [429, 429], [0.95, 0.95])
    expected = 1249875.0000000002 * (429 / 0.95) + 23892.000000000004 * (429 / 0.95)
    assert carbon == expected


def test_embodied_from_kg_and_amortisation_bloom_style():
    whole_g = footprint.embodied_carbon_from_kg_g([8, 1], [150, 2500])
    assert whole_g == 3_700_000.0
    one_year = footprint.amortised_embodied_g(
        whole_g, time_reserved_h=footprint.HOURS_PER_YEAR, lifetime_h=6 * footprint.HOURS_PER_YEAR, utilisation=0.85
    )
    assert one_year == pytest.approx(3_700_000 / (6 * 0.85))
    half_server = footprint.amortised_embodied_g(
        whole_g, time_reserved_h=10, lifetime_h=100, resources_reserved=4, resources_total=8
    )
    assert half_server == pytest.approx(whole_g * 0.1 * 0.5)


def test_sci_per_unit():
    assert (
        footprint.sci_g_per_unit(energy_kwh=2.0, intensity_g_per_kwh=100, embodied_g=50, functional_units=1000)
        == (2.0 * 100 + 50) / 1000
    )
    assert (
        footprint.sci_g_per_unit(
            energy_kwh=1.0, intensity_g_per_kwh=95, embodied_g=0, functional_units=1, transport_factor=0.95
        )
        == 100.0
    )


def test_total_sums_embodied_first():
    assert footprint.total_carbon_g(1.5, 2.25) == 3.75


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: footprint.training_energy_kwh(
                accelerator_count=1, accelerator_power_w=1, server_count=0, server_power_w=0, hours=1, pue=0.5
            ),
            "pue must be >= 1, got 0.5",
        ),
        (
            lambda: footprint.training_energy_kwh(
                accelerator_count=-1, accelerator_power_w=1, server_count=0, server_power_w=0, hours=1, pue=1
            ),
            "accelerator_count must be >= 0, got -1",
        ),
        (
            lambda: footprint.querying_energy_kwh(server_count=1, server_power_w=float("nan"), hours=1, pue=1),
            "server_power_w must be finite, got nan",
        ),
        (lambda: footprint.operational_carbon_g([1], [400], [0]), "transport_factor[0] must be in (0, 1], got 0"),
        (lambda: footprint.operational_carbon_g([1], [400], [1.2]), "transport_factor[0] must be in (0, 1], got 1.2"),
        (
            lambda: footprint.operational_carbon_g([1, 2], [400], [1, 1]),
            "intensity_g_per_kwh must have as many items as energy_kwh (2), got 1",
        ),
        (lambda: footprint.embodied_carbon_g([1], [1], [-3], [1]), "intensity_g_per_kwh[0] must be >= 0, got -3"),
        (lambda: footprint.amortised_embodied_g(1, time_reserved_h=1, lifetime_h=0), "lifetime_h must be > 0, got 0"),
        (
            lambda: footprint.amortised_embodied_g(
                1, time_reserved_h=1, lifetime_h=1, resources_reserved=3, resources_total=2
            ),
            "resources_reserved must be <= resources_total",
        ),
        (
            lambda: footprint.sci_g_per_unit(energy_kwh=1, intensity_g_per_kwh=1, embodied_g=0, functional_units=0),
            "functional_units must be > 0, got 0",
        ),
        (
            lambda: footprint.training_energy_kwh(
                accelerator_count="8", accelerator_power_w=1, server_count=0, server_power_w=0, hours=1, pue=1
            ),
            "accelerator_count must be a number",
        ),
        (
            lambda: footprint.training_energy_kwh(
                accelerator_count=True, accelerator_power_w=1, server_count=0, server_power_w=0, hours=1, pue=1
            ),
            "accelerator_count must be a number",
        ),
    ],
)
def test_bad_values_name_field_value_and_rule(call, message):
    with pytest.raises(ValidationError) as info:
        call()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_zero_accelerators_is_allowed():
    assert (
        footprint.training_energy_kwh(
            accelerator_count=0, accelerator_power_w=0, server_count=1, server_power_w=100, hours=10, pue=1.0
        )
        == 1.0
    )


@given(n=finite_pos, p=finite_pos, h=finite_pos, pue=pues, k=st.floats(min_value=0.5, max_value=4))
def test_training_energy_is_linear_in_hours_and_count(n, p, h, pue, k):
    base = footprint.training_energy_kwh(
        accelerator_count=n, accelerator_power_w=p, server_count=0, server_power_w=0, hours=h, pue=pue
    )
    longer = footprint.training_energy_kwh(
        accelerator_count=n, accelerator_power_w=p, server_count=0, server_power_w=0, hours=h * k, pue=pue
    )
    assert math.isclose(longer, base * k, rel_tol=1e-12, abs_tol=1e-300)
    assert base >= 0


@given(e=finite_pos, a=finite_pos, t1=taus, t2=taus)
def test_operational_carbon_grows_as_transport_factor_shrinks(e, a, t1, t2):
    low, high = sorted((t1, t2))
    assert footprint.operational_carbon_g([e], [a], [low]) >= footprint.operational_carbon_g([e], [a], [high])


@given(st.lists(st.tuples(finite_pos, finite_pos, finite_pos, taus), min_size=1, max_size=6))
def test_operational_carbon_is_additive_over_datacentres(rows):
    energies, alphas, tau_list = [r[0] for r in rows], [r[1] for r in rows], [r[3] for r in rows]
    total = footprint.operational_carbon_g(energies, alphas, tau_list)
    parts = sum(
        footprint.operational_carbon_g([e], [a], [t]) for e, a, t in zip(energies, alphas, tau_list, strict=True)
    )
    assert math.isclose(total, parts, rel_tol=1e-9, abs_tol=1e-9)


@given(te=finite_pos, tir=finite_pos, el=st.floats(min_value=1, max_value=1e6), u=taus)
def test_amortised_share_is_monotone_in_time_and_never_negative(te, tir, el, u):
    a = footprint.amortised_embodied_g(te, time_reserved_h=tir, lifetime_h=el, utilisation=u)
    b = footprint.amortised_embodied_g(te, time_reserved_h=tir * 2, lifetime_h=el, utilisation=u)
    assert 0 <= a <= b


@given(value=st.one_of(st.floats(max_value=-1e-9), st.just(float("inf")), st.just(float("nan"))))
def test_any_negative_or_non_finite_hours_is_rejected(value):
    with pytest.raises(ValidationError, match=r"^hours must be"):
        footprint.training_energy_kwh(
            accelerator_count=1, accelerator_power_w=1, server_count=0, server_power_w=0, hours=value, pue=1
        )


@given(value=st.floats(max_value=0.9999999, allow_nan=False, allow_infinity=False))
def test_any_pue_below_one_is_rejected(value):
    with pytest.raises(ValidationError, match=r"^pue must be >= 1"):
        footprint.querying_energy_kwh(server_count=1, server_power_w=1, hours=1, pue=value)


# ----- bit-identical to the original NN-CI plugins on any input ---------------------------------------------
# An independent transcription of the original plugins' expressions (left to right, as JavaScript evaluates
# them; Python's float arithmetic is the same IEEE 754 double arithmetic), kept apart from nn_tracker's code.
def original_nn_et(n_acc, p_acc, n_srv, p_srv, hours, pue):
    return (pue * (n_acc * p_acc + n_srv * p_srv) * hours) / 1000


def original_nn_eq(n_srv, p_srv, hours, pue):
    return n_srv * hours * pue * p_srv / 1000


def original_nn_c(energies, intensities, taus):
    total = 0
    for e, a, t in zip(energies, intensities, taus, strict=True):
        total = total + e * (a / t)
    return total


def original_nn_emb(counts, energies, intensities, taus):
    total = 0
    for n, e, a, t in zip(counts, energies, intensities, taus, strict=True):
        total = total + (a / t) * (e * n)
    return total


quantity = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
pue_value = st.floats(1, 3, allow_nan=False)
tau_value = st.floats(1e-3, 1, allow_nan=False)


@given(quantity, quantity, quantity, quantity, quantity, pue_value)
def test_nn_et_is_bit_identical_to_the_original(n_acc, p_acc, n_srv, p_srv, hours, pue):
    got = footprint.training_energy_kwh(
        accelerator_count=n_acc,
        accelerator_power_w=p_acc,
        server_count=n_srv,
        server_power_w=p_srv,
        hours=hours,
        pue=pue,
    )
    assert got == original_nn_et(n_acc, p_acc, n_srv, p_srv, hours, pue)  # ==, not approx


def test_nn_et_operation_order_on_the_example_that_differs():
    got = footprint.training_energy_kwh(
        accelerator_count=1, accelerator_power_w=250, server_count=0, server_power_w=0, hours=3, pue=1.1
    )
    assert got == 0.825 and 1.1 * 3 * (1 * 250 + 0 * 0) / 1000 == 0.8250000000000001  # the order matters


@given(quantity, quantity, quantity, pue_value)
def test_nn_eq_is_bit_identical_to_the_original(n_srv, p_srv, hours, pue):
    got = footprint.querying_energy_kwh(server_count=n_srv, server_power_w=p_srv, hours=hours, pue=pue)
    assert got == original_nn_eq(n_srv, p_srv, hours, pue)


@given(st.lists(st.tuples(quantity, quantity, tau_value), min_size=1, max_size=6))
def test_nn_c_is_bit_identical_to_the_original(rows):
    energies, intensities, taus = (list(column) for column in zip(*rows, strict=True))
    assert footprint.operational_carbon_g(energies, intensities, taus) == original_nn_c(energies, intensities, taus)


@given(st.lists(st.tuples(quantity, quantity, quantity, tau_value), min_size=1, max_size=6))
def test_nn_emb_is_bit_identical_to_the_original(rows):
    counts, energies, intensities, taus = (list(column) for column in zip(*rows, strict=True))
    got = footprint.embodied_carbon_g(counts, energies, intensities, taus)
    assert got == original_nn_emb(counts, energies, intensities, taus)
