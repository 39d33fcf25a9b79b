"""Reliable, ordered, exactly-once messages over datagrams, one direction of one peer pair.

:class:`Outbound` is what a sender keeps per destination address; :class:`Inbound` is what a
receiver keeps per sending address. Neither touches a socket or a clock.

* A message is cut into chunks of :data:`CHUNK_PAYLOAD_BYTES` at aligned offsets; every chunk is a
  DATA datagram naming (session, stream, seq, msg_id, offset, total).
* "Delivered" means the receiver's user was shown the message. :meth:`Inbound.on_data` hands
  whole messages to the client core in order; the core calls :meth:`Inbound.shown` once its user
  saw one. Until then the receiver acknowledges the message with its full byte range and
  ``complete=False``; after, with ``complete=True`` (sent at once, not only when asked).
* The receiver acknowledges what it holds: ``complete``, or the byte ranges it has (the lowest
  ones that fit: an ACK is never larger than the DATA that caused it). Datagrams received in one
  batch share one ACK per message.
* The sender retransmits an unacknowledged chunk after a retransmission timeout estimated from
  round-trip samples (RFC 6298, Karn's rule), doubling per retry up to a cap, and at once when
  :data:`FAST_RETRANSMIT_THRESHOLD` later chunks of the same message were acknowledged (fast
  retransmit). At most :data:`SEND_WINDOW_CHUNKS` chunks are in flight per destination.
* A message whose bytes are all acknowledged but that is not ``complete`` yet keeps its last
  chunk in flight as a probe, retransmitted with the same backoff: so a lost ``complete`` ACK is
  recovered, and a receiver that never shows the message runs into the delivery timeout.
* If the destination acknowledges nothing new (no new bytes, no completion) for
  ``delivery_timeout_s`` while messages are pending, every pending message fails
  (:attr:`FailReason.TIMEOUT`); DATA carries ``base`` (lowest unresolved seq) so the receiver
  skips the gap instead of waiting for it forever. Stale or duplicate chunks are acknowledged,
  never delivered twice.

Costs per datagram do not grow with what is held: byte coverage is a :class:`RangeSet` (binary
search), an ACK reads at most :data:`MAX_ACK_RANGES` ranges of it, and the sender's per-ACK work
is bounded by the chunks of that message in flight (at most the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_RANGE_BYTES,
    CHUNK_PAYLOAD_BYTES,
    FAST_RETRANSMIT_THRESHOLD,
    MAX_ACK_RANGES,
    MAX_BUFFERED_BYTES_PER_PEER,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.messages import Ack, Addr, Data
from chat_protocol.outcomes import FailReason
from chat_protocol.rangeset import RangeSet

__all__ = [
    "MAX_BUFFERED_BYTES_PER_PEER",
    "ChunkRejected",
    "Inbound",
    "OutMessage",
    "Outbound",
    "Resolved",
]

_NEVER = float("inf")


# --- sender -------------------------------------------------------------------------------------


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
    # Made per datagram: __init__ written out, fields Final (see chat_protocol.messages).
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


# --- receiver -----------------------------------------------------------------------------------


class _Partial:
    """One message being reassembled: its chunks by offset, and which bytes are here. (One per
    message: a plain class, built natively by the compiled core.)"""

    __slots__ = ("chunks", "have", "msg_id", "total")

    def __init__(self, *, total: int, msg_id: int) -> None:
        self.total: Final = total
        self.msg_id: Final = msg_id
        self.chunks: dict[int, bytes] = {}
        self.have = RangeSet()

    @property
    def complete(self) -> bool:
        return len(self.have) == self.total

    def join(self) -> bytes:
        return b"".join(self.chunks[off] for off in range(0, self.total, CHUNK_PAYLOAD_BYTES))


class ChunkRejected(Exception):
    """A DATA datagram that is well-formed but not acceptable from this sender."""


class Inbound:
    """Messages from one sending address (one sender session), handed over in order, once."""

    def __init__(self, *, addr: Addr, sender: str, session: int, stream: int, base: int) -> None:
        self.addr = addr
        self.sender = sender
        self.session = session
        self.stream = stream
        self.next_seq = base
        """The next seq to hand to the client core; everything below was handed or skipped."""
        self.partial: dict[int, _Partial] = {}
        self.unshown: dict[int, int] = {}
        self.discarded: set[int] = set()
        """Seqs handed over that the core will never show (refused sender): never acked."""
        """seq -> total of messages handed to the client core but not yet :meth:`shown`, in seq
        order. Their bytes still count in ``buffered``."""
        self.buffered = 0
        """Bytes held for this sender: partial messages and unshown ones."""
        self.pending_acks: dict[int, int] = {}
        """seq -> size of the largest datagram that asked for this ACK (amplification bound)."""
        self.duplicates = 0

    def on_data(self, d: Data, size: int, now: float) -> list[tuple[int, int, bytes]]:
        """Take one chunk (``size``: its datagram's length).

        Returns ``(seq, msg_id, payload)`` of the messages now whole and next in order, for the
        client core to show; it calls :meth:`shown` for each, in order, once its user saw it.
        Raises :class:`ChunkRejected` (the chunk is dropped unacknowledged) for a chunk that is
        inconsistent or beyond the limits.
        """
        if d.sender != self.sender:
            raise ChunkRejected("sender name changed within a session")
        if d.offset % CHUNK_PAYLOAD_BYTES or len(d.payload) != min(
            CHUNK_PAYLOAD_BYTES, d.total - d.offset
        ):
            raise ChunkRejected("chunk not aligned")
        if d.stream < self.stream:
            raise ChunkRejected("stale stream")
        if d.stream > self.stream:
            self.stream = d.stream
            self.next_seq = d.base
            self.partial.clear()
            self.unshown.clear()
            self.discarded.clear()
            self.buffered = 0
            self.pending_acks.clear()
        out = self._skip_to(d.base) if d.base > self.next_seq else []
        if self.discarded and min(self.discarded) < d.base:
            self.discarded = {s for s in self.discarded if s >= d.base}
        try:
            self._take(d, size)
        except ChunkRejected:
            if not out:
                raise
            # The skip already handed messages over: they must not be lost with this chunk,
            # which is dropped unacknowledged all the same.
            return out
        out.extend(self._deliverable())
        return out

    def _take(self, d: Data, size: int) -> None:
        if d.seq < self.next_seq:
            self.duplicates += 1
            self._want_ack(d.seq, size)
            return
        first_unshown = next(iter(self.unshown), self.next_seq)
        if d.seq >= first_unshown + MAX_PARTIAL_MESSAGES_PER_PEER:
            raise ChunkRejected("too far ahead")
        p = self.partial.get(d.seq)
        if p is None:
            p = _Partial(total=d.total, msg_id=d.msg_id)
        elif p.total != d.total:
            raise ChunkRejected("total changed")
        elif p.msg_id != d.msg_id:
            raise ChunkRejected("msg_id changed")
        if d.offset in p.chunks:
            self.duplicates += 1
        else:
            if self.buffered + len(d.payload) > MAX_BUFFERED_BYTES_PER_PEER:
                raise ChunkRejected("receive buffer full")
            self.partial[d.seq] = p
            p.chunks[d.offset] = d.payload
            p.have.add(d.offset, d.offset + len(d.payload))
            self.buffered += len(d.payload)
        self._want_ack(d.seq, size)

    def shown(self, seq: int) -> None:
        """The client core showed message ``seq`` (and every earlier one) to its user.

        Queues a ``complete`` ACK for each, so the sender hears at once. A seq that is not
        waiting to be shown (already shown, or from before a stream reset) is ignored.
        """
        if seq not in self.unshown:
            return
        while self.unshown:
            first = next(iter(self.unshown))
            if first > seq:
                break
            self.buffered -= self.unshown.pop(first)
            self._want_ack(first, 0)  # a complete ACK carries no ranges: no bound needed

    def drop_partials(self) -> int:
        """Forget every message not yet whole (a stalled sender); the bytes freed."""
        freed = sum(len(p.have) for p in self.partial.values())
        self.partial.clear()
        self.buffered -= freed
        return freed

    def drop_largest_partial(self) -> int:
        """Forget the message not yet whole that holds the most bytes (the receiver needs room
        for another sender); the bytes freed. Never shown, it is never acknowledged complete:
        its sender reports it not delivered."""
        if not self.partial:
            return 0
        seq = max(self.partial, key=lambda s: len(self.partial[s].have))
        freed = len(self.partial.pop(seq).have)
        self.buffered -= freed
        return freed

    def discard(self, seq: int) -> None:
        """The client core will never show message ``seq`` (its sender was refused): free it.
        It is never acknowledged ``complete``, so its sender reports it not delivered."""
        size = self.unshown.pop(seq, None)
        if size is not None:
            self.buffered -= size
            self.discarded.add(seq)

    def _want_ack(self, seq: int, size: int) -> None:
        self.pending_acks[seq] = max(size, self.pending_acks.get(seq, 0))

    def _hand_over(self, seq: int, p: _Partial) -> tuple[int, int, bytes]:
        self.unshown[seq] = p.total  # its bytes stay counted in ``buffered`` until shown
        return (seq, p.msg_id, p.join())

    def _deliverable(self) -> list[tuple[int, int, bytes]]:
        out = []
        while (p := self.partial.get(self.next_seq)) is not None and p.complete:
            del self.partial[self.next_seq]
            out.append(self._hand_over(self.next_seq, p))
            self.next_seq += 1
        return out

    def _skip_to(self, base: int) -> list[tuple[int, int, bytes]]:
        """The sender resolved everything below ``base``: hand over what is whole, drop the
        rest."""
        out = []
        for seq in sorted(s for s in self.partial if s < base):
            p = self.partial.pop(seq)
            if p.complete:
                out.append(self._hand_over(seq, p))
            else:
                self.buffered -= len(p.have)
        self.next_seq = base
        out.extend(self._deliverable())
        return out

    def acks(self) -> list[Ack]:
        """The ACKs asked for since the last call: ``complete`` for a message shown, the full
        range of one handed over but not shown yet, else the lowest byte ranges held."""
        out = []
        for seq, trigger_size in self.pending_acks.items():
            if seq in self.discarded:
                continue  # never shown, never acknowledged: its sender reports it not delivered
            if seq < self.next_seq:
                total = self.unshown.get(seq)
                out.append(
                    Ack(
                        session=self.session,
                        stream=self.stream,
                        seq=seq,
                        complete=total is None,
                        ranges=() if total is None else ((0, total),),
                    )
                )
                continue
            p = self.partial.get(seq)
            if p is None:
                continue
            # No reply larger than what caused it: ranges are capped by the trigger's size.
            room = (trigger_size - ACK_HEADER_BYTES) // ACK_RANGE_BYTES
            limit = max(1, min(MAX_ACK_RANGES, room))
            out.append(
                Ack(
                    session=self.session,
                    stream=self.stream,
                    seq=seq,
                    complete=False,
                    ranges=p.have.ranges(limit),
                )
            )
        self.pending_acks.clear()
        return out
