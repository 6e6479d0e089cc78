"""Our outputs in the hands of the tools people use, each checked against that tool's own code or output.

The tools are installed with the test extras (CodeCarbon and its dashboard, ``huggingface_hub``...), never
imitated by our own constants.
"""

import csv
import json
import re
import time
from pathlib import Path

import pytest
from fakes import ConstantPower, sensor_set

from nn_tracker import EmbodiedHardware, ManualClock, Tracker
from nn_tracker.footprint.catalogue import bundled

# ----- CodeCarbon's emissions.csv ----------------------------------------------------------------------------
WHERE = {  # our location: what CodeCarbon is told for the same place
    "FR": {"country_iso_code": "FRA"},
    "US-CA": {"country_iso_code": "USA", "region": "california"},
    "JP-TK": {"country_iso_code": "JPN"},  # a grid zone: CodeCarbon has no region for it
    "gcp:europe-west1": {"country_iso_code": "BEL", "cloud_provider": "gcp", "cloud_region": "europe-west1"},
    "gcp:us-east1": {"country_iso_code": "USA", "cloud_provider": "gcp", "cloud_region": "us-east1"},
}
PUE = 1.5


def codecarbon_row(folder, **where) -> dict:
    """One row written by CodeCarbon 3.3.2 itself (offline, about a second)."""
    from codecarbon import OfflineEmissionsTracker

    folder.mkdir(parents=True, exist_ok=True)
    tracker = OfflineEmissionsTracker(
        output_dir=str(folder),
        measure_power_secs=0.5,
        log_level="error",
        pue=PUE,
        force_ram_power=8,
        tracking_mode="machine",
        gpu_ids=[],
        **where,
    )
    tracker.start()
    time.sleep(1.2)
    tracker.stop()
    (row,) = csv.DictReader((folder / "emissions.csv").open())
    return row


def our_rows(folder, location: str, sessions: int = 1, project: str = "p") -> list[dict]:
    """The rows nn_tracker writes for a run at ``location`` (``sessions`` > 1: resumed that many times)."""
    state = None
    for session in range(sessions):
        tracker = Tracker(
            clock=(clock := ManualClock()),
            background=False,
            sensors=sensor_set(
                ConstantPower("cpu:0", 40.0, "cpu", "CPU"),
                ConstantPower("ram", 8.0, "ram", "RAM"),
                ConstantPower("gpu:0", 300.0, "gpu", "GPU"),
            ),
            output_dir=folder,
            formats=["csv"],
            location=location,
            pue=PUE,
            embodied=(EmbodiedHardware("server", embodied_kg_per_unit=2500),),
            project_name=project,
            run_id=f"{project}-run",
            checkpoint_interval_s=None,
        )
        if state is not None:
            tracker.carry_over(state)
        with tracker:
            clock.advance(1800 + 600 * session)
        state = tracker.export_state()
    return [r for r in csv.DictReader((folder / "emissions.csv").open()) if r["project_name"] == project]


def _f(row: dict, column: str) -> float:
    return float(row[column]) if row[column] else 0.0


