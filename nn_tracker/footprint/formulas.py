"""The footprint model: pure functions, one per formula, the unit in every name.

The four formulas of the NN-CI Impact Framework plugins (nn-et, nn-eq, nn-c,
nn-emb) are computed in the original's operation order, so results equal the
original to the last bit. Added here: validation of every input, embodied
carbon given directly per unit, amortisation over the hardware's life (the
Green Software Foundation SCI ``M = TE * (TiR / EL) * (RR / ToR)``) and the SCI
per functional unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from nn_tracker.core import validation as check
from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import struct

HOURS_PER_YEAR = 365.25 * 24
DEFAULT_LIFETIME_YEARS = 6.0
DEFAULT_UTILISATION = 0.85
DEFAULT_LIFETIME_SOURCE = "default: 6-year life at 85 % utilisation, as in BLOOM (Luccioni et al. 2023)"


@struct(frozen=True)
class Lifetime:
    """Hardware life and utilisation for amortisation, and where they came from."""

    years: float
    utilisation: float
    source: str


def lifetime(years: float | None = None, utilisation: float | None = None, prefix: str = "") -> Lifetime:
    """The life to amortise over: the user's, else BLOOM's 6 years at 85 % utilisation.

    A life given without a utilisation means the hardware is busy all its life (1.0).
    """
    if years is None:
        if utilisation is None:
            return Lifetime(DEFAULT_LIFETIME_YEARS, DEFAULT_UTILISATION, DEFAULT_LIFETIME_SOURCE)
        share = check.fraction(f"{prefix}utilisation", utilisation)
        return Lifetime(DEFAULT_LIFETIME_YEARS, share, "default 6-year life; utilisation given by the user")
    life = check.positive(f"{prefix}lifetime_years", years)
    if utilisation is None:
        return Lifetime(life, 1.0, "life given by the user; utilisation 1.0 (busy all its life)")
    return Lifetime(life, check.fraction(f"{prefix}utilisation", utilisation), "given by the user")


def training_energy_kwh(
    *,
    accelerator_count: float,
    accelerator_power_w: float,
    server_count: float,
    server_power_w: float,
    hours: float,
    pue: float,
) -> float:
    """nn-et: ``(PUE * (n_acc * P_acc + n_srv * P_srv) * hours) / 1000`` in kWh, in the original's order."""
    n_acc = check.non_negative("accelerator_count", accelerator_count)
    p_acc = check.non_negative("accelerator_power_w", accelerator_power_w)
    n_srv = check.non_negative("server_count", server_count)
    p_srv = check.non_negative("server_power_w", server_power_w)
    duration_h = check.non_negative("hours", hours)
    factor = check.pue("pue", pue)
    return (factor * (n_acc * p_acc + n_srv * p_srv) * duration_h) / 1000  # products are not associative


def querying_energy_kwh(
    *,
    server_count: float,
    server_power_w: float,
    hours: float,
    pue: float,
    accelerator_count: float | None = None,
    accelerator_power_w: float | None = None,
) -> float:
    """nn-eq: ``n_srv * hours * PUE * P_srv / 1000`` in kWh, plus accelerators if given.

    Without the accelerator arguments the result is exactly the original's; with
    them, ``n_acc * hours * PUE * P_acc / 1000`` is added.
    """
    n_srv = check.non_negative("server_count", server_count)
    p_srv = check.non_negative("server_power_w", server_power_w)
    duration_h = check.non_negative("hours", hours)
    factor = check.pue("pue", pue)
    energy_kwh = n_srv * duration_h * factor * p_srv / 1000
    if accelerator_count is None and accelerator_power_w is None:
        return energy_kwh
    n_acc = check.non_negative("accelerator_count", accelerator_count)
    p_acc = check.non_negative("accelerator_power_w", accelerator_power_w)
    return energy_kwh + n_acc * duration_h * factor * p_acc / 1000


def operational_carbon_g(
    energy_kwh: Sequence[float],
    intensity_g_per_kwh: Sequence[float],
    transport_factor: Sequence[float],
) -> float:
    """nn-c: ``sum_d E_d * (alpha_d / tau_d)`` over datacentres, in gCO2e.

    Args:
        energy_kwh: Energy used in each datacentre.
        intensity_g_per_kwh: Grid carbon intensity of each datacentre.
        transport_factor: Share of electricity delivered, in (0, 1]; it divides.

    """
    check.same_length(
        {"energy_kwh": energy_kwh, "intensity_g_per_kwh": intensity_g_per_kwh, "transport_factor": transport_factor}
    )
    total_g = 0.0
    for i, (energy, alpha, tau) in enumerate(zip(energy_kwh, intensity_g_per_kwh, transport_factor, strict=True)):
        e = check.non_negative(f"energy_kwh[{i}]", energy)
        a = check.non_negative(f"intensity_g_per_kwh[{i}]", alpha)
        t = check.fraction(f"transport_factor[{i}]", tau)
        total_g += e * (a / t)
    return total_g


