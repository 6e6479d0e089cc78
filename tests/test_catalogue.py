"""Bundled reference data: integrity, lookups, user overrides."""

import csv
from pathlib import Path

import pytest

from nn_tracker.core.errors import LookupFailed, ValidationError
from nn_tracker.footprint.catalogue import bundled
from nn_tracker.footprint.data import read_table


def test_every_row_is_sourced_and_every_source_has_a_licence():
    sources = {row["id"]: row for row in read_table("sources.csv")}
    assert all(s["license"] and s["title"] for s in sources.values())
    for table, column in [
        ("grid_intensity.csv", "source_id"),
        ("cloud_regions.csv", "source_id"),
        ("cpu_tdp.csv", "source_id"),
    ]:
        for row in read_table(table):
            assert row[column] in sources, (table, row)
    for row in read_table("hardware.csv"):
        assert row["tdp_source_id"] in sources or not row["tdp_w"], row
        assert row["embodied_source_id"] in sources or not row["embodied_kg_co2e"], row
        assert row["embodied_method"] or not row["embodied_kg_co2e"], row


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("grid_intensity.csv", ("code",)),
        ("cloud_regions.csv", ("provider", "region")),
        ("hardware.csv", ("name",)),
        ("cpu_tdp.csv", ("name",)),
    ],
)
def test_no_duplicate_keys(table, key):
    keys = [tuple(row[k].casefold() for k in key) for row in read_table(table)]
    assert len(keys) == len(set(keys))


def test_values_are_in_plausible_ranges():
    for row in read_table("grid_intensity.csv") + read_table("cloud_regions.csv"):
        assert 0 <= float(row["intensity_g_per_kwh"]) <= 1500, row
        assert not row["year"] or 2000 <= int(row["year"]) <= 2026, row
    for row in read_table("cloud_regions.csv"):
        assert not row["pue"] or 1.0 <= float(row["pue"]) <= 2.0, row
    for row in read_table("hardware.csv"):
        assert not row["tdp_w"] or 5 <= float(row["tdp_w"]) <= 1500, row
        assert not row["embodied_kg_co2e"] or 1 <= float(row["embodied_kg_co2e"]) <= 10_000, row
    for row in read_table("cpu_tdp.csv"):
        assert 0.5 <= float(row["tdp_w"]) <= 600, row


def test_coverage_countries_states_zones_clouds():
    catalogue = bundled()
    kinds = {}
    for entry in catalogue.locations.values():
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    assert kinds["country"] >= 200
    assert kinds["us_state"] >= 50
    assert kinds["grid_zone"] >= 100
    providers = {code.split(":")[0] for code in catalogue.locations if ":" in code}
    assert {"aws", "gcp", "azure"} <= providers


@pytest.mark.parametrize("spelling", ["FR", "fr", "FRA", "France", "  france "])
def test_country_by_alpha2_alpha3_and_name(spelling):
    assert bundled().location(spelling).code == "FRA"


def test_us_state_zone_and_cloud_region_lookups():
    catalogue = bundled()
    california = catalogue.location("California")
    assert california.code == "US-CA"
    assert catalogue.location("us-cal-ciso").kind == "grid_zone"
    region = catalogue.location("GCP/Europe-West1")
    assert region.code == "gcp:europe-west1" and region.pue == 1.09
    assert catalogue.location("aws:us-east-1").kind == "cloud_region"


def test_us_state_converted_from_pounds_per_mwh():
    raw = Path(__file__).resolve().parents[1] / "scripts" / "raw_data" / "codecarbon" / "usa_emissions.json"
    import json

    pounds = json.loads(raw.read_text())["california"]["emissions"]
    assert bundled().location("US-CA").intensity_g_per_kwh == round(pounds * 0.453592, 3)


def test_georgia_is_the_country_and_the_state_has_its_code():
    catalogue = bundled()
    assert catalogue.location("Georgia").kind == "country"
    assert catalogue.location("US-GA").kind == "us_state"


def test_unknown_location_lists_closest_matches():
    with pytest.raises(LookupFailed) as info:
        bundled().location("Frnace")
    assert "unknown location 'Frnace'" in str(info.value)
    assert "France (FRA)" in str(info.value)


def test_hardware_lookup_by_alias_case_insensitive_and_unknown():
    catalogue = bundled()
    assert catalogue.hardware_spec("nvidia a100-sxm4-80gb").name == "A100 SXM4 80 GB"
    assert catalogue.hardware_spec("tesla t4").tdp_w == 70
    with pytest.raises(LookupFailed) as info:
        catalogue.hardware_spec("V100")
    assert "Tesla V100-SXM2-32GB" in str(info.value)


