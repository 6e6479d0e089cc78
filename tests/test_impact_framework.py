"""Impact Framework: the NN-CI plugins, the seed manifest, IF 0.3 and 1.x forms, export, the real if-run."""

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_fixture import deterministic_report

from nn_tracker.core.errors import ValidationError
from nn_tracker.integrations.impact_framework import run_manifest

SEED = Path(__file__).resolve().parent / "data" / "nn-ci-manifest.yml"  # the original NN-CI demo manifest
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def seed():
    return yaml.safe_load(SEED.read_text())


def outputs(manifest, child="child-1"):
    return manifest["tree"]["children"][child]["outputs"]


def test_seed_manifest_runs_unchanged_with_the_originals_results(seed):
    row = outputs(run_manifest(seed))[0]
    assert row["energy-consumed-by-training-NN"] == 1249875.0000000002
    assert row["energy-consumed-by-query-NN"] == 23892.000000000004
    expected_emb = (633 / 0.95) * (1000 * 10000) + (534 / 0.95) * (900 * 625) + (534 / 0.95) * (900 * 3620)
    assert row["embodied-carbon-of-NN"] == expected_emb
    expected_c = 1249875.0000000002 * (429 / 0.95) + 23892.000000000004 * (429 / 0.95)
    assert row["carbon-emission-by-NN"] == expected_c
    assert row["total-carbon-emission-by-NN"] == expected_emb + expected_c
    assert row["gpu/training"] == 10000  # every input key is kept


def to_if1(manifest):
    new = copy.deepcopy(manifest)
    for spec in new["initialize"]["plugins"].values():
        spec["config"] = spec.pop("global-config")
        if spec["method"] == "Sum":
            spec["path"] = "builtin"
    child = new["tree"]["children"]["child-1"]
    child["pipeline"] = {"compute": child["pipeline"]}
    return new


def test_if1_form_gives_the_same_outputs(seed):
    assert outputs(run_manifest(to_if1(seed))) == outputs(run_manifest(seed))


def test_original_embodied_example():
    manifest = {
        "initialize": {
            "plugins": {
                "emb": {
                    "path": "if-plugin-nnci",
                    "method": "NNEmb",
                    "global-config": {
                        "input-parameters": {
                            "list/device-count": ["n"],
                            "list/device-production-energy": ["e"],
                            "list/carbon-intensity": ["a"],
                            "list/energy-transport": ["t"],
                        },
                        "output-parameter": "emb",
                    },
                }
            }
        },
        "tree": {"children": {"x": {"pipeline": ["emb"], "inputs": [{"n": 100, "e": 750, "a": 0.389, "t": 0.95}]}}},
    }
    assert outputs(run_manifest(manifest), "x")[0]["emb"] == 30710.526315789473


def test_pipeline_and_defaults_are_inherited_and_fill_only_missing_or_null(seed):
    manifest = to_if1(seed)
    row = manifest["tree"]["children"]["child-1"]["inputs"][0]
    manifest["tree"] = {
        "pipeline": manifest["tree"]["children"]["child-1"]["pipeline"],
        "defaults": {**row, "time/training": 1},
        "children": {
            "region": {
                "children": {
                    "a": {"inputs": [{"timestamp": "2024-01-01T00:00:00Z", "time/training": 360}]},  # own value wins
                    "b": {"inputs": [{"timestamp": "2024-01-01T00:00:00Z", "time/training": None}]},  # null: default
                }
            },
        },
    }
    result = run_manifest(manifest)["tree"]["children"]["region"]["children"]
    assert result["a"]["outputs"][0]["energy-consumed-by-training-NN"] == 1249875.0000000002
    assert result["b"]["outputs"][0]["energy-consumed-by-training-NN"] == pytest.approx(1249875.0000000002 / 360)
    assert "outputs" not in run_manifest(manifest)["tree"]  # a node without inputs gets none


