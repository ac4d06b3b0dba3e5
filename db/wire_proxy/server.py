"""The proxy itself: asyncio protocols relaying Postgres connections through two delay lines each.

Every chunk read from one side is queued with the time it is due at the other side (now + half
the RTT) and written by a timer when that time comes. Each direction of each connection has
its own queue and at most one timer, so connections never wait for one another, and a client
that pipelines (psycopg 3, asyncpg) keeps its messages in flight: delay, not serialisation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections import deque
from dataclasses import dataclass

from db.wire_proxy.counters import WireCounters
from db.wire_proxy.protocol import (
    FrontendParser,
    ProtocolViolation,
    StartupCode,
    error_response,
    split_startup_packet,
)

log = logging.getLogger("iobench.wire_proxy")

#: A direction stops reading its source while this much is queued or buffered for its sink.
HIGH_WATER = 1 << 20
LOW_WATER = HIGH_WATER // 4
#: Wake this much before a chunk is due at most (see measure_timer_lead).
MAX_TIMER_LEAD = 0.0003


@dataclass(frozen=True)
class ProxyConfig:
    """Where to listen, where to relay, and how far away the database should seem."""

    upstream_host: str
    upstream_port: int
    rtt_ms: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    control_port: int = 0
    connect_timeout: float = 5.0
    parent_pid: int | None = None  # stop when this process is gone

    @property
    def one_way(self) -> float:
        """Seconds added in each direction: half the round trip."""
        return self.rtt_ms / 2000


class Stats:
    """The live counters of one proxy process (its event loop is their only writer)."""

    def __init__(self, rtt_ms: float) -> None:
        self.rtt_ms = rtt_ms
        self.by_type = [0] * 256  # frontend messages by type byte, shared by every FrontendParser
        self.active = 0
        self._zero()

    def _zero(self) -> None:
        self.since = time.monotonic()
        self.by_type[:] = [0] * 256
        self.connections = self.sessions = self.ssl_requests = self.gssenc_requests = 0
        self.cancel_requests = self.upstream_failures = self.bytes_to_server = self.bytes_to_client = 0

    def snapshot(self) -> WireCounters:
        return WireCounters(
            rtt_ms=self.rtt_ms,
            seconds=time.monotonic() - self.since,
            connections=self.connections,
            sessions=self.sessions,
            ssl_requests=self.ssl_requests,
            gssenc_requests=self.gssenc_requests,
            cancel_requests=self.cancel_requests,
            upstream_failures=self.upstream_failures,
            active=self.active,
            bytes_to_server=self.bytes_to_server,
            bytes_to_client=self.bytes_to_client,
            messages={chr(kind): count for kind, count in enumerate(self.by_type) if count},
        )

    def reset(self) -> WireCounters:
        """The counts so far, then zero (read and reset in one step of the loop: nothing is lost)."""
        counters = self.snapshot()
        self._zero()
        return counters


class DelayLine:
    """One direction of a link: writes each chunk to ``sink`` ``delay`` seconds after it was read.

    Chunks keep their order (they are due in the order they were read). ``source`` stops
    reading while too much is waiting, so a slow reader on one side cannot fill the proxy's memory.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, lead: float,
                 source: asyncio.Transport, sink: asyncio.Transport) -> None:
        self.loop, self.delay, self.lead = loop, delay, lead
        self.source, self.sink = source, sink
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.sink_full = False  # set by the sink's protocol (pause_writing/resume_writing)
        self.finishing = False
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._throttled = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.delay <= 0 and not self.queue:
            self.sink.write(data)
            return
        due = self.loop.time() + self.delay
        self.queue.append((due, data))
        self.queued += len(data)
        if self._timer is None:
            self._timer = self.loop.call_at(due - self.lead, self._deliver)
        if self.queued > HIGH_WATER:
            self.throttle()

    def _deliver(self) -> None:
        self._timer = None
        if self.closed:
            return
        horizon = self.loop.time() + self.lead
        chunks = []
        while self.queue and self.queue[0][0] <= horizon:
            chunks.append(self.queue.popleft()[1])
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self.queued -= len(data)
            self.sink.write(data)
        if self.queue:
            self._timer = self.loop.call_at(self.queue[0][0] - self.lead, self._deliver)
        elif self.finishing:
            self.close()
        self.throttle()

    def throttle(self) -> None:
        """Pause or resume the source to match the backlog."""
        if self.closed:
            return
        backlog = self.queued + self.sink.get_write_buffer_size()
        if not self._throttled and (self.sink_full or backlog > HIGH_WATER):
            self._throttled = True
            self.source.pause_reading()
        elif self._throttled and not self.sink_full and backlog < LOW_WATER:
            self._throttled = False
            self.source.resume_reading()

    def finish(self) -> None:
        """The source has closed: deliver what is queued, then close the sink."""
        self.finishing = True
        if not self.queue:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.queue.clear()
        self.sink.close()  # after its buffer is written