@pytest.mark.parametrize(
    ("nvml_name", "tdp_w"),
    [
        ("NVIDIA H100 80GB HBM3", 700),
        ("NVIDIA H100 PCIe", 350),
        ("NVIDIA H100 NVL", 400),
        ("NVIDIA H200", 700),  # what NVML calls the H200 SXM (seen on a real one)
        ("NVIDIA H200 NVL", 600),
        ("NVIDIA GH200 480GB", 1000),
        ("NVIDIA B200", 1000),
        ("NVIDIA L4", 72),
        ("NVIDIA L40S", 350),
        ("NVIDIA A10", 150),
    ],
)
def test_current_datacentre_gpus_by_their_nvml_names(nvml_name, tdp_w):
    spec = bundled().hardware_spec(nvml_name)
    assert spec.tdp_w == tdp_w and spec.tdp_source is not None
    assert spec.tdp_origin.startswith("https://")


def test_embodied_figures_carry_method_and_source():
    spec = bundled().hardware_spec("HPE Apollo 6500 Gen10 Plus server")
    assert spec.embodied_kg_co2e == 2500
    assert "BLOOM" in spec.embodied_source.title


def test_cpu_tdp_lookup():
    assert bundled().cpu_tdp("amd epyc 7763") == 280
    assert bundled().cpu_tdp("AMD EPYC") is None


COUNTRIES = [e for e in bundled().locations.values() if e.kind == "country"]


def test_user_overrides_add_and_replace(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(
        "locations:\n"
        "  - {code: ACME-DC1, name: Acme DC 1, intensity_g_per_kwh: 42, year: 2025,\n"
        "     source: utility contract, pue: 1.2}\n"
        "  - {code: FRA, name: France, intensity_g_per_kwh: 50, year: 2024, source: RTE eco2mix}\n"
        "hardware:\n"
        "  - {name: Acme X1, kind: gpu, tdp_w: 320, embodied_kg_co2e: 120, source: vendor LCA, aliases: [X1]}\n"
    )
    catalogue = bundled().with_overrides(path)
    assert catalogue.location("acme dc 1").pue == 1.2
    assert catalogue.location("FR").intensity_g_per_kwh == 50
    assert "RTE eco2mix" in catalogue.location("FR").source.title
    assert catalogue.hardware_spec("x1").embodied_kg_co2e == 120
    assert bundled().location("FR").intensity_g_per_kwh != 50  # the bundled catalogue is unchanged
    bundled().cleanest_and_dirtiest_countries  # noqa: B018 - cached on the bundled catalogue first
    dirtiest = bundled().cleanest_and_dirtiest_countries[1]
    assert dirtiest.intensity_g_per_kwh == max(e.intensity_g_per_kwh for e in COUNTRIES)
    path.write_text(f"locations:\n  - {{code: {dirtiest.code}, intensity_g_per_kwh: 1, source: s}}\n")
    replaced = bundled().with_overrides(path).cleanest_and_dirtiest_countries[1]  # a user entry is no country
    assert replaced.code != dirtiest.code and bundled().cleanest_and_dirtiest_countries[1] is dirtiest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "locations:\n  - {code: X, intensity_g_per_kwh: -1, source: s}\n",
            "locations[0].intensity_g_per_kwh must be >= 0",
        ),
        ("locations:\n  - {code: X, intensity_g_per_kwh: 1}\n", "locations[0].source must be a non-empty string"),
        (
            "locations:\n  - {code: X, intensity_g_per_kwh: 1, source: s, colour: red}\n",
            "locations[0].colour is not a known field",
        ),
        ("hardware:\n  - {name: X, kind: fpga, source: s}\n", "hardware[0].kind must be one of"),
        ("hardware:\n  - {name: X, kind: gpu, tdp_w: .nan, source: s}\n", "hardware[0].tdp_w must be a finite number"),
        ("gpus: []\n", "catalogue file"),
        ("locations: [: bad\n", "must be valid YAML"),
    ],
)
def test_bad_override_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ValidationError) as info:
        bundled().with_overrides(path)
    assert message in str(info.value)


