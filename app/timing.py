"""Server-Timing: how long the app held each request, so the load tests can tell it from the client's latency.

A client measures W: connecting, sending, the server's work and the reply. The model needs the
server's share alone (an ``async def`` route that blocks holds the event loop for exactly that
long), so every response says ``Server-Timing: app;dur=<ms>``, measured from the moment the
ASGI app gets the request to the start of its response.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"server-timing"


class ServerTiming:
    """Pure ASGI middleware (no per-request objects beyond a closure): adds the header to HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - started) * 1000
                message["headers"] = [*message.get("headers", []), (HEADER, f"app;dur={elapsed_ms:.3f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


def parse(value: str | None) -> float | None:
    """The ``app`` duration (ms) of a Server-Timing header value, or None."""
    for metric in (value or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name == "app":
            for param in params.split(";"):
                key, _, number = param.strip().partition("=")
                if key == "dur":
                    try:
                        return float(number)
                    except ValueError:
                        return None
    return None