class ClientSide(asyncio.Protocol):
    """A client's connection, and the link it becomes: startup phase, connect upstream, relay."""

    def __init__(self, proxy: WireProxy) -> None:
        self.proxy = proxy
        self.stats = proxy.stats
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.to_server: DelayLine | None = None
        self.to_client: DelayLine | None = None
        self.parser = FrontendParser(self.stats.by_type)
        self.buffer = bytearray()  # startup-phase bytes, then whatever arrives while connecting
        self.connecting: asyncio.Task[None] | None = None
        self.lost = False

    # --- from the client --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.stats.connections += 1
        self.stats.active += 1
        self.proxy.links.add(self)

    def data_received(self, data: bytes) -> None:
        if self.to_server is not None:
            self.stats.bytes_to_server += len(data)
            try:
                self.parser.feed(data)
            except ProtocolViolation as exc:
                self.abort(f"client sent something else than the Postgres protocol: {exc}")
                return
            self.to_server.send(data)
            return
        self.buffer += data
        if self.connecting is None:
            self._startup()

    def _startup(self) -> None:
        """Answer encryption requests; on the StartupMessage (or a CancelRequest) connect upstream."""
        assert self.transport is not None
        while True:
            try:
                packet = split_startup_packet(self.buffer)
            except ProtocolViolation as exc:
                self.abort(f"client sent something else than the Postgres protocol: {exc}")
                return
            if packet is None:
                return
            if packet.code in (StartupCode.SSL_REQUEST, StartupCode.GSSENC_REQUEST):
                # "N": go on in plain text, which every client's default (prefer) accepts. Encryption
                # would hide the messages; on loopback it protects nothing. The answer takes a round trip.
                if packet.code == StartupCode.SSL_REQUEST:
                    self.stats.ssl_requests += 1
                else:
                    self.stats.gssenc_requests += 1
                self.proxy.loop.call_later(2 * self.proxy.config.one_way, self._write_if_open, b"N")
                continue
            if packet.code == StartupCode.CANCEL_REQUEST:
                self.stats.cancel_requests += 1
            elif packet.is_startup_message:
                self.stats.sessions += 1
            self.stats.bytes_to_server += len(packet.raw)
            self.connecting = self.proxy.loop.create_task(self._connect_upstream(packet.raw, packet.is_startup_message))
            return

    def _write_if_open(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _connect_upstream(self, startup: bytes, is_session: bool) -> None:
        config, loop = self.proxy.config, self.proxy.loop
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: ServerSide(self), config.upstream_host, config.upstream_port),
                config.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.stats.upstream_failures += 1
            reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            where = f"{config.upstream_host}:{config.upstream_port}"
            log.warning("cannot reach the database at %s: %s", where, reason)
            if is_session:  # a client that waits for an answer gets the reason, as from a server that refuses
                self._write_if_open(error_response(f"wire proxy: cannot reach the database at {where}: {reason}"))
            if self.transport is not None:
                self.transport.close()
            return
        assert isinstance(transport, asyncio.Transport) and self.transport is not None
        if self.lost:
            transport.abort()
            return
        self.upstream = transport
        self.to_server = DelayLine(loop, config.one_way, self.proxy.timer_lead, self.transport, transport)
        self.to_client = DelayLine(loop, config.one_way, self.proxy.timer_lead, transport, self.transport)
        self.to_server.send(startup)
        early, self.buffer = bytes(self.buffer), bytearray()
        if early:
            self.data_received(early)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.stats.active -= 1
        self.proxy.links.discard(self)
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.to_server is not None:
            self.to_server.finish()
        if self.to_client is not None:
            self.to_client.close()

    def pause_writing(self) -> None:
        if self.to_client is not None:
            self.to_client.sink_full = True
            self.to_client.throttle()

    def resume_writing(self) -> None:
        if self.to_client is not None:
            self.to_client.sink_full = False
            self.to_client.throttle()

    # --- from the server (ServerSide calls these) ------------------------------------------------

    def from_server(self, data: bytes) -> None:
        self.stats.bytes_to_client += len(data)
        if self.to_client is not None:
            self.to_client.send(data)

    def server_lost(self) -> None:
        if self.to_client is not None:
            self.to_client.finish()
        if self.to_server is not None:
            self.to_server.close()

    def abort(self, why: str | None = None) -> None:
        if why:
            log.warning("closing a connection: %s", why)
        for transport in (self.transport, self.upstream):
            if transport is not None:
                transport.abort()


