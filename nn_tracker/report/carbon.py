"""The footprint of a run's measured energy: nn-c per datacentre, nn-emb amortised, the SCI per unit, time-resolved.

Pure functions over the report's types and the configuration: the training (nn-et) and querying
(nn-eq) slots are the facility energy of the root phases, each phase's datacentre turns its energy
into carbon, embodied carbon is amortised over the run, and each kind of functional unit divides
its own phase's figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nn_tracker.config import ALL_OTHER_PHASES, QUERYING_PHASE, TrackerConfig, datacentre_index
from nn_tracker.core.energy import JOULES_PER_KWH
from nn_tracker.footprint import formulas as footprint
from nn_tracker.report.document import Datacentre, Device, EmbodiedItem, Phase, TimeResolved, UnitKind, UnitPhase, whole

if TYPE_CHECKING:
    from nn_tracker.footprint.intensity_series import IntensitySeries


def operational(config: TrackerConfig, phases: dict[str, Phase]) -> tuple[list[Datacentre], dict[str, float], float]:
    """Carbon per datacentre (nn-c) from the facility energy of the root phases it runs."""
    centres = config.resolved
    it_kwh = [0.0] * len(centres)
    slots = {"training": 0.0, "querying": 0.0}
    for name, phase in phases.items():
        if "/" in name:
            continue  # nested phases are inside their root's inclusive energy
        index = datacentre_index(name, [c.phases for c in centres])
        it_kwh[index] += phase.inclusive_energy_kwh
        slots["querying" if name == QUERYING_PHASE else "training"] += phase.inclusive_energy_kwh * centres[index].pue
    facility_kwh = [e * c.pue for e, c in zip(it_kwh, centres, strict=True)]
    operational_g = footprint.operational_carbon_g(
        facility_kwh, [c.intensity_g_per_kwh for c in centres], [c.transport_factor for c in centres]
    )
    rows = [
        Datacentre(
            name=centre.name,
            phases=list(centre.phases) or [ALL_OTHER_PHASES],
            intensity_g_per_kwh=centre.intensity_g_per_kwh,
            intensity_source=centre.intensity_source,
            intensity_year=centre.intensity_year,
            pue=centre.pue,
            pue_source=centre.pue_source,
            transport_factor=centre.transport_factor,
            it_energy_kwh=it,
            facility_energy_kwh=facility,
            operational_carbon_g=footprint.operational_carbon_g(
                [facility], [centre.intensity_g_per_kwh], [centre.transport_factor]
            ),
            default_location=centre.default_location,
            location_code=centre.location_code,
            location_kind=centre.location_kind,
        )
        for centre, it, facility in zip(centres, it_kwh, facility_kwh, strict=True)
    ]
    return rows, slots, operational_g


def charge_devices(config: TrackerConfig, devices: list[Device], centres: list[Datacentre]) -> None:
    """Set each measured device's operational carbon: each phase's energy at the datacentre that runs it.

    The devices' figures add up to the footprint's operational carbon (nn-c is linear in energy).
    """
    for device in devices:
        if device.energy_kwh is None:
            continue
        grams = 0.0
        for phase, kwh in device.energy_kwh_by_phase.items():
            centre = centres[centre_row_for(phase.split("/", 1)[0], centres)]
            grams += footprint.operational_carbon_g(
                [kwh * centre.pue], [centre.intensity_g_per_kwh], [centre.transport_factor]
            )
        device.operational_carbon_g = grams


Wanted = tuple[str, float, float | None, float | None, float | None, str]  # name, count, kg, life, share, scope


def embodied(
    config: TrackerConfig,
    devices: list[Device],
    duration_s: float,
    notes: list[str],
    device_s: dict[str, float] | None = None,
) -> list[EmbodiedItem]:
    """The embodied carbon of the hardware given (amortised over the run) or of the detected GPUs.

    A detected GPU is amortised over the time of the sessions it was measured in (``device_s``, by
    device id; the run's duration where not given): a GPU used in one session of a resumed run is not
    charged for the others.
    """
    hours: dict[str, float] = {}
    if config.embodied == "auto":
        counts: dict[str, int] = {}
        for device in devices:
            if device.component == "gpu":
                counts[device.name] = counts.get(device.name, 0) + 1
                seconds = (device_s or {}).get(device.device_id, duration_s)
                hours[device.name] = hours.get(device.name, 0.0) + seconds / 3600.0
        wanted: list[Wanted] = [(name, count, None, None, None, "unit") for name, count in counts.items()]
    else:
        listed = config.embodied if isinstance(config.embodied, tuple) else ()  # a string other than "auto" is refused
        wanted = [(h.name, h.count, h.embodied_kg_per_unit, h.lifetime_years, h.utilisation, h.scope) for h in listed]
    items = [
        item
        for entry in wanted  # amortised linearly: count x the mean hours of the devices = their hours added up
        if (item := embodied_item(entry, config, hours.get(entry[0], entry[1] * duration_s / 3600.0) / entry[1], notes))
    ]
    if not wanted:
        notes.append(
            "Embodied carbon not included: no hardware with a published figure was detected or "
            "given (CPU-only machines have none in the catalogue)."
        )
    return items


def embodied_item(wanted: Wanted, config: TrackerConfig, hours: float, notes: list[str]) -> EmbodiedItem | None:
    """One hardware's embodied carbon over ``hours``; ``None`` (with a note) when no usable figure exists."""
    name, count, kg, life, share, scope = wanted
    source, method, item_scope = "given by the user", "given by the user", "given by the user"
    if kg is None:
        try:
            spec = config.catalogue.hardware_spec(name)
        except KeyError:
            spec = None
        if spec is None or spec.embodied_kg_co2e is None:
            notes.append(
                f"Embodied carbon of {name} not included: no published per-unit figure in the "
                "catalogue (give embodied=[EmbodiedHardware(...)])."
            )
            return None
        if spec.embodied_scope == "die" and scope != "die":
            notes.append(
                f"Embodied carbon of {name} not included: the only figure in the catalogue "
                f"({spec.embodied_kg_co2e:g} kg, {spec.embodied_method}) covers the chip's die alone, not the "
                "whole card; give embodied_kg_per_unit, or scope='die' to count the die alone (labelled)."
            )
            return None
        kg, method, item_scope = spec.embodied_kg_co2e, spec.embodied_method, spec.embodied_scope
        source = spec.embodied_source.title if spec.embodied_source else "catalogue"
    terms = footprint.lifetime(life, share)
    whole_g = footprint.embodied_carbon_from_kg_g([count], [kg])
    amortised = footprint.amortised_embodied_g(
        whole_g, time_reserved_h=hours, lifetime_h=terms.years * footprint.HOURS_PER_YEAR, utilisation=terms.utilisation
    )
    return EmbodiedItem(
        name=name,
        count=count,
        embodied_kg_per_unit=kg,
        scope=item_scope,
        method=method,
        source=source,
        lifetime_years=terms.years,
        utilisation=terms.utilisation,
        lifetime_source=terms.source,
        unamortised_g=whole_g,
        amortised_g=amortised,
    )


def per_unit(
    units: dict[str, dict[str, float]],
    phases: dict[str, Phase],
    centres: list[Datacentre],
    embodied_g: float | None,
    duration_s: float,
) -> dict[str, UnitKind]:
    """Energy and carbon per functional unit, per kind and per phase, never mixing phases (a pure function).

    A phase's units divide that phase's own energy and time (its nested phases excluded: training
    samples do not share validation's energy): facility energy = own IT energy x the PUE of the
    phase's datacentre; carbon = its operational carbon (nn-c) + the amortised embodied carbon in
    proportion to the phase's own duration.
    """
    result: dict[str, UnitKind] = {}
    for phase in sorted(units):
        info = phases.get(phase)
        own_kwh, own_s = (info.energy_kwh, info.duration_s) if info else (0.0, 0.0)
        centre = centres[centre_row_for(phase.split("/", 1)[0], centres)]
        facility_kwh = own_kwh * centre.pue
        carbon_g = footprint.operational_carbon_g(
            [facility_kwh], [centre.intensity_g_per_kwh], [centre.transport_factor]
        )
        if embodied_g and duration_s > 0:
            carbon_g += embodied_g * own_s / duration_s
        for kind, count in units[phase].items():
            entry = result.setdefault(kind, UnitKind(count=0, by_phase={}))
            entry.count = whole(entry.count + count)
            entry.by_phase[phase] = UnitPhase(
                count=whole(count),
                facility_energy_kwh=facility_kwh,
                carbon_g=carbon_g,
                facility_energy_kwh_per_unit=facility_kwh / count if count else None,
                carbon_g_per_unit=carbon_g / count if count else None,
            )
    return result


def centre_row_for(root_phase: str, rows: list[Datacentre]) -> int:
    """The report's datacentre row that runs a root phase (see :func:`~nn_tracker.config.datacentre_index`)."""
    return datacentre_index(root_phase, [[] if r.phases == [ALL_OTHER_PHASES] else r.phases for r in rows])


def time_resolved(
    series: IntensitySeries | None,
    started_wall_s: float,
    buckets: list[tuple[float, float, float]],
    it_kwh: float,
    facility_kwh: float,
    centres: list[Datacentre],
) -> TimeResolved | None:
    """Operational carbon as sum of E(t) x I(t) over the timeline, when an intensity series is configured.

    ``buckets`` are ``(start_s, end_s, IT joules)`` from the run's start (at ``started_wall_s``). Each
    timeline bucket's energy is spread evenly over its time; the share of it that the
    series covers takes the series' intensity, the rest the datacentre's yearly average
    (reported as ``uncovered_energy_kwh``). Facility energy = IT x the run's overall PUE;
    the first datacentre's transport factor applies (a series describes one grid).
    """
    if series is None:
        return None
    pue = facility_kwh / it_kwh if it_kwh > 0 else 1.0
    tau = centres[0].transport_factor
    average = centres[0].intensity_g_per_kwh
    grams = uncovered_kwh = bucket_kwh = 0.0
    for start_s, end_s, joules in buckets:
        kwh = joules / JOULES_PER_KWH * pue
        bucket_kwh += kwh
        covered_g, share = series.carbon_of(started_wall_s + start_s, started_wall_s + end_s, kwh)
        grams += covered_g / tau + kwh * (1 - share) * average / tau
        uncovered_kwh += kwh * (1 - share)
    # energy this process did not time (other ranks, earlier sessions): the yearly average, said so
    not_in_timeline_kwh = max(facility_kwh - bucket_kwh, 0.0)
    grams += not_in_timeline_kwh * average / tau
    direct = not any(k in series.column.lower() for k in ("life", "lca"))
    return TimeResolved(
        series=series.source,
        series_column=series.column,
        operational_carbon_g=grams,
        energy_kwh=facility_kwh,
        uncovered_energy_kwh=uncovered_kwh + not_in_timeline_kwh,
        not_in_timeline_energy_kwh=not_in_timeline_kwh,
        series_scope="direct emissions only: lower than the life-cycle yearly averages it is compared with"
        if direct and "direct" in series.column.lower()
        else "as the column says",
        yearly_average_operational_carbon_g=facility_kwh * average / tau,
        rule="each row holds until the next row for at most one step (the median spacing); energy in time the "
        "series does not cover uses the datacentre's average intensity",
    )
