"""NNTrackerCallback for Hugging Face transformers: a real Trainer on CPU with a tiny random BERT."""

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fakes import callback_options
from hf_models import Sentences, arguments, tiny_bert
from test_distributed import double_counting_problems
from transformers import Trainer, TrainerCallback

from nn_tracker import ValidationError
from nn_tracker.integrations.transformers import NNTrackerCallback

HERE = Path(__file__).resolve().parent


class Recorder(TrainerCallback):
    """Stands for a report_to backend (W&B, TensorBoard, MLflow...): they all receive `on_log`."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def read(report):
    return json.loads(Path(report.paths[0]).read_text())


def test_train_with_nested_evaluation_then_predict(tmp_path):
    recorder = Recorder()
    callback = NNTrackerCallback(**callback_options(tmp_path))
    train, evaluation, test = Sentences(64), Sentences(32, seed=1), Sentences(48, seed=2)
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path / "out", eval_strategy="epoch"),
        train_dataset=train,
        eval_dataset=evaluation,
        callbacks=[recorder, callback],  # the backend comes first: it only sees what goes through trainer.log
    )
    trainer.train()
    trainer.predict(test)

    assert [s.stage for s in callback.stages] == ["train", "predict"]
    fit, predict = (read(r) for r in callback.reports)
    assert fit["status"] == predict["status"] == "completed"
    assert set(fit["phases"]) == {"training", "training/validation"}
    assert fit["phases"]["training"]["units"] == {"sample": 128, "batch": 16, "token": 2 * train.tokens()}
    assert fit["phases"]["training/validation"]["units"] == {"sample": 64, "batch": 4, "token": 2 * evaluation.tokens()}
    assert fit["phases"]["training/validation"]["energy_kwh"] > 0
    assert predict["phases"]["querying/predict"]["units"] == {"sample": 48, "batch": 3, "token": test.tokens()}
    assert predict["footprint"]["querying_energy_kwh"] > 0 and predict["footprint"]["training_energy_kwh"] == 0
    assert [r["stage"] for r in predict["related_runs"]] == ["train"]

    logged = [entry for entry in recorder.logs if "energy/total_kwh" in entry]
    assert len(logged) >= 16 // 2  # every logging_steps=2 training steps, and at the end of each stage
    assert {"energy/cpu_kwh", "energy/facility_kwh", "power/total_w", "carbon/total_g"} <= set(logged[-1])
    assert not any("energy/gpu_kwh" in e for e in logged)  # measured nowhere: not logged
    series = [e["energy/total_kwh"] for e in logged]  # run-level over the stages: never down
    assert series == sorted(series)
    assert series[-2] == pytest.approx(fit["energy"]["it_kwh"], rel=1e-9)  # train's last log: its report
    assert series[-1] == pytest.approx(fit["energy"]["it_kwh"] + predict["energy"]["it_kwh"], rel=1e-9)
    assert any("energy/total_kwh" in e for e in trainer.state.log_history)  # the Trainer's own log


def test_evaluate_of_its_own_is_validation_and_the_bare_model_is_never_tracked(tmp_path):
    callback = NNTrackerCallback(**callback_options(tmp_path))
    model = tiny_bert()
    data = Sentences(40, seed=3)
    trainer = Trainer(model=model, args=arguments(tmp_path / "out"), eval_dataset=data, callbacks=[callback])
    model.eval()
    with torch.no_grad():
        model(**data.batch(8))  # the user's own inference, outside the Trainer
    assert callback.reports == []
    trainer.evaluate()
    with torch.no_grad():
        model(**data.batch(8))
    assert len(callback.reports) == 1
    report = read(callback.reports[0])
    assert set(report["phases"]) == {"validation"}
    assert report["phases"]["validation"]["units"] == {"sample": 40, "batch": 3, "token": data.tokens()}


def test_each_of_several_evaluation_datasets_is_a_stage_of_its_own(tmp_path):
    """The Trainer evaluates each dataset of a dict on its own, with an `on_evaluate` for each."""
    callback = NNTrackerCallback(**callback_options(tmp_path))
    datasets = {"a": Sentences(16, seed=4), "b": Sentences(24, seed=5)}
    trainer = Trainer(model=tiny_bert(), args=arguments(tmp_path / "out"), eval_dataset=datasets, callbacks=[callback])
    trainer.evaluate()
    first, second = (read(r) for r in callback.reports)
    assert first["phases"]["validation"]["units"]["sample"] == 16
    assert second["phases"]["validation"]["units"]["sample"] == 24
    assert [r["run_id"] for r in second["related_runs"]] == [first["run_id"]]


def test_a_resumed_training_continues_the_checkpoint_s_totals(tmp_path):
    data = Sentences(64)
    first = NNTrackerCallback(**callback_options(tmp_path))
    args = arguments(tmp_path / "out", max_steps=8, save_strategy="steps", save_steps=4, num_train_epochs=1)
    Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[first]).train()
    assert read(first.reports[0])["phases"]["training"]["units"]["sample"] == 64

    saved = json.loads((tmp_path / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    ledger = saved["stateful_callbacks"]["NNTrackerCallback"]["attributes"]["_saved_totals"]
    (record,) = ledger["records"]  # one process, one session so far
    assert record["units"]["training"]["sample"] == 32 and record["units"]["training"]["batch"] == 4
    assert 0 < record["units"]["training"]["token"] < data.tokens()
    assert "host" not in record and record["node"].startswith("node-")  # checkpoints get published

    second = NNTrackerCallback(**callback_options(tmp_path))
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[second])
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    resumed = read(second.reports[0])
    units = resumed["phases"]["training"]["units"]
    assert units["sample"] == 64  # 32 before the checkpoint + 32 after
    assert units["token"] == data.tokens()  # one epoch, every sample once, resumed where it stopped
    assert any("measured in earlier sessions" in note for note in resumed["notes"])
    earlier, current = resumed["sessions"]
    assert earlier["units"]["sample"] == 32 and current["units"]["sample"] == 32 and current["current"]
    assert resumed["duration_s"] == pytest.approx(earlier["duration_s"] + current["duration_s"], rel=1e-12)
    assert resumed["energy"]["it_kwh"] == pytest.approx(earlier["it_energy_kwh"] + current["it_energy_kwh"])


def test_resume_when_the_trainer_rebuilds_its_callbacks_from_the_checkpoint(tmp_path):
    data = Sentences(64)
    args = arguments(
        tmp_path / "out",
        max_steps=8,
        save_strategy="steps",
        save_steps=4,
        restore_callback_states_from_checkpoint=True,
    )
    first = NNTrackerCallback(**callback_options(tmp_path, project_name="first"))
    Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[first]).train()
    given = NNTrackerCallback(**callback_options(tmp_path, project_name="second"))
    trainer = Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[given])
    trainer.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    rebuilt = next(c for c in trainer.callback_handler.callbacks if isinstance(c, NNTrackerCallback))
    assert rebuilt is not given and given.reports == []  # the Trainer swapped it; its hook went with it
    report = read(rebuilt.reports[0])
    assert report["project_name"] == "first"  # rebuilt from the checkpoint's arguments, as the Trainer does
    assert report["phases"]["training"]["units"]["sample"] == 64


def test_a_damaged_saved_state_is_a_note_not_a_crash(tmp_path):
    data = Sentences(32)
    args = arguments(tmp_path / "out", max_steps=4, save_strategy="steps", save_steps=2)
    Trainer(
        model=tiny_bert(), args=args, train_dataset=data, callbacks=[NNTrackerCallback(**callback_options(tmp_path))]
    ).train()
    state_file = tmp_path / "out" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stateful_callbacks"]["NNTrackerCallback"]["attributes"]["_saved_totals"] = {"units": "many"}
    state_file.write_text(json.dumps(state))
    callback = NNTrackerCallback(**callback_options(tmp_path))
    Trainer(model=tiny_bert(), args=args, train_dataset=data, callbacks=[callback]).train(
        resume_from_checkpoint=str(state_file.parent)
    )
    report = read(callback.reports[0])
    assert report["status"] == "completed" and report["phases"]["training"]["units"]["sample"] == 16
    assert any("checkpoint's nn_tracker records were not used" in note for note in report["notes"])


class Exploding(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise RuntimeError("out of memory (simulated)")


def test_a_training_that_raises_then_an_evaluation(tmp_path):
    callback = NNTrackerCallback(**callback_options(tmp_path))
    trainer = Trainer(
        model=tiny_bert(),
        args=arguments(tmp_path / "out"),
        train_dataset=Sentences(64),
        eval_dataset=Sentences(16, seed=1),
        callbacks=[callback, Exploding()],
    )
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.train()
    (failed,) = (read(r) for r in callback.reports)  # ended by the exception, not left running
    assert failed["status"] == "failed" and failed["error"]["message"] == "out of memory (simulated)"
    trainer.evaluate()
    failed, evaluation = (read(r) for r in callback.reports)
    assert failed["phases"]["training"]["units"]["sample"] == 24
    assert evaluation["status"] == "completed" and set(evaluation["phases"]) == {"validation"}


UNCAUGHT = """
import sys
sys.path.insert(0, {tests!r})
from fakes import callback_options
from hf_models import Sentences, arguments, tiny_bert
from test_distributed import double_counting_problems
from transformers import Trainer, TrainerCallback
from nn_tracker.integrations.transformers import NNTrackerCallback

