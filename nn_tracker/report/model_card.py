"""The Hugging Face model-card ``co2_eq_emissions`` metadata block.

As the Hub documents it: ``emissions`` in grams of CO2e, ``source``,
``training_type``, ``geographical_location``, ``hardware_used``. Paste it into the
YAML front matter of the model's README.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml


def block(data: dict[str, Any]) -> dict[str, Any]:
    """The metadata as a dict."""
    devices = data["devices"]
    gpus = Counter(d["name"] for d in devices if d["component"] == "gpu")
    hardware = [f"{count} x {name}" for name, count in sorted(gpus.items())]
    cpus = {d["name"] for d in devices if d["component"] == "cpu"}
    hardware += [f"CPU: {name}" for name in sorted(cpus)]
    methods = ", ".join(f"{d['component']}: {d['method']}" for d in devices)
    version = data["software"].get("nn_tracker") or ""
    return {
        "co2_eq_emissions": {
            "emissions": float(f"{data['footprint']['total_carbon_g']:.6g}"),  # grams, never rounded to 0
            "source": f"nn_tracker {version} (measured; {methods}; run {data['run_id']})".replace("  ", " "),
            "training_type": data.get("settings", {}).get("training_type", "pre-training"),
            "geographical_location": "; ".join(c["name"] for c in data["datacentres"]),
            "hardware_used": ", ".join(hardware) or "not recorded",
        }
    }


def render(data: dict[str, Any]) -> str:
    """The YAML front-matter block, ready to paste."""
    return "---\n" + yaml.safe_dump(block(data), sort_keys=False, allow_unicode=True, width=1000) + "---\n"
