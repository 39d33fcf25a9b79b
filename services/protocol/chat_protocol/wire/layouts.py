"""The wire's fixed layouts: the 4-byte header and one :class:`struct.Struct` per message body,
used both to build (:mod:`chat_protocol.wire.build`) and to parse (:mod:`chat_protocol.wire.parse`).
All but ``HEADER`` describe what follows the header. Integers are big-endian."""

from __future__ import annotations

import struct

from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_PN_RANGE_BYTES,
    ACK_RANGE_BYTES,
    LOOKUP_BYTES,
    LOOKUP_REPLY_BYTES,
    MAGIC,
    MAX_DATAGRAM_BYTES,
    MAX_LOCAL_ENDPOINTS,
    NAME_MAX_CHARS,
    PROTOCOL_VERSION,
    RELAY_OVERHEAD_BYTES,
    STATIC_KEY_BYTES,
    TOKEN_BYTES,
)
from chat_protocol.wire.messages import Kind

HEADER = struct.Struct("!2sBB")  # magic, version, kind
H = HEADER.size
U32 = struct.Struct("!I")  # BYE_ACK req_id; PING, PONG nonce
U32_U8 = struct.Struct("!IB")  # HELLO, LOOKUP_REPLY: req_id, name length; REFUSED: req_id, reason
U32_U32 = struct.Struct("!II")  # an ACK range: start, end
TOKEN = struct.Struct(f"!{TOKEN_BYTES}s")  # HEARTBEAT, SHUTDOWN, UNKNOWN_SESSION
TOKEN_U32 = struct.Struct(f"!{TOKEN_BYTES}sI")  # HEARTBEAT_ACK: heartbeat_ms; BYE: req_id
TOKEN_U32_U8 = struct.Struct(f"!{TOKEN_BYTES}sIB")  # LIST: token, req_id, name length
LOOKUP = struct.Struct(f"!{TOKEN_BYTES}sIBB")  # token, req_id, flags, name length
LOOKUP_PUNCH = 0x01  # LOOKUP flags: the asker means to send (hint the target to punch)
TOKEN_KEY = struct.Struct(f"!{TOKEN_BYTES}s{STATIC_KEY_BYTES}s")  # RELAY, RELAYED: token, key
MAX_RELAYED_BYTES = MAX_DATAGRAM_BYTES - RELAY_OVERHEAD_BYTES
"""Largest peer datagram a RELAY carries (its TRANSPORT on the directory session fits then)."""
TOKEN_KEY_U8 = struct.Struct(f"!{TOKEN_BYTES}s{STATIC_KEY_BYTES}sB")  # PUNCH: token, key, name len
WELCOME = struct.Struct(f"!I{TOKEN_BYTES}sI")  # req_id, token, heartbeat_ms
LIST_REPLY = struct.Struct("!IIBH")  # req_id, total, more, count
# session, stream, base, seq, pn, msg_id, offset, total, name length
DATA = struct.Struct("!IIIIQQIIB")
ACK = struct.Struct("!IIIBIBB")  # session, stream, seq, complete, ack delay, pn count, range count
RANGE = U32_U32
PN_RANGE = struct.Struct("!QQ")  # an ACK's packet-number range: start, end
PORT = struct.Struct("!H")

HEARTBEAT_BYTES = H + TOKEN.size
DATA_HEADER_BYTES = H + DATA.size
"""A DATA datagram's bytes besides the sender's name and the payload."""
if (  # pragma: no cover
    H + ACK.size != ACK_HEADER_BYTES
    or RANGE.size != ACK_RANGE_BYTES
    or PN_RANGE.size != ACK_PN_RANGE_BYTES
):
    raise ImportError("const.ACK_*_BYTES disagree with the ACK layout")
ADDR_MAX = 1 + 16 + PORT.size  # an IPv6 address
if (  # pragma: no cover
    H + LOOKUP.size + NAME_MAX_CHARS != LOOKUP_BYTES
    or H + U32_U8.size + NAME_MAX_CHARS + ADDR_MAX + STATIC_KEY_BYTES
    + 1 + MAX_LOCAL_ENDPOINTS * ADDR_MAX
    != LOOKUP_REPLY_BYTES
):
    raise ImportError("const.LOOKUP_BYTES / LOOKUP_REPLY_BYTES disagree with the layouts")

HEADERS = {k: HEADER.pack(MAGIC, PROTOCOL_VERSION, k) for k in Kind}
