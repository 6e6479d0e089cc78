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

from nn_tracker import footprint
from nn_tracker.report.model import centre_row_for


def training_carbon_g(data: dict[str, Any]) -> float | None:
    """Carbon of the run's training (every root phase but ``querying``): operational + amortised embodied.

    ``None`` when the run did no training. Hugging Face's ``co2_eq_emissions`` is training emissions:
    inference in the same run is left out.
    """
    roots = {name: phase for name, phase in data["phases"].items() if "/" not in name and name != "querying"}
    if not roots:
        return None
    centres = data["datacentres"]
    embodied = data["footprint"].get("embodied_carbon_amortised_g") or 0.0
    total = 0.0
    for name, phase in roots.items():
        centre = centres[centre_row_for(name, centres)]
        facility = phase["inclusive_energy_kwh"] * centre["pue"]
        total += footprint.operational_carbon_g(
            [facility], [centre["intensity_g_per_kwh"]], [centre["transport_factor"]]
        )
        if data["duration_s"] > 0:
            total += embodied * phase["inclusive_duration_s"] / data["duration_s"]
    return total


def _source(data: dict[str, Any]) -> str:
    devices = data["devices"]
    estimated = sorted({d["component"] for d in devices if d["method"] == "estimate"})
    measured = sorted({d["component"] for d in devices if d["method"] != "estimate"})
    if measured and estimated:
        how = f"measured ({', '.join(measured)}) and estimated ({', '.join(estimated)})"
    elif measured:
        how = f"measured ({', '.join(measured)})"
    else:
        how = f"estimate ({', '.join(estimated) or 'nothing measured'})"
    version = data["software"].get("nn_tracker") or ""
    return f"nn_tracker {version}: {how}; run {data['run_id']}".replace("  ", " ")


def block(data: dict[str, Any]) -> dict[str, Any] | None:
    """The metadata as a dict; ``None`` when the run did no training (the block is about training)."""
    grams = training_carbon_g(data)
    if grams is None:
        return None
    devices = data["devices"]
    gpus = Counter(d["name"] for d in devices if d["component"] == "gpu")
    hardware = [f"{count} x {name}" for name, count in sorted(gpus.items())]
    cpus = {d["name"] for d in devices if d["component"] == "cpu"}
    hardware += [f"CPU: {name}" for name in sorted(cpus)]
    return {
        "co2_eq_emissions": {
            "emissions": float(f"{grams:.6g}"),  # grams, training only, never rounded to 0
            "source": _source(data),
            "training_type": data.get("settings", {}).get("training_type", "pre-training"),
            "geographical_location": "; ".join(c["name"] for c in data["datacentres"]),
            "hardware_used": ", ".join(hardware) or "not recorded",
        }
    }


def render(data: dict[str, Any]) -> str:
    """The YAML front-matter block, ready to paste (a comment instead when the run did no training)."""
    metadata = block(data)
    if metadata is None:
        return (
            "---\n# nn_tracker: this run did no training (only querying); co2_eq_emissions, which reports\n"
            "# training emissions, is left out. See the run's report for its inference footprint.\n---\n"
        )
    import yaml  # only when a model card is written: importing PyYAML costs ~80 ms

    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=1000) + "---\n"
