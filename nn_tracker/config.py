"""Tracker configuration: one validated, immutable object.

Bad values fail at construction with a :class:`ValidationError` naming the
field, the value and the rule; locations and hardware are looked up in the
catalogue then, so a typo never waits until the end of a long run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nn_tracker.core import validation as check
from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import field, struct
from nn_tracker.footprint import formulas as footprint
from nn_tracker.footprint.catalogue import Catalogue, bundled
from nn_tracker.sensors.rapl import DEFAULT_ROOT

log = logging.getLogger("nn_tracker")
FORMATS = ("json", "md", "html", "csv", "model-card", "if-manifest")
ATTRIBUTIONS = ("machine", "process")


RUN_DEFAULTS = {"attribution": "process"}  # nn-tracker run charges a wrapped command for its own process tree
MIN_INTERVAL_S = 0.01  # sampling faster than 100 Hz measures nothing more and costs a core
MIN_CHECKPOINT_INTERVAL_S = 1.0  # a checkpoint rewrites and fsyncs the report


def closest(name: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'location'?)`` for a misspelt name, else ``""``."""
    import difflib

    match = difflib.get_close_matches(str(name), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_phase_name(name: object, field_name: str = "phase") -> str:
    """Phase names are 1-64 letters, digits, ``_``, ``.`` or ``-`` (``/`` separates nesting)."""
    if not check.is_name(name, check.PHASE_NAME_MOST):
        raise ValidationError(field_name, name, f"must be {check.PHASE_NAME_RULE}")
    return name


ALL_OTHER_PHASES = "(all others)"  # how reports list the phases of a datacentre that names none
TRAINING_PHASE = "training"  # the root phase of training; every root phase but querying fills nn-et's slot
QUERYING_PHASE = "querying"  # the root phase of inference: its facility energy fills nn-eq's slot


def datacentre_index(root_phase: str, phases_per_centre: list[tuple[str, ...]] | list[list[str]]) -> int:
    """Which datacentre runs a root phase: the first naming it, else the first naming none, else the first.

    A datacentre that names no phase runs all the others.

    Args:
        root_phase: e.g. ``training`` or ``querying``.
        phases_per_centre: Each datacentre's named phases, in order (empty: all the others).
    """
    for index, phases in enumerate(phases_per_centre):
        if root_phase in phases:
            return index
    return next((index for index, phases in enumerate(phases_per_centre) if not phases), 0)


@struct(frozen=True)
class Datacentre:
    """Where (part of) the job runs: grid intensity, PUE, transport factor.

    Attributes:
        location: Country, zone, US state or ``provider:region`` from the catalogue.
        intensity_g_per_kwh: Explicit intensity (overrides ``location``).
        pue: Facility PUE; default the region's published PUE, else 1.0.
        transport_factor: Share of electricity delivered, in (0, 1].
        phases: Root phases run here (e.g. ``("querying",)``); empty means every other phase.
        name: Label in the report.

    """

    location: str | None = None
    intensity_g_per_kwh: float | None = None
    pue: float | None = None
    transport_factor: float = 1.0
    phases: tuple[str, ...] = ()
    name: str = ""


@struct(frozen=True)
class ResolvedDatacentre:
    """A :class:`Datacentre` after catalogue look-up, with the source of every figure."""

    name: str
    intensity_g_per_kwh: float
    intensity_source: str
    intensity_year: int | None
    pue: float
    pue_source: str
    transport_factor: float
    phases: tuple[str, ...]
    default_location: bool
    location_code: str | None = None
    location_kind: str = "user"


@struct(frozen=True)
class EmbodiedHardware:
    """Hardware whose embodied carbon is amortised over the run.

    Attributes:
        name: Catalogue name (gives the figure) or a label.
        count: Units used.
        embodied_kg_per_unit: kgCO2e per unit; default the catalogue's figure.
        lifetime_years: Expected life (default 6 years).
        utilisation: Share of its life the hardware is busy (default 0.85 with the default life, else 1).
        scope: ``unit`` (default): only a whole-unit catalogue figure (card, chip package or server) is
            used; ``die``: a figure for the chip's die alone (LLMCarbon) may be used, labelled as such.

    """

    name: str
    count: float = 1
    embodied_kg_per_unit: float | None = None
    lifetime_years: float | None = None
    utilisation: float | None = None
    scope: str = "unit"


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    kind: str = "str",
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
) -> Any:
    """A :class:`TrackerConfig` field with what the CLI, the YAML file and the docs need to know of it.

    Args:
        default: The default value.
        help: What the option is, in one line (the README's option table and ``--help``).
        flag: Its ``nn-tracker run`` flag, if it has one.
        kind: How the flag reads its value: ``str``, ``float`` or ``list`` (repeatable).
        choices: The values the flag accepts, if only some.
        metavar: The placeholder in ``--help``.
    """
    metadata = {"help": help, "flag": flag, "kind": kind, "choices": choices, "metavar": metavar}
    return field(default=default, metadata=metadata)


