"""What-if estimates without measuring: hardware x count x hours x location.

An ML-CO2-calculator-style front end to :mod:`nn_tracker.footprint.formulas`. Every input
is echoed with where it came from (the user, the catalogue, or a documented
default), so the result can be checked and cited.
"""

from __future__ import annotations

from typing import Any

from nn_tracker.config import QUERYING_PHASE, TRAINING_PHASE, Datacentre, resolve_datacentre
from nn_tracker.core import validation as check
from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import asdict, field, replace, struct
from nn_tracker.footprint import formulas as footprint
from nn_tracker.footprint.catalogue import Catalogue, bundled

PHASES = (TRAINING_PHASE, QUERYING_PHASE)


@struct(frozen=True)
class Input:
    """One input of an estimate, with its unit and where it came from."""

    value: Any
    unit: str
    source: str


@struct(frozen=True)
class Estimate:
    """The result of :func:`estimate`; carbon in gCO2e, energy in kWh."""

    phase: str
    energy_kwh: float
    operational_carbon_g: float
    embodied_carbon_unamortised_g: float | None
    embodied_carbon_amortised_g: float | None
    total_carbon_g: float
    functional_units: float
    functional_unit: str
    sci_g_per_unit: float
    inputs: dict[str, Input]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (units in the key names)."""
        return asdict(self)


def estimate(
    *,
    hours: float,
    count: float | None = None,
    hardware: str | None = None,
    power_w: float | None = None,
    servers: float | None = None,
    server_power_w: float | None = None,
    pue: float | None = None,
    location: str | None = None,
    intensity_g_per_kwh: float | None = None,
    transport_factor: float | None = None,
    embodied_kg_per_unit: float | None = None,
    server_embodied_kg: float | None = None,
    lifetime_years: float | None = None,
    utilisation: float | None = None,
    functional_units: float = 1,
    functional_unit: str = "run",
    phase: str = TRAINING_PHASE,
    embodied_scope: str = "unit",
    catalogue: Catalogue | None = None,
) -> Estimate:
    """Estimate energy and carbon of a job that was not measured.

    Args:
        hours: Duration of the job.
        count: Number of accelerators (0 for a CPU-only or server-only job).
        hardware: Catalogue name of the accelerator (gives TDP and embodied carbon).
        power_w: Average power per accelerator; overrides the catalogue TDP.
        servers: Number of host servers.
        server_power_w: Average power per server (excluding the accelerators).
        pue: Facility PUE; default the cloud region's published PUE, else 1.0.
        location: Country, grid zone, US state or cloud region (``aws:us-east-1``).
        intensity_g_per_kwh: Explicit grid intensity; overrides ``location``.
        transport_factor: Share of electricity delivered, in (0, 1].
        embodied_kg_per_unit: Embodied kgCO2e per accelerator; overrides the catalogue.
        server_embodied_kg: Embodied kgCO2e per server.
        lifetime_years: Hardware life for amortisation (default 6 years).
        utilisation: Share of its life the hardware is busy (default 0.85 with the default life).
        functional_units: How many functional units the job served (R of the SCI).
        functional_unit: What one unit is ("run", "query", "token", ...).
        phase: ``training`` (nn-et) or ``querying`` (nn-eq).
        embodied_scope: ``unit`` (default): only whole-unit catalogue figures; ``die``: a figure for the
            chip's die alone may be used (labelled).
        catalogue: Reference data; default the bundled one.

    Raises:
        ValidationError: an input breaks a rule.
        LookupFailed: a hardware or location name is unknown.

    """
    catalogue = catalogue or bundled()
    notes: list[str] = []
    if phase not in PHASES:
        raise ValidationError("phase", phase, f"must be one of {', '.join(PHASES)}")
    if embodied_scope not in ("unit", "die"):
        raise ValidationError("embodied_scope", embodied_scope, "must be 'unit' or 'die'")
    footprint.lifetime(lifetime_years, utilisation)  # checked even when no embodied figure will use them
    inputs = _job_inputs(hours, count, servers, server_power_w, transport_factor)
    spec = catalogue.hardware_spec(hardware) if hardware else None
    _accelerator_power(inputs, notes, spec, power_w)
    _place(inputs, notes, catalogue, location, intensity_g_per_kwh, pue)
    values = {name: item.value for name, item in inputs.items()}
    energy_kwh = _energy_kwh(phase, values)
    operational_g = footprint.operational_carbon_g(
        [energy_kwh], [values["intensity_g_per_kwh"]], [values["transport_factor"]]
    )
    spec = _embodied_spec(spec, embodied_scope, embodied_kg_per_unit, notes)
    unamortised_g, amortised_g = _embodied(
        inputs, notes, spec, embodied_kg_per_unit, server_embodied_kg, lifetime_years, utilisation
    )
    units = check.positive("functional_units", functional_units)
    sci = footprint.sci_g_per_unit(
        energy_kwh=energy_kwh,
        intensity_g_per_kwh=values["intensity_g_per_kwh"],
        embodied_g=amortised_g or 0.0,
        functional_units=units,
        transport_factor=values["transport_factor"],
    )
    return Estimate(
        phase=phase,
        energy_kwh=energy_kwh,
        operational_carbon_g=operational_g,
        embodied_carbon_unamortised_g=unamortised_g,
        embodied_carbon_amortised_g=amortised_g,
        total_carbon_g=footprint.total_carbon_g(amortised_g or 0.0, operational_g),
        functional_units=units,
        functional_unit=functional_unit,
        sci_g_per_unit=sci,
        inputs=inputs,
        notes=notes,
    )


def _given(name: str, value: float | None, default: float, unit: str, why: str) -> Input:
    """The user's value (checked), or the default with the reason it was chosen."""
    if value is None:
        return Input(default, unit, f"default: {why}")
    return Input(check.non_negative(name, value), unit, "user")


