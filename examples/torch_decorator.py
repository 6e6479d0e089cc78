"""A plain PyTorch training loop tracked with the ``@track`` decorator.

python examples/torch_decorator.py --output-dir reports
"""

from __future__ import annotations

import argparse

import torch

import nn_tracker


def main() -> None:
    """Train a linear regression; every call of ``train`` is one tracked run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--output-dir", default="reports")
    args = parser.parse_args()

    @nn_tracker.track(project_name="torch-decorator", location="DE", pue=1.2, output_dir=args.output_dir)
    def train(steps: int) -> float:
        torch.manual_seed(0)
        x = torch.randn(4096, 64)
        y = x @ torch.randn(64, 1)
        model = torch.nn.Linear(64, 1)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(steps):
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimiser.step()
        return float(loss.detach())

    loss = train(args.steps)
    report = train.last_report
    print(f"final loss {loss:.4f}; energy {report.energy_kwh * 1000:.3g} Wh; carbon {report.total_carbon_g:.3g} gCO2e")
    print(f"report: {train.last_report.paths[0]}")


if __name__ == "__main__":
    main()
