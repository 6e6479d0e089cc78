"""``EnergyMiddleware``: each HTTP request of an ASGI app (Starlette, FastAPI...) is a request of a ServingTracker.

Pure ASGI, no dependency. A response sent whole (one body message, as ``JSONResponse`` and most
endpoints do) carries its request's figures in headers: ``X-Energy-Joules`` (facility energy, J) and
``X-Carbon-Grams`` (operational + its embodied share, gCO2e). They are *provisional*: computed when the
response is ready, from the power samples (the counters settle them a moment later, in the report, the
periods file and Prometheus). A streaming response (several body messages) has started before its
request ended: its figures go as HTTP trailers where the server offers the ASGI
``http.response.trailers`` extension, else only to the report, the periods file and Prometheus.
WebSocket and lifespan messages pass through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nn_tracker.run.requests import RequestEnergy

log = logging.getLogger("nn_tracker")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
ENERGY_HEADER = b"x-energy-joules"
CARBON_HEADER = b"x-carbon-grams"


class EnergyMiddleware:
    """Wrap an ASGI ``app``: every HTTP request is ``serving.request(weight)``; figures in response headers.

    Args:
        app: The ASGI application.
        serving: The :class:`~nn_tracker.serving.ServingTracker` (started by the app's lifespan or before).
        weight: Each request's weight (the endpoint may change it: ``scope["nn_tracker.request"].set_weight``).
    """

    def __init__(self, app: ASGIApp, serving: Any, weight: float = 1.0) -> None:
        self.app = app
        self.serving = serving
        self.weight = weight

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Serve one ASGI connection: an HTTP request is tracked, anything else passes through."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        request_scope = self.serving.request(self.weight)
        request = request_scope.__enter__()
        scope["nn_tracker.request"] = request  # the endpoint may weigh it or count its units
        trailers = "http.response.trailers" in (scope.get("extensions") or {})
        held: list[Message] = []  # the response start, until we know whether the body comes whole
        ended = False

        def end() -> None:
            nonlocal ended
            if not ended:
                ended = True
                request_scope.__exit__(None, None, None)

        ours = False  # whether the trailers are ours to send (the app sends none of its own)

        async def send_with_figures(message: Message) -> None:
            nonlocal ours
            kind = message.get("type")
            if kind == "http.response.start":
                held.append(message)
                return
            if held:
                start = held.pop()
                if kind == "http.response.body" and not message.get("more_body", False):  # whole: the end
                    end()
                    start = {**start, "headers": [*start.get("headers", []), *_headers(request)]}
                elif kind == "http.response.body" and trailers and not start.get("trailers"):
                    start, ours = {**start, "trailers": True}, True
                await send(start)  # before any other message (a file's path, the body...)
            await send(message)
            last = kind in ("http.response.body", "http.response.pathsend") and not message.get("more_body", False)
            if last and not ended:
                end()  # a streamed body's last part
                if ours:
                    await send({"type": "http.response.trailers", "headers": _headers(request), "more_trailers": False})

        try:
            await self.app(scope, receive, send_with_figures)
        finally:
            end()
            if held:  # a start without a body (the app returned early): send it as it was
                await send(held.pop())


def _headers(request: RequestEnergy) -> list[tuple[bytes, bytes]]:
    """The request's provisional figures as headers (nothing when it was not tracked)."""
    if request.facility_energy_j is None or request.carbon_g is None:
        return []
    return [
        (ENERGY_HEADER, f"{request.facility_energy_j:.6g}".encode()),
        (CARBON_HEADER, f"{request.carbon_g:.6g}".encode()),
    ]
