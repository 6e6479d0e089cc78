"""The report's types: what a footprint report holds, field by field, in the order of its JSON.

Built by :mod:`nn_tracker.report.model`, written and read by :mod:`nn_tracker.report.codec`, read
by every writer through attributes. ``docs/report-schema.md`` is generated from these fields
(a test checks it is current). A figure that was not measured is ``None`` (``null``), never 0.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from nn_tracker.core.structs import field
from nn_tracker.report.codec import IsoTime, record, spec, to_json

SCHEMA_VERSION = 5
Status = Literal["running", "completed", "failed", "terminated"]
STATUSES = get_args(Status)
TrainingType = Literal["pre-training", "fine-tuning"]


def whole(count: float) -> float:
    """A count as an integer when it is one (``76``, not ``76.0``): counts are stored so."""
    return int(count) if isinstance(count, float) and count.is_integer() else count


@record
class RunError:
    """The exception that ended a failed run."""

    type: str = spec("the exception's class name")
    message: str = spec("its message")


@record
class Machine:
    """What the machine is; who and where only with ``identity=True``."""

    hostname: str | None = spec("the host name (only with identity=True)", default=None, omit_none=True)
    os: str | None = spec("kernel name, release and architecture", default=None)
    python: str | None = spec("Python version", default=None)
    nn_tracker: str | None = spec("nn_tracker version", default=None)
    cpu_model: str | None = spec("the CPU's model name", default=None)
    logical_cpus: int | None = spec("logical CPUs", default=None)
    memory_total_gib: float | None = spec("the machine's total memory, GiB", default=None)
    pid: int | None = spec("the process id (only with identity=True)", default=None, omit_none=True)
    user: str | None = spec("the user, from $USER or $LOGNAME (only with identity=True)", default=None, omit_none=True)


@record
class Settings:
    """The tracker's settings that shape the figures."""

    attribution: str | None = spec("`machine` or `process`", default=None)
    interval_s: float | None = spec("sampling interval", default=None)
    checkpoint_interval_s: float | None = spec("seconds between checkpoint reports (null: none)", default=None)
    training_type: TrainingType = spec("for the model card", default="pre-training")


@record
class Energy:
    """IT energy (before PUE), over all measured devices."""

    it_kwh: float = spec("sum over measured devices, before PUE")
    by_component_kwh: dict[str, float | None] = spec(
        "per component (`gpu`, `cpu`, `ram`): null if not measured", key="component"
    )
    by_method_kwh: dict[str, float] = spec("per method of measuring", key="method")
    unmeasured_devices: list[str] = spec("ids of devices whose energy is unknown", factory=list)


@record
class Device:
    """One measured (or estimated) device and how its figure was obtained."""

    device_id: str = spec("`gpu:<uuid>`, `cpu:package-0`, `ram:dram`...")
    component: str = spec("`gpu`, `cpu`, `ram`...")
    name: str = spec("model name")
    method: str = spec("`counter`, `integrated_power`, `estimate`...")
    model: str | None = spec("the estimation model, for estimates")
    details: dict[str, Any] = spec("UUID, power limit, power source, TDP and its source, RAPL zone...", factory=dict)
    energy_kwh: float | None = spec("null when the device was never read (the reason is in notes)")
    energy_kwh_by_phase: dict[str, float] = spec("own energy per phase", key="phase")
    mean_power_w: float | None = spec("mean power over the measured time")
    peak_power_w: float | None = spec("highest power reading")
    last_power_w: float | None = spec("the last reading", default=None)
    measured_s: float = spec("time covered by readings")
    gap_s: float = spec("time not covered by readings")
    readings: int | None = spec("readings taken", default=None)
    errors: int | None = spec("read errors", default=None)
    first_error: str | None = spec("the first read error", default=None)
    dropped_intervals: int | None = spec("implausible readings, counted as a gap", default=None)
    bridged_intervals: int | None = spec(
        "intervals where the counter went back, integrated from power instead", default=None
    )
    lost_at_s: float | None = spec("when the device stopped answering (seconds from the start)", default=None)
    node: str = spec("`local` in a single-node report; the host name, made unique, in a multi-node one")
    notes: list[str] = spec("caveats about this device")
    operational_carbon_g: float | None = spec(
        "operational carbon of its energy: each phase's share at the PUE and intensity of the datacentre that runs "
        "it (the devices' figures add up to the footprint's; null: not measured, or read from a report older "
        "than schema 4)",
        default=None,
    )


