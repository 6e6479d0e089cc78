"""Reference catalogue: grid intensities, cloud regions and hardware, with sources.

Nothing is read at import. :func:`bundled` loads the tables shipped in
``nn_tracker/footprint/data`` once; :meth:`Catalogue.with_overrides` adds or replaces
entries from a user's YAML file. Lookups are case-insensitive and an unknown
name raises :class:`LookupFailed` listing the closest matches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, ItemsView, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from nn_tracker.core import validation as check
from nn_tracker.core.errors import LookupFailed, ValidationError
from nn_tracker.core.structs import field, replace, struct
from nn_tracker.footprint.data import read_table, read_text


@struct(frozen=True)
class Source:
    """Where a figure comes from."""

    id: str
    title: str
    url: str = ""
    license: str = ""
    retrieved: str = ""


@struct(frozen=True)
class GridIntensity:
    """Carbon intensity of the electricity at one place.

    Attributes:
        code: Key of the entry (ISO alpha-3, ``US-CA``, ``aws:us-east-1``...).
        name: Human name.
        kind: ``country``, ``us_state``, ``grid_zone``, ``world``, ``cloud_region`` or ``user``.
        intensity_g_per_kwh: Average intensity in gCO2e/kWh.
        year: Year of the data, ``None`` where the source does not state it.
        source: Where the figure comes from.
        origin: The upstream's own citation for the row, if any.
        pue: Published PUE of the facility (cloud regions only), else ``None``.
        pue_origin: Citation of that PUE.
        aliases: Other spellings that select this entry (ISO alpha-2, state name...).
        country: For a cloud region, its country as the provider names it.
        state: For a cloud region, its state or province where known (CodeCarbon's ``region`` for it).

    """

    code: str
    name: str
    kind: str
    intensity_g_per_kwh: float
    year: int | None
    source: Source
    origin: str = ""
    pue: float | None = None
    pue_origin: str = ""
    aliases: tuple[str, ...] = ()
    country: str = ""  # cloud regions: the country as the provider names it
    state: str = ""  # cloud regions: the state or province, where the data says (as CodeCarbon writes it)

    def describe(self) -> str:
        """One line: the figure, the place, the year and the source."""
        year = self.year if self.year is not None else "year not stated"
        return f"{self.intensity_g_per_kwh:g} gCO2e/kWh for {self.name} ({self.code}), {year}, {self.source.title}"


@struct(frozen=True)
class Place:
    """Where a location is: its country's name and ISO alpha-3 code, and a region within it (or "")."""

    country_name: str
    country_iso_code: str
    region: str


@struct(frozen=True)
class HardwareSpec:
    """One catalogue entry of hardware.

    Attributes:
        name: Catalogue name.
        kind: ``gpu``, ``tpu``, ``cpu`` or ``server``.
        tdp_w: Thermal design power (or the published average power, see ``notes``); ``None`` if unknown.
        tdp_source: Where the TDP comes from.
        embodied_kg_co2e: Embodied carbon of one unit, ``None`` where no figure is published.
        embodied_method: How that figure was obtained (what it covers).
        embodied_scope: ``unit`` (the whole card, chip or server) or ``die`` (the chip's die alone,
            e.g. LLMCarbon's area-based figures: board and memory excluded).
        embodied_source: Where it comes from.
        notes: Caveats about the row.
        aliases: Other names that select this entry (e.g. NVML's device name).

    """

    name: str
    kind: str
    tdp_w: float | None
    tdp_source: Source | None = None
    tdp_origin: str = ""
    embodied_kg_co2e: float | None = None
    embodied_method: str = ""
    embodied_scope: str = "unit"
    embodied_source: Source | None = None
    notes: str = ""
    aliases: tuple[str, ...] = ()


@struct(frozen=True)
class PowerModel:
    """A documented coefficient used when nothing is measured (e.g. W per GB of RAM)."""

    key: str
    value: float
    unit: str
    source: Source
    note: str = ""

    def describe(self) -> str:
        """The coefficient with its unit and source."""
        return f"{self.value:g} {self.unit} ({self.source.title})"


def _intensity(entry: GridIntensity) -> float:
    return entry.intensity_g_per_kwh


def _key(name: str) -> str:
    return " ".join(str(name).casefold().split())


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _closest(name: str, candidates: dict[str, str], what: str, hint: str) -> LookupFailed:
    """Build the error for an unknown name, listing up to five close matches."""
    import difflib

    key = _key(name)
    matches = [k for k in candidates if key and key in k]
    matches += difflib.get_close_matches(key, list(candidates), n=5, cutoff=0.5)
    shown = list(dict.fromkeys(candidates[m] for m in matches))[:5]
    near = f"; closest: {', '.join(shown)}" if shown else ""
    return LookupFailed(f"unknown {what} {name!r}{near} ({hint})")


@struct(frozen=True)
class Catalogue:
    """Immutable set of locations, cloud regions, hardware and CPU TDPs."""

    locations: Mapping[str, GridIntensity]
    hardware: Mapping[str, HardwareSpec]  # the bundled table is parsed when first used (not by a run without GPUs)
    cpu_tdp_source: Source
    sources: dict[str, Source] = field(repr=False, default_factory=dict)
    power_models: dict[str, PowerModel] = field(default_factory=dict)

    @functools.cached_property
    def _location_index(self) -> Mapping[str, str]:
        index: dict[str, str] = {}
        # Codes first, then names and aliases; the first claim of a spelling wins,
        # so "georgia" is the country and the US state is "US-GA".
        order = ("world", "country", "us_state", "grid_zone", "cloud_region", "user")
        entries = sorted(self.locations.values(), key=lambda e: order.index(e.kind) if e.kind in order else 99)
        for entry in entries:
            index.setdefault(_key(entry.code), entry.code)
        for entry in entries:
            for spelling in (entry.name, *entry.aliases):
                if spelling:
                    index.setdefault(_key(spelling), entry.code)
        return index

    @functools.cached_property
    def cleanest_and_dirtiest_countries(self) -> tuple[GridIntensity, GridIntensity]:
        """The countries of least and greatest intensity (every report compares with both)."""
        countries = [e for e in self.locations.values() if e.kind == "country"]
        return min(countries, key=_intensity), max(countries, key=_intensity)

    @functools.cached_property
    def _hardware_index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for spec in self.hardware.values():
            index.setdefault(_key(spec.name), spec.name)
        for spec in self.hardware.values():
            for alias in spec.aliases:
                index.setdefault(_key(alias), spec.name)
        return index

    def location(self, name: str) -> GridIntensity:
        """Find a country, zone, US state, or cloud region (``aws:us-east-1``).

        Raises:
            LookupFailed: ``name`` is unknown; the message lists close matches.

        """
        key = _key(name).replace("/", ":")
        code = self._location_index.get(key)
        if code is None:
            names = {k: f"{self.locations[c].name} ({c})" for k, c in self._location_index.items()}
            raise _closest(name, names, "location", "see `nn-tracker list locations`")
        return self.locations[code]

    def place(self, code: str) -> Place | None:
        """The country (and region) a location code is in; ``None`` where the data does not say.

        A country is itself; a US state is in the United States (region: its name in lower case, as
        CodeCarbon writes it); a grid zone is in the country its code starts with (region: the province
        of a Canadian zone, as CodeCarbon writes it, else none); a cloud region is in its provider's
        country (region: its state where the data gives one).
        """
        entry = self.locations.get(code)
        if entry is None:
            return None
        if entry.kind == "country":
            return Place(entry.name, entry.code, "")
        if entry.kind == "us_state":
            country, region = self.locations.get("USA"), entry.name.casefold()
        elif entry.kind == "grid_zone":
            country = self._country(code.split("-")[0])
            canadian = country is not None and country.code == "CAN"  # CodeCarbon's regions: US states, provinces
            region = entry.name.partition(": ")[2].casefold() if canadian else ""
        elif entry.kind == "cloud_region" and entry.country:
            country = self._country(entry.country)  # named as the provider names it, as CodeCarbon writes it
            return Place(entry.country, country.code, entry.state) if country is not None else None
        else:
            return None
        return Place(country.name, country.code, region) if country is not None else None

    def _country(self, spelling: str) -> GridIntensity | None:
        """The country a code, name or alias names (also the short form of "Korea, Republic of")."""
        found = self.locations.get(self._location_index.get(_key(spelling), ""))
        if found is not None and found.kind == "country":
            return found
        key = _key(spelling)
        for entry in self.locations.values():
            if entry.kind == "country" and any(_key(a.split(",")[0]) == key for a in entry.aliases):
                return entry
        return None

    def hardware_spec(self, name: str) -> HardwareSpec:
        """Find a GPU, TPU, CPU or server by catalogue name or alias.

        Raises:
            LookupFailed: ``name`` is unknown; the message lists close matches.

        """
        found = self._hardware_index.get(_key(name))
        if found is None:
            raise _closest(name, dict(self._hardware_index), "hardware", "see `nn-tracker list hardware`")
        return self.hardware[found]

    def cpu_tdp(self, model: str) -> float | None:
        """TDP in W of a catalogue CPU name (case-insensitive), or ``None``."""
        found = _cpu_tdp_rows().get(_key(model))
        return found[1] if found else None

    def match_cpu(self, model: str) -> tuple[str, float] | None:
        """The catalogue CPU of a model name and its TDP in W (``None`` if none).

        The name itself, else the longest catalogue name inside it (whole words); only names with a
        digit count. Reads the 4,900-row table as text and looks up only the model's word sequences, so the
        first tracker of a process does not parse the whole table (~10 ms).
        """
        words = _key(model).split()
        rows = _cpu_tdp_rows()
        longest = rows.most_words  # no catalogue name is longer: linear in the model's length
        ends = [range(i + 1, min(i + longest, len(words)) + 1) for i in range(len(words))]
        names = {" ".join(words[i:j]) for i in range(len(words)) for j in ends[i]}
        found = [(name, rows.get(name)) for name in names if any(c.isdigit() for c in name)]
        matches = [(-len(name), row[0], name, row[1]) for name, row in found if row is not None]
        return min(matches)[2:] if matches else None  # the longest name; of equals, the first row

    def with_overrides(self, path: str | Path) -> Catalogue:
        """Return a catalogue with the entries of a user YAML file added or replaced.

        The file has two optional lists, ``locations`` and ``hardware``; see the README.

        Raises:
            ValidationError: the file is unreadable or an entry is malformed.

        """
        from nn_tracker.core import inputs

        path = Path(path)
        document = inputs.load_yaml(inputs.read_text(path, "catalogue file", allow_empty=True), str(path)) or {}
        if not isinstance(document, dict) or set(document) - {"locations", "hardware"}:
            raise ValidationError("catalogue file", str(path), "must be a mapping with 'locations' and/or 'hardware'")
        source = Source(id=f"user:{path.name}", title=f"user catalogue {path.name}")  # reports get published
        locations = dict(self.locations)
        for i, item in enumerate(_entries(document, "locations")):
            entry = _user_location(f"locations[{i}]", item, source)
            replaced = locations.get(entry.code)
            if replaced is not None:  # keep the spellings that selected the bundled entry
                entry = replace(entry, aliases=replaced.aliases, name=item.get("name") or replaced.name)
            locations[entry.code] = entry
        hardware = dict(self.hardware)
        for i, item in enumerate(_entries(document, "hardware")):
            spec = _user_hardware(f"hardware[{i}]", item, source)
            hardware[spec.name] = spec
        return replace(self, locations=locations, hardware=hardware)


def _entries(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    items = document.get(section) or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValidationError(section, items, "must be a list of mappings")
    return items


def _required_text(where: str, item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{where}.{name}", value, "must be a non-empty string")
    return value.strip()


def _user_location(where: str, item: dict[str, Any], source: Source) -> GridIntensity:
    unknown = set(item) - {"code", "name", "intensity_g_per_kwh", "year", "source", "pue"}
    if unknown:
        raise ValidationError(f"{where}.{sorted(unknown)[0]}", item[sorted(unknown)[0]], "is not a known field")
    code = _required_text(where, item, "code")
    year = item.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1990 <= year <= 2100):
        raise ValidationError(f"{where}.year", year, "must be a year between 1990 and 2100")
    pue = item.get("pue")
    return GridIntensity(
        code=code,
        name=str(item.get("name") or code),
        kind="user",
        intensity_g_per_kwh=check.non_negative(f"{where}.intensity_g_per_kwh", item.get("intensity_g_per_kwh")),
        year=year,
        source=replace(source, title=f"{_required_text(where, item, 'source')} ({source.title})"),
        pue=None if pue is None else check.pue(f"{where}.pue", pue),
    )


def _user_hardware(where: str, item: dict[str, Any], source: Source) -> HardwareSpec:
    fields = {"name", "kind", "tdp_w", "embodied_kg_co2e", "embodied_method", "embodied_scope", "source", "aliases"}
    unknown = set(item) - fields
    if unknown:
        raise ValidationError(f"{where}.{sorted(unknown)[0]}", item[sorted(unknown)[0]], "is not a known field")
    kind = _required_text(where, item, "kind")
    if kind not in {"gpu", "tpu", "cpu", "server"}:
        raise ValidationError(f"{where}.kind", kind, "must be one of gpu, tpu, cpu, server")
    tdp = item.get("tdp_w")
    embodied = item.get("embodied_kg_co2e")
    aliases = item.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ValidationError(f"{where}.aliases", aliases, "must be a list of strings")
    user_source = replace(source, title=f"{_required_text(where, item, 'source')} ({source.title})")
    return HardwareSpec(
        name=_required_text(where, item, "name"),
        kind=kind,
        tdp_w=None if tdp is None else check.non_negative(f"{where}.tdp_w", tdp),
        tdp_source=user_source,
        embodied_kg_co2e=None if embodied is None else check.non_negative(f"{where}.embodied_kg_co2e", embodied),
        embodied_method=str(item.get("embodied_method") or "given by the user"),
        embodied_scope=_scope(where, item.get("embodied_scope", "unit")),
        embodied_source=user_source if embodied is not None else None,
        aliases=tuple(aliases),
    )


def _scope(where: str, scope: Any) -> str:
    if scope not in ("unit", "die"):
        raise ValidationError(f"{where}.embodied_scope", scope, "must be 'unit' or 'die'")
    result: str = scope
    return result


@functools.lru_cache(maxsize=1)
def bundled() -> Catalogue:
    """The catalogue shipped with the package (read once, on first call).

    Each location is parsed from its compiled row (:mod:`nn_tracker.footprint.data.locations`) when
    first asked for: a run needs a few of 500 (building them all cost ~2 ms and ~1,300 objects for the
    garbage collector at every first tracker). The hardware table is parsed when first used.
    """
    from nn_tracker.footprint.data import locations as compiled

    sources = _bundled_sources()
    locations = _Table(functools.partial(_TextRows, compiled.ROWS), functools.partial(_compiled_location, sources))
    hardware = _Table(_bundled_hardware_rows, functools.partial(_hardware_row, sources))
    power_models = {
        row["key"]: PowerModel(row["key"], float(row["value"]), row["unit"], sources[row["source_id"]], row["note"])
        for row in read_table("power_models.csv")
    }
    catalogue = Catalogue(locations, hardware, sources["codecarbon-cpu"], sources, power_models)
    # what the cached properties would compute from every row
    catalogue.__dict__["_location_index"] = _TextRows(compiled.INDEX)
    catalogue.__dict__["cleanest_and_dirtiest_countries"] = tuple(locations[code] for code in compiled.EXTREMES)
    return catalogue


def _bundled_sources() -> dict[str, Source]:
    return {row["id"]: Source(**row) for row in read_table("sources.csv")}


def locations_from_tables(sources: dict[str, Source]) -> dict[str, GridIntensity]:
    """The locations of ``grid_intensity.csv`` and ``cloud_regions.csv`` (what the compiled form holds)."""
    locations: dict[str, GridIntensity] = {}
    for row in read_table("grid_intensity.csv"):
        locations[row["code"]] = GridIntensity(
            code=row["code"],
            name=row["name"],
            kind=row["zone_type"],
            intensity_g_per_kwh=float(row["intensity_g_per_kwh"]),
            year=int(row["year"]) if row["year"] else None,
            source=sources[row["source_id"]],
            aliases=tuple(a for a in row["aliases"].split(";") if a),
        )
    for row in read_table("cloud_regions.csv"):
        code = f"{row['provider']}:{row['region']}"
        locations[code] = GridIntensity(
            code=code,
            name=f"{row['provider'].upper()} {row['region']} ({row['name']}, {row['country']})",
            kind="cloud_region",
            intensity_g_per_kwh=float(row["intensity_g_per_kwh"]),
            year=int(row["year"]) if row["year"] else None,
            source=sources[row["source_id"]],
            origin=row["origin"],
            pue=_optional_float(row["pue"]),
            pue_origin=row["pue_origin"],
            country=row["country"],
            state=row.get("state") or "",
        )
    return locations


_SEPARATOR, _ALIAS_SEPARATOR = "\t", ";"


def compiled_locations() -> str:
    """The text of :mod:`nn_tracker.footprint.data.locations`, from the CSV tables (a test compares the two)."""
    sources = _bundled_sources()
    tables = Catalogue(locations_from_tables(sources), {}, sources["codecarbon-cpu"], sources)
    rows = {}
    for entry in tables.locations.values():
        texts = [
            entry.name,
            entry.kind,
            repr(entry.intensity_g_per_kwh),
            "" if entry.year is None else str(entry.year),
            entry.source.id,
            entry.origin,
            "" if entry.pue is None else repr(entry.pue),
            entry.pue_origin,
            _ALIAS_SEPARATOR.join(entry.aliases),
            entry.country,
            entry.state,
        ]
        unsafe = any(_SEPARATOR in t or "\n" in t for t in (entry.code, *texts))
        if unsafe or any(_ALIAS_SEPARATOR in a for a in entry.aliases):
            raise ValueError(f"location {entry.code!r}: a field holds a tab, a newline or an alias a ';'")
        rows[entry.code] = _SEPARATOR.join(texts)
    lines = [
        '"""The bundled locations (``grid_intensity.csv``, ``cloud_regions.csv``) in a form Python loads at once.',
        "",
        "Generated from those tables by ``scripts/build_reference_data.py`` (``catalogue.compiled_locations()``);",
        "a test fails when it is stale. Do not edit.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        "# code: name, kind, intensity_g_per_kwh, year, source id, origin, pue, pue_origin, aliases, country, state;",
        "# tab-separated, aliases separated by ';', an empty year or pue unknown. One text (nothing to build at",
        "# import, a row found by searching it): the catalogue parses a row when it is first asked for.",
        "ROWS = (",
        '    "\\n"',
        *(f"    {code + _SEPARATOR + row + chr(10)!r}" for code, row in rows.items()),
        ")",
        "# every spelling (case-folded), a tab and the code it selects, as Catalogue._location_index has them",
        "INDEX = (",
        '    "\\n"',
        *(f"    {key + _SEPARATOR + code + chr(10)!r}" for key, code in tables._location_index.items()),
        ")",
        "# the codes of the countries of least and greatest intensity (Catalogue.cleanest_and_dirtiest_countries)",
        f"EXTREMES = {tuple(entry.code for entry in tables.cleanest_and_dirtiest_countries)!r}",
    ]
    return "\n".join(lines) + "\n"


def _compiled_location(sources: dict[str, Source], code: str, row: str) -> GridIntensity:
    """A location from its compiled row (see :func:`compiled_locations`)."""
    name, kind, intensity, year, source_id, origin, pue, pue_origin, aliases, country, state = row.split(_SEPARATOR)
    return GridIntensity(
        code,
        name,
        kind,
        float(intensity),
        int(year) if year else None,
        sources[source_id],
        origin,
        _optional_float(pue),
        pue_origin,
        tuple(aliases.split(_ALIAS_SEPARATOR)) if aliases else (),
        country,
        state,
    )


def _bundled_hardware_rows() -> dict[str, dict[str, str]]:
    return {row["name"]: row for row in read_table("hardware.csv")}


def _hardware_row(sources: dict[str, Source], name: str, row: dict[str, str]) -> HardwareSpec:
    return HardwareSpec(
        name=name,
        kind=row["kind"],
        tdp_w=_optional_float(row["tdp_w"]),
        tdp_source=sources.get(row["tdp_source_id"]),
        tdp_origin=row["tdp_origin"],
        embodied_kg_co2e=_optional_float(row["embodied_kg_co2e"]),
        embodied_method=row["embodied_method"],
        embodied_source=sources.get(row["embodied_source_id"]),
        embodied_scope=row["embodied_scope"] or "unit",
        notes=row["notes"],
        aliases=tuple(a for a in row["aliases"].split(";") if a),
    )


V = TypeVar("V")


class _Table(Mapping[str, V]):
    """A bundled table as a read-only mapping: its rows loaded on first use, each parsed when first asked for."""

    def __init__(self, load: Callable[[], Mapping[str, Any]], parse: Callable[[str, Any], V]) -> None:
        self._load, self._parse, self._parsed = load, parse, dict[str, V]()

    @functools.cached_property
    def _rows(self) -> Mapping[str, Any]:
        return self._load()

    def __getitem__(self, key: str) -> V:
        found = self._parsed.get(key)
        if found is None:
            found = self._parsed[key] = self._parse(key, self._rows[key])
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return repr(dict(self))


def _line_after(text: str, start: str) -> tuple[int, str] | None:
    """Where the line that starts with ``start`` is in ``text`` and the rest of it (``start`` begins with a newline)."""
    at = text.find(start)
    if at < 0:
        return None
    return at, text[at + len(start) : text.find("\n", at + 1)]


class _TextRows(Mapping[str, str]):
    """A compiled table's text as a read-only mapping: ``key<TAB>row`` lines, each found by searching the text.

    One string constant loads at once; a dict of its rows cost ~0.9 ms and 3,600 strings to build at import.
    """

    def __init__(self, text: str) -> None:
        self._text = text  # starts with a newline: every key follows one

    def __getitem__(self, key: str) -> str:
        found = None
        if isinstance(key, str) and "\n" not in key and _SEPARATOR not in key:
            found = _line_after(self._text, f"\n{key}{_SEPARATOR}")
        if found is None:
            raise KeyError(key)
        return found[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows())

    def __len__(self) -> int:
        return max(self._text.count("\n") - 1, 0)

    def items(self) -> ItemsView[str, str]:
        """Every row in one pass over the text, not one search a key (unknown names' suggestions read all)."""
        return self._rows().items()

    def _rows(self) -> dict[str, str]:
        lines = self._text[1:-1].split("\n") if len(self._text) > 1 else []
        return dict(line.split(_SEPARATOR, 1) for line in lines)


CPU_NAME_MOST_WORDS = 13  # no CPU name of the table has more words (a test holds it)


class _CpuTdpRows:
    """The CPU TDP table as a lookup ``key -> (row, tdp_w)`` that reads only the rows asked for.

    The table's names are in lookup form (:func:`_key`: case-folded, single spaces), written so by
    ``scripts/build_reference_data.py`` and held so by a test: nothing is done to its 4,900 rows
    before a lookup (case-folding them cost ~1.5 ms, counting their words ~1 ms).
    """

    most_words = CPU_NAME_MOST_WORDS

    def __init__(self, text: str) -> None:
        self._text = text[text.index("\n") :]  # every name starts after a newline; the header is left out

    def get(self, key: str) -> tuple[int, float] | None:
        """The row's position and TDP of the CPU named ``key`` exactly (a key: see :func:`_key`)."""
        if '"' in key:
            return None
        found = _line_after(self._text, f'\n"{key}",' if "," in key else f"\n{key},")  # CSV quotes names with commas
        return (found[0], float(found[1].split(",")[0])) if found else None


@functools.cache
def _cpu_tdp_rows() -> _CpuTdpRows:
    return _CpuTdpRows(read_text("cpu_tdp.csv"))
