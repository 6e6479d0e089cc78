"""Report formats: schema and upgrades, Markdown golden file, HTML escaping and rendering, CSV, model card."""

import csv
import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from report_fixture import deterministic_report, stable

from nn_tracker.core.errors import ValidationError
from nn_tracker.report import SCHEMA_VERSION, codecarbon_csv, html, model_card, writers
from nn_tracker.report.schema import load_report, upgrade

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture
def report_data(tmp_path):
    tracker = deterministic_report(tmp_path)
    return stable(json.loads(json.dumps(tracker.report().to_dict())))


def test_report_has_every_documented_section(report_data):
    data = report_data
    assert data["schema_version"] == SCHEMA_VERSION == 5
    assert data["status"] == "completed" and data["started_at"] == "2026-01-01T00:00:00.000+00:00"
    assert data["duration_s"] == 120 * 60 + 2 * 300 + 30 * 60
    assert data["footprint"]["training_energy_kwh"] > 0 and data["footprint"]["querying_energy_kwh"] > 0
    assert data["footprint"]["embodied_carbon_unamortised_g"] == 300_000
    assert [p["why"] for p in data["what_if"]["places"]] == [
        "cleanest country in the bundled data",
        "dirtiest country in the bundled data",
        "asked for",
    ]
    assert {e["key"] for e in data["equivalents"]} == {"car_km", "smartphone_charges", "household_days"}
    car = next(e for e in data["equivalents"] if e["key"] == "car_km")
    assert car["value"] == pytest.approx(data["footprint"]["total_carbon_g"] / 248.5)
    assert "EPA" in car["source"]
    assert data["sampler"]["gap_s"] == 0 and len(data["timeline"]["points"]) <= 50


def test_schema_round_trip(tmp_path):
    tracker = deterministic_report(tmp_path)
    on_disk = json.loads(Path(tracker.report().paths[0]).read_text())
    assert (
        load_report(tracker.report().paths[0]).to_dict()
        == on_disk
        == json.loads(json.dumps(tracker.report().to_dict()))
    )


def test_version_1_reports_are_upgraded(report_data, tmp_path):
    old = json.loads(json.dumps(report_data))
    for key in ("software", "equivalents", "what_if", "nodes"):
        del old[key]
    for device in old["devices"]:
        del device["node"]
    del old["sampler"]["gap_s"]
    old["schema_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    new = load_report(path).to_dict()
    assert new["schema_version"] == 5
    assert new["equivalents"] == report_data["equivalents"]
    assert new["what_if"]["places"][:2] == report_data["what_if"]["places"][:2]
    assert new["nodes"]["node-1"]["energy_kwh"] == pytest.approx(report_data["energy"]["it_kwh"])
    assert new["software"]["note"] == "upgraded from schema 1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 99}', "is newer than this nn_tracker reads (5); upgrade nn_tracker"),
        ('{"hello": 1}', "must be an nn_tracker report (no schema_version field)"),
        ("[1, 2]", "must be an nn_tracker report"),
        ("{not json", "must be valid JSON, got 'line 1"),
        ('{"schema_version": 2, "run_id": "x"}', ".project_name is missing"),
        ('{"schema_version": "2"}', "schema_version must be a positive integer"),
        ('{"schema_version": 1, "devices": 3}', ".run_id is missing"),
    ],
)
def test_bad_reports_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValidationError) as info:
        load_report(path)
    assert message in str(info.value)


GOLDEN_NAMES = {
    "json": "report.json",
    "md": "report.md",
    "html": "report.html",
    "csv": "emissions.csv",
    "model-card": "report.model-card.md",
    "if-manifest": "report.if.yml",
}