class ServerSide(asyncio.Protocol):
    """The upstream end of a link."""

    def __init__(self, link: ClientSide) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.from_server(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.server_lost()

    def pause_writing(self) -> None:
        if self.link.to_server is not None:
            self.link.to_server.sink_full = True
            self.link.to_server.throttle()

    def resume_writing(self) -> None:
        if self.link.to_server is not None:
            self.link.to_server.sink_full = False
            self.link.to_server.throttle()


async def measure_timer_lead(samples: int = 40, probe: float = 0.0005) -> float:
    """How late this loop's timers fire (timer slack plus the loop's own turn), to wake that much early.

    The median lateness of ``samples`` short sleeps, at most MAX_TIMER_LEAD: without it each
    direction would add some 0.07 ms to the RTT asked for (measured on the 2-core development
    machine, 2026-11).
    """
    loop = asyncio.get_running_loop()
    late = []
    for _ in range(samples):
        started = loop.time()
        await asyncio.sleep(probe)
        late.append(loop.time() - started - probe)
    return min(max(statistics.median(late), 0.0), MAX_TIMER_LEAD)


class WireProxy:
    """The listening proxy, its links and its control port."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.stats = Stats(config.rtt_ms)
        self.links: set[ClientSide] = set()
        self.timer_lead = 0.0
        self.loop = asyncio.get_running_loop()
        self._listener: asyncio.Server | None = None
        self._control: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.sockets[0].getsockname()[1])

    @property
    def control_port(self) -> int:
        assert self._control is not None
        return int(self._control.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self.config.one_way > 0:
            self.timer_lead = await measure_timer_lead()
        self._listener = await self.loop.create_server(lambda: ClientSide(self), self.config.host, self.config.port)
        self._control = await asyncio.start_server(self._serve_control, "127.0.0.1", self.config.control_port)

    def ready_line(self) -> str:
        """What the process prints once it listens: the ports it got, as JSON."""
        return json.dumps({
            "port": self.port,
            "control_port": self.control_port,
            "upstream": f"{self.config.upstream_host}:{self.config.upstream_port}",
            "rtt_ms": self.config.rtt_ms,
            "timer_lead_ms": round(self.timer_lead * 1000, 4),
        })

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.0 endpoint, so that ``curl`` can read it too: ``GET /counters``, and
        ``POST /reset`` (the counts so far, then zero). One request per connection, JSON back."""
        try:
            request = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1").split()
            while (await asyncio.wait_for(reader.readline(), 5)).strip():  # headers: none needed
                pass
            route = tuple(request[:2])
            if route == ("GET", "/counters"):
                status, body = "200 OK", self.stats.snapshot().model_dump_json()
            elif route == ("POST", "/reset"):
                status, body = "200 OK", self.stats.reset().model_dump_json()
            else:
                status, body = "404 Not Found", json.dumps({"error": "try GET /counters or POST /reset"})
            payload = body.encode()
            writer.write(f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        """Stop listening and cut every link (the clients see their connection drop)."""
        for server in (self._listener, self._control):
            if server is not None:
                server.close()
        for link in list(self.links):
            link.abort()
