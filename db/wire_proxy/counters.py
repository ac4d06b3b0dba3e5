"""What the proxy counts, as the JSON its control port answers with."""

from __future__ import annotations

from pydantic import BaseModel, computed_field

#: Frontend messages after which the client waits for the server: each is one round trip.
ROUND_TRIP_TYPES = ("Q", "S", "H")  # Query, Sync, Flush
#: Frontend messages that run a statement.
STATEMENT_TYPES = ("Q", "E")  # Query (simple protocol), Execute (extended protocol)


class WireCounters(BaseModel):
    """Counts since the proxy started or was last reset.

    ``messages`` holds the frontend (client to server) messages by type byte, e.g.
    ``{"Q": 3, "P": 1, "B": 2, "E": 2, "S": 2, "X": 1}``; the startup phase's untyped packets
    are counted on their own (``sessions``, ``ssl_requests``, ...).
    """

    rtt_ms: float
    seconds: float  # since the start or the last reset
    connections: int = 0  # TCP connections accepted
    sessions: int = 0  # StartupMessages relayed: new server sessions
    ssl_requests: int = 0  # answered N: the proxy speaks plain text on both sides
    gssenc_requests: int = 0  # answered N as well
    cancel_requests: int = 0  # relayed to the server on a connection of their own
    upstream_failures: int = 0  # connections the upstream refused or did not answer in time
    active: int = 0  # connections relayed right now (not reset)
    bytes_to_server: int = 0
    bytes_to_client: int = 0
    messages: dict[str, int] = {}

    def count(self, *types: str) -> int:
        return sum(self.messages.get(kind, 0) for kind in types)

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic documents this one
    @property
    def round_trips(self) -> int:
        """Query, Sync and Flush messages: each makes the client wait one network round trip."""
        return self.count(*ROUND_TRIP_TYPES)

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic documents this one
    @property
    def statements(self) -> int:
        """Query and Execute messages (a Query holding several statements counts once)."""
        return self.count(*STATEMENT_TYPES)

    @computed_field  # type: ignore[prop-decorator]  # mypy refuses decorators over @property; pydantic documents this one
    @property
    def parses(self) -> int:
        """Parse messages: statements the server had to plan anew (named or unnamed)."""
        return self.count("P")
