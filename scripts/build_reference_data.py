"""Build the bundled reference tables in ``nn_tracker/footprint/data/`` from ``scripts/raw_data``.

Run from the repository root (needs ``pycountry`` for ISO alpha-2 codes)::

    python scripts/build_reference_data.py [RAW_DATA_DIR]

The raw data (with its licences and ``SOURCES.md``) and the output are committed; the package reads
neither the raw data nor anything outside ``nn_tracker/footprint/data`` at run time.
Every row written carries a ``source_id`` that points into ``sources.csv``
(title, URL, licence, retrieval date) and a data ``year`` where the origin
states one (empty means "not stated by the source").
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pycountry

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "nn_tracker" / "footprint" / "data"
LB_PER_MWH_TO_G_PER_KWH = 0.453592

SOURCES = [
    # id, title, url, license, retrieved
    (
        "epa-vehicle",
        "US EPA, Greenhouse Gas Emissions from a Typical Passenger Vehicle (about 400 g CO2 per mile)",
        "https://www.epa.gov/greenvehicles/greenhouse-gas-emissions-typical-passenger-vehicle",
        "US public domain; figure cited",
        "2026-11-22",
    ),
    (
        "eia-home",
        "US EIA, average annual electricity use of a US residential customer in 2019 (10,649 kWh)",
        "https://www.eia.gov/tools/faqs/faq.php?id=97",
        "US public domain; figure cited",
        "2026-11-22",
    ),
    (
        "nominal-battery",
        "Nominal energy of a current smartphone battery: capacity x nominal voltage (an assumption, stated)",
        "",
        "definition",
        "2026-11-22",
    ),
    (
        "ccf-cpu",
        "Cloud Carbon Footprint methodology, compute: AWS average max watts per vCPU",
        "https://www.cloudcarbonfootprint.org/docs/methodology/",
        "Apache-2.0 (Cloud Carbon Footprint); figure cited",
        "2026-11-22",
    ),
    (
        "ccf-memory",
        "Cloud Carbon Footprint methodology, memory: 0.392 W/GB (mean of Crucial's and Micron's DDR4 figures)",
        "https://www.cloudcarbonfootprint.org/docs/methodology/",
        "Apache-2.0 (Cloud Carbon Footprint); figure cited",
        "2026-11-22",
    ),
    (
        "owid-ember-2023",
        "CodeCarbon global_energy_mix.json (Our World in Data / Ember electricity data)",
        "https://github.com/mlco2/codecarbon/blob/master/codecarbon/data/private_infra/global_energy_mix.json",
        "MIT (CodeCarbon); data CC BY 4.0 (Our World in Data)",
        "2026-08-08",
    ),
    (
        "iea-2019",
        "IEA Global Energy & CO2 Status Report 2019, world average (via CodeCarbon)",
        "https://www.iea.org/reports/global-energy-co2-status-report-2019/emissions",
        "MIT (CodeCarbon)",
        "2026-08-08",
    ),
    (
        "egrid-2023",
        "US EPA eGRID2023 state annual CO2e total output emission rates (STC2ERTA, via CodeCarbon 3.3.2 "
        "usa_emissions.json), converted from lb/MWh",
        "https://www.epa.gov/egrid/download-data",
        "MIT (CodeCarbon); US public domain data",
        "2026-12-07",
    ),
    (
        "entsoe-nordic-2024",
        "Nordic bidding-zone factors from ENTSO-E historical averages (via CodeCarbon)",
        "https://github.com/mlco2/codecarbon",
        "MIT (CodeCarbon)",
        "2026-08-08",
    ),
    (
        "electricitymaps-yearly-2021",
        "Electricity Maps yearly average carbon intensity per zone, 2021-10-27 export (via ML CO2 Impact)",
        "https://github.com/mlco2/impact/tree/master/data",
        "MIT (ML CO2 Impact)",
        "2026-03-09",
    ),
    (
        "google-region-carbon",
        "Google Cloud region carbon data (via CodeCarbon impact.csv)",
        "https://cloud.google.com/sustainability/region-carbon#data",
        "MIT (CodeCarbon)",
        "2026-08-08",
    ),
    (
        "mlco2-impact",
        "ML CO2 Impact calculator cloud regions (impact.csv); the upstream origin of each row "
        "is kept in the 'origin' column",
        "https://github.com/mlco2/impact/tree/master/data",
        "MIT (ML CO2 Impact)",
        "2026-03-09",
    ),
    (
        "mlco2-gpus",
        "ML CO2 Impact calculator hardware (gpus.csv); origin URL per row in 'origin'",
        "https://github.com/mlco2/impact/tree/master/data",
        "MIT (ML CO2 Impact)",
        "2026-03-09",
    ),
    (
        "codecarbon-cpu",
        "CodeCarbon cpu_power.csv (CPU model TDPs)",
        "https://github.com/mlco2/codecarbon/tree/master/codecarbon/data/hardware",
        "MIT (CodeCarbon)",
        "2026-08-08",
    ),
    (
        "llmcarbon",
        "LLMCarbon hardware.csv: chip die area x carbon per area (Faiz et al. 2023)",
        "https://github.com/SotaroKaneda/MLCarbon",
        "Apache-2.0 (LLMCarbon)",
        "2025-05-22",
    ),
    (
        "bloom-2023",
        "Luccioni, Viguier, Ligozat, 'Estimating the Carbon Footprint of BLOOM', JMLR 24 (2023)",
        "https://jmlr.org/papers/v24/23-0069.html",
        "fact cited from a publication",
        "",
    ),
    (
        "nvidia-specs",
        "NVIDIA product pages and datasheets: maximum TDP / TGP per GPU (the URL of each figure is in tdp_origin)",
        "https://www.nvidia.com/en-us/data-center/",
        "figure cited from the manufacturer",
        "2026-11-26",
    ),
    (
        "patterson-2021",
        "Patterson et al., 'Carbon Emissions and Large Neural Network Training', arXiv:2104.10350",
        "https://arxiv.org/abs/2104.10350",
        "fact cited from a publication",
        "",
    ),
]

# Embodied carbon per unit: (hardware name, kgCO2e, method, source_id).
EMBODIED = {
    "A100 PCIe 40/80GB": (150.0, "estimate per A100 GPU (BLOOM paper)", "bloom-2023"),
    "A100 SXM4 80 GB": (150.0, "estimate per A100 GPU (BLOOM paper)", "bloom-2023"),
    "Tesla V100-PCIE-16GB": (
        9.78,
        "GPU die only: area x carbon per area (LLMCarbon); excludes board, memory",
        "llmcarbon",
    ),
    "Tesla V100-SXM2-16GB": (
        9.78,
        "GPU die only: area x carbon per area (LLMCarbon); excludes board, memory",
        "llmcarbon",
    ),
    "Tesla V100-SXM2-32GB": (
        9.78,
        "GPU die only: area x carbon per area (LLMCarbon); excludes board, memory",
        "llmcarbon",
    ),
    "H100 SXM": (14.652, "GPU die only: area x carbon per area (LLMCarbon); excludes board, memory", "llmcarbon"),
    "H100 NVL": (14.652, "GPU die only: area x carbon per area (LLMCarbon); excludes board, memory", "llmcarbon"),
    "TPUv3 Chip": (7.0, "chip die only: area x carbon per area (LLMCarbon)", "llmcarbon"),
}
# Rows that are not in gpus.csv: (name, kind, tdp_w, notes, embodied_kg, method, source_id).
EXTRA_HARDWARE = [
    (
        "TPUv4 Chip",
        "tpu",
        "",
        "no published TDP in the bundled sources",
        6.4,
        "chip die only: area x carbon per area (LLMCarbon)",
        "llmcarbon",
    ),
    (
        "HPE Apollo 6500 Gen10 Plus server",
        "server",
        "",
        "GPU server chassis without GPUs",
        2500.0,
        "estimate per GPU server (BLOOM paper)",
        "bloom-2023",
    ),
]
# Current datacentre GPUs that gpus.csv lacks: (name, tdp_w, what the figure is, origin URL). TDP: the
# maximum of a configurable range (the range is in the notes); the GH200's covers the whole module.
NVIDIA_GPUS = [
    (
        "H100 PCIe",
        350,
        "configurable 300-350 W",
        "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet",
    ),
    ("H200 SXM", 700, "up to 700 W (configurable)", "https://www.nvidia.com/en-us/data-center/h200/"),
    ("H200 NVL", 600, "up to 600 W (configurable)", "https://www.nvidia.com/en-us/data-center/h200/"),
    (
        "GH200",
        1000,
        "module (Grace CPU + H100/H200 GPU + memory) configurable 450-1000 W; NVML reports the module scope",
        "https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/",
    ),
    ("B200", 1000, "up to 1,000 W per GPU on HGX B200", "https://www.nvidia.com/en-us/data-center/hgx/"),
    ("A10", 150, "", "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    ("A30", 165, "", "https://www.nvidia.com/en-us/data-center/products/a30-gpu/"),
    ("A40", 300, "", "https://www.nvidia.com/en-us/data-center/a40/"),
    ("A2", 60, "configurable 40-60 W", "https://www.nvidia.com/en-us/data-center/products/a2/"),
    ("L40", 300, "", "https://www.nvidia.com/en-us/data-center/l40/"),
    ("RTX 6000 Ada", 300, "", "https://www.nvidia.com/en-us/design-visualization/rtx-6000/"),
]
# Short names that identify exactly one catalogue entry.
ALIASES = {
    "H100 SXM": ["H100", "NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"],
    "H100 NVL": ["NVIDIA H100 NVL"],
    "A100 SXM4 80 GB": ["NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB", "A100 SXM"],
    "A100 PCIe 40/80GB": ["NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe", "A100 PCIe"],
    "A10G": ["NVIDIA A10G"],
    "H100 PCIe": ["NVIDIA H100 PCIe"],
    "H200 SXM": ["H200", "NVIDIA H200", "NVIDIA H200 141GB HBM3e"],
    "H200 NVL": ["NVIDIA H200 NVL"],
    "GH200": ["NVIDIA GH200 480GB", "NVIDIA GH200 144G HBM3e", "GH200 Grace Hopper Superchip"],
    "B200": ["NVIDIA B200"],
    "A10": ["NVIDIA A10"],
    "A30": ["NVIDIA A30"],
    "A40": ["NVIDIA A40"],
    "A2": ["NVIDIA A2"],
    "L40": ["NVIDIA L40"],
    "RTX 6000 Ada": ["NVIDIA RTX 6000 Ada Generation"],
    "T4": ["Tesla T4"],
    "L4": ["NVIDIA L4"],
    "L40S": ["NVIDIA L40S"],
    "TPUv2 Chip": ["TPUv2", "TPU v2"],
    "TPUv3 Chip": ["TPUv3", "TPU v3"],
    "TPUv4 Chip": ["TPUv4", "TPU v4"],
    "RTX 4090": ["NVIDIA GeForce RTX 4090", "GeForce RTX 4090"],
    "RTX 3090": ["NVIDIA GeForce RTX 3090", "GeForce RTX 3090"],
}


def write_csv(name: str, header: list[str], rows: list[list[object]]) -> None:
    """Write one table, sorted for stable diffs."""
    with open(OUT / name, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"{name}: {len(rows)} rows")


def num(text: str) -> str:
    """Return a clean number string or '' for blanks and NaN."""
    text = (text or "").strip()
    try:
        value = float(text)
    except ValueError:
        return ""
    return "" if value != value else repr(value).removesuffix(".0") if value.is_integer() else repr(value)


def grid_rows(data: Path) -> list[list[object]]:
    rows: list[list[object]] = []
    mix = json.loads((data / "codecarbon/global_energy_mix.json").read_text())
    for iso3, row in sorted(mix.items()):
        if not float(row["carbon_intensity"]):
            continue  # 0 g/kWh is a gap upstream (e.g. the Central African Republic), not a real grid
        country = pycountry.countries.get(alpha_3=iso3)
        aliases = [country.alpha_2] if country else []
        if country and country.name != row["country_name"]:
            aliases.append(country.name)
        aliases += [getattr(country, "common_name", "")] if country else []
        rows.append(
            [
                iso3,
                "country",
                row["country_name"],
                ";".join(a for a in aliases if a),
                num(str(row["carbon_intensity"])),
                row["year"],
                "owid-ember-2023",
            ]
        )
    per_source = json.loads((data / "codecarbon/carbon_intensity_per_source.json").read_text())
    rows.append(["WORLD", "world", "World average", "world;global", per_source["world_average"], 2018, "iea-2019"])
    states = json.loads((data / "codecarbon/usa_emissions.json").read_text())
    state_codes = set()
    assert states.pop("_unit")["emissions"] == "lbs/MWh"
    egrid_year = states.pop("_source")["year"]
    states.pop("usa", None)  # the national average, not a state (the country row is USA)
    for state, row in sorted(states.items()):
        code = f"US-{row['regionCode']}"
        state_codes.add(code)
        grams = round(float(row["emissions"]) * LB_PER_MWH_TO_G_PER_KWH, 3)
        rows.append([code, "us_state", state.title(), state, num(str(grams)), egrid_year, f"egrid-{egrid_year}"])
    nordic = json.loads((data / "codecarbon/nordic_emissions.json").read_text())["data"]
    for zone, row in sorted(nordic.items()):
        code = zone if zone == "FI" else f"{zone[:2]}-{zone}"
        if code == "FI":
            continue  # Finland is already a country row; keep one key per zone
        rows.append(
            [
                code,
                "grid_zone",
                row["description"],
                zone,
                num(str(row["emission_factor"])),
                row["year"],
                "entsoe-nordic-2024",
            ]
        )
    nordic_codes = {r[0] for r in rows}
    latest: dict[str, dict[str, str]] = {}
    with open(data / "mlco2-impact/2021-10-27yearly_averages.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if not num(row["carbon_intensity_avg"]):
                continue
            if row["zone_key"] not in latest or int(row["year"]) > int(latest[row["zone_key"]]["year"]):
                latest[row["zone_key"]] = row
    for zone, row in sorted(latest.items()):
        if zone in state_codes or zone in nordic_codes:
            continue  # the US state (eGRID) or Nordic (2024) row of the same key is kept
        name = f"{row['Country']}: {row['Zone Name']}".strip(": ")
        rows.append(
            [
                zone,
                "grid_zone",
                name,
                "",
                num(str(round(float(row["carbon_intensity_avg"]), 3))),
                row["year"],
                "electricitymaps-yearly-2021",
            ]
        )
    return rows


def cloud_rows(data: Path) -> list[list[object]]:
    rows: dict[tuple[str, str], list[object]] = {}
    pue_by_region: dict[tuple[str, str], tuple[str, str]] = {}
    with open(data / "mlco2-impact/impact.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            if not row["region"].strip():
                continue
            key = (row["provider"].strip().lower(), row["region"].strip().lower())
            pue = num(row.get("PUE", ""))
            if pue:
                pue_by_region[key] = (pue, row.get("PUE source", "").strip())
            rows[key] = [
                key[0],
                key[1],
                row["regionName"].strip() or row["city"].strip(),
                row["country"].strip(),
                num(row["impact"]),
                "",
                "mlco2-impact",
                row["source"].strip(),
                "",
            ]
    with open(data / "codecarbon/impact.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            key = (row["provider"].strip().lower(), row["region"].strip().lower())
            rows[key] = [
                key[0],
                key[1],
                row["city"].strip(),
                row["country_name"].strip(),
                num(row["impact"]),
                "",
                "google-region-carbon",
                row["source"].strip(),
                row["state"].strip(),  # the region CodeCarbon writes for it
            ]
    out = []
    for key, row in sorted(rows.items()):
        if not row[4] or not float(row[4]):
            continue  # no usable intensity; 0 is a market-based "carbon-free" claim, not the grid's intensity
        pue, pue_origin = pue_by_region.get(key, ("", ""))
        out.append([*row[:-1], pue, pue_origin, row[-1]])
    return out


# Rows of gpus.csv that are wrong, with the manufacturer's figure: name -> (tdp_w, origin).
TDP_CORRECTIONS = {
    "GTX 750": ("55", "https://www.nvidia.com/en-us/geforce/graphics-cards/geforce-gtx-750/specifications/"),
}


def _scope(method: str) -> str:
    """What an embodied figure covers: ``die`` (the chip alone, LLMCarbon) or ``unit`` (the whole card or server)."""
    return "die" if "die only" in method.lower() else "unit"


def hardware_rows(data: Path) -> list[list[object]]:
    rows = []
    with open(data / "mlco2-impact/gpus.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            name = row["name"].strip()
            notes = "average consumption, not TDP (Patterson et al. 2021)" if row["type"] == "tpu" else ""
            emb = EMBODIED.get(name)
            origin = (row["source"] or row["memory"] or "").strip()  # the A10G row lacks one column
            tdp = num(row["tdp_watts"])
            if name in TDP_CORRECTIONS:  # gpus.csv says 250 W for the GTX 750: NVIDIA says 55 W
                tdp, origin = TDP_CORRECTIONS[name]
            rows.append(
                [
                    name,
                    row["type"].strip(),
                    ";".join(ALIASES.get(name, [])),
                    tdp,
                    "nvidia-specs" if name in TDP_CORRECTIONS else "mlco2-gpus",
                    origin,
                    notes,
                    emb[0] if emb else "",
                    emb[1] if emb else "",
                    emb[2] if emb else "",
                    _scope(emb[1]) if emb else "",
                ]
            )
    for name, tdp, notes, origin in NVIDIA_GPUS:
        rows.append([name, "gpu", ";".join(ALIASES.get(name, [])), tdp, "nvidia-specs", origin, notes, "", "", "", ""])
    for name, kind, tdp, notes, kg, method, source in EXTRA_HARDWARE:
        rows.append(
            [name, kind, ";".join(ALIASES.get(name, [])), tdp, "", "", notes, kg, method, source, _scope(method)]
        )
    return sorted(rows, key=lambda r: str(r[0]).lower())


def cpu_rows(data: Path) -> list[list[object]]:
    seen: dict[str, list[object]] = {}
    with open(data / "codecarbon/cpu_power.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            name = " ".join(row["Name"].casefold().split())  # in lookup form: nn_tracker reads it as it is
            tdp = num(row["TDP"])
            if name and tdp and float(tdp) > 0 and name not in seen:  # a 0 W TDP is missing, not zero
                seen[name] = [name, tdp, "codecarbon-cpu"]
    return sorted(seen.values(), key=lambda r: str(r[0]))


# Power models used when nothing is measured: (key, value, unit, source_id, note).
POWER_MODELS = [
    (
        "cpu_w_per_logical_cpu",
        3.5,
        "W",
        "ccf-cpu",
        "TDP assumed per logical CPU when the CPU model is unknown (AWS average max watts per vCPU)",
    ),
    ("ram_w_per_gb", 0.392, "W/GB", "ccf-memory", "DRAM power per GB of memory in use"),
]


# Equivalents that help a person read a figure: (key, label, basis, factor, unit, source_id, year, note).
# basis "carbon_g": the figure in gCO2e is divided by factor; "energy_kwh": the energy in kWh is.
EQUIVALENTS = [
    (
        "car_km",
        "km driven by an average passenger car",
        "carbon_g",
        248.5,
        "gCO2e per km",
        "epa-vehicle",
        2023,
        "about 400 g CO2 per mile for a typical US passenger vehicle, converted with 1.609 km per mile",
    ),
    (
        "smartphone_charges",
        "full smartphone charges",
        "energy_kwh",
        0.0154,
        "kWh per charge",
        "nominal-battery",
        "",
        "a 4,000 mAh battery at 3.85 V (15.4 Wh); charger losses not counted",
    ),
    (
        "household_days",
        "days of electricity of an average US home",
        "energy_kwh",
        29.2,
        "kWh per day",
        "eia-home",
        2019,
        "10,649 kWh a year / 365",
    ),
]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "scripts" / "raw_data"
    write_csv("sources.csv", ["id", "title", "url", "license", "retrieved"], [list(s) for s in SOURCES])
    write_csv(
        "grid_intensity.csv",
        ["code", "zone_type", "name", "aliases", "intensity_g_per_kwh", "year", "source_id"],
        grid_rows(data),
    )
    write_csv(
        "cloud_regions.csv",
        [
            "provider",
            "region",
            "name",
            "country",
            "intensity_g_per_kwh",
            "year",
            "source_id",
            "origin",
            "pue",
            "pue_origin",
            "state",
        ],
        cloud_rows(data),
    )
    write_csv(
        "hardware.csv",
        [
            "name",
            "kind",
            "aliases",
            "tdp_w",
            "tdp_source_id",
            "tdp_origin",
            "notes",
            "embodied_kg_co2e",
            "embodied_method",
            "embodied_source_id",
            "embodied_scope",
        ],
        hardware_rows(data),
    )
    write_csv("cpu_tdp.csv", ["name", "tdp_w", "source_id"], cpu_rows(data))
    write_csv("power_models.csv", ["key", "value", "unit", "source_id", "note"], [list(m) for m in POWER_MODELS])
    write_csv(
        "equivalents.csv",
        ["key", "label", "basis", "factor", "unit", "source_id", "year", "note"],
        [list(e) for e in EQUIVALENTS],
    )
    from nn_tracker.footprint.catalogue import compiled_locations  # from the tables just written

    (OUT / "locations.py").write_text(compiled_locations(), encoding="utf-8")
    print("locations.py: compiled")


if __name__ == "__main__":
    main()