class Exploding(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("simulated crash")

callback = NNTrackerCallback(output_dir={out!r}, location="FR", gpus=False, checkpoint_interval_s=None)
Trainer(model=tiny_bert(), args=arguments({out!r}), train_dataset=Sentences(32),
        callbacks=[callback, Exploding()]).train()
"""


def test_a_crash_that_ends_the_program_is_a_failed_report(tmp_path):
    script = UNCAUGHT.format(tests=str(HERE), out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "simulated crash" in result.stderr
    (report,) = tmp_path.glob("nn_tracker-*.json")
    data = json.loads(report.read_text())
    assert data["status"] == "failed" and data["error"]["message"] == "simulated crash"  # not "completed" at exit


def test_a_training_that_raises_and_is_caught_is_failed_never_completed(tmp_path):
    caught = UNCAUGHT.replace(
        "callbacks=[callback, Exploding()]).train()",
        "callbacks=[callback, Exploding()])\ntry:\n    trainer.train()\nexcept RuntimeError:\n    pass",
    ).replace("Trainer(model=tiny_bert()", "trainer = Trainer(model=tiny_bert()")
    result = subprocess.run(
        [sys.executable, "-c", caught.format(tests=str(HERE), out=str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = tmp_path.glob("nn_tracker-*.json")
    data = json.loads(report.read_text())
    assert data["status"] == "failed" and data["error"]["message"] == "simulated crash"


def test_the_tracked_model_can_still_be_copied_and_pickled(tmp_path):
    callback = NNTrackerCallback(**callback_options(tmp_path))
    model = tiny_bert()
    Trainer(model=model, args=arguments(tmp_path / "out"), callbacks=[callback])
    copied = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    copied.eval()
    restored.eval()
    batch = Sentences(4).batch(4)
    with torch.no_grad():
        copied(**batch), restored(**batch)
    assert callback.reports == []


def test_only_one_hook_per_model_when_a_callback_replaces_another(tmp_path):
    model = tiny_bert()
    Trainer(model=model, args=arguments(tmp_path / "out"), callbacks=[NNTrackerCallback(**callback_options(tmp_path))])
    Trainer(model=model, args=arguments(tmp_path / "out"), callbacks=[NNTrackerCallback(**callback_options(tmp_path))])
    assert len(model._forward_pre_hooks) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"log_metrics": "yes"}, "log_metrics must be true or false"),
        ({"locaton": "FR"}, "must be TrackerConfig fields"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        NNTrackerCallback(**kwargs)


def ddp_job(tmp_path, env, *mode):
    """Run ddp_transformers_job.py under torchrun with 2 processes; it must succeed."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "ddp_transformers_job.py"),
            str(tmp_path),
            *mode,
        ],
        env=dict(env, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)])),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_ddp_writes_one_report_on_rank_0_and_counts_each_device_once(tmp_path, fake_gpu_env):
    ddp_job(tmp_path, fake_gpu_env)
    reports = list((tmp_path / "reports").glob("*.json"))
    assert [p.name for p in reports] == ["nn_tracker-ddp.json"]  # global rank 0 only
    data = json.loads(reports[0].read_text())
    assert double_counting_problems(data, {"GPU-aaaa": 300.0, "GPU-bbbb": 200.0}, nodes=1) == []
    assert any("Merged from 2 processes on 1 node(s)" in n for n in data["notes"])
    assert data["phases"]["training"]["units"]["sample"] == 2 * 64  # 2 epochs, the ranks' shards summed
    logged = json.loads((tmp_path / "logged.json").read_text())
    gpu_kwh = sum(d["energy_kwh"] for d in data["devices"] if d["component"] == "gpu")
    assert logged[-1]["energy/gpu_kwh"] == pytest.approx(gpu_kwh, rel=1e-9)  # summed over both processes


def test_a_resumed_multi_node_ddp_training_continues_the_run(tmp_path, fake_gpu_env):
    """torchrun, 2 simulated nodes with a GPU each: train, checkpoint, resume, train (saving again)."""
    from test_distributed import double_counting_problems

    for mode in ("first", "resume"):
        ddp_job(tmp_path, fake_gpu_env, mode)
    data = json.loads((tmp_path / "reports" / "nn_tracker-resume.json").read_text())
    assert data["status"] == "completed"
    earlier, current = data["sessions"]
    assert earlier["processes"] == current["processes"] == 2
    assert earlier["units"]["sample"] == current["units"]["sample"] == 4 * 8 * 2  # 4 steps x 8 x 2 ranks each
    assert data["duration_s"] == pytest.approx(earlier["duration_s"] + current["duration_s"], rel=1e-12)
    assert double_counting_problems(data, {"GPU-r0": 200.0, "GPU-r1": 300.0}, nodes=2) == []
    assert len(data["nodes"]) == 2 and not any(n.startswith("Not merged") for n in data["notes"])
