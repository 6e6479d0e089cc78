"""EnergyMiddleware with a real server (uvicorn) and a real client (httpx) on 127.0.0.1, and the ASGI trailers."""

import asyncio
import socket
import threading
import time

import pytest
from fakes import ConstantPower, sensor_set

from nn_tracker.integrations.asgi import EnergyMiddleware
from nn_tracker.serving import ServingTracker


def serving(tmp_path, power_w=200.0):
    return ServingTracker(
        sensors=sensor_set(ConstantPower(power_w=power_w)),
        output_dir=tmp_path,
        intensity_g_per_kwh=100,
        pue=1.2,
        embodied=(),
        interval_s=0.05,
        checkpoint_interval_s=None,
    )


def app_for(tracker):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def work(request):
        await asyncio.sleep(0.2)
        request.scope["nn_tracker.request"].add_units(tokens=7)
        return JSONResponse({"ok": True})

    async def stream(request):
        async def parts():
            for _ in range(3):
                await asyncio.sleep(0.05)
                yield b"x"

        return StreamingResponse(parts())

    return EnergyMiddleware(Starlette(routes=[Route("/work", work), Route("/stream", stream)]), tracker)


def test_every_http_request_is_a_request_with_its_figures_in_the_headers(tmp_path):
    import httpx
    import uvicorn

    tracker = serving(tmp_path)
    server = uvicorn.Server(uvicorn.Config(app_for(tracker), log_level="error", lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)

    async def clients():
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            work = [client.get("/work") for _ in range(20)]
            streams = [client.get("/stream") for _ in range(2)]
            return await asyncio.gather(*work, *streams)

    tracker.start()
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        responses = asyncio.run(clients())
        time.sleep(0.3)  # idle time at the end
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        report = tracker.stop()
    whole, streamed = responses[:20], responses[20:]
    assert all(r.status_code == 200 for r in responses)
    energies = [float(r.headers["x-energy-joules"]) for r in whole]  # provisional, facility J
    assert all(e > 0 for e in energies) and all(float(r.headers["x-carbon-grams"]) > 0 for r in whole)
    # 20 requests in flight together for ~0.2 s at 200 W x 1.2: each about 200 x 1.2 x 0.2 / 20 J
    assert sum(energies) == pytest.approx(200 * 1.2 * 0.2, rel=0.5)
    assert all("x-energy-joules" not in r.headers for r in streamed)  # uvicorn offers no trailers
    section = report.requests
    assert section.count == 22 and section.per_unit["tokens"].units == 20 * 7
    assert section.it_energy_kwh + section.idle_it_energy_kwh == pytest.approx(report.energy_kwh, rel=1e-9)
    assert section.idle_it_energy_kwh > 0


def test_a_streamed_response_gets_its_figures_as_trailers_where_the_server_offers_them(tmp_path):
    tracker = serving(tmp_path)

    async def streaming_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for more in (True, True, False):
            await asyncio.sleep(0.05)
            await send({"type": "http.response.body", "body": b"x", "more_body": more})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "extensions": {"http.response.trailers": {}}}
    with tracker:
        asyncio.run(EnergyMiddleware(streaming_app, tracker)(scope, receive, send))
    start, *bodies, trailers = sent
    assert start["trailers"] is True and not any(k == b"x-energy-joules" for k, _ in start["headers"])
    assert [b["more_body"] for b in bodies] == [True, True, False]
    assert trailers["type"] == "http.response.trailers" and dict(trailers["headers"])[b"x-energy-joules"]
    assert tracker.tracker.report().requests.count == 1


def test_websocket_and_lifespan_pass_through_and_a_stopped_tracker_adds_no_header(tmp_path):
    tracker = serving(tmp_path)
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    middleware = EnergyMiddleware(app, tracker)
    asyncio.run(middleware({"type": "lifespan"}, None, send))
    asyncio.run(middleware({"type": "http", "path": "/"}, None, send))  # never started: untracked, no header
    assert seen == ["lifespan", "http"] and sent[0]["headers"] == []


def run_app(tracker, app, extensions):
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/", "extensions": extensions}
    asyncio.run(EnergyMiddleware(app, tracker)(scope, receive, send))
    return sent


def test_a_file_sent_by_path_and_an_app_s_own_trailers_keep_the_asgi_order(tmp_path):
    tracker = serving(tmp_path)

    async def file_app(scope, receive, send):
        scope["nn_tracker.request"].set_weight(2)  # an endpoint may weigh its request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/etc/hostname"})

    async def trailing_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-app", b"1")], "more_trailers": False})

    with tracker:
        kinds = [m["type"] for m in run_app(tracker, file_app, {"http.response.pathsend": {}})]
        assert kinds == ["http.response.start", "http.response.pathsend"]
        sent = run_app(tracker, trailing_app, {"http.response.trailers": {}})
        assert [m["type"] for m in sent].count("http.response.trailers") == 1  # the app's, not a second one
    assert tracker.tracker.report().requests.count == 2
    # not tracked (the tracker has stopped): an endpoint that weighs its request still answers
    assert [m["type"] for m in run_app(tracker, file_app, {})] == ["http.response.start", "http.response.pathsend"]