@pytest.mark.parametrize("fmt", sorted(GOLDEN_NAMES))
def test_golden_file_of_every_format(report_data, fmt, monkeypatch):
    """One fixed simulated run (ManualClock) in every format: any change of meaning shows in review."""
    monkeypatch.setenv("TZ", "UTC")  # the CSV's timestamps are local time, as CodeCarbon's
    time.tzset()
    try:
        text = writers.render(upgrade(report_data), fmt)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    golden = GOLDEN / GOLDEN_NAMES[fmt]
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "run with UPDATE_GOLDEN=1 to accept a deliberate change"


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_every_user_string_is_escaped_in_html(tmp_path):
    catalogue = tmp_path / "cat.yml"
    catalogue.write_text(
        yaml.safe_dump(
            {"locations": [{"code": "EVIL", "name": HOSTILE, "intensity_g_per_kwh": 100, "source": HOSTILE}]}
        )
    )
    tracker = deterministic_report(tmp_path, datacentres=(), location="EVIL", catalogue_file=str(catalogue))
    data = tracker.report().to_dict()
    data["notes"].append(HOSTILE)
    data["devices"][0]["name"] = HOSTILE
    page = html.render(upgrade(data))
    assert "<script" not in page and "<img" not in page  # no markup from the data survives
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_html_is_self_contained_and_small_for_a_long_run(report_data):
    page = html.render(upgrade(report_data))
    for asset in ("src=", "href=", "url(", "<link", "<script", "@import"):
        assert asset not in page  # nothing is fetched: citations are text
    assert page.count("<polyline") == 3
    assert len(page) < 200_000