@record
class Node:
    """One machine of the run."""

    energy_kwh: float = spec("measured IT energy of its devices")
    devices: list[str] = spec("its devices' ids")


@record
class Phase:
    """Energy and time of one phase (a path: `training`, `training/validation`, `querying/test`)."""

    energy_kwh: float = spec("own IT energy (nested phases excluded)")
    inclusive_energy_kwh: float = spec("IT energy with nested phases")
    duration_s: float = spec("own time")
    inclusive_duration_s: float = spec("time with nested phases")
    units: dict[str, float] = spec("functional units counted in it, per kind", key="kind")


@record
class Datacentre:
    """Where phases ran: grid intensity, PUE and transport factor, with their sources (nn-c)."""

    name: str = spec("a name for people")
    phases: list[str] = spec("the root phases it runs (`(all others)`: every phase no other one names)")
    intensity_g_per_kwh: float = spec("grid carbon intensity, gCO2e/kWh")
    intensity_source: str = spec("where the intensity comes from, with its year")
    intensity_year: int | None = spec("the intensity's year", default=None)
    pue: float = spec("power usage effectiveness")
    pue_source: str = spec("where the PUE comes from")
    transport_factor: float = spec("nn-c's transport factor (carbon = energy x intensity / factor)")
    it_energy_kwh: float = spec("IT energy of its phases")
    facility_energy_kwh: float = spec("IT energy x PUE")
    operational_carbon_g: float = spec("its operational carbon")
    default_location: bool = spec("true when no location was given (world average)", default=False)
    location_code: str | None = spec("catalogue code of the location", default=None)
    location_kind: str | None = spec("`country`, `us_state`, `grid_zone`, `cloud_region`", default=None)


@record
class EmbodiedItem:
    """The embodied carbon of one kind of hardware, amortised over the run."""

    name: str = spec("the hardware")
    count: float = spec("how many")
    embodied_kg_per_unit: float = spec("kgCO2e per unit")
    scope: str | None = spec("`unit`: the whole card or server; `die`: the chip's die alone (on request)", default=None)
    method: str = spec("how the figure was obtained")
    source: str = spec("where it comes from")
    lifetime_years: float = spec("service life")
    utilisation: float = spec("share of the life in use")
    lifetime_source: str | None = spec("where life and utilisation come from", default=None)
    unamortised_g: float | None = spec("the whole embodied carbon, gCO2e", default=None)
    amortised_g: float = spec("the run's share, gCO2e")


@record
class TimeResolved:
    """Operational carbon as the sum of E(t) x I(t) over the timeline, with an intensity series."""

    series: str | None = spec("the series' file", default=None)
    series_column: str | None = spec("its intensity column", default=None)
    operational_carbon_g: float = spec("time-resolved operational carbon")
    energy_kwh: float | None = spec("all the report's facility energy", default=None)
    uncovered_energy_kwh: float = spec("energy outside the series, at the yearly average")
    not_in_timeline_energy_kwh: float | None = spec(
        "energy this process did not time (other ranks, resumed)", default=None
    )
    series_scope: str | None = spec("what the series' figures cover", default=None)
    yearly_average_operational_carbon_g: float | None = spec("the same energy at the yearly averages", default=None)
    rule: str | None = spec("how rows hold over time", default=None)


@record
class Footprint:
    """The footprint model's slots: nn-et, nn-eq, nn-c, nn-emb and their sum."""

    training_energy_kwh: float = spec("nn-et slot: facility energy of the non-querying root phases")
    querying_energy_kwh: float = spec("nn-eq slot: facility energy of `querying`")
    operational_carbon_g: float = spec("nn-c over every datacentre")
    embodied_carbon_unamortised_g: float | None = spec(
        "the hardware's whole embodied carbon (null: none)", default=None
    )
    embodied_carbon_amortised_g: float | None = spec("the run's share of it (null: not included)")
    embodied: list[EmbodiedItem] = spec("per hardware")
    total_carbon_g: float = spec("operational + amortised embodied")
    time_resolved: TimeResolved | None = spec("null without an intensity series", default=None)
    method: str | None = spec("how the slots were filled", default=None)

    @property
    def facility_energy_kwh(self) -> float:
        """Training + querying facility energy (IT x PUE)."""
        return self.training_energy_kwh + self.querying_energy_kwh


