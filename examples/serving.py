"""An inference loop tracked with the context manager, with energy and carbon per query.

python examples/serving.py --queries 2000 --output-dir reports
"""

from __future__ import annotations

import argparse

import torch

import nn_tracker


def main() -> None:
    """Serve batches of queries in the ``querying`` phase and count each query."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()
    with (
        nn_tracker.Tracker(
            project_name="serving", location="gcp:europe-west1", output_dir=args.output_dir, default_phase="querying"
        ) as tracker,
        torch.inference_mode(),
    ):
        served = 0
        while served < args.queries:
            batch = min(args.batch, args.queries - served)
            model(torch.randn(batch, 128)).argmax(dim=1)
            tracker.add_units(batch, kind="query")
            served += batch
    per_query = tracker.report().units["query"].by_phase["querying"]  # the querying phase's own energy per query
    print(
        f"{per_query.count:.0f} queries; {per_query.facility_energy_kwh_per_unit * 3.6e6:.3g} J and "
        f"{per_query.carbon_g_per_unit:.3g} gCO2e per query"
    )
    print(f"report: {tracker.report().paths[0]}")


if __name__ == "__main__":
    main()