@pytest.mark.parametrize("location", list(WHERE))
def test_the_csv_means_what_codecarbon_s_means_column_by_column(tmp_path, location):
    theirs = codecarbon_row(tmp_path / "codecarbon", **WHERE[location])
    (ours,) = our_rows(tmp_path / "ours", location)
    for row, exact in ((theirs, False), (ours, True)):
        parts = _f(row, "cpu_energy") + _f(row, "gpu_energy") + _f(row, "ram_energy")
        assert parts == pytest.approx(float(row["energy_consumed"]), rel=1e-9)  # components scaled by the PUE
        # power: the mean over the run, scaled by the PUE too (CodeCarbon's CPU power follows the load: its RAM's)
        for component in ("cpu", "ram") if exact else ("ram",):
            mean_w = _f(row, f"{component}_energy") * 3.6e6 / float(row["duration"])
            assert float(row[f"{component}_power"]) == pytest.approx(mean_w, rel=1e-9 if exact else 0.1)
        assert float(row["pue"]) == PUE
    for column in ("country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "on_cloud"):
        assert ours[column] == theirs[column], column
    assert ours["tracking_mode"] == theirs["tracking_mode"] == "machine"
    assert float(ours["ram_total_size"]) == pytest.approx(float(theirs["ram_total_size"]))
    # emissions = energy x the grid's intensity, as CodeCarbon's (the server's embodied carbon is not in it)
    if "cloud_region" not in WHERE[location] and location != "JP-TK":  # CodeCarbon has no zone data for JP-TK
        intensity = float(theirs["emissions"]) / float(theirs["energy_consumed"]) * 1000
        assert bundled().location(location).intensity_g_per_kwh == pytest.approx(intensity, rel=1e-3)
    ours_intensity = float(ours["emissions"]) / float(ours["energy_consumed"]) * 1000
    assert ours_intensity == pytest.approx(bundled().location(location).intensity_g_per_kwh, rel=1e-12)


def test_every_location_kind_has_a_country_and_iso_code():
    catalogue = bundled()
    for code, entry in catalogue.locations.items():
        place = catalogue.place(code)
        if entry.kind == "world":
            assert place is None  # a run without a location has no country (documented)
            continue
        assert place is not None and len(place.country_iso_code) == 3, code
        assert catalogue.locations[place.country_iso_code].kind == "country"


def dashboard_failures(frame, project: str) -> dict[str, str]:
    """Run every callback of CodeCarbon's carbonboard page for ``project``; the ones that raised, with why."""
    import plotly
    from codecarbon.viz.carbonboard import render_app

    app = render_app(frame)
    callbacks = {e["callback"].__wrapped__.__name__: e["callback"].__wrapped__ for e in app.callback_map.values()}

    def through_the_browser(value):
        return json.loads(json.dumps(value, cls=plotly.utils.PlotlyJSONEncoder))

    outputs = callbacks.pop("update_project_data")(project)
    table, summary = through_the_browser(outputs[0]), through_the_browser(outputs[1])
    rows = frame[frame.project_name == project]
    assert summary["total"]["energy_consumed"] == pytest.approx(rows.energy_consumed.sum())
    assert summary["total"]["emissions"] == pytest.approx(rows.emissions.sum())
    failures = {}
    for name, callback in callbacks.items():
        arguments = {"update_global_comparisons": (summary, "fossil")}.get(name)
        arguments = arguments or (
            (table,) if name in ("update_project_time_series", "update_project_bar_chart") else (summary,)
        )
        try:
            callback(*arguments)
        except Exception as error:  # noqa: BLE001 - reported, compared with CodeCarbon's own file
            failures[name] = f"{type(error).__name__}: {error}"
    return failures


def test_codecarbon_s_dashboard_renders_every_panel_from_our_file(tmp_path, monkeypatch):
    """CodeCarbon's carbonboard fed our emissions.csv, as ``carbonboard --filepath`` reads it.

    One panel, the US regional map, fails in CodeCarbon 3.3.2 for any US row, its own included: its
    ``usa_emissions.json`` gained a ``_source`` entry that the map reads as a state. That is checked
    against a row CodeCarbon wrote itself, so that our file is never the cause. (Its Canadian map opens
    ``codecarbon/data/canada_provinces.geojson`` from the working folder: it runs from the package's parent.)
    """
    import codecarbon
    import pandas as pd

    folder = tmp_path / "reports"
    locations = {"france": "FR", "california": "US-CA", "ontario": "CA-ON", "belgium": "gcp:europe-west1"}
    for project, location in locations.items():
        assert len(our_rows(folder, location, sessions=2, project=project)) == 2  # one row per session
    frame = pd.read_csv(folder / "emissions.csv")
    monkeypatch.chdir(Path(codecarbon.__file__).parent.parent)
    codecarbon_s_own_bug = {"update_regional_comparison_choropleth": "KeyError: 'regionCode'"}
    for project in locations:
        expected = codecarbon_s_own_bug if project == "california" else {}
        assert dashboard_failures(frame, project) == expected, project
    codecarbon_row(tmp_path / "codecarbon", **WHERE["US-CA"])
    theirs = pd.read_csv(tmp_path / "codecarbon" / "emissions.csv")
    assert dashboard_failures(theirs, "codecarbon") == codecarbon_s_own_bug
    # AWS and Azure: CodeCarbon's cloud data has GCP regions only, so its cloud panel fails for its own rows too
    our_rows(folder, "aws:eu-west-3", project="paris")
    aws = {"update_cloud_emissions_barchart": "IndexError: single positional indexer is out-of-bounds"}
    assert dashboard_failures(pd.read_csv(folder / "emissions.csv"), "paris") == aws
    codecarbon_row(tmp_path / "codecarbon-aws", country_iso_code="FRA", cloud_provider="aws", cloud_region="eu-west-3")
    assert dashboard_failures(pd.read_csv(tmp_path / "codecarbon-aws" / "emissions.csv"), "codecarbon") == aws


# ----- Hugging Face Hub model cards ----------------------------------------------------------------------------
def card_of(tmp_path, grams: float) -> str:
    """The model-card block of a training run that emitted ``grams`` (one hour at 1 kW: intensity chosen)."""
    from nn_tracker.report import model_card

    tracker = Tracker(
        clock=(clock := ManualClock()),
        background=False,
        sensors=sensor_set(ConstantPower(power_w=1000.0)),
        output_dir=tmp_path,
        formats=[],
        intensity_g_per_kwh=grams,
        embodied=(),
        checkpoint_interval_s=None,
    )
    with tracker, tracker.phase("training"):
        clock.advance(3600)
    return model_card.render(tracker.report())


@pytest.mark.parametrize("grams", [1.94619e-05, 0.5, 1234.5678, 3.1e9])
def test_the_model_card_round_trips_through_huggingface_hub(tmp_path, grams):
    from huggingface_hub import ModelCard, ModelCardData, metadata_load

    block = card_of(tmp_path, grams)
    (line,) = [line for line in block.splitlines() if line.strip().startswith("emissions:")]
    assert re.fullmatch(r"  emissions: \d+\.\d+", line), line  # a plain decimal: tools that read digits read it
    readme = tmp_path / "README.md"
    readme.write_text(block + "\n# A model\n")
    loaded = metadata_load(readme)["co2_eq_emissions"]
    assert loaded["emissions"] == pytest.approx(grams, rel=1e-5)
    card = ModelCard(readme.read_text())
    assert card.data.co2_eq_emissions == loaded
    again = ModelCardData(**card.data.to_dict())  # written back by the Hub's own class, read again
    assert ModelCard(f"---\n{again.to_yaml()}\n---\n").data.co2_eq_emissions["emissions"] == loaded["emissions"]


def test_the_hub_s_emissions_filter_reads_our_figure():
    """``HfApi.list_models(emissions_thresholds=...)`` keeps a model by ``str(emissions)``'s first number.

    It reads a float below 0.0001 g (``1.9e-05``) as 1.9 g whatever the file says: Python prints such floats
    with an exponent. Above, it reads ours right.
    """
    from types import SimpleNamespace

    from huggingface_hub import ModelCard
    from huggingface_hub.utils.endpoint_helpers import _is_emission_within_threshold

    def kept(card_text: str, low: float, high: float) -> bool:
        info = SimpleNamespace(card_data=ModelCard(card_text).data)
        return _is_emission_within_threshold(info, low, high)

    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        assert kept(card_of(Path(folder), 0.00015), 0.0001, 0.0002)
        assert kept(card_of(Path(folder), 1234.5678), 1000, 2000)
        assert kept(card_of(Path(folder), 1.9e-05), 1.5, 2.0)  # huggingface_hub's limitation, documented


# ----- Prometheus --------------------------------------------------------------------------------------------
def readme_promql() -> dict[str, str]:
    """The serving guide's PromQL expressions by what their comment says they are."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "serving.md").read_text()
    block = readme.split("```promql\n", 1)[1].split("```", 1)[0]
    return {line.split("  # ")[1]: line.split("  # ")[0] for line in block.strip().splitlines()}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_promql_expression_of_the_docs_gives_its_value_in_a_real_prometheus(tmp_path):
    """Debian's prometheus scrapes a ServingTracker every 0.5 s; each documented expression is asked through its API."""
    import shutil
    import subprocess
    import threading
    import urllib.parse
    import urllib.request

    from nn_tracker.serving import ServingTracker

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus is not installed; .ci/run installs it with apt")
    expressions = readme_promql()
    assert set(expressions) == {
        "IT power, W",
        "carbon per hour, gCO2e/h",
        "facility energy per query, J",
        "carbon per query, gCO2e",
    }
    tracker = ServingTracker(
        output_dir=tmp_path / "reports",
        sensors=sensor_set(ConstantPower("gpu:0", 300.0), ConstantPower("cpu:0", 100.0, "cpu", "CPU")),
        intensity_g_per_kwh=100,
        pue=1.5,
        embodied=(EmbodiedHardware("X1", embodied_kg_per_unit=1000, lifetime_years=1, utilisation=1),),
        checkpoint_interval_s=None,
        interval_s=0.1,
        prometheus_port=0,
        prometheus_addr="127.0.0.1",
    )
    config = tmp_path / "prometheus.yml"
    web = free_port()
    stop = threading.Event()

    def queries() -> None:
        while not stop.wait(0.01):
            tracker.count(1)

    tracker.start()
    if True:
        host, port = tracker.prometheus_address
        config.write_text(
            "global: {scrape_interval: 500ms, evaluation_interval: 500ms}\n"
            f"scrape_configs: [{{job_name: serving, static_configs: [{{targets: ['{host}:{port}']}}]}}]\n"
        )
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        counting = threading.Thread(target=queries, daemon=True)
        counting.start()

        def ask(expression: str) -> list:
            query = urllib.parse.urlencode({"query": expression})
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?{query}", timeout=10) as answer:
                    return json.loads(answer.read())["data"]["result"]
            except OSError:  # not listening yet
                return []

        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # a window full of samples (Prometheus takes seconds to start)
                seen = ask("count_over_time(nn_tracker_it_energy_joules_total[4s])")
                if seen and float(seen[0]["value"][1]) >= 8:
                    break
                time.sleep(0.5)
            results = {}
            for meaning, expression in expressions.items():
                data = ask(expression.replace("[5m]", "[4s]"))
                assert len(data) == 1, (meaning, data)  # one series: the labels match
                results[meaning] = float(data[0]["value"][1])
        finally:
            stop.set()
            server.terminate()
            server.wait(timeout=30)
            report = tracker.stop()
    carbon_per_s = report.total_carbon_g / report.duration_s
    queries_per_s = report.units["query"].count / report.duration_s
    assert results["IT power, W"] == pytest.approx(400, rel=0.1)
    assert results["carbon per hour, gCO2e/h"] == pytest.approx(carbon_per_s * 3600, rel=0.15)
    assert results["facility energy per query, J"] == pytest.approx(600 / queries_per_s, rel=0.2)
    assert results["carbon per query, gCO2e"] == pytest.approx(carbon_per_s / queries_per_s, rel=0.2)


# ----- experiment trackers: MLflow (file store) and transformers' console --------------------------------------
def mlflow_artifacts(uri: str, run_id: str) -> dict[str, bytes]:
    """The nn_tracker artifacts of an MLflow run, downloaded with MLflow's own client: {name: bytes}."""
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    names = [Path(f.path).name for f in client.list_artifacts(run_id, "nn_tracker")]
    if not names:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        local = Path(client.download_artifacts(run_id, "nn_tracker", folder))
        return {name: (local / name).read_bytes() for name in names}


@pytest.fixture
def file_store(monkeypatch):
    """MLflow's file store, and MLflow's process-wide tracking URI put back afterwards."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for such uses
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


def fit_once(tmp_path, callback, logger):
    """One epoch of the tiny Lightning model with ``callback`` and ``logger``."""
    from lightning_models import TinyRegressor, loader, pl

    pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        callbacks=[callback],
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(TinyRegressor(), loader(32))


def test_lightning_reports_are_artifacts_of_the_mlflow_run(tmp_path, file_store):
    from fakes import callback_options
    from lightning_models import pl

    from nn_tracker.integrations.lightning import NNTrackerCallback

    uri = (tmp_path / "mlruns").as_uri()
    logger = pl.loggers.MLFlowLogger(experiment_name="nnt", tracking_uri=uri)
    callback = NNTrackerCallback(formats=["json", "md", "csv"], **callback_options(tmp_path))
    fit_once(tmp_path, callback, logger)
    logged = mlflow_artifacts(uri, logger.run_id)
    written = {Path(p).name: Path(p).read_bytes() for p in callback.reports[-1].paths if not p.endswith(".csv")}
    assert logged == written and any(name.endswith(".json") for name in logged)
    assert any(p.endswith("emissions.csv") for p in callback.reports[-1].paths)  # written, but other runs' too
    # opted out: nothing
    quiet_logger = pl.loggers.MLFlowLogger(experiment_name="nnt", tracking_uri=uri)
    quiet = NNTrackerCallback(log_artifacts=False, **callback_options(tmp_path / "quiet"))
    fit_once(tmp_path, quiet, quiet_logger)
    assert mlflow_artifacts(uri, quiet_logger.run_id) == {}


def test_transformers_reports_are_artifacts_of_the_report_to_run_and_never_printed(
    tmp_path, monkeypatch, capfd, file_store
):
    from fakes import callback_options
    from hf_models import Sentences, arguments, tiny_bert
    from transformers import Trainer

    from nn_tracker.integrations.transformers import NNTrackerCallback

    uri = (tmp_path / "mlruns").as_uri()
    import mlflow

    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "nnt")
    callback = NNTrackerCallback(**callback_options(tmp_path))
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path / "out", report_to=["mlflow"], num_train_epochs=1, logging_steps=1),
        train_dataset=Sentences(32),
        callbacks=[callback],
    )
    trainer.train()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "nnt"]
    (run,) = client.search_runs([experiment.experiment_id])  # one run: our last figures opened no other
    logged = mlflow_artifacts(uri, run.info.run_id)
    written = {Path(p).name: Path(p).read_bytes() for p in callback.reports[-1].paths if not p.endswith(".csv")}
    assert logged == written
    assert "energy/total_kwh" in run.data.metrics  # the figures reached MLflow through report_to
    assert any("energy/total_kwh" in entry for entry in trainer.state.log_history)
    printed = capfd.readouterr().out
    assert "'loss'" in printed or "loss" in printed  # the Trainer printed its own logs (disable_tqdm=True)
    assert "energy/" not in printed and "carbon/" not in printed  # ours never went to stdout


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """W&B in offline mode, writing under ``tmp_path``; the run finished afterwards."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    yield wandb
    wandb.finish()


def test_reports_are_saved_with_the_wandb_run_of_lightning_and_transformers(tmp_path, wandb_offline):
    from fakes import callback_options
    from hf_models import Sentences, arguments, tiny_bert
    from lightning_models import pl
    from transformers import Trainer

    from nn_tracker.integrations import lightning, transformers

    logger = pl.loggers.WandbLogger(project="nnt", save_dir=str(tmp_path), offline=True)
    callback = lightning.NNTrackerCallback(**callback_options(tmp_path / "lightning"))
    fit_once(tmp_path, callback, logger)
    saved = Path(logger.experiment.dir)
    assert {Path(p).name for p in callback.reports[-1].paths} <= {p.name for p in saved.iterdir()}
    wandb_offline.finish()

    callback = transformers.NNTrackerCallback(**callback_options(tmp_path / "hf"))
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path / "out", report_to=["wandb"], num_train_epochs=1),
        train_dataset=Sentences(16),
        callbacks=[callback],
    )
    trainer.train()
    saved = Path(wandb_offline.run.dir)
    for path in callback.reports[-1].paths:
        assert (saved / Path(path).name).read_bytes() == Path(path).read_bytes()


