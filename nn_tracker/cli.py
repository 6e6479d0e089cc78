"""The ``nn-tracker`` command line.

Every bad input ends with one line on stderr naming the field, the value and
the rule, and exit status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from nn_tracker.core.errors import NNTrackerError, printable, say

EXIT_USAGE = 2
MIN_STATUS_EVERY_S = 0.1  # ten status lines a second at most: a typo cannot flood the terminal


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        from nn_tracker.core.errors import printable

        self.exit(EXIT_USAGE, f"{self.prog}: error: {printable(message)}\n")  # an argument's control characters too


def _add_estimate(commands: Any) -> None:
    from nn_tracker.config import QUERYING_PHASE, TRAINING_PHASE

    parser = commands.add_parser(
        "estimate",
        help="what-if estimate without measuring (hardware x hours x location)",
        description="Estimate energy and carbon of a job from hardware, count, duration and location.",
    )
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--hours", type=float, help="duration of the job in hours")
    when.add_argument("--days", type=float, help="duration of the job in days")
    parser.add_argument("--hardware", help="accelerator name from the catalogue (see `nn-tracker list hardware`)")
    parser.add_argument("--power-w", type=float, help="average power per accelerator in W (default: catalogue TDP)")
    parser.add_argument("--count", type=float, help="number of accelerators (default 1; 0 for none)")
    parser.add_argument("--servers", type=float, help="number of host servers (default 0)")
    parser.add_argument("--server-power-w", type=float, help="average power per server in W (default 0)")
    parser.add_argument("--pue", type=float, help="datacentre PUE >= 1 (default: region's published PUE, else 1.0)")
    parser.add_argument("--location", help="country, grid zone, US state or cloud region such as aws:us-east-1")
    parser.add_argument("--intensity", type=float, help="grid intensity in gCO2e/kWh (overrides --location)")
    parser.add_argument("--transport-factor", type=float, help="delivered share of electricity (0, 1]; default 1")
    parser.add_argument("--embodied-kg", type=float, help="embodied kgCO2e per accelerator (default: catalogue)")
    parser.add_argument("--server-embodied-kg", type=float, help="embodied kgCO2e per server")
    parser.add_argument("--lifetime-years", type=float, help="hardware life for amortisation (default 6)")
    parser.add_argument("--utilisation", type=float, help="share of its life the hardware is busy, (0, 1]")
    parser.add_argument("--units", type=float, default=1, help="functional units served (default 1 run)")
    parser.add_argument("--unit-name", default="run", help="what one functional unit is (run, query, token...)")
    parser.add_argument("--phase", choices=(TRAINING_PHASE, QUERYING_PHASE), default=TRAINING_PHASE)
    parser.add_argument("--catalogue", metavar="FILE", help="YAML file adding or overriding catalogue entries")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=_run_estimate)


def _add_list(commands: Any) -> None:
    parser = commands.add_parser(
        "list", help="list the bundled reference data", description="List bundled locations, or hardware, with sources."
    )
    parser.add_argument("what", choices=("locations", "hardware"))
    parser.add_argument("--catalogue", metavar="FILE", help="YAML file adding or overriding catalogue entries")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=_run_list)


def _add_sensors(commands: Any) -> None:
    parser = commands.add_parser(
        "sensors",
        help="show what this machine offers for measurement and what would be used",
        description="List NVML GPUs, RAPL zones, the CPU model and TDP, and the RAM model a tracker would use.",
    )
    parser.add_argument("--attribution", choices=("machine", "process"), default="machine")
    parser.add_argument("--cpu-tdp-w", type=float, help="the CPU's TDP in W, if known")
    parser.add_argument("--rapl-root", default="/sys/class/powercap", help=argparse.SUPPRESS)
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=_run_sensors)


def _add_report(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="re-render a saved report (also a checkpoint of a run that died)",
        description="Render a saved JSON report as HTML, Markdown, a CodeCarbon CSV row, a model-card block, "
        "an Impact Framework manifest or JSON.",
    )
    parser.add_argument("report", metavar="RUN.json", help="a report or checkpoint written by nn_tracker")
    parser.add_argument("--format", choices=("html", "md", "csv", "model-card", "if-manifest", "json"), default="md")
    parser.add_argument(
        "-o", "--output", metavar="PATH", help="write here (atomically; CSV rows are appended) instead of printing"
    )
    parser.set_defaults(handler=_run_report)


def _add_compare(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare saved runs side by side",
        description="Compare saved JSON reports: energy (IT, facility), carbon (operational, embodied, total), "
        "per-unit figures per phase, duration, hardware, location and how each device was measured, with the "
        "change from the first run. Reports of older schemas are upgraded first.",
    )
    parser.add_argument("reports", nargs="+", metavar="RUN.json", help="two or more reports; the first is the baseline")
    parser.add_argument("--format", choices=("table", "md", "html", "json"), default="table")
    parser.add_argument("-o", "--output", metavar="PATH", help="write here (atomically) instead of printing")
    parser.set_defaults(handler=_run_compare)


def _add_run(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run a command and track it (and its child processes)",
        description="Run CMD, track its energy and carbon, write the report, exit with CMD's status. "
        "Options default to ./nn-tracker.yml (or --config FILE): a YAML mapping of tracker options.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of tracker options (default ./nn-tracker.yml)")
    from nn_tracker.config import RUN_DEFAULTS, options

    for option in options():  # each TrackerConfig option with a flag, as declared there
        meta = option.metadata
        if meta["flag"] is None:
            continue
        parser.add_argument(
            meta["flag"],
            dest=option.name,
            type=float if meta["kind"] == "float" else None,
            action="append" if meta["kind"] == "list" else "store",
            choices=meta["choices"],
            metavar=meta["metavar"],
            help=_help_with_default(meta["help"], RUN_DEFAULTS.get(option.name, option.default)),
        )
    parser.add_argument("--no-status", action="store_true", help="no live status line, even on a terminal")
    parser.add_argument(
        "--status-every", type=float, metavar="S", help="seconds between status lines on a terminal (default 30)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    parser.set_defaults(handler=_run_run)


def _help_with_default(text: str, default: Any) -> str:
    """``text (default 0.1)``; nothing added for an empty default."""
    if default in (None, ()):
        return text
    shown = ", ".join(default) if isinstance(default, tuple) else default
    return f"{text} (default {shown})"


def _add_schedule(commands: Any) -> None:
    parser = commands.add_parser(
        "schedule",
        help="when to run a job: Flexible Start and Pause and Resume over an intensity series",
        description="Emissions of a job started now, at the best start within --window-h hours (Flexible Start), "
        "and run only in the cleanest steps (Pause and Resume), after Dodge et al. 2022.",
    )
    parser.add_argument("--series", required=True, metavar="CSV", help="timestamps and gCO2e/kWh")
    job = parser.add_mutually_exclusive_group(required=True)
    job.add_argument("--report", metavar="RUN.json", help="use the power profile of a saved report")
    job.add_argument("--duration-h", type=float, help="job duration in hours (with --power-w)")
    parser.add_argument("--power-w", type=float, help="average facility power of the job in W (with --duration-h)")
    parser.add_argument("--window-h", type=float, default=24.0, help="how long the start may be delayed (default 24)")
    parser.add_argument("--start", metavar="ISO8601", help="earliest start (default: the series' first timestamp)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(handler=_run_schedule)


def _add_if_run(commands: Any) -> None:
    parser = commands.add_parser(
        "if-run",
        help="compute an Impact Framework manifest (NN-CI plugins and IF builtins)",
        description="Run an IF 0.3 or 1.x manifest whose pipelines use the NN-CI plugins (NNET, NNEQ, NNEmb, NNC) "
        "and the builtins Sum, Multiply, Coefficient; write it back with outputs on every node.",
    )
    parser.add_argument("manifest", metavar="MANIFEST.yml")
    parser.add_argument("-o", "--output", metavar="OUT.yml", help="write here (atomically) instead of printing")
    parser.set_defaults(handler=_run_if_run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nn-tracker`` (exposed for tests and docs)."""
    from nn_tracker import __version__

    parser = _Parser(prog="nn-tracker", description="Energy and carbon footprint of neural-network jobs.")
    parser.add_argument("--version", action="version", version=f"nn-tracker {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_estimate(commands)
    _add_list(commands)
    _add_sensors(commands)
    _add_report(commands)
    _add_compare(commands)
    _add_run(commands)
    _add_schedule(commands)
    _add_if_run(commands)
    return parser


def _catalogue(path: str | None) -> Any:
    from nn_tracker.footprint.catalogue import bundled

    return bundled().with_overrides(path) if path else bundled()


def _run_estimate(args: argparse.Namespace) -> int:
    from nn_tracker.estimate import estimate

    hours = args.hours if args.hours is not None else _days_to_hours(args.days)
    result = estimate(
        hours=hours,
        count=args.count,
        hardware=args.hardware,
        power_w=args.power_w,
        servers=args.servers,
        server_power_w=args.server_power_w,
        pue=args.pue,
        location=args.location,
        intensity_g_per_kwh=args.intensity,
        transport_factor=args.transport_factor,
        embodied_kg_per_unit=args.embodied_kg,
        server_embodied_kg=args.server_embodied_kg,
        lifetime_years=args.lifetime_years,
        utilisation=args.utilisation,
        functional_units=args.units,
        functional_unit=args.unit_name,
        phase=args.phase,
        catalogue=_catalogue(args.catalogue),
    )
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(f"Estimate ({result.phase})")
    print(f"  energy                 {result.energy_kwh:,.3f} kWh")
    print(f"  operational carbon     {_carbon(result.operational_carbon_g)}")
    if result.embodied_carbon_amortised_g is None:
        print("  embodied carbon        not included (no figure)")
    else:
        print(f"  embodied, amortised    {_carbon(result.embodied_carbon_amortised_g)}")
        print(f"  embodied, whole units  {_carbon(result.embodied_carbon_unamortised_g or 0.0)} (unamortised)")
    print(f"  total                  {_carbon(result.total_carbon_g)}")
    print(f"  per {result.functional_unit:<18} {_carbon(result.sci_g_per_unit)} (SCI, R = {result.functional_units:g})")
    print("Inputs")
    for name, item in result.inputs.items():
        value = f"{item.value:g}" if isinstance(item.value, float) else str(item.value)
        print(printable(f"  {name:<22} {value} {item.unit}".rstrip() + f"   [{item.source}]"))
    for note in result.notes:
        print(printable(f"Note: {note}"))
    return 0


def _days_to_hours(days: float) -> float:
    from nn_tracker.core import validation

    return validation.non_negative("days", days) * 24


def _carbon(grams: float) -> str:
    """Grams in the most readable unit."""
    if abs(grams) >= 1e6:
        return f"{grams / 1e6:,.3f} tCO2e"
    if abs(grams) >= 1e3:
        return f"{grams / 1e3:,.3f} kgCO2e"
    if abs(grams) >= 1:
        return f"{grams:,.3f} gCO2e"
    return f"{grams:.4g} gCO2e"


def _run_list(args: argparse.Namespace) -> int:
    catalogue = _catalogue(args.catalogue)
    if args.what == "locations":
        rows = [
            {
                "code": e.code,
                "name": e.name,
                "kind": e.kind,
                "intensity_g_per_kwh": e.intensity_g_per_kwh,
                "year": e.year,
                "pue": e.pue,
                "source": e.source.title,
            }
            for e in catalogue.locations.values()
        ]
        columns: tuple[str, ...] = ("code", "kind", "intensity_g_per_kwh", "year", "pue", "name", "source")
    else:
        rows = [
            {
                "name": h.name,
                "kind": h.kind,
                "tdp_w": h.tdp_w,
                "embodied_kg_co2e": h.embodied_kg_co2e,
                "embodied_method": h.embodied_method,
                "embodied_scope": h.embodied_scope if h.embodied_kg_co2e is not None else None,
                "tdp_source": h.tdp_source.title if h.tdp_source else None,
                "aliases": list(h.aliases),
            }
            for h in catalogue.hardware.values()
        ]
        columns = ("name", "kind", "tdp_w", "embodied_kg_co2e", "embodied_scope")
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print("\t".join(columns))
    for row in rows:  # names from a user's catalogue: no terminal escapes
        print("\t".join("" if row[c] is None else printable(str(row[c])) for c in columns))
    return 0


def _run_sensors(args: argparse.Namespace) -> int:
    from nn_tracker.core import validation
    from nn_tracker.footprint.catalogue import bundled
    from nn_tracker.sensors import SensorOptions, describe

    tdp = None if args.cpu_tdp_w is None else validation.positive("cpu_tdp_w", args.cpu_tdp_w)
    found = describe(SensorOptions(rapl_root=args.rapl_root, attribution=args.attribution, cpu_tdp_w=tdp), bundled())
    if args.format == "json":
        print(json.dumps(found, indent=2))
        return 0
    nvml = found["nvml"]
    print(f"NVML: {'found, driver ' + nvml['driver_version'] if nvml['available'] else 'not available'}")
    rapl = found["rapl"]
    print(
        f"RAPL ({rapl['root']}): zones {', '.join(rapl['zones']) or 'none'}; "
        f"readable {', '.join(rapl['readable']) or 'none'}"
    )
    for problem in rapl["problems"]:
        print(f"  problem: {problem}")
    print(f"CPU model: {found['cpu_model'] or 'not read (RAPL in use or unknown)'}")
    print("Would measure:")
    for sensor in found["sensors"]:
        model = f" - {sensor['model']}" if sensor["model"] else ""
        print(f"  {sensor['device_id']:<28} {sensor['component']:<4} {sensor['method']:<17} {sensor['name']}{model}")
        for key in ("tdp_source", "power_source", "power_limit_w"):
            if key in sensor["details"]:
                print(f"      {key}: {sensor['details'][key]}")
    for note in found["notes"]:
        print(f"Note: {note}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from nn_tracker.core import inputs
    from nn_tracker.report import writers
    from nn_tracker.report.schema import load_report

    output = None if args.output is None else inputs.output_path(args.output, "-o")
    data = load_report(args.report)
    if output is None:
        _stdout(writers.render(data, args.format))
        return 0
    return _write_output(args.output, lambda: writers.write(data, args.format, output))


def _write_output(given: str, write: Any) -> int:
    """Run ``write()`` (which returns the path written); ``wrote PATH``, or a one-line error and exit 2."""
    try:
        path = write()
    except OSError as exc:
        print(f"nn-tracker: error: output {given!r} cannot be written ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {path}")
    return 0


def _run_compare(args: argparse.Namespace) -> int:
    from nn_tracker.core import inputs
    from nn_tracker.core.errors import ValidationError
    from nn_tracker.report import compare
    from nn_tracker.report.files import write_atomic
    from nn_tracker.report.schema import load_report

    output = None if args.output is None else inputs.output_path(args.output, "-o")
    if len(args.reports) < 2:  # before reading anything
        raise ValidationError("reports", len(args.reports), "must be at least 2 files to compare")
    text = compare.render([(path, load_report(path)) for path in args.reports], args.format)
    if output is None:
        _stdout(text)
        return 0
    return _write_output(args.output, lambda: write_atomic(output, text))


def _run_schedule(args: argparse.Namespace) -> int:
    from nn_tracker.core.errors import ValidationError
    from nn_tracker.footprint.intensity_series import IntensitySeries, parse_time
    from nn_tracker.footprint.scheduling import JobProfile, schedule
    from nn_tracker.report import units
    from nn_tracker.report.schema import load_report

    series = IntensitySeries.from_csv(args.series)
    if args.report:
        report = load_report(args.report)
        job = JobProfile.measured(report.energy_buckets(), report.overall_pue)
    elif args.power_w is None:
        raise ValidationError("power_w", None, "must be given with --duration-h")
    else:
        from nn_tracker.core import validation

        job = JobProfile.constant(validation.positive("duration_h", args.duration_h) * 3600, args.power_w)
    plan = schedule(series, job, args.window_h, parse_time(args.start, "start") if args.start else None)
    if args.format == "json":
        print(json.dumps(plan, indent=2, allow_nan=False))
        return 0
    print(
        f"Job: {units.duration(plan['job']['duration_s'])}, {units.energy(plan['job']['energy_kwh'])}; "
        f"window {args.window_h:g} h; series step {units.duration(plan['step_s'])}"
    )
    print(f"{'option':<18} {'runs':<52} {'emissions':>14} {'saving':>16}")
    now = plan["now"]
    print(f"{'start now':<18} {now['start'] + ' -> ' + now['end']:<52} {units.carbon(now['emissions_g']):>14}")
    for label, key in (("flexible start", "flexible_start"), ("pause and resume", "pause_and_resume")):
        option = plan[key]
        runs = (
            f"{option['start']} -> {option['end']}"
            if "start" in option
            else f"{len(option['runs'])} steps, done {option['end']}"
        )
        saving = f"{units.carbon(option['saving_g'])} ({option['saving_pct']:.1f} %)"
        print(f"{label:<18} {runs:<52} {units.carbon(option['emissions_g']):>14} {saving:>16}")
    return 0


def _run_if_run(args: argparse.Namespace) -> int:

    from nn_tracker.core import inputs
    from nn_tracker.integrations.impact_framework import run_manifest
    from nn_tracker.report.files import write_atomic

    output = None if args.output is None else inputs.output_path(args.output, "-o")
    manifest = inputs.load_yaml(inputs.read_text(args.manifest, "manifest"), args.manifest)
    with inputs.deep_recursion():  # valid manifests may nest hundreds of levels
        text = inputs.dump_yaml(run_manifest(manifest), sort_keys=False, width=1000)
    if output is None:
        _stdout(text)
        return 0
    return _write_output(args.output, lambda: write_atomic(output, text))


def _run_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nn_tracker.config import CONFIG_FILE, load_config_file
    from nn_tracker.config import options as tracker_options
    from nn_tracker.core import validation
    from nn_tracker.run.runner import run_command

    config_path = args.config or (CONFIG_FILE if Path(CONFIG_FILE).exists() else None)
    options = load_config_file(config_path) if config_path else {}
    for option in tracker_options():
        value = getattr(args, option.name, None)
        if value is not None:
            options[option.name] = tuple(value) if isinstance(value, list) else value
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    every = None if args.status_every is None else validation.positive("status_every", args.status_every)
    if every is not None and every < MIN_STATUS_EVERY_S:
        from nn_tracker.core.errors import ValidationError

        raise ValidationError("status_every", every, f"must be at least {MIN_STATUS_EVERY_S:g} s (a line each time)")

    def announce() -> None:  # a config found in the working folder is never applied silently
        if config_path and not args.config:
            say(f"nn-tracker: using the options of ./{CONFIG_FILE} (found in the working folder; --config to choose)")

    return run_command(
        command, options, status_line=False if args.no_status else None, status_every_s=every, on_start=announce
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.handler(args))
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except BrokenPipeError:  # `nn-tracker list locations | head`: the reader left, as `ls` and `grep` see it
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit, no traceback
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # Ctrl-C before a command started (or in a command of nn-tracker's own)
        return 128 + signal.SIGINT
    except NNTrackerError as exc:
        say(f"nn-tracker: error: {exc}")
        return EXIT_USAGE
    except OSError as exc:  # e.g. the output cannot be written (`> /dev/full`, `>&-`): one line, as Unix tools say
        if exc.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT):
            _quiet_stdout()
            say(f"nn-tracker: error: cannot write the output ({exc.strerror or exc})")
        else:
            say(f"nn-tracker: error: {printable(str(exc))[:300]}")
        return EXIT_USAGE
    except (ValueError, OverflowError, RecursionError) as exc:  # input no check named: still one line, exit 2
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(f"nn-tracker: error: the input cannot be processed ({message})", file=sys.stderr)
        return EXIT_USAGE


def _stdout(text: str) -> None:
    """Write ``text`` to stdout.

    Raises:
        OSError: stdout is closed (``>&-``): one line, exit 2, as for a full disk.
    """
    if sys.stdout is None:
        raise OSError(errno.EBADF, "Bad file descriptor (standard output is closed)")
    sys.stdout.write(text)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer is dropped, no second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
    except OSError:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
