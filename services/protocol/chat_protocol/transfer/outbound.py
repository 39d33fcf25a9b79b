"""The sender's side of a transfer: messages to one destination, cut into chunks, retransmitted
until acknowledged (see :mod:`chat_protocol.transfer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    FAST_RETRANSMIT_THRESHOLD,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.rangeset import RangeSet
from chat_protocol.wire.messages import Ack, Addr, Data

_NEVER = float("inf")


class _InFlight:
    # One per chunk sent: a plain class, built natively by the compiled core.
    __slots__ = ("deadline", "later_acked", "probe", "sent_at", "tries")

    def __init__(self, *, sent_at: float, deadline: float, tries: int, probe: bool = False) -> None:
        self.sent_at = sent_at
        self.deadline = deadline
        """When to retransmit; ``inf`` while scheduled in ``Outbound.retransmit``."""
        self.tries = tries
        self.later_acked = 0
        """Chunks of the same message sent after this one and acknowledged since it was sent."""
        self.probe = probe
        """The last chunk of a message whose bytes are all acknowledged, kept to ask for the
        ``complete`` ACK; it gives no RTT sample."""


class OutMessage:
    # One per message: a plain class, built natively by the compiled core.
    __slots__ = ("acked", "inflight", "msg_id", "n_chunks", "next_new", "payload", "seq", "to")

    def __init__(self, *, msg_id: int, to: str, seq: int, payload: bytes, n_chunks: int) -> None:
        self.msg_id: Final = msg_id
        self.to: Final = to
        self.seq: Final = seq
        self.payload: Final = payload
        self.n_chunks: Final = n_chunks
        self.next_new = 0
        """Index of the first chunk never sent."""
        self.acked = RangeSet()
        """Bytes the destination said it holds (whole chunks only)."""
        self.inflight: dict[int, _InFlight] = {}
        """Chunk index -> send state, for chunks sent and not acknowledged (or the probe)."""

    @property
    def all_acked(self) -> bool:
        return len(self.acked) == len(self.payload)


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


class Outbound:
    """Messages to one destination address, in the order they were queued."""

    def __init__(
        self, *, addr: Addr, sender: str, session: int, stream: int, timings: Timings
    ) -> None:
        self.addr = addr
        self.sender = sender
        self.session = session
        self.stream = stream
        self.timings = timings
        self.queue: list[OutMessage] = []
        """Unresolved messages, lowest seq first."""
        self.next_seq = 0
        self.in_flight = 0
        """Chunks in flight over every queued message (the window counts these)."""
        self.retransmit: list[tuple[int, int]] = []
        """(seq, chunk index) due for retransmission at the next :meth:`datagrams`."""
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = timings.retransmit_initial_s
        self.last_progress = 0.0
        """When the destination last acknowledged new bytes or completed a message."""
        self.retransmissions = 0

    # -- queueing --

    def enqueue(self, *, msg_id: int, to: str, payload: bytes, now: float) -> None:
        """Queue one message; ``msg_id`` is the caller's id for it, unique in this session."""
        if not 0 < len(payload) <= MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message of {len(payload)} bytes, not 1..{MAX_MESSAGE_BYTES}")
        if not self.queue:
            self.last_progress = now
        n = -(-len(payload) // CHUNK_PAYLOAD_BYTES)
        self.queue.append(
            OutMessage(msg_id=msg_id, to=to, seq=self.next_seq, payload=payload, n_chunks=n)
        )
        self.next_seq += 1

    @property
    def pending(self) -> int:
        return len(self.queue)

    def _base(self) -> int:
        return self.queue[0].seq if self.queue else self.next_seq

    def _chunk(self, msg: OutMessage, idx: int) -> Data:
        off = idx * CHUNK_PAYLOAD_BYTES
        return Data(
            session=self.session,
            stream=self.stream,
            base=self._base(),
            seq=msg.seq,
            msg_id=msg.msg_id,
            offset=off,
            total=len(msg.payload),
            sender=self.sender,
            payload=msg.payload[off : off + CHUNK_PAYLOAD_BYTES],
        )

    def _find(self, seq: int) -> OutMessage | None:
        if not self.queue:
            return None
        i = seq - self.queue[0].seq
        if 0 <= i < len(self.queue) and self.queue[i].seq == seq:
            return self.queue[i]
        for m in self.queue:  # a message in the middle may have completed and been removed
            if m.seq == seq:
                return m
        return None

    def _backoff(self, tries: int) -> float:
        return min(self.rto * (1 << min(tries - 1, 30)), self.timings.retransmit_max_s)

    # -- output --

    def datagrams(self, now: float) -> list[Data]:
        """Chunks to send now: due retransmissions first, then new chunks the window allows."""
        out: list[Data] = []
        for seq, idx in self.retransmit:
            msg = self._find(seq)
            st = None if msg is None else msg.inflight.get(idx)
            if msg is None or st is None:
                continue
            st.tries += 1
            st.sent_at = now
            st.later_acked = 0
            st.deadline = now + self._backoff(st.tries)
            self.retransmissions += 1
            out.append(self._chunk(msg, idx))
        self.retransmit.clear()
        if not self.queue:
            return out
        window_seq = self.queue[0].seq + MAX_PARTIAL_MESSAGES_PER_PEER
        for msg in self.queue:
            if msg.seq >= window_seq or self.in_flight >= SEND_WINDOW_CHUNKS:
                break
            total = len(msg.payload)
            while msg.next_new < msg.n_chunks and self.in_flight < SEND_WINDOW_CHUNKS:
                idx = msg.next_new
                msg.next_new += 1
                start = idx * CHUNK_PAYLOAD_BYTES
                if msg.acked.covers(start, min(start + CHUNK_PAYLOAD_BYTES, total)):
                    continue  # the destination already has it
                msg.inflight[idx] = _InFlight(sent_at=now, deadline=now + self.rto, tries=1)
                self.in_flight += 1
                out.append(self._chunk(msg, idx))
        return out

    # -- timers --

    def next_timer(self) -> float | None:
        if not self.queue:
            return None
        t = self.last_progress + self.timings.delivery_timeout_s
        for msg in self.queue:
            for st in msg.inflight.values():
                if st.deadline < t:
                    t = st.deadline
        return t

    def handle_timer(self, now: float) -> list[Resolved]:
        """Schedule due retransmissions; give up on everything if the peer made no progress."""
        if not self.queue:
            return []
        if now >= self.last_progress + self.timings.delivery_timeout_s:
            failed = [
                Resolved(msg_id=m.msg_id, to=m.to, delivered=False, reason=FailReason.TIMEOUT)
                for m in self.queue
            ]
            # Skip the gap: base moves past the abandoned messages on the next DATA.
            self.queue.clear()
            self.retransmit.clear()
            self.in_flight = 0
            return failed
        for msg in self.queue:
            for idx, st in msg.inflight.items():
                if st.deadline <= now:
                    st.deadline = _NEVER  # re-armed when actually resent
                    self.retransmit.append((msg.seq, idx))
        return []

    # -- input --

    def on_ack(self, ack: Ack, now: float) -> list[Resolved]:
        if ack.session != self.session or ack.stream != self.stream:
            return []
        msg = self._find(ack.seq)
        if msg is None:
            return []
        if ack.complete:
            sample = None
            newest = -1.0
            for st in msg.inflight.values():
                if st.tries == 1 and not st.probe and st.sent_at >= newest:
                    newest, sample = st.sent_at, now - st.sent_at
            if sample is not None:
                self._rtt_sample(sample)
            self.last_progress = now
            self.in_flight -= len(msg.inflight)
            msg.inflight.clear()
            self.queue.remove(msg)
            return [Resolved(msg_id=msg.msg_id, to=msg.to, delivered=True)]
        if self._take_ranges(msg, ack.ranges):
            self.last_progress = now
            self._newly_acked(msg, now)
        return []

    def _take_ranges(self, msg: OutMessage, ranges: tuple[tuple[int, int], ...]) -> int:
        """Record the whole chunks ``ranges`` cover; return how many bytes are new."""
        total = len(msg.payload)
        new = 0
        for a, b in ranges:
            start = -(-a // CHUNK_PAYLOAD_BYTES) * CHUNK_PAYLOAD_BYTES
            end = total if b >= total else b // CHUNK_PAYLOAD_BYTES * CHUNK_PAYLOAD_BYTES
            if start < end:
                new += msg.acked.add(start, end)
        return new

    def _newly_acked(self, msg: OutMessage, now: float) -> None:
        """Retire the chunks in flight that are now acknowledged; keep or start the probe."""
        total = len(msg.payload)
        last = msg.n_chunks - 1
        all_acked = msg.all_acked
        sample: float | None = None
        newest = -1.0
        for idx in [i for i in msg.inflight if not msg.inflight[i].probe]:
            start = idx * CHUNK_PAYLOAD_BYTES
            if not msg.acked.covers(start, min(start + CHUNK_PAYLOAD_BYTES, total)):
                continue
            st = msg.inflight[idx]
            if st.tries == 1 and st.sent_at >= newest:
                newest, sample = st.sent_at, now - st.sent_at
            if all_acked and idx == last:
                st.probe = True  # stays in flight, on its current deadline
            else:
                del msg.inflight[idx]
                self.in_flight -= 1
        if sample is not None:
            self._rtt_sample(sample)
        if all_acked:
            if last not in msg.inflight:
                msg.inflight[last] = _InFlight(
                    sent_at=now, deadline=now + self.rto, tries=1, probe=True
                )
                self.in_flight += 1
        elif newest >= 0:
            self._fast_retransmit(msg, newest)

    def _fast_retransmit(self, msg: OutMessage, acked_sent_at: float) -> None:
        for idx, st in msg.inflight.items():
            if st.sent_at < acked_sent_at and st.deadline != _NEVER:
                st.later_acked += 1
                if st.later_acked >= FAST_RETRANSMIT_THRESHOLD:
                    st.deadline = _NEVER
                    self.retransmit.append((msg.seq, idx))

    def _rtt_sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        t = self.timings
        self.rto = min(max(self.srtt + 4 * self.rttvar, t.retransmit_min_s), t.retransmit_max_s)