# ----- TensorBoard: the logged curves as TensorBoard reads them ------------------------------------------------
def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar series under ``folder``, read with TensorBoard's own event reader, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[float]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        reader = EventAccumulator(str(events))
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            series.setdefault(tag, []).extend(e.value for e in sorted(reader.Scalars(tag), key=lambda e: e.step))
    return series


def test_tensorboard_reads_energy_curves_that_never_go_down_and_end_at_the_run_s_total(tmp_path, monkeypatch):
    from fakes import callback_options
    from hf_models import Sentences, arguments, tiny_bert
    from lightning_models import TinyRegressor, loader, pl
    from transformers import Trainer

    from nn_tracker.integrations import lightning, transformers

    callback = lightning.NNTrackerCallback(log_every_n_steps=1, **callback_options(tmp_path / "l"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        callbacks=[callback],
        logger=pl.loggers.TensorBoardLogger(tmp_path / "tb-lightning"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = TinyRegressor()
    trainer.fit(model, loader(64))
    trainer.test(model, loader(32))
    curve = tensorboard_scalars(tmp_path / "tb-lightning")["energy/total_kwh"]
    assert len(curve) > 4 and curve == sorted(curve)  # across fit and test: never down
    it_kwh = sum(json.loads(Path(r.paths[0]).read_text())["energy"]["it_kwh"] for r in callback.reports)
    assert curve[-1] == pytest.approx(it_kwh, rel=1e-6)  # the last point: the whole run

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb-hf"))
    callback = transformers.NNTrackerCallback(**callback_options(tmp_path / "hf"))
    hf = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path / "out", report_to=["tensorboard"]),
        train_dataset=Sentences(64),
        callbacks=[callback],
    )
    hf.train()
    hf.evaluate(Sentences(16, seed=1))
    curve = tensorboard_scalars(tmp_path / "tb-hf")["train/energy/total_kwh"]
    assert len(curve) > 4 and curve == sorted(curve)
    it_kwh = sum(json.loads(Path(r.paths[0]).read_text())["energy"]["it_kwh"] for r in callback.reports)
    assert curve[-1] == pytest.approx(it_kwh, rel=1e-6)
