"""Bytes <-> :mod:`chat_protocol.wire.messages`: one parser and one builder per message kind.

Every datagram starts with a 4-byte header: magic ``PC``, protocol version, kind. Integers are
big-endian. Strings are a 1-byte length then UTF-8. docs/PROTOCOL.md has the full table.

The one entry point of the wire format, in three modules by job: :mod:`~chat_protocol.wire.layouts`
(the header and one :class:`struct.Struct` per fixed layout, shared by both directions),
:mod:`~chat_protocol.wire.build` (one builder per kind; :func:`encode` raises
:class:`InvalidMessage` for a message the wire cannot carry: a local bug) and
:mod:`~chat_protocol.wire.parse` (one parser per kind; :func:`decode` raises
:class:`MalformedDatagram` for anything a remote party sent that is not a valid message: the
caller drops and counts it). Whatever ``encode`` accepts, ``decode`` returns equal.
"""

from __future__ import annotations

from chat_protocol.wire.build import encode
from chat_protocol.wire.layouts import DATA_HEADER_BYTES, HEADER, HEARTBEAT_BYTES, MAX_RELAYED_BYTES
from chat_protocol.wire.parse import decode

__all__ = [
    "DATA_HEADER_BYTES",
    "HEADER",
    "HEARTBEAT_BYTES",
    "MAX_RELAYED_BYTES",
    "decode",
    "encode",
]
