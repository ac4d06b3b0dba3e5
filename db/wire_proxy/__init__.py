"""A Postgres-aware TCP proxy for loopback: it puts the database a chosen round trip away and
counts what the clients send (round trips, statements, Parse messages, new sessions).

Linux has ``tc netem`` for delay, but not everywhere (not on our machines); a userspace proxy
works wherever Python does, and, since it parses the frontend protocol, it also counts the
work each driver puts on the wire. It runs as a process of its own (``python -m db.wire_proxy``)
so that its CPU can be measured apart from the service's; ``ProxyProcess`` starts and reads it.
"""

from db.wire_proxy.counters import WireCounters
from db.wire_proxy.process import ProxyError, ProxyProcess
from db.wire_proxy.rtt import MAX_RTT_MS, parse_rtt_ms

__all__ = ["MAX_RTT_MS", "ProxyError", "ProxyProcess", "WireCounters", "parse_rtt_ms"]
