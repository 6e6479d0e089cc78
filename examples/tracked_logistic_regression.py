"""A tracked training and serving demo that needs nothing but nn_tracker.

Trains a logistic regression on synthetic data in pure Python (training and
validation phases, samples counted), then answers queries (querying phase,
queries counted), and writes the footprint report.

    python examples/tracked_logistic_regression.py --location FR --output-dir reports
"""

from __future__ import annotations

import argparse
import math
import random

import nn_tracker


def make_data(n: int, truth: list[float], rng: random.Random) -> list[tuple[list[float], int]]:
    """Points labelled by the hidden linear rule ``truth``, with 5 % label noise."""
    features = len(truth)
    data = []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(features)]
        y = int(sum(a * b for a, b in zip(truth, x, strict=True)) > 0)
        data.append((x, y if rng.random() > 0.05 else 1 - y))
    return data


def predict(weights: list[float], x: list[float]) -> float:
    """Probability of class 1."""
    z = sum(w * v for w, v in zip(weights, x, strict=True))
    return 1.0 / (1.0 + math.exp(-max(min(z, 30.0), -30.0)))


def main() -> None:
    """Train, validate, serve, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--location", default="FR")
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args()

    rng = random.Random(0)
    truth = [rng.uniform(-1, 1) for _ in range(32)]
    train, valid = make_data(args.samples, truth, rng), make_data(args.samples // 4, truth, rng)
    weights = [0.0] * 32
    with nn_tracker.Tracker(
        project_name="logistic-demo", location=args.location, output_dir=args.output_dir, attribution="process"
    ) as tracker:
        for epoch in range(args.epochs):
            with tracker.phase("training"):
                for x, y in train:
                    error = predict(weights, x) - y
                    weights = [w - 0.05 * error * v for w, v in zip(weights, x, strict=True)]
                tracker.add_units(len(train), kind="sample")
                with tracker.phase("validation"):
                    accuracy = sum((predict(weights, x) > 0.5) == y for x, y in valid) / len(valid)
            print(f"epoch {epoch + 1}: validation accuracy {accuracy:.3f}")
        with tracker.phase("querying"):
            for _ in range(args.queries):
                predict(weights, [rng.gauss(0, 1) for _ in range(32)])
            tracker.add_units(args.queries, kind="query")
    report = tracker.report()
    print(
        f"energy {report.energy_kwh * 1000:.3g} Wh, carbon {report.total_carbon_g:.3g} gCO2e, "
        f"{report.units['query'].by_phase['querying'].carbon_g_per_unit:.3g} gCO2e per query"
    )
    print(f"report: {tracker.report().paths[0]}")


if __name__ == "__main__":
    main()
