"""Bundled reference tables (CSV), read with :mod:`importlib.resources` on first use.

Built from public data by ``scripts/build_reference_data.py``; see ``sources.csv``
for each table's origin and licence.
"""

from __future__ import annotations

import csv
import io


def read_table(name: str) -> list[dict[str, str]]:
    """Return the rows of the bundled table ``name`` (e.g. ``"hardware.csv"``)."""
    from importlib import resources

    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))
