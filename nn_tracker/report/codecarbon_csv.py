"""One row per session of a run in the columns and value formats of CodeCarbon 3.x's ``emissions.csv``, appended safely.

Each column means what CodeCarbon 3.3.2's means (checked against CodeCarbon's own code and output in
``tests/test_interoperability.py``): the same 38 columns in the same order; timestamps in local time
(``YYYY-MM-DDTHH:MM:SS``); duration s; energy kWh with every component scaled by the PUE, so that
``cpu_energy + gpu_energy + ram_energy = energy_consumed`` (the facility energy); power W, the mean over
the session, scaled by the PUE too; ``emissions`` kgCO2e = energy x grid intensity (amortised embodied
carbon is in nn_tracker's own formats only); country, ISO code and region from the bundled data for
every location kind; ``on_cloud`` ``Y``/``N``. With several datacentres, ``pue`` is the session's
effective PUE (facility / IT energy). What nn_tracker does not measure or cannot know is an empty
cell, never 0: water (no WUE data), utilisation percentages, longitude and latitude (CodeCarbon's come
from a geo-IP service), CodeCarbon's version and API experiment id, a component not measured, the
country of a run without a location. Appending to an existing file follows that file's own header, so a
file started by another CodeCarbon version never gets misaligned columns.

One row per session, holding that session's own figures (a resumed run's sessions each write a
row; a Lightning stage's row covers that stage), so the rows of a run add up to the run and summing
a column of the file counts nothing twice. Writing a report whose row is already in the file (the
very same row) adds nothing.
"""

from __future__ import annotations

import csv
import errno
import io
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from nn_tracker.core.errors import printable
from nn_tracker.report.document import Report, Session
from nn_tracker.report.files import append_whole

COLUMNS = (  # CodeCarbon 3.3.2's header, in its order
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)


def row(report: Report) -> dict[str, Any]:
    """The CSV row of a report: the figures of the session that wrote it, meant as CodeCarbon means them."""
    session = report.session or _whole_run(report)
    duration = session.duration_s
    centre = report.datacentres[0]
    kind, code = centre.location_kind, centre.location_code or ""
    # CodeCarbon scales every component by the PUE; with datacentres of different PUEs, the session's effective one
    pues = {d.pue for d in report.datacentres}
    if len(pues) > 1 and session.it_energy_kwh > 0:
        pue = session.facility_energy_kwh / session.it_energy_kwh
    else:
        pue = centre.pue
    by_component = {c: e * pue for c, e in session.it_energy_kwh_by_component.items()}
    emissions_kg = session.operational_carbon_g / 1000  # energy x intensity: embodied carbon is not CodeCarbon's
    gpus = [d for d in report.devices if d.component == "gpu"]
    stamp = report.ended_at or report.checkpointed_at or report.started_at
    machine = report.machine

    def mean_power_w(component: str) -> float | str:
        energy_kwh = by_component.get(component)
        return energy_kwh * 3.6e6 / duration if energy_kwh is not None and duration > 0 else ""

    return {
        "timestamp": _local(stamp),
        "project_name": report.project_name,
        "run_id": report.run_id,
        "experiment_id": "",
        "duration": duration,
        "emissions": emissions_kg,
        "emissions_rate": emissions_kg / duration if duration > 0 else "",
        "cpu_power": mean_power_w("cpu"),
        "gpu_power": mean_power_w("gpu"),
        "ram_power": mean_power_w("ram"),
        "cpu_energy": _blank(by_component.get("cpu")),
        "gpu_energy": _blank(by_component.get("gpu")),
        "ram_energy": _blank(by_component.get("ram")),
        "energy_consumed": session.facility_energy_kwh,
        "water_consumed": "",
        **_where(kind, code),
        "os": _blank(machine.os),
        "python_version": report.software.get("python") or "",
        "codecarbon_version": "",
        "cpu_count": _blank(machine.logical_cpus),
        "cpu_model": machine.cpu_model or "",
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(f"{n} x {name}" for name, n in sorted(Counter(d.name for d in gpus).items())),
        "longitude": "",
        "latitude": "",
        "ram_total_size": _blank(machine.memory_total_gib),
        "tracking_mode": _blank(report.settings.attribution),
        "cpu_utilization_percent": "",
        "gpu_utilization_percent": "",
        "ram_utilization_percent": "",
        "ram_used_gb": "",
        "on_cloud": "Y" if kind == "cloud_region" else "N",
        "pue": pue,
        "wue": "",
    }