def embodied_carbon_g(
    count: Sequence[float],
    manufacturing_energy_kwh: Sequence[float],
    intensity_g_per_kwh: Sequence[float],
    transport_factor: Sequence[float],
) -> float:
    """nn-emb: ``sum_h (alpha_h / tau_h) * (E_h * count_h)`` in gCO2e, unamortised.

    Args:
        count: Units of each hardware class.
        manufacturing_energy_kwh: Energy to make one unit of each class.
        intensity_g_per_kwh: Grid intensity where each class was made.
        transport_factor: Delivery factor in (0, 1] at each factory; it divides.

    """
    check.same_length(
        {
            "count": count,
            "manufacturing_energy_kwh": manufacturing_energy_kwh,
            "intensity_g_per_kwh": intensity_g_per_kwh,
            "transport_factor": transport_factor,
        }
    )
    total_g = 0.0
    rows = zip(count, manufacturing_energy_kwh, intensity_g_per_kwh, transport_factor, strict=True)
    for i, (units, energy, alpha, tau) in enumerate(rows):
        n = check.non_negative(f"count[{i}]", units)
        e = check.non_negative(f"manufacturing_energy_kwh[{i}]", energy)
        a = check.non_negative(f"intensity_g_per_kwh[{i}]", alpha)
        t = check.fraction(f"transport_factor[{i}]", tau)
        total_g += (a / t) * (e * n)
    return total_g


def embodied_carbon_from_kg_g(count: Sequence[float], embodied_kg_per_unit: Sequence[float]) -> float:
    """Embodied carbon from published per-unit figures: ``sum_h count_h * kg_h * 1000`` in gCO2e."""
    check.same_length({"count": count, "embodied_kg_per_unit": embodied_kg_per_unit})
    total_g = 0.0
    for i, (units, kg) in enumerate(zip(count, embodied_kg_per_unit, strict=True)):
        total_g += (
            check.non_negative(f"count[{i}]", units) * check.non_negative(f"embodied_kg_per_unit[{i}]", kg) * 1000
        )
    return total_g


def amortised_embodied_g(
    total_embodied_g: float,
    *,
    time_reserved_h: float,
    lifetime_h: float,
    utilisation: float = 1.0,
    resources_reserved: float = 1.0,
    resources_total: float = 1.0,
) -> float:
    """SCI share of embodied carbon: ``TE * (TiR / (EL * u)) * (RR / ToR)`` in gCO2e.

    Args:
        total_embodied_g: TE, the hardware's whole embodied carbon.
        time_reserved_h: TiR, how long the job held the hardware.
        lifetime_h: EL, the hardware's expected life.
        utilisation: Share of its life the hardware is busy, in (0, 1]; it divides
            (BLOOM: a 6-year life at 85 %).
        resources_reserved: RR, resources the job reserved (e.g. GPUs of a server).
        resources_total: ToR, resources the hardware has in all.

    """
    te = check.non_negative("total_embodied_g", total_embodied_g)
    tir = check.non_negative("time_reserved_h", time_reserved_h)
    el = check.positive("lifetime_h", lifetime_h)
    u = check.fraction("utilisation", utilisation)
    rr = check.non_negative("resources_reserved", resources_reserved)
    tor = check.positive("resources_total", resources_total)
    if rr > tor:
        raise ValidationError("resources_reserved", resources_reserved, f"must be <= resources_total ({tor:g})")
    return te * (tir / (el * u)) * (rr / tor)


def sci_g_per_unit(
    *,
    energy_kwh: float,
    intensity_g_per_kwh: float,
    embodied_g: float,
    functional_units: float,
    transport_factor: float = 1.0,
) -> float:
    """Software Carbon Intensity: ``(E * I + M) / R`` in gCO2e per functional unit.

    ``I`` is divided by the transport factor as nn-c does; with the default 1 the
    result is exactly ``(E * I + M) / R``.
    """
    e = check.non_negative("energy_kwh", energy_kwh)
    i = check.non_negative("intensity_g_per_kwh", intensity_g_per_kwh)
    m = check.non_negative("embodied_g", embodied_g)
    r = check.positive("functional_units", functional_units)
    t = check.fraction("transport_factor", transport_factor)
    return (e * (i / t) + m) / r


def total_carbon_g(embodied_g: float, operational_g: float) -> float:
    """IF's ``Sum`` of the two carbon terms, in the original's order (embodied first)."""
    return check.non_negative("embodied_g", embodied_g) + check.non_negative("operational_g", operational_g)
