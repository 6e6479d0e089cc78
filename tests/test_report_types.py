"""The typed report: one codec writes and reads it, the schema document is generated from its types."""

import dataclasses
import json
from pathlib import Path

import pytest
from report_fixture import deterministic_report, stable

from nn_tracker.errors import ValidationError
from nn_tracker.report import document
from nn_tracker.report.codec import from_json
from nn_tracker.report.document import Report
from nn_tracker.report.schema import upgrade

DOCS = Path(__file__).resolve().parents[1] / "docs" / "report-schema.md"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return deterministic_report(tmp_path_factory.mktemp("typed")).report()


def test_a_report_reads_back_equal_to_itself(report):
    data = json.loads(json.dumps(report.to_dict()))
    again = from_json(Report, data, "report")
    assert again == report  # every field, nested types included
    assert again.to_dict() == data
    assert isinstance(again.devices[0], document.Device) and isinstance(again.footprint, document.Footprint)
    assert isinstance(again.units["sample"].by_phase["training"], document.UnitPhase)


def test_the_json_keys_are_the_fields_in_order(report):
    data = report.to_dict()
    omitted = {"requests"}  # left out when None (a run that served no request())
    assert list(data) == [f.name for f in dataclasses.fields(Report) if "doc" in f.metadata and f.name not in omitted]
    assert list(data["devices"][0]) == [f.name for f in dataclasses.fields(document.Device)]
    assert "paths" not in data and "hostname" not in data["machine"]  # not part of it; identity only on request


def test_the_schema_document_is_generated_from_the_types():
    text = DOCS.read_text()
    start = text.index("<!-- schema: generated")
    block = text[text.index("\n", start) + 1 : text.index("<!-- schema: end -->")]
    assert block == document.schema_table(), "docs/report-schema.md is stale: paste document.schema_table()"
    for path in ("`devices[].energy_kwh`", "`units.<kind>.by_phase.<phase>.carbon_g_per_unit`", "`timeline.points`"):
        assert f"| {path} |" in block


def test_every_field_is_documented():
    def types(kind, seen):
        if kind in seen:
            return
        seen.add(kind)
        for item in dataclasses.fields(kind):
            if "doc" not in item.metadata:
                continue
            assert item.metadata["doc"].strip(), f"{kind.__name__}.{item.name} has no meaning"
            for inner in getattr(item.type, "__args__", ()):
                if dataclasses.is_dataclass(inner):
                    types(inner, seen)

    types(Report, set())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("devices", 0, "energy_kwh"), "x", "report.devices[0].energy_kwh must be a finite number or null, got 'x'"),
        (("duration_s",), -1, "report.duration_s must be >= 0, got -1"),
        (("status",), "done", "report.status must be one of running, completed, failed, terminated, got 'done'"),
        (("started_at",), "yesterday", "report.started_at must be an ISO 8601 time, got 'yesterday'"),
        (("datacentres",), [], "report.datacentres must be a list with at least 1 item(s), got []"),
        (("units", "sample", "by_phase", "training", "count"), True, "must be a finite number"),
        (("sampler", "ticks"), 2.5, "report.sampler.ticks must be a whole number or null, got 2.5"),
        (("settings", "training_type"), "self-taught", "must be one of pre-training, fine-tuning"),
        (("phases", "training"), [], "report.phases.training must be an object, got []"),
        (("footprint", "embodied", 0, "amortised_g"), float("nan"), "must be a finite number"),
        (("datacentres", 0, "default_location"), "no", "must be true or false"),
        (("notes",), [3], "report.notes[0] must be a string, got 3"),
    ],
)
def test_a_field_that_breaks_its_type_is_named(report, path, value, message):
    data = stable(report.to_dict())
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as info:
        upgrade(data)
    assert message in str(info.value)


def test_a_missing_required_field_is_named_and_an_optional_one_defaults(report):
    data = stable(report.to_dict())
    del data["footprint"]["embodied"][0]["amortised_g"]
    with pytest.raises(ValidationError, match=r"report\.footprint\.embodied\[0\]\.amortised_g is missing"):
        upgrade(data)
    data = stable(report.to_dict())
    del data["devices"][0]["readings"], data["machine"], data["related_runs"]
    typed = upgrade(data)
    assert typed.devices[0].readings is None and typed.machine.os is None and typed.related_runs == []


def test_a_long_bad_value_is_shortened_in_the_error(report):
    data = stable(report.to_dict())
    data["settings"]["training_type"] = "x" * 5000
    with pytest.raises(ValidationError) as info:
        upgrade(data)
    assert str(info.value).startswith("report.settings.training_type must be one of") and len(str(info.value)) < 200
