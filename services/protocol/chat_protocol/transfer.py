"""Reliable, ordered, exactly-once messages over datagrams, one direction of one peer pair.

:class:`Outbound` is what a sender keeps per destination address; :class:`Inbound` is what a
receiver keeps per sending address. Neither touches a socket or a clock.

* A message is cut into chunks of :data:`CHUNK_PAYLOAD_BYTES` at aligned offsets; every chunk is a
  DATA datagram naming (session, stream, seq, offset, total).
* The receiver acknowledges what it holds: ``complete`` once a message was delivered to the user,
  else the byte ranges it has. Datagrams received in one batch share one ACK per message.
* The sender retransmits an unacknowledged chunk after a retransmission timeout estimated from
  round-trip samples (RFC 6298, Karn's rule), doubling per retry up to a cap, and at once when three
  later chunks of the same message were acknowledged (fast retransmit). At most
  :data:`SEND_WINDOW_CHUNKS` chunks are in flight per destination (flow control).
* If the destination acknowledges nothing for ``delivery_timeout_s`` while messages are pending,
  every pending message fails; DATA carries ``base`` (lowest unresolved seq) so the receiver skips
  the gap instead of waiting for it forever. Stale or duplicate chunks are acknowledged, never
  delivered twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from chat_protocol.codec import ACK_OVERHEAD_BYTES, RANGE
from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    MAX_ACK_RANGES,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.messages import Ack, Addr, Data

FAST_RETRANSMIT_THRESHOLD = 3
MAX_BUFFERED_BYTES_PER_PEER = 2 * MAX_MESSAGE_BYTES
"""Out-of-order and undelivered bytes a receiver holds for one sender; chunks beyond it are
dropped unacknowledged, so the sender slows down (retransmits later) instead of being lost."""


# --- sender -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _InFlight:
    sent_at: float
    deadline: float
    tries: int
    later_acked: int = 0


@dataclass(slots=True)
class OutMessage:
    handle: int
    to: str
    seq: int
    payload: bytes
    n_chunks: int
    next_new: int = 0
    acked: bytearray = field(default_factory=bytearray)
    acked_count: int = 0

    @property
    def done(self) -> bool:
        return self.acked_count == self.n_chunks


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolved:
    """A message the sender is finished with: acknowledged whole, or given up on."""

    handle: int
    to: str
    delivered: bool


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
        self.next_seq = 0
        self.inflight: dict[tuple[int, int], _InFlight] = {}
        self.retransmit: list[tuple[int, int]] = []
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = timings.retransmit_initial_s
        self.last_progress = 0.0
        self.retransmissions = 0

    # -- queueing --

    def enqueue(self, *, handle: int, to: str, payload: bytes, now: float) -> None:
        if not 0 < len(payload) <= MAX_MESSAGE_BYTES:
            raise ValueError("message size out of range")
        if not self.queue:
            self.last_progress = now
        n = -(-len(payload) // CHUNK_PAYLOAD_BYTES)
        self.queue.append(
            OutMessage(
                handle=handle,
                to=to,
                seq=self.next_seq,
                payload=payload,
                n_chunks=n,
                acked=bytearray(n),
            )
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

    # -- output --

    def datagrams(self, now: float) -> Iterator[Data]:
        """Chunks to send now: due retransmissions first, then new chunks the window allows."""
        for key in self.retransmit:
            st = self.inflight.get(key)
            msg = self._find(key[0])
            if st is None or msg is None:
                continue
            st.tries += 1
            st.sent_at = now
            st.later_acked = 0
            st.deadline = now + min(self.rto * (2 ** (st.tries - 1)), self.timings.retransmit_max_s)
            self.retransmissions += 1
            yield self._chunk(msg, key[1])
        self.retransmit.clear()
        if not self.queue:
            return
        window_seq = self.queue[0].seq + MAX_PARTIAL_MESSAGES_PER_PEER
        for msg in self.queue:
            if msg.seq >= window_seq:
                break
            while msg.next_new < msg.n_chunks and len(self.inflight) < SEND_WINDOW_CHUNKS:
                idx = msg.next_new
                msg.next_new += 1
                self.inflight[(msg.seq, idx)] = _InFlight(
                    sent_at=now, deadline=now + self.rto, tries=1
                )
                yield self._chunk(msg, idx)
            if len(self.inflight) >= SEND_WINDOW_CHUNKS:
                break

    # -- timers --

    def next_timer(self) -> float | None:
        if not self.queue:
            return None
        t = self.last_progress + self.timings.delivery_timeout_s
        for st in self.inflight.values():
            if st.deadline < t:
                t = st.deadline
        return t

    def handle_timer(self, now: float) -> list[Resolved]:
        """Schedule due retransmissions; give up on everything if the peer went silent."""
        if not self.queue:
            return []
        if now >= self.last_progress + self.timings.delivery_timeout_s:
            failed = [Resolved(handle=m.handle, to=m.to, delivered=False) for m in self.queue]
            # Skip the gap: base moves past the abandoned messages on the next DATA.
            self.queue.clear()
            self.inflight.clear()
            self.retransmit.clear()
            return failed
        due = [key for key, st in self.inflight.items() if st.deadline <= now]
        if due:
            self.retransmit.extend(k for k in due if k not in self.retransmit)
            for k in due:
                self.inflight[k].deadline = float("inf")  # re-armed when actually resent
        return []

    # -- input --

    def on_ack(self, ack: Ack, now: float) -> list[Resolved]:
        if ack.session != self.session or ack.stream != self.stream:
            return []
        msg = self._find(ack.seq)
        if msg is None:
            return []
        progressed = False
        sample: float | None = None
        newest_acked_sent = -1.0
        for key in [k for k in self.inflight if k[0] == msg.seq]:
            idx = key[1]
            start = idx * CHUNK_PAYLOAD_BYTES
            end = min(start + CHUNK_PAYLOAD_BYTES, len(msg.payload))
            if ack.complete or any(a <= start and end <= b for a, b in ack.ranges):
                st = self.inflight.pop(key)
                if not msg.acked[idx]:
                    msg.acked[idx] = 1
                    msg.acked_count += 1
                    progressed = True
                    if st.tries == 1 and st.sent_at >= newest_acked_sent:
                        newest_acked_sent = st.sent_at
                        sample = now - st.sent_at
        if ack.complete and not msg.done:
            msg.acked_count = msg.n_chunks
            progressed = True
        if sample is not None:
            self._rtt_sample(sample)
        if progressed:
            self.last_progress = now
            self._fast_retransmit(msg, newest_acked_sent)
        if not msg.done:
            return []
        self.queue.remove(msg)
        for key in [k for k in self.inflight if k[0] == msg.seq]:
            del self.inflight[key]
        return [Resolved(handle=msg.handle, to=msg.to, delivered=True)]

    def _fast_retransmit(self, msg: OutMessage, acked_sent_at: float) -> None:
        for key, st in self.inflight.items():
            if key[0] == msg.seq and st.sent_at < acked_sent_at and st.deadline != float("inf"):
                st.later_acked += 1
                if st.later_acked >= FAST_RETRANSMIT_THRESHOLD:
                    st.deadline = float("inf")
                    self.retransmit.append(key)

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


@dataclass(slots=True)
class _Partial:
    """One message being reassembled: chunks by offset, and how far it is contiguous."""

    total: int
    chunks: dict[int, bytes] = field(default_factory=dict)
    have: int = 0
    contiguous: int = 0
    """Every byte below this offset is here."""
    above: set[int] = field(default_factory=set)
    """Offsets of chunks held beyond ``contiguous`` (few: at most a window's worth)."""

    @property
    def complete(self) -> bool:
        return self.have == self.total

    def add(self, offset: int, payload: bytes) -> None:
        self.chunks[offset] = payload
        self.have += len(payload)
        if offset != self.contiguous:
            self.above.add(offset)
            return
        self.contiguous += len(payload)
        while self.contiguous in self.above:
            self.above.discard(self.contiguous)
            self.contiguous += len(self.chunks[self.contiguous])

    def ranges(self, limit: int) -> tuple[tuple[int, int], ...]:
        out: list[tuple[int, int]] = [(0, self.contiguous)] if self.contiguous else []
        for off in sorted(self.above):
            end = off + len(self.chunks[off])
            if out and out[-1][1] == off:
                out[-1] = (out[-1][0], end)
            elif len(out) < limit:
                out.append((off, end))
            else:
                break
        return tuple(out)

    def join(self) -> bytes:
        return b"".join(self.chunks[k] for k in sorted(self.chunks))


class ChunkRejected(Exception):
    """A DATA datagram that is well-formed but not acceptable from this sender."""


class Inbound:
    """Messages from one sending address (one sender session), delivered in order, once."""

    def __init__(self, *, addr: Addr, sender: str, session: int, stream: int, base: int) -> None:
        self.addr = addr
        self.sender = sender
        self.session = session
        self.stream = stream
        self.next_seq = base
        self.partial: dict[int, _Partial] = {}
        self.buffered = 0
        self.pending_acks: dict[int, int] = {}
        """seq -> size of the largest datagram that asked for this ACK (amplification bound)."""
        self.duplicates = 0

    def on_data(self, d: Data, size: int, now: float) -> list[bytes]:
        """Take one chunk (``size``: its datagram's length); return messages now deliverable."""
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
            self.buffered = 0
            self.pending_acks.clear()
        out = self._skip_to(d.base) if d.base > self.next_seq else []
        if d.seq < self.next_seq:
            self.duplicates += 1
            self._want_ack(d.seq, size)
            return out
        if d.seq >= self.next_seq + MAX_PARTIAL_MESSAGES_PER_PEER:
            raise ChunkRejected("too far ahead")
        p = self.partial.get(d.seq)
        if p is None:
            p = self.partial[d.seq] = _Partial(total=d.total)
        elif p.total != d.total:
            raise ChunkRejected("total changed")
        if d.offset in p.chunks:
            self.duplicates += 1
        else:
            if self.buffered + len(d.payload) > MAX_BUFFERED_BYTES_PER_PEER:
                raise ChunkRejected("receive buffer full")
            p.add(d.offset, d.payload)
            self.buffered += len(d.payload)
        self._want_ack(d.seq, size)
        out.extend(self._deliverable())
        return out

    def _want_ack(self, seq: int, size: int) -> None:
        self.pending_acks[seq] = max(size, self.pending_acks.get(seq, 0))

    def _pop(self, seq: int) -> _Partial | None:
        p = self.partial.pop(seq, None)
        if p is not None:
            self.buffered -= p.have
        return p

    def _deliverable(self) -> list[bytes]:
        out = []
        while (p := self.partial.get(self.next_seq)) is not None and p.complete:
            self._pop(self.next_seq)
            out.append(p.join())
            self.next_seq += 1
        return out

    def _skip_to(self, base: int) -> list[bytes]:
        """The sender resolved everything below ``base``: deliver what we hold, drop the rest."""
        out = []
        for seq in sorted(s for s in self.partial if s < base):
            p = self._pop(seq)
            if p is not None and p.complete:
                out.append(p.join())
        self.next_seq = base
        out.extend(self._deliverable())
        return out

    def acks(self) -> Iterator[Ack]:
        for seq, trigger_size in self.pending_acks.items():
            if seq < self.next_seq:
                yield Ack(
                    session=self.session, stream=self.stream, seq=seq, complete=True, ranges=()
                )
                continue
            p = self.partial.get(seq)
            if p is None:
                continue
            # No reply larger than what caused it: ranges are capped by the trigger's size.
            limit = max(1, min(MAX_ACK_RANGES, (trigger_size - ACK_OVERHEAD_BYTES) // RANGE.size))
            yield Ack(
                session=self.session,
                stream=self.stream,
                seq=seq,
                complete=False,
                ranges=p.ranges(limit),
            )
        self.pending_acks.clear()
