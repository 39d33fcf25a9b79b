"""What a sender keeps per message and per DATA datagram in flight, and what it reports when it
is finished with a message (see :mod:`chat_protocol.transfer.outbound`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat_protocol.const import CHUNK_PAYLOAD_BYTES
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.rangeset import RangeSet


class OutMessage:
    # One per message: a plain class, built natively by the compiled core.
    __slots__ = (
        "acked",
        "lost",
        "msg_id",
        "n_chunks",
        "next_new",
        "outstanding",
        "payload",
        "probe_at",
        "probe_tries",
        "resolved",
        "seq",
        "to",
    )

    def __init__(self, *, msg_id: int, to: str, seq: int, payload: bytes, n_chunks: int) -> None:
        self.msg_id: Final = msg_id
        self.to: Final = to
        self.seq: Final = seq
        self.payload: Final = payload
        self.n_chunks: Final = n_chunks
        self.next_new = 0
        """Index of the first chunk never sent."""
        self.acked = RangeSet()
        """Bytes the destination said it holds (whole chunks only): its byte ranges, and the
        chunks of every packet number it acknowledged."""
        self.outstanding: dict[int, int] = {}
        """Chunk index -> packet number of its latest transmission, for chunks sent and not
        known to be held."""
        self.lost: set[int] = set()
        """Chunks declared lost and waiting in ``LossRecovery.retransmit``."""
        self.probe_at: float | None = None
        """All bytes held but not ``complete`` yet: when to send the last chunk again to ask."""
        self.probe_tries = 0
        self.resolved = False

    @property
    def all_acked(self) -> bool:
        return len(self.acked) == len(self.payload)

    def holds(self, idx: int) -> bool:
        start = idx * CHUNK_PAYLOAD_BYTES
        end = start + CHUNK_PAYLOAD_BYTES
        total = len(self.payload)
        return self.acked.covers(start, end if end < total else total)


class SentPacket:
    """One DATA datagram sent and neither acknowledged nor declared lost (RFC 9002's
    sent_packets entry). A plain class, built natively by the compiled core."""

    __slots__ = ("idx", "msg", "size", "time_sent", "window_used")

    def __init__(
        self, *, msg: OutMessage, idx: int, size: int, time_sent: float, window_used: bool
    ) -> None:
        self.msg: Final = msg
        self.idx: Final = idx
        self.size: Final = size
        self.time_sent: Final = time_sent
        self.window_used: Final = window_used
        """Bytes in flight were near the congestion window when it was sent (its ACK may grow
        the window: ``NewReno.on_packet_sent``)."""


@dataclass(kw_only=True, slots=True, init=False, unsafe_hash=True)
class Resolved:
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.wire.messages).
    """A message the sender is finished with: shown to the receiver's user, or given up on."""

    msg_id: Final[int]
    to: Final[str]
    delivered: Final[bool]
    reason: Final[FailReason | None]
    """Why not delivered (None when ``delivered``)."""

    def __init__(
        self,
        *,
        msg_id: int,
        to: str,
        delivered: bool,
        reason: FailReason | None = None,
    ) -> None:
        self.msg_id = msg_id
        self.to = to
        self.delivered = delivered
        self.reason = reason
