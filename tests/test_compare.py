"""`nn-tracker compare`: runs side by side, changes from the first run, one-line errors."""

import json
import subprocess
import sys

import pytest
from report_fixture import deterministic_report
from test_report import layout_problems

from nn_tracker import Datacentre
from nn_tracker.report import compare, html
from nn_tracker.report.schema import load_report, upgrade


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same 2.5-h run in Paris (baseline) and in Warsaw with a PUE of 1.5, written to disk."""
    folder = tmp_path_factory.mktemp("runs")
    paris = deterministic_report(folder / "a").report().to_dict()
    warsaw = deterministic_report(folder / "b", datacentres=(Datacentre(location="PL", pue=1.5, name="Warsaw DC"),))
    warsaw = warsaw.report().to_dict()
    paris["project_name"], warsaw["project_name"] = "paris", "warsaw"
    del warsaw["units"]["query"]  # a unit only the first run counted
    paths = [folder / "paris.json", folder / "warsaw.json"]
    for path, data in zip(paths, (paris, warsaw), strict=True):
        path.write_text(json.dumps(data))
    return paths, paris, warsaw


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def figure(result, key):
    return next(f for f in result["figures"] if f["key"] == key)


def test_json_has_every_figure_and_its_change_from_the_first_run(two_runs):
    paths, paris, warsaw = two_runs
    result = cli("compare", *map(str, paths), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["label"] for r in data["runs"]] == ["paris", "warsaw"] and data["baseline"] == "paris"
    facility = figure(data, "energy.facility_kwh")
    paris_kwh = paris["footprint"]["training_energy_kwh"] + paris["footprint"]["querying_energy_kwh"]
    assert facility["values"] == pytest.approx([paris_kwh, warsaw["energy"]["it_kwh"] * 1.5])
    assert facility["change_vs_first"][1] == pytest.approx(facility["values"][1] / paris_kwh - 1)
    assert facility["change_vs_first"][0] == 0
    total = figure(data, "carbon.total_g")
    assert total["values"] == [paris["footprint"]["total_carbon_g"], warsaw["footprint"]["total_carbon_g"]]
    assert total["change_vs_first"][1] == pytest.approx(total["values"][1] / total["values"][0] - 1)
    assert total["change_vs_first"][1] > 3  # Poland's grid: several times France's
    assert figure(data, "energy.it_kwh")["change_vs_first"][1] == pytest.approx(0)  # same devices, same work
    per_sample = figure(data, "units.sample.training.carbon_g_per_unit")["values"]
    assert per_sample == [
        paris["units"]["sample"]["by_phase"]["training"]["carbon_g_per_unit"],
        warsaw["units"]["sample"]["by_phase"]["training"]["carbon_g_per_unit"],
    ]
    per_query = figure(data, "units.query.querying.carbon_g_per_unit")
    assert per_query["values"][1] is None and per_query["change_vs_first"][1] is None  # missing, not zero
    run = data["runs"][1]
    assert run["hardware"] == "2 x NVIDIA A100-SXM4-80GB, AMD EPYC 7763 64-Core Processor"
    assert run["location"].startswith("Warsaw DC (") and "PUE 1.5" in run["location"]
    assert run["methods"] == (
        "gpu:GPU-aaaa integrated_power; gpu:GPU-bbbb integrated_power; cpu:estimate integrated_power"
    )


def test_the_table_shows_units_changes_and_missing_figures(two_runs):
    paths, paris, warsaw = two_runs
    result = cli("compare", *map(str, paths))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["figure", "paris", "warsaw"]
    row = next(line for line in lines if line.startswith("energy, facility"))
    paris_kwh = paris["footprint"]["training_energy_kwh"] + paris["footprint"]["querying_energy_kwh"]
    change = warsaw["energy"]["it_kwh"] * 1.5 / paris_kwh - 1  # PUE 1.5 against Paris's 1.2 and Belgium's
    assert f"({change:+.1%})" in row and 0.1 < change < 10
    carbon_row = next(line for line in lines if line.startswith("carbon, total"))
    ratio = warsaw["footprint"]["total_carbon_g"] / paris["footprint"]["total_carbon_g"]
    expected = f"(x{ratio:.3g})" if ratio >= 10 else f"({ratio - 1:+.1%})"
    assert "gCO2e" in carbon_row and expected in carbon_row
    assert "—" in next(line for line in lines if line.startswith("carbon per query"))
    assert "(same)" in next(line for line in lines if line.startswith("energy, IT"))


def test_markdown_is_one_table_with_escaped_cells(two_runs):
    paths, *_ = two_runs
    text = compare.render([(str(p), load_report(p)) for p in paths], "md")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len({line.count(" | ") for line in table if "\\|" not in line}) == 1  # every row has every column
    assert table[0] == "| figure | paris | warsaw |"


def test_html_reuses_the_report_style_and_plots_every_run_s_power(two_runs, tmp_path):
    paths, *_ = two_runs
    output = tmp_path / "compare.html"
    result = cli("compare", *map(str, paths), "--format", "html", "-o", str(output))
    assert result.returncode == 0 and result.stdout.strip() == f"wrote {output}"
    page = output.read_text()
    assert html.STYLE in page and '<svg id="power-plot"' in page
    assert page.count('class="device-line"') == 2
    assert 'data-device="paris"' in page and 'data-device="warsaw"' in page
    assert layout_problems(page, tmp_path) == []


def test_a_bucket_with_a_device_unmeasured_is_left_out_of_the_run_s_power(two_runs):
    paths, *_ = two_runs
    data = load_report(paths[0]).to_dict()
    data["timeline"] = {
        "bucket_s": 1,
        "devices": ["gpu:0", "cpu"],
        "points": [
            {"start_s": 0, "end_s": 1, "mean_power_w": {"gpu:0": 300, "cpu": 50}, "peak_power_w": {}, "energy_j": {}},
            {"start_s": 1, "end_s": 2, "mean_power_w": {"gpu:0": None, "cpu": 50}, "peak_power_w": {}, "energy_j": {}},
        ],
    }
    timeline = compare.power_timelines([upgrade(data)], ["a"])
    assert [p.mean_power_w for p in timeline.points] == [{"a": 350}]


def test_an_older_schema_is_upgraded_and_compares_equal(two_runs, tmp_path):
    paths, paris, _ = two_runs
    old = dict(paris, schema_version=2, units={})  # schema 2 had no per-phase unit figures: rebuilt on upgrade
    (tmp_path / "old.json").write_text(json.dumps(old))
    result = cli("compare", str(paths[0]), str(tmp_path / "old.json"), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert all(f["change_vs_first"][1] in (0, None) for f in data["figures"])
    assert figure(data, "units.query.querying.carbon_g_per_unit")["values"][1] is not None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: None, "reports must be at least 2 files to compare, got 1"),
        (lambda d: (d / "x.json").write_text("[1, 2]"), "must be an nn_tracker report"),
        (lambda d: (d / "x.json").write_text('{"schema_version": 99}'), "is newer than this nn_tracker reads"),
        (lambda d: (d / "x.json").write_text("{not json"), "x.json"),
        (lambda d: (d / "x.json").mkdir(), "x.json"),
    ],
)
def test_bad_inputs_are_one_line_errors(two_runs, tmp_path, make, message):
    paths, *_ = two_runs
    make(tmp_path)
    args = [str(paths[0])] + ([str(tmp_path / "x.json")] if (tmp_path / "x.json").exists() else [])
    result = cli("compare", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_is_a_one_line_error(two_runs, tmp_path):
    paths, *_ = two_runs
    result = cli("compare", str(paths[0]), str(tmp_path / "nope.json"), "-o", str(tmp_path / "out.md"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "nope.json" in result.stderr
    assert not (tmp_path / "out.md").exists()  # nothing half-written