@record
class UnitPhase:
    """Per-unit figures of one kind in one phase: the phase's own energy and time."""

    count: float = spec("units counted in the phase")
    facility_energy_kwh: float = spec("the phase's own facility energy (nested phases excluded)")
    carbon_g: float = spec("its carbon, with the embodied share of its own duration")
    facility_energy_kwh_per_unit: float | None = spec("per unit (null: no units)")
    carbon_g_per_unit: float | None = spec("per unit: the SCI (null: no units)")


@record
class UnitKind:
    """One kind of functional unit (sample, query, token...)."""

    count: float = spec("over all phases")
    by_phase: dict[str, UnitPhase] = spec("per phase where units of the kind were counted", key="phase")


@record
class Equivalent:
    """An everyday equivalent of the footprint, with its factor and source."""

    key: str | None = spec("its id", default=None)
    label: str = spec("what it is")
    value: float = spec("how many")
    basis: str | None = spec("`carbon_g` or `energy_kwh`", default=None)
    factor: float = spec("the basis per one of it")
    unit: str = spec("the factor's unit")
    source: str = spec("where the factor comes from")
    url: str | None = spec("the source's address", default=None)
    year: int | None = spec("the factor's year", default=None)
    note: str | None = spec("a caveat", default=None)


@record
class Place:
    """The same facility energy under another grid."""

    why: str = spec("why this place is shown")
    code: str = spec("catalogue code")
    name: str = spec("the place")
    intensity_g_per_kwh: float = spec("its grid intensity")
    year: int | None = spec("the intensity's year")
    source: str | None = spec("where the intensity comes from", default=None)
    operational_carbon_g: float | None = spec("operational carbon there", default=None)
    total_carbon_g: float = spec("with the (unchanged) embodied carbon")


@record
class WhatIf:
    """The same energy elsewhere: only the grid changes."""

    facility_energy_kwh: float | None = spec("the run's facility energy", default=None)
    embodied_carbon_g: float | None = spec("amortised embodied carbon (null: not included)", default=None)
    places: list[Place] = spec("the places compared")
    method: str | None = spec("how", default=None)


@record
class SamplerHealth:
    """How the sampling went."""

    interval_s: float | None = spec("sampling interval", default=None)
    ticks: int | None = spec("samples taken", default=None)
    tick_errors: int | None = spec("samples that failed", default=None)
    sensor_errors: int | None = spec("sensor read errors", default=None)
    gap_s: float | None = spec("device time not covered by readings", default=None)


@record
class RelatedRun:
    """Another run this report relates to (an earlier stage of the same trainer)."""

    stage: str | None = spec("the trainer's stage", default=None)
    run_id: str = spec("its run id")
    status: str = spec("its status")
    started_at: IsoTime | None = spec("when it started", default=None)
    duration_s: float = spec("its duration")
    it_energy_kwh: float | None = spec("its IT energy", default=None)
    total_carbon_g: float | None = spec("its total carbon", default=None)
    report: str | None = spec("where its report is", default=None)


@record
class Session:
    """One session of the run: from a start to a stop (a resumed run has one per resume)."""

    run_id: str = spec("the run id its report was written under")
    current: bool = spec("true for the session this report was written by")
    started_at: IsoTime | None = spec("UTC wall clock", default=None)
    ended_at: IsoTime | None = spec(
        "UTC wall clock (for the current session of a running report: so far)", default=None
    )
    duration_s: float = spec("its duration (its writer's: global rank 0's)", minimum=0)
    processes: int | None = spec("processes (ranks) that measured in it (null: unknown, an upgraded report)")
    it_energy_kwh: float = spec("IT energy of every device measured in it", minimum=0)
    it_energy_kwh_by_component: dict[str, float] = spec(
        "per component measured in it (`gpu`, `cpu`, `ram`)", factory=dict, key="component"
    )
    facility_energy_kwh: float = spec("IT energy x the PUE of each phase's datacentre", minimum=0)
    operational_carbon_g: float = spec("operational carbon of its energy (nn-c)", minimum=0)
    embodied_carbon_amortised_g: float | None = spec("its share of the amortised embodied carbon (by duration)")
    total_carbon_g: float = spec("operational + its embodied share", minimum=0)
    units: dict[str, float] = spec("functional units counted in it, per kind", factory=dict, key="kind")


