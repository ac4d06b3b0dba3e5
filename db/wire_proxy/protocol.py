"""The frontend half of the Postgres wire protocol (v3), as far as a counting proxy needs it.

A client's stream opens with untyped packets (int32 length, int32 code): SSLRequest and
GSSENCRequest, which ask to encrypt and wait for one byte, ``S`` or ``N``; then either a
CancelRequest or the StartupMessage. Every later message is typed: one type byte, then an
int32 length that counts itself but not the type byte.
See https://www.postgresql.org/docs/current/protocol-message-formats.html.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: A startup-phase packet longer than this is not Postgres (the server's own limit is 10000).
MAX_STARTUP_PACKET = 10_000


class StartupCode(IntEnum):
    """The int32 after the length in an untyped packet."""

    SSL_REQUEST = 80877103
    GSSENC_REQUEST = 80877104
    CANCEL_REQUEST = 80877102
    PROTOCOL_3 = 3 << 16  # 196608; a StartupMessage carries major 3 in the high 16 bits


class ProtocolViolation(ValueError):
    """The client's bytes are not the Postgres protocol."""


@dataclass(frozen=True)
class StartupPacket:
    """One untyped packet of the startup phase, whole."""

    code: int
    raw: bytes

    @property
    def is_startup_message(self) -> bool:
        return self.code >> 16 == 3


def split_startup_packet(buffer: bytearray) -> StartupPacket | None:
    """Take the first whole startup-phase packet off ``buffer``; None until all of it has arrived."""
    if len(buffer) < 8:
        return None
    length = int.from_bytes(buffer[:4], "big")
    if not 8 <= length <= MAX_STARTUP_PACKET:
        raise ProtocolViolation(f"startup packet length {length}")
    if len(buffer) < length:
        return None
    packet = StartupPacket(int.from_bytes(buffer[4:8], "big"), bytes(buffer[:length]))
    del buffer[:length]
    return packet


class FrontendParser:
    """Counts the typed frontend messages in a stream fed in chunks as they arrive.

    ``counts`` is indexed by the type byte and may be shared by every connection of a proxy.
    Only the 5-byte headers are read: message bodies are skipped by length, so a big COPY or
    Bind costs no more than a small one.
    """

    __slots__ = ("counts", "_header", "_skip")

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self._header = b""  # a header split across chunks
        self._skip = 0  # body bytes of the current message still to come

    def feed(self, data: bytes) -> None:
        position, end = 0, len(data)
        while position < end:
            if self._skip:
                taken = min(self._skip, end - position)
                self._skip -= taken
                position += taken
                continue
            if self._header or end - position < 5:
                needed = 5 - len(self._header)
                self._header += data[position : position + needed]
                position += needed
                if len(self._header) < 5:
                    return
                header, self._header = self._header, b""
            else:
                header = data[position : position + 5]
                position += 5
            length = int.from_bytes(header[1:5], "big")
            if length < 4:
                raise ProtocolViolation(f"message {chr(header[0])!r} with length {length}")
            self.counts[header[0]] += 1
            self._skip = length - 4


def error_response(message: str, *, code: str = "08006") -> bytes:
    """A FATAL ErrorResponse, as the server sends when it refuses a connection (08006: connection_failure)."""
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    ) + b"\0"
    return b"E" + (len(fields) + 4).to_bytes(4, "big") + fields
