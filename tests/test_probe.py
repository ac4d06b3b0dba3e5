"""The open-loop /ping probe: a frozen event loop cannot hide its stall (coordinated omission)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from loadtests.probe import PingProbe


class FreezableServer:
    """A one-route HTTP server on its own event loop, which ``freeze`` blocks like a blocking driver would."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(5)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        try:
            self.loop.run_forever()
        finally:  # its socket and the loop's own, or they leak into a ResourceWarning (an error here)
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    def freeze(self, seconds: float) -> None:
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[FreezableServer]:
    found = FreezableServer()
    yield found
    found.stop()


def test_a_stall_is_sampled_on_schedule_and_timed_from_the_schedule(server: FreezableServer) -> None:
    url = f"http://127.0.0.1:{server.port}"
    with PingProbe(url, interval=0.02) as probe:
        time.sleep(0.2)
        server.freeze(1.0)
        time.sleep(1.2)
    summary = probe.summary()
    # A closed-loop probe would take one sample during the second's stall; this one keeps sending.
    assert summary["count"] >= 50 and summary["errors"] == 0
    assert summary["p90_ms"] is not None and summary["p90_ms"] > 400  # probes scheduled during the stall waited for it
    assert summary["max_ms"] is not None and summary["max_ms"] > 800
    assert summary["max_send_lag_ms"] is not None and summary["max_send_lag_ms"] < 200  # the probe itself kept time


def test_an_idle_server_answers_fast(server: FreezableServer) -> None:
    with PingProbe(f"http://127.0.0.1:{server.port}", interval=0.02) as probe:
        time.sleep(0.5)
    summary = probe.summary()
    assert summary["count"] >= 15 and summary["p50_ms"] is not None and summary["p50_ms"] < 100


def test_an_unreachable_server_counts_errors_not_latencies() -> None:
    with PingProbe("http://127.0.0.1:9", interval=0.05) as probe:
        time.sleep(0.3)
    assert probe.summary()["count"] == 0 and probe.summary()["errors"] >= 3
