"""A small TCP proxy for fault injection: the service talks to Postgres through it, and a test
can cut the link, blackhole it, slow it down or restore it without touching the shared server.

It runs an asyncio loop in a daemon thread of the test process; every control method is a
plain blocking call that returns once the proxy is in the new state::

    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        url = proxy.url_for(database_url)   # the same database, through the proxy
        proxy.cut()                         # close every relayed connection, refuse new ones
        proxy.cut("blackhole")              # ... or accept new ones and never answer
        proxy.restore()                     # pass-through again
        proxy.latency = 0.05                # added to every chunk, each way
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, Self

from sqlalchemy.engine import make_url

Mode = Literal["pass", "refuse", "blackhole"]


class TcpProxy:
    """Relay 127.0.0.1:<port> to ``upstream``; ``mode`` says what happens to new connections."""

    def __init__(self, upstream: tuple[str, int], *, latency: float = 0.0) -> None:
        self.upstream = upstream
        self.latency = latency
        self.mode: Mode = "pass"
        self.accepted = 0  # connections accepted in total (forwarded or blackholed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, ...]] = set()
        self._holding: set[asyncio.StreamWriter] = set()
        # Bind once up front so the port stays ours across cut/restore (SO_REUSEADDR rebinding).
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    # --- controls (called from the test's thread) ----------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self, mode: Literal["refuse", "blackhole"] = "refuse") -> None:
        """The database goes away: every relayed connection is closed at once (both ends), and new
        connections are refused (nothing listens) or, with ``"blackhole"``, accepted and never answered."""
        self._call(self._cut(mode))

    def restore(self) -> None:
        """The database is back: new connections are relayed again (blackholed ones are closed)."""
        self._call(self._restore())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def open_links(self) -> int:
        """Connections currently relayed to the upstream."""
        return len(self._links)

    def url_for(self, database_url: str) -> str:
        """``database_url`` pointed at this proxy."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- the loop's side ---------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _unlisten(self) -> None:
        # close() stops listening at once; wait_closed() is not awaited, since from Python 3.12
        # it also waits for every relayed connection, which _close_all() ends afterwards.
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _cut(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "refuse":
            await self._unlisten()
        else:
            await self._listen()
        self._close_all()

    async def _restore(self) -> None:
        self.mode = "pass"
        for writer in list(self._holding):
            writer.transport.abort()
        self._holding.clear()
        await self._listen()

    async def _shutdown(self) -> None:
        await self._unlisten()
        self._close_all()

    def _close_all(self) -> None:
        for link in list(self._links):
            for writer in link:
                writer.transport.abort()
        self._links.clear()
        for writer in list(self._holding):
            writer.transport.abort()
        self._holding.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "blackhole":
            # Accept, read nothing, answer nothing: the client's connect_timeout has to fire.
            self._holding.add(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        if self.mode != "pass":  # cut while we were connecting upstream
            client_writer.transport.abort()
            upstream_writer.transport.abort()
            return
        link = (client_writer, upstream_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            self._links.discard(link)
            client_writer.transport.abort()
            upstream_writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # EOF one way ends the link both ways (Postgres has no half-open use).
            writer.transport.abort()