def _job_inputs(
    hours: float, count: float | None, servers: float | None, server_power_w: float | None, transport: float | None
) -> dict[str, Input]:
    """Duration, accelerator and server counts, server power and transport factor, each with its origin."""
    return {
        "hours": Input(check.non_negative("hours", hours), "h", "user"),
        "count": _given("count", count, 1, "accelerators", "1 accelerator"),
        "servers": _given("servers", servers, 0, "servers", "no host servers counted"),
        "server_power_w": _given("server_power_w", server_power_w, 0, "W", "no host server power counted"),
        "transport_factor": Input(
            1.0 if transport is None else check.fraction("transport_factor", transport),
            "",
            "default: 1.0 (no delivery loss)" if transport is None else "user",
        ),
    }


def _accelerator_power(inputs: dict[str, Input], notes: list[str], spec: Any, power_w: float | None) -> None:
    """The power per accelerator: the user's, else the catalogue's TDP (said to be an upper bound)."""
    if spec:
        inputs["hardware"] = Input(spec.name, "", f"catalogue ({spec.kind})")
    if power_w is not None:
        inputs["power_w"] = Input(check.non_negative("power_w", power_w), "W", "user")
    elif spec and spec.tdp_w is not None:
        origin = spec.tdp_source.title if spec.tdp_source else "catalogue"
        inputs["power_w"] = Input(spec.tdp_w, "W", f"catalogue TDP of {spec.name} ({origin})")
        notes.append(
            f"Accelerator power is the TDP of {spec.name}; real average power is usually lower. "
            "Give power_w for a measured or published average."
        )
        if spec.notes:
            notes.append(f"{spec.name}: {spec.notes}.")
    elif inputs["count"].value > 0:
        raise ValidationError("power_w", None, "must be given when the hardware has no TDP in the catalogue")
    else:
        inputs["power_w"] = Input(0.0, "W", "no accelerators")


def _place(
    inputs: dict[str, Input],
    notes: list[str],
    catalogue: Catalogue,
    location: str | None,
    intensity_g_per_kwh: float | None,
    pue: float | None,
) -> None:
    """Grid intensity and PUE of the place, each with its source; notes when defaults stand in."""
    place = resolve_datacentre(
        Datacentre(location, intensity_g_per_kwh, pue, inputs["transport_factor"].value), catalogue
    )
    intensity_source = "user" if intensity_g_per_kwh is not None else f"catalogue: {place.intensity_source}"
    inputs["intensity_g_per_kwh"] = Input(place.intensity_g_per_kwh, "gCO2e/kWh", intensity_source)
    inputs["pue"] = Input(place.pue, "", "user" if pue is not None else place.pue_source)
    if place.default_location:
        notes.append(
            f"No location given: the world average {place.intensity_g_per_kwh:g} gCO2e/kWh "
            f"({place.intensity_source}) was used. Give a location for a meaningful figure."
        )
    if pue is None and place.pue == 1.0 and place.pue_source.startswith("assumed"):
        notes.append("PUE assumed 1.0 (no cooling or power-delivery overhead); give pue for a datacentre.")


