"""Help a person read a footprint: everyday equivalents, and the same energy elsewhere (what-if).

Each equivalent has its factor and source in the bundled ``equivalents.csv``.
The what-if keeps the measured facility energy and changes only the grid:
the cleanest and dirtiest countries of the bundled data, and places the user names.
"""

from __future__ import annotations

import functools
from typing import Any

from nn_tracker.footprint.catalogue import Catalogue, GridIntensity
from nn_tracker.footprint.data import read_table


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, str], ...]:
    """The bundled equivalents, read once (every report and every live summary uses them)."""
    return tuple(read_table("equivalents.csv"))


def equivalents(carbon_g: float, energy_kwh: float, catalogue: Catalogue) -> list[dict[str, Any]]:
    """Everyday equivalents of a carbon figure (gCO2e) and an energy figure (kWh), each with its source."""
    rows = []
    for row in _table():
        factor = float(row["factor"])
        amount = carbon_g if row["basis"] == "carbon_g" else energy_kwh
        source = catalogue.sources.get(row["source_id"])
        rows.append(
            {
                "key": row["key"],
                "label": row["label"],
                "value": amount / factor,
                "basis": row["basis"],
                "factor": factor,
                "unit": row["unit"],
                "source": source.title if source else row["source_id"],
                "url": source.url if source else "",
                "year": int(row["year"]) if row["year"] else None,
                "note": row["note"],
            }
        )
    return rows


def what_if(
    facility_energy_kwh: float, embodied_g: float | None, catalogue: Catalogue, places: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The same facility energy under other grids; embodied carbon does not change with the grid.

    Args:
        facility_energy_kwh: Measured IT energy x PUE.
        embodied_g: Amortised embodied carbon (``None`` if not included).
        catalogue: Reference data.
        places: Locations the user wants compared (catalogue names).
    """
    cleanest, dirtiest = catalogue.cleanest_and_dirtiest_countries

    def row(entry: GridIntensity, why: str) -> dict[str, Any]:
        operational = facility_energy_kwh * entry.intensity_g_per_kwh
        return {
            "why": why,
            "code": entry.code,
            "name": entry.name,
            "intensity_g_per_kwh": entry.intensity_g_per_kwh,
            "year": entry.year,
            "source": entry.source.title,
            "operational_carbon_g": operational,
            "total_carbon_g": operational + (embodied_g or 0.0),
        }

    rows = [
        row(cleanest, "cleanest country in the bundled data"),
        row(dirtiest, "dirtiest country in the bundled data"),
    ]
    rows += [row(catalogue.location(place), "asked for") for place in places]
    return {
        "facility_energy_kwh": facility_energy_kwh,
        "embodied_carbon_g": embodied_g,
        "places": rows,
        "method": "measured facility energy x each place's average intensity (transport factor 1); "
        "embodied carbon unchanged",
    }