@struct(frozen=True)
class TrackerConfig:
    """Everything a :class:`~nn_tracker.tracker.Tracker` needs to know; validated at construction.

    Each field is declared once, below, with its help and its ``nn-tracker run`` flag: the CLI
    flags, the keys of ``nn-tracker.yml`` and the README's option table are derived from these
    declarations (:func:`options_table`).
    """

    project_name: str = option("nn_tracker", "name in reports and file names", flag="--project-name", metavar="NAME")
    output_dir: str | Path = option("nn_tracker_reports", "folder of the reports", flag="--output-dir", metavar="DIR")
    formats: tuple[str, ...] = option(
        ("json",),
        "report formats written at stop: json, md, html, csv (CodeCarbon's emissions.csv), model-card, if-manifest",
        flag="--format",
        kind="list",
        choices=FORMATS,
    )
    write_report: bool = option(True, "write files at all (the report object is returned either way)")
    interval_s: float = option(
        0.1, "seconds between readings of counters and GPU power", flag="--interval", kind="float", metavar="S"
    )
    checkpoint_interval_s: float | None = option(
        60.0,
        "seconds between crash-safe rewrites of the report (None: none)",
        flag="--checkpoint-interval",
        metavar="S",
        kind="float",
    )
    location: str | None = option(
        None,
        "where the job runs: country, grid zone, US state or provider:region (None: the world average, with a warning)",
        flag="--location",
        metavar="PLACE",
    )
    intensity_g_per_kwh: float | None = option(
        None,
        "explicit grid intensity, gCO2e/kWh, instead of a location's",
        flag="--intensity",
        metavar="G_PER_KWH",
        kind="float",
    )
    pue: float | None = option(
        None,
        "facility overhead, >= 1 (None: the region's published PUE, else 1.0, said in the report)",
        flag="--pue",
        metavar="PUE",
        kind="float",
    )
    transport_factor: float = option(
        1.0,
        "delivered share of the electricity drawn, (0, 1]",
        flag="--transport-factor",
        metavar="FACTOR",
        kind="float",
    )
    datacentres: tuple[Datacentre, ...] = option(
        (), "several datacentres, each with the root phases it runs (replaces the four options above)"
    )
    embodied: str | tuple[EmbodiedHardware, ...] = option(
        "auto", "'auto' (the detected GPUs with a catalogue figure) or a list of EmbodiedHardware"
    )
    attribution: str = option(
        "machine",
        "CPU/RAM estimates for the whole machine or this process tree",
        flag="--attribution",
        choices=ATTRIBUTIONS,
    )
    cpu_tdp_w: float | None = option(
        None,
        "the CPU's TDP per package (socket), as datasheets give it, W (None: the catalogue's, else 3.5 W a CPU)",
        flag="--cpu-tdp-w",
        metavar="W",
        kind="float",
    )
    gpus: bool = option(True, "measure NVIDIA GPUs")
    visible_devices: str | None = option(None, "GPU selection (None: CUDA_VISIBLE_DEVICES)")
    rapl_root: str = option(DEFAULT_ROOT, "the powercap directory")
    proc_root: str = option("/proc", "where cpuinfo is read")
    cgroup_root: str = option("/sys/fs/cgroup", "where the cgroup memory limit is read")
    default_phase: str = option(
        TRAINING_PHASE, "phase of the energy measured outside any phase() block", flag="--phase", metavar="PHASE"
    )
    handle_sigterm: bool = option(True, "write a terminated report on SIGTERM (main thread only)")
    node_sensors: bool = option(True, "measure CPU and RAM (false on all but one process of a node)")
    what_if_locations: tuple[str, ...] = option(
        (), "places whose grid the report compares the run with", flag="--what-if", kind="list", metavar="PLACE"
    )
    intensity_series: str | Path | None = option(
        None,
        "CSV of timestamps and gCO2e/kWh: operational carbon also as the sum of E(t) x I(t)",
        flag="--intensity-series",
        metavar="CSV",
    )
    training_type: str = option(
        "pre-training",
        "pre-training or fine-tuning (the model-card block)",
        flag="--training-type",
        choices=("pre-training", "fine-tuning"),
    )
    timeline_points: int = option(2000, "most points kept in the downsampled timeline")
    catalogue_file: str | Path | None = option(
        None, "YAML file adding or overriding catalogue entries", flag="--catalogue", metavar="FILE"
    )
    run_id: str | None = option(None, "identifier of the run (default: start time + 96 random bits)")
    identity: bool = option(False, "record the user name, host name and pid in the report (off: reports get published)")
    resolved: tuple[ResolvedDatacentre, ...] = field(init=False, repr=False, compare=False, default=())
    series: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self._check_types()
        if not check.is_name(self.project_name, 100):
            raise ValidationError("project_name", self.project_name, "must be 1-100 letters, digits, '_', '.' or '-'")
        if self.run_id is not None and not check.is_name(self.run_id, 100):
            raise ValidationError("run_id", self.run_id, "must be 1-100 letters, digits, '_', '.' or '-'")
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir):
            raise ValidationError("output_dir", self.output_dir, "must be a non-empty path")
        formats = tuple(self.formats) if isinstance(self.formats, (list, tuple)) else (self.formats,)
        for fmt in formats:
            if fmt not in FORMATS:
                raise ValidationError("formats", fmt, f"must be among {', '.join(FORMATS)}")
        object.__setattr__(self, "formats", formats)
        interval = check.positive("interval_s", self.interval_s)
        if not MIN_INTERVAL_S <= interval <= 3600:
            raise ValidationError("interval_s", self.interval_s, f"must be in [{MIN_INTERVAL_S:g}, 3600] seconds")
        if self.checkpoint_interval_s is not None:
            checkpoint = check.positive("checkpoint_interval_s", self.checkpoint_interval_s)
            if checkpoint < MIN_CHECKPOINT_INTERVAL_S:
                raise ValidationError(
                    "checkpoint_interval_s",
                    self.checkpoint_interval_s,
                    f"must be at least {MIN_CHECKPOINT_INTERVAL_S:g} s (each checkpoint rewrites the report), or None",
                )
        if self.attribution not in ATTRIBUTIONS:
            raise ValidationError("attribution", self.attribution, "must be 'machine' or 'process'")
        if self.cpu_tdp_w is not None:
            check.positive("cpu_tdp_w", self.cpu_tdp_w)
        check_phase_name(self.default_phase, "default_phase")
        if (
            isinstance(self.timeline_points, bool)
            or not isinstance(self.timeline_points, int)
            or not 2 <= self.timeline_points <= 1_000_000
        ):
            raise ValidationError("timeline_points", self.timeline_points, "must be an integer in [2, 1000000]")
        object.__setattr__(self, "resolved", self._resolve_datacentres())
        places = self.what_if_locations
        if isinstance(places, str) or not isinstance(places, (tuple, list)):
            raise ValidationError("what_if_locations", places, "must be a list of location names")
        for place in places:
            self.catalogue.location(place)  # unknown names fail now, with close matches
        object.__setattr__(self, "what_if_locations", tuple(places))
        if self.intensity_series is not None:
            from nn_tracker.footprint.intensity_series import IntensitySeries

            object.__setattr__(self, "series", IntensitySeries.from_csv(self.intensity_series))
        if self.training_type not in ("pre-training", "fine-tuning"):
            raise ValidationError("training_type", self.training_type, "must be 'pre-training' or 'fine-tuning'")
        self._check_embodied()

    @functools.cached_property
    def catalogue(self) -> Catalogue:
        """The bundled catalogue plus the user's file, if any."""
        return bundled().with_overrides(self.catalogue_file) if self.catalogue_file else bundled()

    def _check_types(self) -> None:
        """Options whose only rule is their type."""
        for name in ("write_report", "gpus", "handle_sigterm", "node_sensors", "identity"):
            if not isinstance(getattr(self, name), bool):
                raise ValidationError(name, getattr(self, name), "must be true or false")
        for name in ("rapl_root", "proc_root", "cgroup_root"):
            if not isinstance(getattr(self, name), str):
                raise ValidationError(name, getattr(self, name), "must be a path")
        for name in ("visible_devices", "location"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValidationError(name, getattr(self, name), "must be a string")
        for name in ("catalogue_file", "intensity_series"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), (str, Path)):
                raise ValidationError(name, getattr(self, name), "must be a path")
        if not isinstance(self.datacentres, (tuple, list)) or not all(
            isinstance(c, Datacentre) for c in self.datacentres
        ):
            raise ValidationError("datacentres", self.datacentres, "must be a list of Datacentre")

    def _resolve_datacentres(self) -> tuple[ResolvedDatacentre, ...]:
        shorthand = (
            any(v is not None for v in (self.location, self.intensity_g_per_kwh, self.pue))
            or self.transport_factor != 1.0
        )
        if self.datacentres and shorthand:
            raise ValidationError(
                "datacentres",
                "given with location/intensity_g_per_kwh/pue/transport_factor",
                "must be used alone: put those values in each Datacentre",
            )
        centres = self.datacentres or (
            Datacentre(self.location, self.intensity_g_per_kwh, self.pue, self.transport_factor),
        )
        catalogue = self.catalogue
        resolved = []
        claimed: set[str] = set()
        catch_all = 0
        for i, centre in enumerate(centres):
            where = f"datacentres[{i}]" if self.datacentres else ""
            resolved.append(resolve_datacentre(centre, catalogue, where))
            for phase in centre.phases:
                check_phase_name(phase, f"{where}.phases" if where else "phases")
                if phase in claimed:
                    raise ValidationError(f"{where}.phases", phase, "must not be claimed by two datacentres")
                claimed.add(phase)
            catch_all += not centre.phases
        if catch_all > 1:
            raise ValidationError("datacentres", catch_all, "must have at most one entry without phases")
        return tuple(resolved)

    def _check_embodied(self) -> None:
        if self.embodied == "auto":
            return
        if not isinstance(self.embodied, (tuple, list)) or not all(
            isinstance(h, EmbodiedHardware) for h in self.embodied
        ):
            raise ValidationError("embodied", self.embodied, "must be 'auto' or a list of EmbodiedHardware")
        catalogue = self.catalogue
        for i, hw in enumerate(self.embodied):
            check.non_negative(f"embodied[{i}].count", hw.count)
            if hw.scope not in ("unit", "die"):
                raise ValidationError(f"embodied[{i}].scope", hw.scope, "must be 'unit' or 'die'")
            if hw.embodied_kg_per_unit is None:
                spec = catalogue.hardware_spec(hw.name)
                if spec.embodied_kg_co2e is None:
                    raise ValidationError(
                        f"embodied[{i}].embodied_kg_per_unit",
                        None,
                        f"must be given: the catalogue has no figure for {spec.name!r}",
                    )
                if spec.embodied_scope == "die" and hw.scope != "die":
                    raise ValidationError(
                        f"embodied[{i}].scope",
                        hw.scope,
                        f"must be 'die' to use {spec.name!r}'s figure (the chip's die alone), or give "
                        "embodied_kg_per_unit for the whole card",
                    )
            else:
                check.non_negative(f"embodied[{i}].embodied_kg_per_unit", hw.embodied_kg_per_unit)
            footprint.lifetime(hw.lifetime_years, hw.utilisation, prefix=f"embodied[{i}].")