def _energy_kwh(phase: str, values: dict[str, Any]) -> float:
    """Facility energy through nn-et (training) or nn-eq (querying)."""
    if phase == TRAINING_PHASE:
        return footprint.training_energy_kwh(
            accelerator_count=values["count"],
            accelerator_power_w=values["power_w"],
            server_count=values["servers"],
            server_power_w=values["server_power_w"],
            hours=values["hours"],
            pue=values["pue"],
        )
    return footprint.querying_energy_kwh(
        server_count=values["servers"],
        server_power_w=values["server_power_w"],
        hours=values["hours"],
        pue=values["pue"],
        accelerator_count=values["count"],
        accelerator_power_w=values["power_w"],
    )


def _embodied_spec(spec: Any, scope: str, embodied_kg_per_unit: float | None, notes: list[str]) -> Any:
    """The hardware spec, without a die-only embodied figure unless ``scope`` is ``die`` (said in a note)."""
    if spec is not None and spec.embodied_scope == "die" and scope != "die" and embodied_kg_per_unit is None:
        notes.append(
            f"The catalogue's embodied figure for {spec.name} ({spec.embodied_kg_co2e:g} kg) covers the chip's die "
            "alone, not the whole card: not used (give embodied_kg_per_unit, or embodied_scope='die')."
        )
        return replace(spec, embodied_kg_co2e=None)
    return spec


def _embodied(
    inputs: dict[str, Input],
    notes: list[str],
    spec: Any,
    embodied_kg_per_unit: float | None,
    server_embodied_kg: float | None,
    lifetime_years: float | None,
    utilisation: float | None,
) -> tuple[float | None, float | None]:
    """Fill the embodied inputs; return (unamortised, amortised) gCO2e or (None, None)."""
    if embodied_kg_per_unit is not None:
        acc_kg = check.non_negative("embodied_kg_per_unit", embodied_kg_per_unit)
        inputs["embodied_kg_per_unit"] = Input(acc_kg, "kgCO2e", "user")
    elif spec is not None and spec.embodied_kg_co2e is not None and inputs["count"].value > 0:
        acc_kg = spec.embodied_kg_co2e
        source = spec.embodied_source.title if spec.embodied_source else "catalogue"
        inputs["embodied_kg_per_unit"] = Input(acc_kg, "kgCO2e", f"catalogue: {spec.embodied_method} ({source})")
    else:
        acc_kg = None
    srv_kg = None
    if server_embodied_kg is not None:
        srv_kg = check.non_negative("server_embodied_kg", server_embodied_kg)
        inputs["server_embodied_kg"] = Input(srv_kg, "kgCO2e", "user")
    if acc_kg is None and srv_kg is None:
        notes.append("Embodied carbon not included: no per-unit figure was given or found in the catalogue.")
        return None, None
    if acc_kg is None and inputs["count"].value > 0:
        notes.append("Embodied carbon of the accelerators not included: no per-unit figure.")
    if srv_kg is None and inputs["servers"].value > 0:
        notes.append("Embodied carbon of the servers not included: no per-unit figure.")
    unamortised_g = footprint.embodied_carbon_from_kg_g(
        [inputs["count"].value, inputs["servers"].value], [acc_kg or 0.0, srv_kg or 0.0]
    )
    terms = footprint.lifetime(lifetime_years, utilisation)
    inputs["lifetime_years"] = Input(terms.years, "years", terms.source)
    inputs["utilisation"] = Input(terms.utilisation, "", terms.source)
    amortised_g = footprint.amortised_embodied_g(
        unamortised_g,
        time_reserved_h=inputs["hours"].value,
        lifetime_h=terms.years * footprint.HOURS_PER_YEAR,
        utilisation=terms.utilisation,
    )
    return unamortised_g, amortised_g