def headless_chromium(tmp_path: Path, page: Path, *flags: str, width: int = 1100) -> subprocess.CompletedProcess:
    """Debian's chromium, headless and offline, on ``page`` at ``width`` x 1200; skips without chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it): apt-get install chromium")
    quiet = ("--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update")
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            *quiet,
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},1200",
            *flags,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_html_renders_in_headless_chromium_with_the_plot(report_data, tmp_path):
    image = pytest.importorskip("PIL.Image")
    page = tmp_path / "report.html"
    page.write_text(html.render(upgrade(report_data)))
    shot = tmp_path / "shot.png"
    result = headless_chromium(tmp_path, page, f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    pixels = image.open(shot).convert("RGB")
    wanted = tuple(int(html.PALETTE[0][i : i + 2], 16) for i in (1, 3, 5))  # the first device's line colour
    raw = pixels.crop((0, 250, 1100, 700)).tobytes()
    plot_box = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    matches = sum(1 for p in plot_box if all(abs(a - b) <= 30 for a, b in zip(p, wanted, strict=True)))
    assert matches > 200, f"the first device's line ({html.PALETTE[0]}) is not visible in the plot area"


CODECARBON_FILE = Path(__file__).parent / "data" / "codecarbon-3.3.2-emissions.csv"  # written by CodeCarbon 3.3.2


def test_codecarbon_csv_row(report_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")  # CodeCarbon writes local time
    time.tzset()
    try:
        path = codecarbon_csv.append(tmp_path / "emissions.csv", upgrade(report_data))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    rows = list(csv.DictReader(path.open()))
    row = rows[0]
    (session,) = report_data["sessions"]
    assert float(row["emissions"]) == pytest.approx(session["operational_carbon_g"] / 1000)  # no embodied
    assert float(row["duration"]) == report_data["duration_s"]
    pue = session["facility_energy_kwh"] / session["it_energy_kwh"]  # two datacentres: the effective PUE
    assert float(row["pue"]) == pytest.approx(pue)
    gpu_kwh = session["it_energy_kwh_by_component"]["gpu"] * pue  # scaled by the PUE, as CodeCarbon's
    assert float(row["gpu_energy"]) == pytest.approx(gpu_kwh)
    assert row["ram_energy"] == "" and row["ram_power"] == ""  # not measured: empty, never 0
    assert row["water_consumed"] == "" and row["cpu_utilization_percent"] == ""  # not measured by nn_tracker
    assert row["country_name"] == "France" and row["country_iso_code"] == "FRA" and row["on_cloud"] == "N"
    assert row["gpu_count"] == "2" and row["gpu_model"] == "2 x NVIDIA A100-SXM4-80GB"  # as CodeCarbon writes it
    assert float(row["gpu_power"]) == pytest.approx(gpu_kwh * 3.6e6 / report_data["duration_s"])  # the mean
    assert row["timestamp"] == "2026-01-01T03:40:00"  # ended 02:40 UTC, in Paris's local time


def test_the_csv_has_codecarbon_s_own_header_and_formats(report_data, tmp_path):
    """Compared with a file CodeCarbon 3.3.2 wrote itself, not with our own column list."""
    with CODECARBON_FILE.open() as handle:
        theirs = list(csv.reader(handle))
    ours = list(csv.reader(codecarbon_csv.append(tmp_path / "emissions.csv", upgrade(report_data)).open()))
    assert ours[0] == theirs[0]  # the same 38 columns in the same order
    for mine, reference in zip(ours[1], theirs[1], strict=True):
        if reference and mine:  # the same kind of value where both have one
            assert re.fullmatch(_shape(reference), mine), (mine, reference)


def _shape(value: str) -> str:
    if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", value):
        return r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    if value in ("Y", "N"):
        return "[YN]"
    if re.fullmatch(r"-?[\d.]+(e-?\d+)?", value):
        return r"-?[\d.]+(e-?\d+)?"
    return ".*"


def test_appending_to_a_file_codecarbon_started_keeps_every_column_in_place(report_data, tmp_path):
    target = tmp_path / "emissions.csv"
    shutil.copy(CODECARBON_FILE, target)
    codecarbon_csv.append(target, upgrade(report_data))
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 3 and all(None not in r and len(r) == 38 for r in rows)
    assert rows[-1]["run_id"] == report_data["run_id"] and rows[-1]["on_cloud"] == "N"
    assert sum(float(r["emissions"]) for r in rows) == pytest.approx(
        sum(float(r["emissions"]) for r in rows[:2]) + report_data["footprint"]["operational_carbon_g"] / 1000
    )
    # an older CodeCarbon file (2.x: no water or utilisation columns): our row follows its header
    older = tmp_path / "older.csv"
    header = [c for c in codecarbon_csv.COLUMNS if c not in ("water_consumed", "wue") and "utilization" not in c]
    older.write_text(",".join(header) + "\n")
    codecarbon_csv.append(older, upgrade(report_data))
    (row,) = list(csv.DictReader(older.open()))
    assert list(row) == header and None not in row and row["project_name"] == report_data["project_name"]


def test_concurrent_csv_appends_never_interleave(report_data, tmp_path):
    source = tmp_path / "report.json"
    source.write_text(json.dumps(report_data))
    target = tmp_path / "emissions.csv"
    script = (
        "import sys\n"
        "from nn_tracker.report.codecarbon_csv import append\n"
        "from nn_tracker.report.schema import load_report\n"
        "data = load_report(sys.argv[1])\n"
        "for i in range(40):\n"
        "    data.run_id = f'{sys.argv[3]}-{i}'\n"
        "    data.notes = ['x' * 5000]\n"
        "    append(sys.argv[2], data)\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(source), str(target), f"w{n}"]) for n in range(6)]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    lines = target.read_text().splitlines()
    assert lines[0].startswith("timestamp,project_name,run_id") and lines.count(lines[0]) == 1
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 240
    assert all(len(r) == len(codecarbon_csv.COLUMNS) and None not in r for r in rows)
    assert {r["run_id"] for r in rows} == {f"w{n}-{i}" for n in range(6) for i in range(40)}


def test_model_card_block_as_the_hub_documents_it(report_data):
    text = model_card.render(upgrade(report_data))
    assert text.startswith("---\n") and text.endswith("---\n")
    block = yaml.safe_load(text.strip("-\n"))["co2_eq_emissions"]
    assert set(block) == {"emissions", "source", "training_type", "geographical_location", "hardware_used"}
    # training only: the 30 minutes of serving in the same run are left out
    serving = next(c for c in report_data["datacentres"] if c["phases"] == ["querying"])["operational_carbon_g"]
    serving += report_data["footprint"]["embodied_carbon_amortised_g"] * 1800 / report_data["duration_s"]
    assert block["emissions"] == pytest.approx(report_data["footprint"]["total_carbon_g"] - serving, rel=1e-5)
    assert block["emissions"] < report_data["footprint"]["total_carbon_g"]
    assert block["source"] == "nn_tracker 0.1.0: measured (cpu, gpu); run golden-run"  # the fakes integrate power
    assert block["hardware_used"] == "2 x NVIDIA A100-SXM4-80GB, CPU: AMD EPYC 7763 64-Core Processor"
    assert block["training_type"] == "pre-training"
    assert block["geographical_location"].startswith("Paris DC; GCP europe-west1")


def test_model_card_of_a_run_without_training_has_no_emissions_block(tmp_path):
    from fakes import ConstantPower, sensor_set

    from nn_tracker import ManualClock, Tracker
    from nn_tracker.sensors.base import METHOD_ESTIMATE

    clock = ManualClock()
    cpu = ConstantPower("cpu:estimate", power_w=40, component="cpu")
    cpu.info.method = METHOD_ESTIMATE
    tracker = Tracker(
        clock=clock,
        background=False,
        sensors=sensor_set(cpu),
        write_report=False,
        intensity_g_per_kwh=100,
        default_phase="querying",
    )
    with tracker:
        clock.advance(60)
    text = model_card.render(tracker.report())
    assert yaml.safe_load(text.strip("-\n")) is None and "did no training" in text  # only a comment
    trained = Tracker(
        clock=clock, background=False, sensors=sensor_set(cpu), write_report=False, intensity_g_per_kwh=100
    )
    with trained:
        clock.advance(60)
    block = model_card.block(trained.report())["co2_eq_emissions"]
    assert block["source"].startswith("nn_tracker") and ": estimate (cpu)" in block["source"]


def test_tracker_writes_every_configured_format(tmp_path):
    tracker = deterministic_report(tmp_path, formats=("json", "md", "html", "csv", "model-card"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "emissions.csv",
        "golden-golden-run.html",
        "golden-golden-run.json",
        "golden-golden-run.md",
        "golden-golden-run.model-card.md",
    ]
    assert len(tracker.report().paths) == 5


@pytest.mark.parametrize("fmt", writers.FORMATS)
def test_cli_report_renders_every_format(report_data, tmp_path, fmt):
    source = tmp_path / "run.json"
    source.write_text(json.dumps(report_data))
    printed = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(source), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == writers.render(upgrade(report_data), fmt)
    out = tmp_path / f"out.{fmt}"
    written = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(source), "--format", fmt, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0 and out.read_text() == writers.render(upgrade(report_data), fmt)


def test_cli_report_of_a_checkpoint_and_of_bad_files(tmp_path):
    tracker = deterministic_report(tmp_path)
    checkpoint = json.loads(Path(tracker.report().paths[0]).read_text())
    checkpoint["status"] = "running"
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(checkpoint))
    result = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(path), "--format", "md"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "status **running**" in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("nn-tracker: error: report ") and len(missing.stderr.splitlines()) == 1
    unwritable = subprocess.run(
        [sys.executable, "-m", "nn_tracker", "report", str(path), "-o", str(path / "x" / "y.md")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unwritable.returncode == 2 and "cannot be written" in unwritable.stderr


def test_a_month_long_timeline_still_gives_a_small_page(report_data):
    from nn_tracker.accounting.timeline import Timeline

    timeline = Timeline(2000)
    for i in range(30 * 24 * 60):  # one interval a minute for 30 days
        energies = {f"gpu:{n}": 300.0 * 60 for n in range(4)} | {"cpu:estimate": 45.0 * 60}
        timeline.add(i * 60.0, (i + 1) * 60.0, energies, {k: v / 60 for k, v in energies.items()})
    report_data["timeline"] = timeline.to_dict()
    page = html.render(upgrade(report_data))
    assert page.count("<polyline") == 5
    assert len(page.encode()) < 400_000


OVERFLOW_CHECK = """
<script>
window.addEventListener("load", () => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push("page wider than the window");
  const svg = document.getElementById("power-plot");
  const frame = svg.getBoundingClientRect();
  for (const text of svg.querySelectorAll("text")) {
    const box = text.getBoundingClientRect();
    if (box.left < frame.left - 0.5 || box.right > frame.right + 0.5 || box.top < frame.top - 0.5
        || box.bottom > frame.bottom + 0.5) problems.push("plot label outside the plot: " + text.textContent);
  }
  for (const cell of document.querySelectorAll("td, .card b")) {
    if (cell.scrollWidth > cell.clientWidth + 1) problems.push("text overflows its box: " + cell.textContent);
    const range = document.createRange();
    range.selectNodeContents(cell);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
    if (/^[-+]?[0-9.,]+ [^ ]+$/.test(cell.textContent.replace(/\u00a0/g, " ")) && lines > 1)
      problems.push("value broken across lines: " + cell.textContent);
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/[A-Za-z]{2,}/g)) {  // a word: never cut inside
        const part = document.createRange();
        part.setStart(node, word.index);
        part.setEnd(node, word.index + word[0].length);
        if (new Set([...part.getClientRects()].map((r) => Math.round(r.top))).size > 1)
          problems.push("word broken across lines: " + word[0]);
      }
    }
  }
  for (const element of document.body.querySelectorAll("*")) {
    if (element.getBoundingClientRect().right > window.innerWidth + 1)
      problems.push("beyond the window: " + element.tagName + " " + element.textContent.slice(0, 40));
  }
  document.title = "CHECKED " + JSON.stringify(problems);
});
</script>
"""


def layout_problems(page_text: str, tmp_path: Path, width: int = 1100) -> list[str]:
    """What a real browser finds wrong with a page's layout (see OVERFLOW_CHECK); skips without chromium."""
    page = tmp_path / "page.html"
    page.write_text(page_text.replace("</body>", OVERFLOW_CHECK + "</body>"))  # the test's own script
    result = headless_chromium(tmp_path, page, "--virtual-time-budget=3000", "--dump-dom", width=width)
    title = re.search(r"<title>CHECKED (.*?)</title>", result.stdout, re.DOTALL)
    assert title, result.stderr[-2000:]
    return json.loads(html_module.unescape(title.group(1)))