def test_bundled_tables_are_the_build_scripts_output(tmp_path):
    """The committed tables equal what scripts/build_reference_data.py writes from scripts/raw_data."""
    root = Path(__file__).resolve().parents[1]
    shared = root / "scripts" / "raw_data"
    pytest.importorskip("pycountry")
    import runpy

    module = runpy.run_path(str(root / "scripts" / "build_reference_data.py"))
    out = tmp_path / "data"
    out.mkdir()
    module["main"].__globals__["OUT"] = out
    module["main"].__globals__["sys"].argv = ["build", str(shared)]
    module["main"]()
    for table in (
        "sources.csv",
        "grid_intensity.csv",
        "cloud_regions.csv",
        "hardware.csv",
        "cpu_tdp.csv",
        "power_models.csv",
        "equivalents.csv",
    ):
        with open(out / table) as built, open(root / "nn_tracker" / "footprint" / "data" / table) as shipped:
            assert list(csv.reader(built)) == list(csv.reader(shipped)), table


def test_no_location_has_a_zero_intensity_and_the_gtx_750_is_55_w():
    """0 g/kWh is a gap upstream (the Central African Republic) or a market-based claim, never a grid's average."""
    assert min(e.intensity_g_per_kwh for e in bundled().locations.values()) > 0
    assert bundled().hardware_spec("GTX 750").tdp_w == 55


def test_embodied_figures_have_one_scope_and_die_only_ones_are_never_used_by_default():
    catalogue = bundled()
    assert catalogue.hardware_spec("NVIDIA A100-SXM4-80GB").embodied_scope == "unit"  # BLOOM: the whole card
    assert catalogue.hardware_spec("NVIDIA H100 80GB HBM3").embodied_scope == "die"  # LLMCarbon: the die alone
    assert {s.embodied_scope for s in catalogue.hardware.values() if "die only" in s.embodied_method.lower()} == {"die"}


def test_the_docs_counts_of_bundled_places_are_the_data_s():
    import re

    readme = (Path(__file__).resolve().parents[1] / "docs" / "methodology" / "data.md").read_text()
    (line,) = [row for row in readme.splitlines() if row.startswith("| `grid_intensity.csv` |")]
    kinds = [entry.kind for entry in bundled().locations.values()]
    nordic = sum(1 for e in bundled().locations.values() if e.source.id == "entsoe-nordic-2024")
    claimed = {
        "country": int(re.search(r"(\d+) countries", line)[1]),
        "us_state": int(re.search(r"(\d+) US states and DC", line)[1]) + 1,
        "grid_zone": int(re.search(r"(\d+) Nordic", line)[1]) + int(re.search(r"(\d+) Electricity Maps", line)[1]),
    }
    assert claimed == {kind: kinds.count(kind) for kind in claimed}
    assert int(re.search(r"(\d+) Nordic", line)[1]) == nordic


def test_the_compiled_locations_are_the_tables():
    """The catalogue loads its locations from a compiled module: it must say what the CSV tables say,
    with the same spellings index; regenerate it with ``scripts/build_reference_data.py``."""
    from nn_tracker.footprint import catalogue
    from nn_tracker.footprint.data import locations

    compiled = Path(locations.__file__).read_text(encoding="utf-8")
    assert compiled == catalogue.compiled_locations(), "stale: run scripts/build_reference_data.py"
    loaded = bundled()
    from_tables = catalogue.locations_from_tables(loaded.sources)
    assert dict(loaded.locations) == from_tables
    fresh = catalogue.Catalogue(from_tables, {}, loaded.cpu_tdp_source, loaded.sources)
    assert loaded._location_index == fresh._location_index
    assert loaded.location("France") == from_tables["FRA"]


def test_the_cpu_table_s_header_is_no_cpu():
    assert bundled().cpu_tdp("name") is None and bundled().cpu_tdp("1075t") == 95


def test_a_compiled_table_s_text_reads_as_a_mapping():
    """The compiled locations are searched in one text: a key is a whole key, never part of a row."""
    from nn_tracker.footprint.catalogue import _TextRows

    rows = _TextRows("\nFRA\tFrance\tcountry\nUS-CA\tCalifornia\tus_state\n")
    assert dict(rows) == {"FRA": "France\tcountry", "US-CA": "California\tus_state"} and len(rows) == 2
    assert dict(rows.items()) == dict(rows) and list(rows) == ["FRA", "US-CA"]
    assert len(_TextRows("\n")) == 0 and dict(_TextRows("\n")) == {}
    for key in ("FR", "France", "FRA\tFrance", "country", "", "US-CA\n", None):
        assert key not in rows
        with pytest.raises(KeyError):
            rows[key]
