"""The typed report: one codec writes and reads it, the schema document is generated from its types."""

import json
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_fixture import deterministic_report, stable

from nn_tracker.core.errors import ValidationError
from nn_tracker.report import document
from nn_tracker.report.codec import from_json, is_record, iso_time, to_json
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
    assert list(data) == [name for name in Report.__record_fields__ if name not in omitted]
    assert list(data["devices"][0]) == list(document.Device.__record_fields__)
    assert "paths" not in data and "hostname" not in data["machine"]  # not part of it; identity only on request


def test_the_schema_document_is_generated_from_the_types():
    text = DOCS.read_text()
    start = text.index("<!-- schema: generated")
    block = text[text.index("\n", start) + 1 : text.index("<!-- schema: end -->")]
    assert block == document.schema_table(), "docs/report-schema.md is stale: paste document.schema_table()"
    for path in ("`devices[].energy_kwh`", "`units.<kind>.by_phase.<phase>.carbon_g_per_unit`", "`timeline.points`"):
        assert f"| {path} |" in block


def test_every_field_is_documented():
    def types(hint, seen):
        if not is_record(hint):
            for inner in typing.get_args(hint):
                types(inner, seen)
            return seen
        if hint in seen:
            return seen
        seen.add(hint)
        hints = typing.get_type_hints(hint)
        for name, item in hint.__record_fields__.items():
            assert item.doc.strip(), f"{hint.__name__}.{name} has no meaning"
            types(hints[name], seen)
        return seen

    assert len(types(Report, set())) >= 25  # every report type is reached


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
        (("duration_s",), 10**400, "report.duration_s must be a finite number"),
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


def test_report_types_compare_build_and_show_their_fields(report):
    """The shared ``record`` methods: equality over the fields (not where it was written), keyword-only init."""
    other = from_json(Report, report.to_dict(), "report")
    assert other == report and other.paths != report.paths  # where it was written is not compared
    other.energy.it_kwh += 1e-9
    assert other != report
    assert document.RunError(type="E", message="m") != document.RunError(type="E", message="n")
    assert repr(document.RunError(type="E", message="m")) == "RunError(type='E', message='m')"
    assert document.Settings().training_type == "pre-training" and document.Report.__hash__ is None
    assert document.Machine().pid is None and document.Requests.__record_fields__["count"].required
    assert not document.Requests.__record_fields__["histogram"].required
    with pytest.raises(TypeError, match="missing argument 'message'"):
        document.RunError(type="E")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        document.RunError(type="E", message="m", colour="red")

    class MyMachine(document.Machine):  # a reader's subclass keeps the fields
        pass

    assert MyMachine(os="x").os == "x" and to_json(MyMachine(os="x"))["os"] == "x"
    first, second = document.Report.__record_fields__["related_runs"].factory(), document.Machine()
    assert first == [] and document.Report.__record_fields__["machine"].factory is document.Machine
    assert second is not document.Machine()  # a fresh default per instance


def what_datetime_writes(wall_s: float) -> str:
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(wall_s, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):
        return "refused"


def what_iso_time_writes(wall_s: float) -> str:
    try:
        return iso_time(wall_s)
    except (ValueError, OverflowError, OSError):
        return "refused"


@given(
    st.floats(min_value=-2e10, max_value=2e11, allow_nan=False)
    | st.integers(-(2**34), 2**37).map(float)
    | st.floats(min_value=-1e13, max_value=1e13)  # beyond the years 1-9999 (and NaN): refused by both
    | st.floats()
)
@settings(max_examples=500, deadline=None)
def test_a_report_time_is_what_datetime_writes(wall_s):
    """The report's times skip `datetime` (its import is ~2 ms of a cold start); they must read the same,
    rounding included (to the microsecond, half to even, then cut to the millisecond), and a time
    `datetime` cannot write (a year past 9999) is refused, never written for the reader to refuse."""
    assert what_iso_time_writes(wall_s) == what_datetime_writes(wall_s)


@pytest.mark.parametrize(
    "wall_s",
    [
        0.0,
        0.0005,
        0.9999995,
        1.0004995,
        -0.0000004,
        1_767_225_599.9999996,
        253402300799.9999,
        253402300800.0,
        -62135596800.0,
        -62135596800.5,
        3e11,
        -1e11,
        float("nan"),
        float("inf"),
        1e20,
    ],
)
def test_a_report_time_rounds_as_datetime_at_the_edges(wall_s):
    assert what_iso_time_writes(wall_s) == what_datetime_writes(wall_s)
