"""Server-Timing: how long the app held each request, so the load tests can tell it from the client's latency.

A client measures W: connecting, sending, the server's work and the reply. The model needs the
server's share alone (an ``async def`` route that blocks holds the event loop that long), so every
response says ``Server-Timing: app;dur=<ms>, loop;dur=<ms>``: ``app`` the wall time from the moment
the ASGI app gets the request to the start of its response, ``loop`` the event-loop thread's CPU
time over the same span. The service's CPU per request less ``loop`` is what the loop spends on the
request outside the app (parsing, writing, accepting), which a blocked loop also has to find time for.
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
        started, cpu_started = time.perf_counter(), time.thread_time()  # this middleware runs on the loop's thread

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu_started) * 1000
                value = f"app;dur={elapsed_ms:.3f}, loop;dur={cpu_ms:.3f}".encode()
                message["headers"] = [*message.get("headers", []), (HEADER, value)]
            await send(message)

        await self.app(scope, receive, timed_send)


def parse(value: str | None, metric_name: str = "app") -> float | None:
    """The duration (ms) of metric ``metric_name`` in a Server-Timing header value, or None."""
    for metric in (value or "").split(","):
        name, _, params = metric.strip().partition(";")
        if name == metric_name:
            for param in params.split(";"):
                key, _, number = param.strip().partition("=")
                if key == "dur":
                    try:
                        return float(number)
                    except ValueError:
                        return None
    return None
