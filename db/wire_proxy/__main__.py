"""``python -m db.wire_proxy --upstream 127.0.0.1:5432 --rtt-ms 1``: the proxy as a process of its own.

Once it listens it prints one JSON line to stdout (its ports, the RTT, the timer lead) and
nothing more there; warnings go to stderr. SIGTERM or SIGINT stops it and cuts every link.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import selectors
import signal
import sys

from db.wire_proxy.rtt import parse_rtt_ms
from db.wire_proxy.server import ProxyConfig, WireProxy

#: select(2) takes no descriptor at or above FD_SETSIZE.
FD_SETSIZE = 1024


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def _rtt(text: str) -> float:
    try:
        return parse_rtt_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--db-rtt", "--rtt-ms")) from None


def parse_args(argv: list[str] | None = None) -> ProxyConfig:
    parser = argparse.ArgumentParser(prog="python -m db.wire_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=_host_port, required=True, help="the Postgres server, HOST:PORT")
    parser.add_argument("--rtt-ms", type=_rtt, default=0.0, help="round-trip time to add, in ms (half each way)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on, on 127.0.0.1 (default: a free one)")
    parser.add_argument("--control-port", type=int, default=0, help="port of the control interface (default: a free one)")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to reach the upstream")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone (no orphaned proxy)")
    args = parser.parse_args(argv)
    host, port = args.upstream
    return ProxyConfig(host, port, rtt_ms=args.rtt_ms, port=args.port, control_port=args.control_port,
                       connect_timeout=args.connect_timeout, parent_pid=args.parent_pid)


def event_loop(config: ProxyConfig) -> asyncio.AbstractEventLoop:
    """select(2) when there is a delay to add, the default epoll otherwise.

    epoll's timeout is in whole milliseconds, rounded up, so a 0.25 ms wait takes over 1 ms;
    select's is in microseconds. select handles descriptors below 1024 only, so the process's
    limit is lowered to that: accept(2) then fails with EMFILE (asyncio retries a moment later)
    rather than handing select a descriptor it cannot take. That is some 500 links.
    """
    if config.one_way <= 0:
        return asyncio.new_event_loop()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft > FD_SETSIZE:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_SETSIZE, hard))
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


async def serve(config: ProxyConfig) -> None:
    proxy = WireProxy(config)
    await proxy.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        proxy.loop.add_signal_handler(signum, stop.set)
    print(proxy.ready_line(), flush=True)
    if config.parent_pid is not None:
        proxy.loop.create_task(_watch_parent(config.parent_pid, stop))
    await stop.wait()
    proxy.close()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once our parent has gone (we are reparented), checked once a second."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(1)
    stop.set()


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="wire proxy %(levelname)s: %(message)s")
    with asyncio.Runner(loop_factory=lambda: event_loop(config)) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main()