@pytest.mark.parametrize("width", [800, 1100, 1920])
def test_html_has_no_text_outside_its_box_in_headless_chromium(report_data, tmp_path, width):
    """Element boxes checked in a real browser: no label outside the plot, no overflowing or broken value or word."""
    page = html.render(upgrade(report_data))
    assert layout_problems(page, tmp_path, width) == []
    assert "phase-band" in page and 'data-phase="training"' in page


def test_which_datacentre_runs_a_phase_is_decided_in_one_place(report_data):
    from nn_tracker.config import datacentre_index
    from nn_tracker.report.carbon import centre_row_for

    assert datacentre_index("querying", [("training",), ("querying",)]) == 1
    assert datacentre_index("training", [("querying",), ()]) == 1  # the one naming no phase runs the others
    assert datacentre_index("training", [("querying",)]) == 0  # none runs the others: the first
    rows = upgrade(report_data).datacentres  # Paris for everything but querying, Belgium for querying
    assert [centre_row_for(phase, rows) for phase in ("training", "querying", "other")] == [0, 1, 0]


def test_a_session_s_row_rendered_in_another_time_zone_is_not_added_twice(report_data, tmp_path, monkeypatch):
    path = tmp_path / "emissions.csv"
    for zone in ("Europe/Paris", "America/New_York"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        codecarbon_csv.append(path, upgrade(report_data))
    monkeypatch.delenv("TZ")
    time.tzset()
    assert len(list(csv.DictReader(path.open()))) == 1
