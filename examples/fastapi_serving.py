"""A tiny model served with FastAPI: each request's energy in its response headers and in Prometheus.

pip install 'nn-tracker[serving]'
python examples/fastapi_serving.py --port 8000          # serve until Ctrl-C
curl -si -X POST localhost:8000/predict -H 'content-type: application/json' -d '{"values": [0.1, 0.2]}'
curl -s localhost:9464/metrics | grep nn_tracker_request  # the requests' histograms
python examples/fastapi_serving.py --self-test 20        # start, send 20 requests, print, stop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
import time
from typing import Any

import torch
from fastapi import FastAPI, Request

from nn_tracker.integrations.asgi import EnergyMiddleware
from nn_tracker.serving import ServingTracker


def build_app(serving: ServingTracker) -> Any:
    """The FastAPI app (its lifespan starts and stops the tracker), wrapped in EnergyMiddleware."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)).eval()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        serving.start()
        try:
            yield
        finally:
            serving.stop()

    app = FastAPI(lifespan=lifespan)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        values = (await request.json()).get("values", [])[:64]
        features = torch.zeros(1, 64)
        features[0, : len(values)] = torch.tensor(values, dtype=torch.float32)
        with torch.inference_mode():
            label = int(model(features).argmax(dim=1))
        request.scope["nn_tracker.request"].add_units(query=1)
        return {"label": label}

    return EnergyMiddleware(app, serving)


def self_test(app: Any, requests: int) -> None:
    """Serve on a free local port, send ``requests`` requests at once, print their figures, stop."""
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    time.sleep(1.5)  # a first reading of every sensor (CPU estimates read once a second): provisional figures

    async def send_all() -> list[Any]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            calls = [client.post("/predict", json={"values": [i / 10, 1.0]}) for i in range(requests)]
            return await asyncio.gather(*calls)

    answers = asyncio.run(send_all())
    server.should_exit = True
    thread.join(timeout=30)
    energies = [float(a.headers["x-energy-joules"]) for a in answers if "x-energy-joules" in a.headers]
    known = f"min {min(energies):.3g} J, max {max(energies):.3g} J" if energies else "none yet (no reading so far)"
    print(f"{len(answers)} requests; provisional facility energy per request in the headers: {known}")


def main() -> None:
    """Serve the model (or run the self-test)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=9464)
    parser.add_argument("--output-dir", default="reports")
    parser.add_argument("--self-test", type=int, metavar="N", help="send N requests to itself and stop")
    args = parser.parse_args()
    serving = ServingTracker(
        project_name="fastapi-serving",
        location="gcp:europe-west1",
        output_dir=args.output_dir,
        prometheus_port=None if args.self_test else args.metrics_port,
        prometheus_addr="127.0.0.1",
    )
    app = build_app(serving)
    if args.self_test:
        self_test(app, args.self_test)
        report = serving.tracker.report()
        requests = report.requests
        print(
            f"settled: {requests.count} requests, {requests.it_energy_kwh * 3.6e6:.3g} J (IT) attributed, "
            f"{requests.idle_it_energy_kwh * 3.6e6:.3g} J idle; report: {report.paths[0]}"
        )
        return
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