@record
class Spread:
    """A distribution: the exact mean; percentiles within 12 % (logarithmic buckets)."""

    mean: float | None = spec("exact mean (null: no value)", default=None)
    p50: float | None = spec("median", default=None)
    p90: float | None = spec("90th percentile", default=None)
    p99: float | None = spec("99th percentile", default=None)


@record
class RequestUnits:
    """Requests' figures per unit of one kind (``request``: per request; ``token``: each request's / its tokens)."""

    units: float = spec("units of this kind the requests served", minimum=0)
    requests: int = spec("requests that served any", minimum=0)
    facility_energy_j: Spread = spec("facility energy per unit, J")
    carbon_g: Spread = spec("carbon per unit (operational + its embodied share), gCO2e")


@record
class RequestBin:
    """Requests whose facility energy is at most ``up_to_j`` (and above the bin before)."""

    up_to_j: float | None = spec("upper bound, J (null: above the last bound)")
    count: int = spec("requests in it", minimum=0)


@record
class Requests:
    """Energy per request (``ServingTracker.request``): the power shared among the requests in flight by weight."""

    count: int = spec("requests settled", minimum=0)
    open_at_stop: int = spec("requests still in flight at stop (ended then)", minimum=0)
    it_energy_kwh: float = spec("IT energy attributed to the requests", minimum=0)
    idle_it_energy_kwh: float = spec("IT energy while no request was in flight", minimum=0)
    idle_s: float = spec("seconds without any request in flight", minimum=0)
    facility_energy_kwh: float = spec("the requests' IT energy x the PUE", minimum=0)
    carbon_g: float = spec("the requests' operational carbon + their share of the embodied carbon", minimum=0)
    idle_carbon_g: float = spec("the same for the idle time", minimum=0)
    idle_share_facility_energy_j: float | None = spec(
        "idle facility energy per request, J: add it to a request's for the SCI figure 'with idle'", default=None
    )
    idle_share_carbon_g: float | None = spec("idle carbon per request, gCO2e (the same, for carbon)", default=None)
    per_unit: dict[str, RequestUnits] = spec("per unit kind", factory=dict, key="kind")
    histogram: list[RequestBin] = spec("requests by facility energy (non-empty bins)", factory=list)
    method: str = spec("the attribution rule", default="")


@record
class TimelinePoint:
    """One bucket of the timeline."""

    start_s: float = spec("seconds from the start")
    end_s: float = spec("seconds from the start")
    mean_power_w: dict[str, float | None] = spec(
        "per device: from power samples, else its energy over the bucket", key="device"
    )
    peak_power_w: dict[str, float | None] = spec("per device", key="device")
    energy_j: dict[str, float | None] = spec("per device (each reading spread over the time it covers)", key="device")
    phase_energy_j: dict[str, float] = spec("per root phase", factory=dict, key="phase")
    phase_s: dict[str, float] = spec("seconds per root phase", factory=dict, key="phase")


@record
class Timeline:
    """Power and energy over time, downsampled to at most ``timeline_points`` buckets."""

    bucket_s: float = spec("bucket length")
    devices: list[str] = spec("device ids in the points")
    points: list[TimelinePoint] = spec("the buckets")


