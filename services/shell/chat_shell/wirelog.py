"""An opt-in log of every datagram a program sends and receives, for the lab's pictures
(``make trace``): ``CHAT_WIRE_LOG=PATH`` makes the shell append one JSON line per datagram::

    {"t": 1764990000.123456, "dir": "out", "peer": "172.18.0.3:40211", "size": 91, "kind": "DATA"}

``t`` is the wall clock (seconds; the same clock a packet capture on this machine reads),
``dir`` is ``out`` or ``in``, ``peer`` the address it went to or came from, ``size`` the UDP
payload's bytes. ``kind`` is the sender's own knowledge: for a datagram sent, the secure
packet's type (``HANDSHAKE_INIT``, ``HANDSHAKE_RESPONSE``, ``COOKIE_REPLY``, ``KEY_REQUEST``,
``KEY_REPLY``) or, for a TRANSPORT datagram, the kind of the message it carries (``LOOKUP``,
``DATA``, ``ACK``, ... from :class:`~chat_protocol.wire.messages.Kind`; ``KEEPALIVE`` for an
empty one), which the core reports through :attr:`SecureEndpoint.tap` as it seals it. For a
datagram received only the packet type is known here (nothing is decrypted for the log).
A DATA datagram's line also has ``detail``: the bytes of its message it carries
(``"bytes 0-1180 of 60000"``).

Unset (the default), nothing is logged and the core's hook stays None.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO

from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.endpoint import SecureEndpoint
from chat_protocol.secure.packets import PacketType
from chat_protocol.wire.codec import HEADER, decode
from chat_protocol.wire.messages import Addr, Data, Kind

WIRE_LOG_ENV = "CHAT_WIRE_LOG"


def packet_kind(datagram: bytes) -> str:
    """The secure packet type named by the first byte (plaintext in every packet), or the
    message kind of a datagram sent in the clear (PING, PONG)."""
    if not datagram:
        return "EMPTY"
    try:
        return PacketType(datagram[0]).name
    except ValueError:
        return message_kind(datagram)


def message_kind(plaintext: bytes) -> str:
    """The kind of a message, from its header (magic, version, kind); KEEPALIVE for an empty
    one (a sealed b"")."""
    if not plaintext:
        return "KEEPALIVE"
    if len(plaintext) < HEADER.size:
        return "UNKNOWN"
    kind = HEADER.unpack_from(plaintext)[2]
    try:
        return Kind(kind).name
    except ValueError:
        return f"UNKNOWN_0x{kind:02x}"


def chunk_of(plaintext: bytes) -> str:
    """For a DATA message, which bytes of its message it carries (``bytes 0-1180 of 60000``);
    "" for anything else."""
    if message_kind(plaintext) != "DATA":
        return ""
    try:
        msg = decode(plaintext)
    except MalformedDatagram:
        return ""
    if not isinstance(msg, Data):
        return ""
    return f"bytes {msg.offset}-{msg.offset + len(msg.payload)} of {msg.total}"


class WireLog:
    """Appends one JSON line per datagram to ``path``; learns the kinds of the TRANSPORT
    datagrams from ``endpoint``'s tap (kept until the datagram is logged as sent)."""

    def __init__(self, path: Path, endpoint: SecureEndpoint | None) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)
        self._sealed: dict[bytes, tuple[str, str]] = {}
        if endpoint is not None:
            endpoint.tap = self._seal

    def _seal(self, datagram: bytes, plaintext: bytes) -> None:
        self._sealed[datagram] = (message_kind(plaintext), chunk_of(plaintext))

    def _write(self, direction: str, addr: Addr, size: int, kind: str, detail: str = "") -> None:
        record: dict[str, object] = {
            "t": round(time.time(), 6),
            "dir": direction,
            "peer": f"{addr[0]}:{addr[1]}",
            "size": size,
            "kind": kind,
        }
        if detail:
            record["detail"] = detail
        self._file.write(json.dumps(record) + "\n")

    def sent(self, datagram: bytes, addr: Addr) -> None:
        sealed = self._sealed.pop(datagram, None)
        kind, detail = sealed if sealed is not None else (packet_kind(datagram), "")
        self._write("out", addr, len(datagram), kind, detail)

    def received(self, datagram: bytes, addr: Addr) -> None:
        self._write("in", addr, len(datagram), packet_kind(datagram))

    def settle(self) -> None:
        """Forget kinds of datagrams sealed but never sent (none, normally)."""
        self._sealed.clear()

    def close(self) -> None:
        self._file.close()
