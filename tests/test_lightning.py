"""NNTrackerCallback with a real Trainer on CPU: phases, units, logged metrics, resume, failure."""

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
from fakes import callback_options
from lightning_models import TinyRegressor, loader, pl

from nn_tracker import ValidationError
from nn_tracker.integrations.lightning import NNTrackerCallback, batch_size


def trainer(tmp_path, callback, **kwargs):
    kwargs.setdefault("max_epochs", 2)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        default_root_dir=tmp_path,
        logger=pl.loggers.CSVLogger(tmp_path, name="logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kwargs,
    )


def read_report(callback):
    return json.loads(Path(callback.reports[-1].paths[0]).read_text())


def test_fit_phases_units_and_logged_metrics(tmp_path):
    callback = NNTrackerCallback(log_every_n_steps=2, **callback_options(tmp_path))
    trainer(tmp_path, callback).fit(TinyRegressor(), loader(64), loader(32))
    data = read_report(callback)
    assert data["status"] == "completed"
    phases = data["phases"]
    assert set(phases) == {"training", "training/validation"}
    assert phases["training"]["units"] == {"sample": 128, "batch": 8}  # 64 samples x 2 epochs
    # sanity check (2 batches) + 2 epochs x 32 samples
    assert phases["training/validation"]["units"]["sample"] == 32 * 2 + 32
    assert phases["training"]["inclusive_energy_kwh"] >= phases["training/validation"]["energy_kwh"] > 0
    # per training sample: training's own energy; validation samples divide validation's, never mixed
    per_sample = data["units"]["sample"]["by_phase"]
    assert per_sample["training"]["count"] == 128 and per_sample["training/validation"]["count"] == 96
    assert per_sample["training"]["facility_energy_kwh_per_unit"] == pytest.approx(
        phases["training"]["energy_kwh"] / 128
    )
    assert per_sample["training/validation"]["facility_energy_kwh_per_unit"] == pytest.approx(
        phases["training/validation"]["energy_kwh"] / 96
    )
    assert data["footprint"]["training_energy_kwh"] > 0 and data["footprint"]["querying_energy_kwh"] == 0
    with open(next((tmp_path / "logs").rglob("metrics.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    logged = [r for r in rows if r.get("energy/total_kwh")]
    assert {"energy/total_kwh", "energy/cpu_kwh", "power/total_w", "carbon/operational_g"} <= set(rows[0])
    steps = [int(r["step"]) for r in logged]
    assert {2, 4, 6, 8} <= set(steps)
    values = [float(r["energy/total_kwh"]) for r in logged]
    assert values == sorted(values) and values[-1] > 0


def test_each_stage_s_report_covers_its_own_stage_and_lists_the_others(tmp_path):
    callback = NNTrackerCallback(**callback_options(tmp_path))
    trainer_ = trainer(tmp_path, callback, max_epochs=1)
    model = TinyRegressor()
    trainer_.fit(model, loader(32))
    trainer_.test(model, loader(48))
    trainer_.predict(model, loader(16))
    assert len(callback.reports) == 3
    fit, test, predict = (r.to_dict() for r in callback.reports)
    assert set(fit["phases"]) == {"training"} and set(predict["phases"]) == {"querying", "querying/predict"}
    assert test["phases"]["querying/test"]["units"]["sample"] == 48
    assert predict["phases"]["querying/predict"]["units"]["sample"] == 16
    assert test["footprint"]["training_energy_kwh"] == 0  # fit's energy is in fit's report only
    assert [r["stage"] for r in predict["related_runs"]] == ["fit", "test"]
    assert predict["related_runs"][0]["it_energy_kwh"] == fit["energy"]["it_kwh"]
    # the header, the plot and the totals cover the same stage
    assert predict["timeline"]["points"][-1]["end_s"] == pytest.approx(predict["duration_s"], abs=0.02)
    assert [s.stage for s in callback.stages] == ["fit", "test", "predict"]
    assert predict["footprint"]["querying_energy_kwh"] > 0 and fit["footprint"]["training_energy_kwh"] > 0
    assert len({r.to_dict()["run_id"] for r in callback.reports}) == 3


@pytest.mark.parametrize("same_instance", [False, True])
def test_resume_gives_exactly_the_totals_of_an_uninterrupted_run(tmp_path, same_instance):
    # no sanity check: a resumed fit runs it again, real work an uninterrupted run does not do
    uninterrupted = NNTrackerCallback(**callback_options(tmp_path / "u"))
    trainer(tmp_path / "u", uninterrupted, max_epochs=2, num_sanity_val_steps=0).fit(
        TinyRegressor(), loader(64), loader(32)
    )
    expected = read_report(uninterrupted)

    callback = NNTrackerCallback(**callback_options(tmp_path))
    first = trainer(tmp_path / "a", callback, max_epochs=1, num_sanity_val_steps=0)
    first.fit(TinyRegressor(), loader(64), loader(32))
    checkpoint = next((tmp_path / "a").rglob("*.ckpt"))
    before = read_report(callback)
    # the same callback (it still holds the first fit's totals in memory) or a fresh one
    resumed = callback if same_instance else NNTrackerCallback(**callback_options(tmp_path))
    trainer(tmp_path / "b", resumed, max_epochs=2, num_sanity_val_steps=0).fit(
        TinyRegressor(), loader(64), loader(32), ckpt_path=str(checkpoint)
    )
    after = read_report(resumed)
    assert {p: v["units"] for p, v in after["phases"].items()} == {
        p: v["units"] for p, v in expected["phases"].items()
    }  # 128 training samples, not 192
    assert after["phases"]["training"]["units"]["sample"] == 128
    assert after["energy"]["it_kwh"] > before["energy"]["it_kwh"]
    assert after["duration_s"] > before["duration_s"]
    assert sum("earlier sessions" in note for note in after["notes"]) == 1


def test_exception_in_training_step_leaves_a_failed_report(tmp_path):
    callback = NNTrackerCallback(**callback_options(tmp_path))
    with pytest.raises(RuntimeError, match="exploding gradients"):
        trainer(tmp_path, callback).fit(TinyRegressor(fail_at_step=2), loader(64))
    data = read_report(callback)
    assert data["status"] == "failed"
    assert data["error"] == {"type": "RuntimeError", "message": "exploding gradients"}
    assert data["phases"]["training"]["units"]["batch"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps must be an integer >= 1, got 0"),
        ({"pue": 0.3}, "pue must be >= 1, got 0.3"),
        ({"colour": "red"}, "tracker_options"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, message):
    with pytest.raises(ValidationError) as info:
        NNTrackerCallback(**kwargs)
    assert message in str(info.value)


def test_batch_size_of_common_batch_shapes():
    from collections import UserDict

    import torch

    assert batch_size(torch.zeros(5, 3)) == 5
    assert batch_size((torch.zeros(7, 2), torch.zeros(7))) == 7
    assert batch_size({"input_ids": torch.zeros(4, 9)}) == 4
    assert batch_size("text") == 1

    class BatchEncoding(UserDict):  # what a Hugging Face tokenizer returns (a UserDict, not a dict)
        pass

    encoded = BatchEncoding(input_ids=torch.zeros(16, 128), attention_mask=torch.ones(16, 128))
    assert batch_size(encoded) == 16
    assert batch_size({"loss_scale": torch.tensor(2.0), "attention_mask": torch.zeros(8, 3)}) == 8  # 0-d skipped
    assert batch_size([torch.tensor(1.0), torch.zeros(6, 2)]) == 6  # the first element is 0-d
    assert batch_size(["a photo of a cat", "a dog", "a tree"]) == 3  # one string per sample
    assert batch_size([torch.tensor(1), torch.tensor(0)]) == 2  # one 0-d label per sample
    assert batch_size(torch.tensor(3.0)) == 1
    assert batch_size({"ids": [[1, 2], [3, 4]]}) == 1  # nothing with a shape: documented as 1


def test_importing_nn_tracker_does_not_import_lightning():
    import subprocess
    import sys

    code = (
        "import sys, nn_tracker\n"
        "print(any(m.split('.')[0] in ('lightning', 'pytorch_lightning', 'torch') for m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_logged_series_of_one_callback_over_a_fit_a_resumed_fit_and_a_test_count_each_session_once(tmp_path):
    """The same callback: fit, fit resumed from its checkpoint, then test from a checkpoint (which carries it)."""
    callback = NNTrackerCallback(**callback_options(tmp_path))
    trainer(tmp_path / "a", callback, max_epochs=1, num_sanity_val_steps=0).fit(TinyRegressor(), loader(64), loader(32))
    first = next((tmp_path / "a").rglob("*.ckpt"))
    second_trainer = trainer(tmp_path / "a", callback, max_epochs=2, num_sanity_val_steps=0)
    second_trainer.fit(TinyRegressor(), loader(64), loader(32), ckpt_path=str(first))
    second_trainer.test(TinyRegressor(), loader(32), ckpt_path=str(next((tmp_path / "a").rglob("epoch=1*.ckpt"))))
    own = [r.session.it_energy_kwh for r in callback.reports]  # each stage's own session
    logged = []
    for path in sorted((tmp_path / "a" / "logs").rglob("metrics.csv")):  # version_0: the first trainer's
        with open(path) as handle:
            logged += [float(r["energy/total_kwh"]) for r in csv.DictReader(handle) if r.get("energy/total_kwh")]
    assert logged == sorted(logged)
    assert logged[-1] == pytest.approx(sum(own), rel=1e-9)