def resolve_datacentre(centre: Datacentre, catalogue: Catalogue, where: str = "") -> ResolvedDatacentre:
    """Look a datacentre's location up and fill intensity and PUE, each with its source.

    Args:
        centre: What the user gave.
        catalogue: Reference data.
        where: Prefix of field names in errors (e.g. ``datacentres[1]``).
    """
    prefix = f"{where}." if where else ""
    if not isinstance(centre.phases, (tuple, list)):
        raise ValidationError(f"{prefix}phases", centre.phases, "must be a list of phase names")
    if not isinstance(centre.name, str):
        raise ValidationError(f"{prefix}name", centre.name, "must be a string")
    tau = check.fraction(f"{prefix}transport_factor", centre.transport_factor)
    entry = None
    default_location = False
    if centre.intensity_g_per_kwh is not None:
        intensity = check.non_negative(f"{prefix}intensity_g_per_kwh", centre.intensity_g_per_kwh)
        source, year = "given by the user", None
        name = centre.name or centre.location or "user-given intensity"
    else:
        if centre.location is None:
            entry = catalogue.location("WORLD")
            default_location = True
        else:
            if not isinstance(centre.location, str):
                raise ValidationError(f"{prefix}location", centre.location, "must be a string")
            entry = catalogue.location(centre.location)
        intensity, source, year = entry.intensity_g_per_kwh, entry.describe(), entry.year
        name = centre.name or entry.name
    if centre.pue is not None:
        pue, pue_source = check.pue(f"{prefix}pue", centre.pue), "given by the user"
    elif entry is not None and entry.pue is not None:
        pue, pue_source = entry.pue, f"published PUE of {entry.code} ({entry.pue_origin})"
    else:
        pue, pue_source = 1.0, "assumed 1.0 (no datacentre overhead counted); give pue for a datacentre"
    return ResolvedDatacentre(
        name=name,
        intensity_g_per_kwh=intensity,
        intensity_source=source,
        intensity_year=year,
        pue=pue,
        pue_source=pue_source,
        transport_factor=tau,
        phases=tuple(centre.phases),
        default_location=default_location,
        location_code=entry.code if entry is not None else None,
        location_kind=entry.kind if entry is not None else "user",
    )