@record
class Report:
    """A run's footprint report (schema version :data:`SCHEMA_VERSION`); :meth:`to_dict` is its JSON."""

    schema_version: int = spec("4 (older versions are upgraded when read)")
    run_id: str = spec("UTC start time, then 96 random bits (or as given)")
    project_name: str = spec("the project")
    status: Status = spec("`running` (a checkpoint), `completed`, `failed`, `terminated`")
    started_at: IsoTime | None = spec("UTC wall clock")
    ended_at: IsoTime | None = spec("UTC wall clock (null while running)")
    checkpointed_at: IsoTime | None = spec(
        "when a `running` report was written: a run no longer running was interrupted after it", default=None
    )
    duration_s: float = spec(
        "monotonic duration of the run: every session's added up (`started_at` is the first session's)", minimum=0
    )
    error: RunError | None = spec("the exception that ended a failed run")
    machine: Machine = spec("what the machine is", factory=Machine)
    software: dict[str, str | None] = spec(
        "versions of nn_tracker, Python, nvidia-ml-py, psutil, and torch/lightning when loaded", key="package"
    )
    settings: Settings = spec("the settings that shape the figures", factory=Settings)
    energy: Energy = spec("IT energy")
    devices: list[Device] = spec("every device")
    nodes: dict[str, Node] = spec("per node", factory=dict, key="node")
    phases: dict[str, Phase] = spec("per phase path", key="phase")
    datacentres: list[Datacentre] = spec("where the phases ran", min_items=1)
    footprint: Footprint = spec("the footprint")
    units: dict[str, UnitKind] = spec("per kind of functional unit", key="kind")
    equivalents: list[Equivalent] = spec("everyday equivalents")
    what_if: WhatIf = spec("the same energy under other grids")
    sampler: SamplerHealth = spec("how the sampling went")
    notes: list[str] = spec("every caveat, fallback and assumption")
    related_runs: list[RelatedRun] = spec("earlier stages of the same trainer", factory=list)
    sessions: list[Session] = spec("the run's sessions, in order; they add up to the run's figures", factory=list)
    timeline: Timeline | None = spec("power over time (null in a summary)", default=None)
    requests: Requests | None = spec("energy per request (serving with request())", default=None, omit_none=True)
    paths: tuple[str, ...] | list[str] = field(default=(), init=False, repr=False, compare=False)  # where written

    @property
    def energy_kwh(self) -> float:
        """IT energy measured (or estimated) over the run, before PUE."""
        return self.energy.it_kwh

    @property
    def total_carbon_g(self) -> float:
        """Operational + amortised embodied carbon."""
        return self.footprint.total_carbon_g

    @property
    def incomplete(self) -> bool:
        """False: this report has every figure."""
        return False

    @property
    def session(self) -> Session | None:
        """The session that wrote this report (``None`` for a report read without sessions)."""
        return next((s for s in self.sessions if s.current), None)

    @property
    def overall_pue(self) -> float:
        """The run's facility energy over its IT energy (1 when no energy was measured)."""
        return self.footprint.facility_energy_kwh / self.energy_kwh if self.energy_kwh > 0 else 1.0

    def energy_buckets(self) -> list[tuple[float, float, float]]:
        """``(start_s, end_s, IT joules of every device)`` per timeline bucket (none without a timeline)."""
        points = self.timeline.points if self.timeline else []
        return [(p.start_s, p.end_s, sum(j for j in p.energy_j.values() if j is not None)) for p in points]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        result: dict[str, Any] = to_json(self)
        return result


@record
class IncompleteReport:
    """What is known when the report cannot be built (an internal failure): never nothing, never a wrong figure."""

    schema_version: int = spec("4")
    run_id: str = spec("the run id")
    project_name: str = spec("the project")
    status: Status = spec("the run's status")
    incomplete: bool = spec("always true")
    duration_s: float = spec("monotonic duration", minimum=0)
    error: RunError | None = spec("the exception that ended a failed run", default=None)
    notes: list[str] = spec("why the report could not be built")
    paths: tuple[str, ...] | list[str] = field(default=(), init=False, repr=False, compare=False)  # where written

    energy_kwh = None  # not known: never 0
    total_carbon_g = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        result: dict[str, Any] = to_json(self)
        return result


def schema_table() -> str:
    """The field table of ``docs/report-schema.md`` (Markdown), generated from these types."""
    from nn_tracker.report.codec import schema_rows

    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| {path} | {kind} | {meaning} |" for path, kind, meaning in schema_rows(Report)]
    lines += ["", "An incomplete report (the report could not be built) holds only:", ""]
    lines += ["| field | type | meaning |", "| --- | --- | --- |"]
    lines += [f"| {path} | {kind} | {meaning} |" for path, kind, meaning in schema_rows(IncompleteReport)]
    return "\n".join(lines) + "\n"
