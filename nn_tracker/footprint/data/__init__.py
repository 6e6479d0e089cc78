"""Bundled reference tables (CSV), read from the package's folder on first use.

Built from public data by ``scripts/build_reference_data.py``; see ``sources.csv``
for each table's origin and licence.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path


def read_text(name: str) -> str:
    """The text of the bundled table ``name`` (e.g. ``"hardware.csv"``)."""
    path = Path(__file__).with_name(name)
    if path.is_file():  # an installed package: a plain file (no zipfile machinery on the cold path)
        return path.read_text(encoding="utf-8")
    from importlib import resources  # pragma: no cover - a zipped install

    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")  # pragma: no cover


def read_table(name: str) -> list[dict[str, str]]:
    """Return the rows of the bundled table ``name`` (e.g. ``"hardware.csv"``)."""
    rows = csv.reader(io.StringIO(read_text(name)))
    header = next(rows)
    return [dict(zip(header, row, strict=True)) for row in rows]
