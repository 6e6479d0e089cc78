"""Property-based fuzzing of every entry point that takes user data: one clear error, never a crash."""

import copy
import json
import os
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn_tracker import NNTrackerError, TrackerConfig
from nn_tracker.cli import main
from nn_tracker.config import options
from nn_tracker.footprint.catalogue import bundled
from nn_tracker.footprint.intensity_series import IntensitySeries
from nn_tracker.integrations.impact_framework import run_manifest
from nn_tracker.report import writers
from nn_tracker.report.schema import upgrade

SEED = Path(__file__).resolve().parent / "data" / "nn-ci-manifest.yml"  # the original NN-CI demo manifest
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [option.name for option in options() if option.name != "write_report"]  # every declared option


def one_line(error: BaseException) -> None:
    assert isinstance(error, NNTrackerError), repr(error)
    assert str(error) and "\n" not in str(error)


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), anything, min_size=1, max_size=3))
def test_configuration_values(options):
    try:
        TrackerConfig(write_report=False, **options)
    except Exception as error:  # noqa: BLE001 - the property: only our one-line errors
        one_line(error)


@FUZZ
@given(st.text(max_size=30))
def test_location_and_hardware_names(name):
    for lookup in (bundled().location, bundled().hardware_spec):
        try:
            lookup(name)
        except Exception as error:  # noqa: BLE001
            one_line(error)


CLI_TOKENS = st.sampled_from(
    [
        "--hours",
        "--days",
        "--count",
        "--pue",
        "--location",
        "--intensity",
        "--power-w",
        "--hardware",
        "--format",
        "--units",
        "--transport-factor",
        "--lifetime-years",
        "--utilisation",
        "--phase",
        "1",
        "-1",
        "0",
        "nan",
        "inf",
        "FR",
        "A100 SXM",
        "json",
        "x",
    ]
)


@FUZZ
@given(tokens=st.lists(CLI_TOKENS | st.text(max_size=6), max_size=8))
def test_cli_arguments(tokens, capsys):
    try:
        code = main(["estimate", *tokens])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.text(alphabet="0123456789-:TZ.,+e abc", max_size=25), min_size=1, max_size=3), max_size=6
    ),
    header=st.sampled_from(["timestamp,carbon_intensity", "Datetime (UTC),value", "when,what", ""]),
)
def test_intensity_csvs(rows, header, tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "series.csv"
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]))
    try:
        series = IntensitySeries.from_csv(path)
    except Exception as error:  # noqa: BLE001
        one_line(error)
    else:
        assert len(series.times_s) >= 2 and all(v >= 0 for v in series.values_g_per_kwh)


@FUZZ
@given(anything)
def test_arbitrary_manifests(document):
    try:
        run_manifest(document)
    except Exception as error:  # noqa: BLE001
        one_line(error)


def paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def mutated(document, data):
    document = copy.deepcopy(document)
    spots = list(paths(document))
    for _ in range(data.draw(st.integers(1, 3))):
        spot = data.draw(st.sampled_from(spots))
        parent = document
        try:
            for key in spot[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(spot[-1], None)
            else:
                parent[spot[-1]] = data.draw(anything)
        except (KeyError, IndexError, TypeError):
            continue
    return document


@FUZZ
@given(st.data())
def test_mutated_seed_manifest(data):
    try:
        run_manifest(mutated(yaml.safe_load(SEED.read_text()), data))
    except Exception as error:  # noqa: BLE001
        one_line(error)


@pytest.fixture(scope="module")
def saved_report(tmp_path_factory):
    from report_fixture import deterministic_report

    tracker = deterministic_report(tmp_path_factory.mktemp("report"))
    return json.loads(json.dumps(tracker.report().to_dict()))


@FUZZ
@given(data=st.data())
def test_mutated_saved_reports_render_or_fail_clearly(saved_report, data, tmp_path_factory):
    document = mutated(saved_report, data)
    path = tmp_path_factory.mktemp("r") / "run.json"
    path.write_text(json.dumps(document, default=str))
    out = path.with_name("out.txt")
    for fmt in writers.FORMATS:
        try:
            code = main(["report", str(path), "--format", fmt, "-o", str(out)])
        except SystemExit as exit_:
            code = exit_.code
        assert code in (0, 2)
        if code == 2 and fmt != "csv":
            assert not out.exists()  # nothing half-written
        out.unlink(missing_ok=True)


@FUZZ
@given(anything)
def test_arbitrary_json_as_a_report(document):
    try:
        upgrade(document)
    except Exception as error:  # noqa: BLE001
        one_line(error)


# ----- from bytes, through the command line: exit 0 with valid output, or exit 2 with one line, quickly -----
HOSTILE = st.one_of(
    st.binary(max_size=300),  # anything at all: invalid UTF-8, NUL bytes, UTF-16...
    st.text(max_size=200).map(lambda t: t.encode("utf-16")),
    st.integers(1, 3000).map(lambda n: ("[" * n + "]" * n).encode()),  # deep nesting
    st.integers(1, 3000).map(
        lambda n: ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, n)) + " " * n + "1").encode()
    ),
    st.integers(2, 12).map(  # alias expansion ("billion laughs")
        lambda n: (
            "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, n))
        ).encode()
    ),
    st.integers(300, 5000).map(lambda n: ("x: 1" + "0" * n + "\n").encode()),  # beyond float range
    st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"---\n...\n", b"null", b"[]", b"{}", b"x: .nan", b"1e400"]),
    st.binary(max_size=100).map(lambda b: b"timestamp,intensity\n" + b),
    st.sampled_from([b'timestamp,intensity\n2026-01-01T00:00:00Z,"1\n2"\n2026-01-01T01:00:00Z,3\n']),
)
ENTRY_POINTS = {
    "if-run": lambda f: ["if-run", f],
    "report": lambda f: ["report", f, "--format", "md"],
    "schedule --series": lambda f: ["schedule", "--series", f, "--duration-h", "1", "--power-w", "100"],
    "schedule --report": lambda f: ["schedule", "--series", str(SERIES), "--report", f],
    "estimate --catalogue": lambda f: [
        "estimate",
        "--catalogue",
        f,
        "--hardware",
        "T4",
        "--hours",
        "1",
        "--intensity",
        "100",
    ],
    "list --catalogue": lambda f: ["list", "hardware", "--catalogue", f],
    "run --config": lambda f: ["run", "--config", f, "--no-status", "--output-dir", f + ".out", "--", "true"],
    "run --intensity-series": lambda f: [
        "run",
        "--intensity-series",
        f,
        "--intensity",
        "1",
        "--no-status",
        "--output-dir",
        f + ".out",
        "--",
        "true",
    ],
}
SERIES = Path(__file__).resolve().parent / "data" / "series-2-rows.csv"


@pytest.fixture(scope="module", autouse=True)
def two_row_series():
    SERIES.write_text("timestamp,carbon_intensity\n2026-01-01T00:00:00Z,100\n2026-01-01T01:00:00Z,200\n")
    yield
    SERIES.unlink()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")) // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=HOSTILE)
def test_every_entry_point_takes_hostile_bytes(entry, content, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("in") / "input"
    path.write_bytes(content)
    started = time.monotonic()
    code = main(ENTRY_POINTS[entry](str(path)))
    elapsed = time.monotonic() - started
    _, err = capsys.readouterr()
    assert elapsed < 10, f"{entry} took {elapsed:.1f} s"
    if code == 0:
        assert not err.strip() or entry.startswith("run")  # run prints its summary on stderr
    else:
        assert code == 2, (code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nn-tracker: error: "), err