CONFIG_FILE = "nn-tracker.yml"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Tracker options from a YAML mapping of :class:`TrackerConfig` fields (checked, not yet validated).

    ``datacentres`` and ``embodied`` entries are mappings of :class:`Datacentre` and
    :class:`EmbodiedHardware` fields.
    """
    from nn_tracker.core import inputs, structs

    path = Path(path)
    document = inputs.load_yaml(inputs.read_text(path, "config file", allow_empty=True), str(path)) or {}
    if not isinstance(document, dict):
        raise ValidationError("config file", str(path), "must be a mapping of option: value")
    fields = {f.name for f in structs.fields(TrackerConfig) if f.init}
    options: dict[str, Any] = {}
    for key, value in document.items():
        if key not in fields:
            # the value is not repeated: a file given by mistake (a secret) must not be echoed
            rule = "is not a tracker option" + closest(key, fields)
            raise ValidationError(f"{path.name}: {key}", "(its value, not shown)", rule)
        if key in ("datacentres", "embodied") and isinstance(value, list):
            kind = Datacentre if key == "datacentres" else EmbodiedHardware
            try:
                value = tuple(kind(**item) for item in value)
            except TypeError as exc:
                raise ValidationError(
                    f"{path.name}: {key}", value, f"must be a list of {kind.__name__} fields ({exc})"
                ) from None
        elif isinstance(value, list):
            value = tuple(value)
        options[key] = value
    try:
        TrackerConfig(**options)  # each value checked here, where the file can be named
    except ValidationError as exc:  # the value is not repeated: a file given by mistake must not be echoed
        raise ValidationError(f"{path.name}: {exc.field}", "(its value, not shown)", exc.rule) from None
    return options


def make_config(config: TrackerConfig | None, options: dict[str, Any]) -> TrackerConfig:
    """``config`` with ``options`` replacing its fields, else a new one of ``options``.

    Raises:
        ValidationError: a bad value, or an unknown option (with the closest known one).
    """
    from nn_tracker.core import structs

    try:
        return structs.replace(config, **options) if config else TrackerConfig(**options)
    except ValidationError:
        raise
    except (TypeError, ValueError) as exc:  # structs.replace refuses a field left out of __init__ with a ValueError
        known = {f.name for f in structs.fields(TrackerConfig) if f.init}
        unknown = sorted(set(options) - known)
        if unknown:
            rule = "is not a TrackerConfig field" + closest(unknown[0], known)
            raise ValidationError(unknown[0], options[unknown[0]], rule) from None
        raise ValidationError("options", sorted(options), f"must be fields of TrackerConfig ({exc})") from None


def options() -> list[Any]:
    """The :class:`TrackerConfig` options (struct fields with their help and flag), in declaration order."""
    from nn_tracker.core import structs

    return [f for f in structs.fields(TrackerConfig) if f.init]


def options_table() -> str:
    """The README's option table (Markdown), derived from the declarations."""
    rows = ["| option | `nn-tracker run` flag | default | what |", "| --- | --- | --- | --- |"]
    for option_field in options():
        meta = option_field.metadata
        default = option_field.default
        shown = list(default) if isinstance(default, tuple) else default
        flag = f"`{meta['flag']}`" if meta["flag"] else ""
        run_default = RUN_DEFAULTS.get(option_field.name)
        default_text = f"`{shown!r}`" + (f" (`run`: `{run_default!r}`)" if run_default is not None else "")
        rows.append(f"| `{option_field.name}` | {flag} | {default_text} | {meta['help']} |")
    return "\n".join(rows) + "\n"
