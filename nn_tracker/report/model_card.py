"""The Hugging Face model-card ``co2_eq_emissions`` metadata block.

As the Hub documents it: ``emissions`` in grams of CO2e emitted by training (inference
in the same run is left out), ``source`` (saying whether the figures were measured or
estimated), ``training_type`` (``pre-training`` or ``fine-tuning``),
``geographical_location``, ``hardware_used``. Paste it into the YAML front matter of
the model's README.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from nn_tracker.config import QUERYING_PHASE
from nn_tracker.core.errors import printable
from nn_tracker.footprint import formulas as footprint
from nn_tracker.report.carbon import centre_row_for
from nn_tracker.report.document import Report


def training_carbon_g(report: Report) -> float | None:
    """Carbon of the run's training (every root phase but ``querying``): operational + amortised embodied.

    ``None`` when the run did no training. Hugging Face's ``co2_eq_emissions`` is training emissions:
    inference in the same run is left out.
    """
    roots = {name: phase for name, phase in report.phases.items() if "/" not in name and name != QUERYING_PHASE}
    if not roots:
        return None
    centres = report.datacentres
    embodied = report.footprint.embodied_carbon_amortised_g or 0.0
    total = 0.0
    for name, phase in roots.items():
        centre = centres[centre_row_for(name, centres)]
        facility = phase.inclusive_energy_kwh * centre.pue
        total += footprint.operational_carbon_g([facility], [centre.intensity_g_per_kwh], [centre.transport_factor])
        if report.duration_s > 0:
            total += embodied * phase.inclusive_duration_s / report.duration_s
    return total


def _source(report: Report) -> str:
    estimated = sorted({d.component for d in report.devices if d.method == "estimate"})
    measured = sorted({d.component for d in report.devices if d.method != "estimate"})
    if measured and estimated:
        how = f"measured ({', '.join(measured)}) and estimated ({', '.join(estimated)})"
    elif measured:
        how = f"measured ({', '.join(measured)})"
    else:
        how = f"estimate ({', '.join(estimated) or 'nothing measured'})"
    version = report.software.get("nn_tracker") or ""
    return f"nn_tracker {version}: {how}; run {report.run_id}".replace("  ", " ")


def block(report: Report) -> dict[str, Any] | None:
    """The metadata as a dict; ``None`` when the run did no training (the block is about training)."""
    grams = training_carbon_g(report)
    if grams is None:
        return None
    gpus = Counter(d.name for d in report.devices if d.component == "gpu")
    hardware = [f"{count} x {name}" for name, count in sorted(gpus.items())]
    cpus = {d.name for d in report.devices if d.component == "cpu"}
    hardware += [f"CPU: {name}" for name in sorted(cpus)]
    return {
        "co2_eq_emissions": {
            "emissions": _Grams(f"{grams:.6g}"),  # grams, training only, never rounded to 0
            "source": _inert(_source(report)),
            "training_type": report.settings.training_type,
            "geographical_location": _inert("; ".join(c.name for c in report.datacentres)),
            "hardware_used": _inert(", ".join(hardware) or "not recorded"),
        }
    }


class _Grams(float):
    """A float written as a plain decimal (``0.0000194619``, never ``1.94619e-05``): tools read the digits."""

    def plain(self) -> str:
        """The digits of the float, without an exponent."""
        from decimal import Decimal

        text = format(Decimal(repr(float(self))), "f")
        return text if "." in text else text + ".0"


def _inert(text: str) -> str:
    """Text from the report as it goes into a README shown as HTML: no tags, no control characters."""
    return printable(text).replace("<", "&lt;").replace(">", "&gt;")


def render(report: Report) -> str:
    """The YAML front-matter block, ready to paste (a comment instead when the run did no training)."""
    metadata = block(report)
    if metadata is None:
        return (
            "---\n# nn_tracker: this run did no training (only querying); co2_eq_emissions, which reports\n"
            "# training emissions, is left out. See the run's report for its inference footprint.\n---\n"
        )
    import yaml  # PyYAML only when a model card is written: importing it costs ~80 ms

    class Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
        """Safe YAML, with grams as plain decimals."""

    Dumper.add_representer(
        _Grams, lambda dumper, grams: dumper.represent_scalar("tag:yaml.org,2002:float", grams.plain())
    )
    text: str = yaml.dump(metadata, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=1000)
    return "---\n" + text + "---\n"