def _where(kind: str | None, code: str) -> dict[str, str]:
    """Country, ISO code and region from the bundled data; cloud provider and region."""
    from nn_tracker.footprint.catalogue import bundled

    place = bundled().place(code) if code else None
    return {
        "country_name": place.country_name if place else "",
        "country_iso_code": place.country_iso_code if place else "",
        "region": place.region if place else "",
        "cloud_provider": code.split(":")[0] if kind == "cloud_region" else "",
        "cloud_region": code.split(":", 1)[1] if kind == "cloud_region" else "",
    }


def _whole_run(report: Report) -> Session:
    """A report without sessions as its one session."""
    footprint = report.footprint
    return Session(
        run_id=report.run_id,
        current=True,
        duration_s=report.duration_s,
        processes=None,
        it_energy_kwh=report.energy_kwh,
        it_energy_kwh_by_component={c: e for c, e in report.energy.by_component_kwh.items() if e is not None},
        facility_energy_kwh=footprint.facility_energy_kwh,
        operational_carbon_g=footprint.operational_carbon_g,
        embodied_carbon_amortised_g=footprint.embodied_carbon_amortised_g,
        total_carbon_g=footprint.total_carbon_g,
    )


def _local(stamp: str | None) -> str:
    """An ISO timestamp in local time, as CodeCarbon writes it (``2026-11-26T05:15:39``)."""
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%dT%H:%M:%S") if stamp else ""


def _blank(value: float | str | None) -> float | str:
    return "" if value is None else value


def render(report: Report, header: bool = True, columns: tuple[str, ...] = COLUMNS) -> str:
    """The row as CSV text (with the header line if ``header``), in ``columns``' order (unknown ones empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore", restval="")
    if header:
        writer.writeheader()
    cells = {k: printable(v) if isinstance(v, str) else v for k, v in row(report).items()}  # no terminal escapes
    writer.writerow(cells)
    return buffer.getvalue()


def append(path: str | Path, report: Report) -> Path:
    """Append the session's row to ``path``, whole or not at all, in the columns of the file's own header.

    A new or empty file gets CodeCarbon 3.3.2's header first; a file that has the very same row
    already is left as it is. See
    :func:`~nn_tracker.report.files.append_whole`: locked, torn rows cut, never through a symlink.

    Raises:
        OSError: the row could not be written (the file is as it was).

    """
    target = Path(path)

    def payload(size: int) -> bytes:
        if size == 0:
            return render(report).encode("utf-8")
        columns = _existing_header(target)
        text = render(report, header=False, columns=columns)
        if _without_time(text, columns) in {_without_time(line, columns) for line in _rows(target)}:
            return b""  # this session's row is there already (written in any time zone): nothing is added
        return text.encode("utf-8")

    return append_whole(target, payload, _is_whole_row, _refuse_other_headers)


ESSENTIAL = frozenset(("timestamp", "run_id", "duration", "emissions", "energy_consumed"))


def _is_codecarbon_header(columns: tuple[str, ...]) -> bool:
    """Whether a file's header is CodeCarbon's (3.3.2's, or an older version's with fewer of its columns)."""
    return ESSENTIAL <= set(columns) <= set(COLUMNS)


def _refuse_other_headers(first_line: bytes) -> None:
    """Raise unless a file's first line is CodeCarbon's header (checked before anything in the file changes).

    Raises:
        OSError: another file (nothing is appended and nothing in it changes).
    """
    try:
        columns = tuple(next(csv.reader([first_line.decode("utf-8")], strict=True), []))
    except (UnicodeDecodeError, csv.Error):
        columns = ()
    if not _is_codecarbon_header(columns):
        raise OSError(errno.EINVAL, "its header is not that of an emissions.csv: nothing appended")


def _is_whole_row(header: bytes, line: bytes) -> bool:
    """Whether a last line without its newline is a whole row (as many cells as the header), not a torn one."""
    try:
        cells = next(csv.reader([line.decode("utf-8")], strict=True), [])
        names = next(csv.reader([header.decode("utf-8")], strict=True), [])
    except (UnicodeDecodeError, csv.Error):
        return False
    return len(cells) == len(names) > 1


def _without_time(line: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """A row's cells but its local-time timestamp (the same session rendered in another time zone is the same row)."""
    cells = next(csv.reader([line]), [])
    return tuple(cell for name, cell in zip(columns, cells, strict=False) if name != "timestamp")


def _rows(path: Path) -> set[str]:
    """The file's lines, each with its newline (read under the append's lock)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8", errors="replace", newline="") as handle:
        return set(handle)


def _existing_header(path: Path) -> tuple[str, ...]:
    """The header of a CSV file nn_tracker or CodeCarbon started (read under the append's lock)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
    columns = next(csv.reader([first]), [])
    return tuple(columns) if columns else COLUMNS