def mutate(seed, change):
    manifest = copy.deepcopy(seed)
    change(manifest)
    return manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["initialize"]["plugins"]["nn-et"].update(method="NNXX"), "initialize.plugins.nn-et: method"),
        (
            lambda m: m["initialize"]["plugins"]["nn-et"]["global-config"]["input-parameters"].update(
                {"hardware/colour": "x"}
            ),
            "plugin NNET input-parameters.hardware/colour is not a known key",
        ),
        (
            lambda m: m["initialize"]["plugins"]["nn-et"]["global-config"]["input-parameters"].pop("pue/training"),
            "plugin NNET input-parameters.pue/training is missing",
        ),
        (
            lambda m: m["tree"]["children"]["child-1"]["inputs"][0].pop("pue/training"),
            "tree.children.child-1: input 0 field 'pue/training' must be present",
        ),
        (
            lambda m: m["tree"]["children"]["child-1"]["inputs"][0].update({"gpu/training": "many"}),
            "input 0 field 'gpu/training' must be a finite number, got 'many'",
        ),
        (
            lambda m: m["initialize"]["plugins"]["nn-c"]["global-config"]["input-parameters"][
                "location/carbon-intensity"
            ].pop(),
            "plugin NNC input-parameters must be lists of equal length",
        ),
        (
            lambda m: m["tree"]["children"]["child-1"].update(pipeline=["nn-et", "nope"]),
            "pipeline must name a plugin defined in initialize.plugins, got 'nope'",
        ),
        (lambda m: m["tree"]["children"]["child-1"].update(inputs="rows"), "inputs must be a list of mappings"),
        (
            lambda m: m["tree"]["children"]["child-1"]["inputs"][0].update({"pue/training": 0.5}),
            "tree.children.child-1: input 0 field 'pue/training' (NNET) must be >= 1, got 0.5",
        ),
        (
            lambda m: m.update(aggregation={"metrics": ["carbon"]}),
            "manifest.aggregation.type must be time, component or both",
        ),
        (lambda m: m.update(outputs=[1]), "manifest.outputs is not supported"),
        (
            lambda m: m["initialize"]["plugins"]["sum"]["global-config"].update(extra=1),
            "plugin Sum config.extra is not a known key",
        ),
    ],
)
def test_malformed_manifests_are_clear_errors(seed, change, message):
    with pytest.raises(ValidationError) as info:
        run_manifest(mutate(seed, change))
    assert message in str(info.value) and "\n" not in str(info.value)


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nn_tracker", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def test_if_run_cli_writes_the_manifest_back_with_outputs(seed, tmp_path):
    out = tmp_path / "out.yml"
    result = cli("if-run", str(SEED), "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(out.read_text())
    assert (
        outputs(written)[0]["total-carbon-emission-by-NN"]
        == outputs(run_manifest(seed))[0]["total-carbon-emission-by-NN"]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!python/object/apply:os.system ['echo pwned']\n", "must be valid YAML"),
        ("tree: {children: {}}\ninitialize: {plugins: {}}\n", "must define at least one plugin"),
        ("- a\n- b\n", "manifest must be a YAML mapping"),
        ("key: [unclosed\n", "must be valid YAML"),
    ],
)
def test_if_run_cli_bad_manifests_exit_2(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    result = cli("if-run", str(path), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "pwned").exists()


def exported(tmp_path):
    tracker = deterministic_report(tmp_path)
    report = tracker.report().to_dict()
    path = tmp_path / "export.if.yml"
    assert cli("report", tracker.report().paths[0], "--format", "if-manifest", "-o", str(path)).returncode == 0
    return report, path


def total_carbon(manifest):
    return sum(r["carbon"] for child in manifest["tree"]["children"].values() for r in child["outputs"])


def test_export_runs_in_our_runner_with_the_reports_carbon(tmp_path):
    report, path = exported(tmp_path)
    text = path.read_text()
    assert "timestamp: '2026-01-01T00:00:00.000Z'" in text  # quoted ISO-8601
    manifest = yaml.safe_load(text)
    assert set(manifest["tree"]["children"]) == {"training", "querying", "embodied"}
    assert all(
        isinstance(r["duration"], (int, float)) for c in manifest["tree"]["children"].values() for r in c["inputs"]
    )
    assert total_carbon(run_manifest(manifest)) == pytest.approx(report["footprint"]["total_carbon_g"], rel=1e-12)
    training_kwh = sum(r["energy"] for r in manifest["tree"]["children"]["training"]["inputs"])
    assert training_kwh == pytest.approx(report["footprint"]["training_energy_kwh"], rel=1e-12)


def official_if_run() -> str | None:
    candidates = [
        os.environ.get("NN_TRACKER_IF_RUN"),
        str(ROOT / ".cache" / "if" / "node_modules" / ".bin" / "if-run"),
        shutil.which("if-run"),
    ]
    return next((c for c in candidates if c and Path(c).exists()), None)


def resumed_export(tmp_path):
    """A run resumed once (two sessions, embodied carbon), exported: the report and the manifest's path."""
    from fakes import ConstantPower, sensor_set

    from nn_tracker import EmbodiedHardware, ManualClock, Tracker

    state = None
    for session in range(2):
        tracker = Tracker(
            clock=(clock := ManualClock(wall_start_s=1_767_225_600.0 + 7200 * session)),
            background=False,
            sensors=sensor_set(ConstantPower(power_w=300.0 + 100 * session)),
            output_dir=tmp_path,
            location="FR",
            pue=1.3,
            embodied=(EmbodiedHardware("server", embodied_kg_per_unit=2500),),
            run_id="resumed",
            checkpoint_interval_s=None,
            interval_s=60.0,
        )
        if state is not None:
            tracker.carry_over(state)
        with tracker, tracker.phase("training"):
            clock.advance(1800 + 600 * session)
        state = tracker.export_state()
    path = tmp_path / "resumed.if.yml"
    assert cli("report", tracker.report().paths[0], "--format", "if-manifest", "-o", str(path)).returncode == 0
    return tracker.report().to_dict(), path


@pytest.mark.parametrize("export", [exported, resumed_export])
def test_the_official_if_run_aggregates_our_export_to_the_report_s_totals(tmp_path, export):
    """IF's own ``aggregation`` (parameter-metadata, one time grid) gives the tree's totals; ours is bit-identical."""
    binary = official_if_run()
    if binary is None:
        pytest.skip("the official if-run (npm @grnsft/if) is not installed; .ci/run installs it into .cache/if")
    report, path = export(tmp_path)
    result = subprocess.run(
        [binary, "--manifest", str(path), "--output", str(tmp_path / "official")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    official = yaml.safe_load((tmp_path / "official.yaml").read_text())
    totals = official["tree"]["aggregated"]
    assert totals["carbon"] == pytest.approx(report["footprint"]["total_carbon_g"], rel=1e-12)
    facility_kwh = report["footprint"]["training_energy_kwh"] + report["footprint"]["querying_energy_kwh"]
    assert totals["energy"] == pytest.approx(facility_kwh, rel=1e-12)
    assert total_carbon(official) == pytest.approx(totals["carbon"], rel=1e-12)
    ours = run_manifest(yaml.safe_load(path.read_text()))
    assert ours["tree"] == official["tree"]  # every output and every aggregate, to the last bit
    # and the official output runs again in our runner (it adds 'execution', which we accept)
    assert run_manifest(official)["tree"]["aggregated"] == totals


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pue/training", 0.9, "tree.children.child-1: input 0 field 'pue/training' (NNET) must be >= 1, got 0.9"),
        ("energy-transport-factor/training", 1.5, "input 0 field 'energy-transport-factor/training' (NNEmb)"),
        ("location-gpu-manufacturing/carbon-intensity", -1, "field 'location-gpu-manufacturing/carbon-intensity'"),
    ],
)
def test_formula_errors_name_the_node_the_input_and_the_field(seed, field, value, message):
    seed["tree"]["children"]["child-1"]["inputs"][0][field] = value
    with pytest.raises(ValidationError) as info:
        run_manifest(seed)
    assert message in str(info.value)


def test_a_run_that_measured_nothing_exports_a_tree_if_can_compute(tmp_path):
    from fakes import ConstantPower, sensor_set

    from nn_tracker import ManualClock, Tracker
    from nn_tracker.report import if_manifest

    tracker = Tracker(
        clock=ManualClock(wall_start_s=1_767_225_600.0),
        background=False,
        sensors=sensor_set(ConstantPower(power_w=0.0)),
        output_dir=tmp_path,
        formats=[],
        intensity_g_per_kwh=100,
        embodied=(),
        checkpoint_interval_s=None,
    )
    with tracker:
        pass
    manifest = yaml.safe_load(if_manifest.render(tracker.report()))
    assert manifest["tree"]["children"]  # IF fails on a tree without children
    assert run_manifest(manifest)["tree"]["aggregated"] == {"energy": 0.0, "carbon": 0.0}
