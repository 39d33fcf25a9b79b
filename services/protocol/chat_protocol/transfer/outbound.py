"""The sender's side of a transfer: messages to one destination, cut into chunks, retransmitted
until acknowledged (see :mod:`chat_protocol.transfer`)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from chat_protocol.const import (
    CC_PERSISTENT_CONGESTION_THRESHOLD,
    CC_RANDOM_LOSS_QUEUE_S,
    CHUNK_PAYLOAD_BYTES,
    K_PACKET_THRESHOLD,
    MAX_ACK_DELAY_S,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.congestion import NewReno, Pacer, RttEstimator
from chat_protocol.transfer.rangeset import RangeSet
from chat_protocol.wire.messages import Ack, Addr, Data

_MAX_WINDOW_BYTES: Final = SEND_WINDOW_CHUNKS * CHUNK_PAYLOAD_BYTES
"""Flow control: the congestion window is used up to this many bytes in flight at most."""
PTO_PROBES: Final = 2
"""DATA datagrams a probe timeout sends (RFC 9002 §6.2.4: one or two)."""


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
        """Chunks declared lost and waiting in ``Outbound.retransmit``."""
        self.probe_at: float | None = None
        """All bytes held but not ``complete`` yet: when to send the last chunk again to ask."""
        self.probe_tries = 0
        self.resolved = False

    @property
    def all_acked(self) -> bool:
        return len(self.acked) == len(self.payload)

    def holds(self, idx: int) -> bool:
        start = idx * CHUNK_PAYLOAD_BYTES
        return self.acked.covers(start, min(start + CHUNK_PAYLOAD_BYTES, len(self.payload)))


class _Sent:
    """One DATA datagram sent and neither acknowledged nor declared lost (RFC 9002's
    sent_packets entry). A plain class, built natively by the compiled core."""

    __slots__ = ("idx", "msg", "size", "time_sent")

    def __init__(self, *, msg: OutMessage, idx: int, size: int, time_sent: float) -> None:
        self.msg: Final = msg
        self.idx: Final = idx
        self.size: Final = size
        self.time_sent: Final = time_sent


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
    """Messages to one destination address, in the order they were queued; one packet-number
    space, one RTT estimate, one congestion controller and pacer (RFC 9002)."""

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
        self.next_pn = 0
        self.sent: dict[int, _Sent] = {}
        """Packet number -> what it carried, lowest first, while neither acknowledged nor lost."""
        self.largest_acked = -1
        self.loss_time: float | None = None
        """When the oldest packet below ``largest_acked`` becomes lost by the time threshold."""
        self.pto_count = 0
        self.time_of_last_ack_eliciting = 0.0
        self.probes_due = 0
        """DATA to send at once, outside the congestion window, because the PTO fired."""
        self.retransmit: list[tuple[OutMessage, int]] = []
        """Chunks declared lost, to send again (in the order they were lost)."""
        self.completion_due: list[OutMessage] = []
        """Messages whose completion probe is due at the next :meth:`datagrams`."""
        # RFC 9002 §6.2.2: before a sample, the first PTO is ``retransmit_initial_s``.
        self.rtt = RttEstimator(max(timings.retransmit_initial_s - MAX_ACK_DELAY_S, 0.0) / 3)
        self.cc = NewReno(CHUNK_PAYLOAD_BYTES)
        self.pacer = Pacer(CHUNK_PAYLOAD_BYTES)
        self.pacing_at: float | None = None
        """When the pacer lets the next datagram go, if it held one back."""
        self.cwnd_limited = False
        """The last :meth:`datagrams` stopped at the congestion window (not app limited)."""
        self.last_progress = 0.0
        """When the destination last acknowledged new bytes or completed a message."""
        self.retransmissions = 0
        self.datagrams_sent = 0

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

    @property
    def in_flight(self) -> int:
        """DATA datagrams neither acknowledged nor declared lost."""
        return len(self.sent)

    def _base(self) -> int:
        return self.queue[0].seq if self.queue else self.next_seq

    def _chunk(self, msg: OutMessage, idx: int, pn: int) -> Data:
        off = idx * CHUNK_PAYLOAD_BYTES
        return Data(
            session=self.session,
            stream=self.stream,
            base=self._base(),
            seq=msg.seq,
            pn=pn,
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

    def _chunk_size(self, msg: OutMessage, idx: int) -> int:
        return min(CHUNK_PAYLOAD_BYTES, len(msg.payload) - idx * CHUNK_PAYLOAD_BYTES)

    # -- output --

    def _send(self, msg: OutMessage, idx: int, now: float, out: list[Data], *, new: bool) -> None:
        pn = self.next_pn
        self.next_pn += 1
        size = self._chunk_size(msg, idx)
        if not new:
            self.retransmissions += 1
        msg.lost.discard(idx)
        msg.outstanding[idx] = pn
        self.sent[pn] = _Sent(msg=msg, idx=idx, size=size, time_sent=now)
        self.cc.on_packet_sent(size)
        self.pacer.on_sent(size, now)
        self.time_of_last_ack_eliciting = now
        self.datagrams_sent += 1
        out.append(self._chunk(msg, idx, pn))

    def _next_retransmission(self) -> tuple[OutMessage, int] | None:
        """The first chunk declared lost that is still wanted (dropping those that are not)."""
        while self.retransmit:
            msg, idx = self.retransmit[0]
            if not msg.resolved and idx in msg.lost and not msg.holds(idx):
                return msg, idx
            msg.lost.discard(idx)
            self.retransmit.pop(0)
        return None

    def _next_new(self) -> tuple[OutMessage, int] | None:
        """The first chunk never sent that the destination may take (at most
        ``MAX_PARTIAL_MESSAGES_PER_PEER`` messages past the oldest unresolved)."""
        if not self.queue:
            return None
        window_seq = self.queue[0].seq + MAX_PARTIAL_MESSAGES_PER_PEER
        for msg in self.queue:
            if msg.seq >= window_seq:
                return None
            while msg.next_new < msg.n_chunks:
                if not msg.holds(msg.next_new):
                    return msg, msg.next_new
                msg.next_new += 1  # the destination already has it
        return None

    def _probe_item(self) -> tuple[OutMessage, int] | None:
        """What a PTO probe carries: a chunk declared lost, else the oldest chunk in flight,
        else a new one (RFC 9002 §6.2.4)."""
        item = self._next_retransmission()
        if item is not None:
            return item
        for s in self.sent.values():
            msg = s.msg
            if not msg.resolved and msg.outstanding.get(s.idx) is not None:
                return msg, s.idx
        return self._next_new()

    def datagrams(self, now: float) -> list[Data]:
        """Chunks to send now: probes, completion probes, then lost chunks and new ones as far
        as the congestion window and the pacer allow."""
        out: list[Data] = []
        if not self.queue:  # nothing to send (nor in flight: see _forget_flight)
            self.probes_due = 0
            self.completion_due.clear()
            self.pacing_at = None
            self.cwnd_limited = False
            return out
        while self.probes_due > 0:
            self.probes_due -= 1
            item = self._probe_item()
            if item is None:
                self.probes_due = 0
                break
            self._send(item[0], item[1], now, out, new=self._consume(item))
        for msg in self.completion_due:
            if not msg.resolved:
                self._send(msg, msg.n_chunks - 1, now, out, new=False)
        self.completion_due.clear()
        self.pacing_at = None
        self.cwnd_limited = False
        while True:
            item = self._next_retransmission() or self._next_new()
            if item is None:
                break
            size = self._chunk_size(item[0], item[1])
            if self.cc.bytes_in_flight + size > _MAX_WINDOW_BYTES:
                break  # flow control, not congestion: app limited
            if not self.cc.can_send(size):
                self.cwnd_limited = True
                break
            at = self.pacer.next_send_time(size, now)
            if at > now:
                self.cwnd_limited = True
                self.pacing_at = at
                break
            self._send(item[0], item[1], now, out, new=self._consume(item))
        return out

    def _consume(self, item: tuple[OutMessage, int]) -> bool:
        """Take ``item`` off the queue it came from; True if it was never sent before."""
        msg, idx = item
        if self.retransmit and self.retransmit[0] == item:
            self.retransmit.pop(0)
            return False
        if idx == msg.next_new:
            msg.next_new += 1
            return True
        return False

    # -- timers --

    def _loss_detection_timer(self) -> float | None:
        if self.loss_time is not None:
            return self.loss_time
        if not self.sent:
            return None
        return self.time_of_last_ack_eliciting + self._pto_interval()

    def _pto_interval(self) -> float:
        pto = self.rtt.pto()
        return min(pto * (1 << min(self.pto_count, 30)), max(pto, self.timings.retransmit_max_s))

    def next_timer(self) -> float | None:
        if not self.queue:
            return None
        t = self.last_progress + self.timings.delivery_timeout_s
        lt = self._loss_detection_timer()
        if lt is not None and lt < t:
            t = lt
        if self.pacing_at is not None and self.pacing_at < t:
            t = self.pacing_at
        for msg in self.queue:
            if msg.probe_at is not None and msg.probe_at < t:
                t = msg.probe_at
        return t

    def handle_timer(self, now: float) -> list[Resolved]:
        """Loss detection, probe timeouts and completion probes; give up on everything if the
        peer made no progress for ``delivery_timeout_s``."""
        if not self.queue:
            return []
        if now >= self.last_progress + self.timings.delivery_timeout_s:
            failed = [
                Resolved(msg_id=m.msg_id, to=m.to, delivered=False, reason=FailReason.TIMEOUT)
                for m in self.queue
            ]
            # Skip the gap: base moves past the abandoned messages on the next DATA.
            for m in self.queue:
                m.resolved = True
            self.queue.clear()
            self._forget_flight()
            return failed
        lt = self._loss_detection_timer()
        if lt is not None and now >= lt:
            if self.loss_time is not None:
                self._detect_lost(now)
            else:
                self.pto_count += 1
                self.probes_due = PTO_PROBES
                self.time_of_last_ack_eliciting = now  # re-armed from the probes
        for msg in self.queue:
            if msg.probe_at is not None and now >= msg.probe_at:
                msg.probe_tries += 1
                msg.probe_at = now + self._probe_backoff(msg.probe_tries)
                self.completion_due.append(msg)
        if self.pacing_at is not None and now >= self.pacing_at:
            self.pacing_at = None
        return []

    def _probe_backoff(self, tries: int) -> float:
        pto = self.rtt.pto()
        return min(pto * (1 << min(tries, 30)), max(pto, self.timings.retransmit_max_s))

    def _forget_flight(self) -> None:
        """Nothing left to send: what is in flight is no longer counted (nor recovered)."""
        for s in self.sent.values():
            self.cc.on_packet_discarded(s.size)
        self.sent.clear()
        self.retransmit.clear()
        self.completion_due.clear()
        self.loss_time = None
        self.probes_due = 0
        self.pto_count = 0
        self.pacing_at = None

    # -- input --

    def on_ack(self, ack: Ack, now: float) -> list[Resolved]:
        if ack.session != self.session or ack.stream != self.stream:
            return []
        if ack.pns:
            self._on_packet_numbers(ack, now)
        msg = self._find(ack.seq)
        if msg is None:
            return []
        if ack.complete:
            self.last_progress = now
            self._resolve(msg)
            return [Resolved(msg_id=msg.msg_id, to=msg.to, delivered=True)]
        if self._take_ranges(msg, ack.ranges):
            self.last_progress = now
            self._newly_held(msg, now)
        return []

    def _resolve(self, msg: OutMessage) -> None:
        msg.resolved = True
        msg.probe_at = None
        self.queue.remove(msg)
        if not self.queue:
            self._forget_flight()
            return
        gone = [pn for pn, s in self.sent.items() if s.msg is msg]
        for pn in gone:  # delivered: its packets in flight no longer matter
            self.cc.on_packet_discarded(self.sent.pop(pn).size)

    def _on_packet_numbers(self, ack: Ack, now: float) -> None:
        """RFC 9002 §6 on one ACK: newly acknowledged packets, an RTT sample, lost packets."""
        pns = ack.pns
        largest = pns[-1][1] - 1
        sent = self.sent
        # ``sent`` is in packet-number order: the scan stops at the largest acknowledged.
        newly: list[int] = []
        if len(pns) == 1:  # the usual ACK: one range
            lowest = pns[0][0]
            for pn in sent:
                if pn > largest:
                    break
                if pn >= lowest:
                    newly.append(pn)
        else:
            starts = [a for a, _ in pns]
            for pn in sent:
                if pn > largest:
                    break
                i = bisect_right(starts, pn) - 1
                if i >= 0 and pn < pns[i][1]:
                    newly.append(pn)
        touched: list[OutMessage] = []
        newest: _Sent | None = None
        app_limited = not self.cwnd_limited
        for pn in newly:
            s = sent.pop(pn)
            if pn == largest:
                newest = s
            self.cc.on_packet_acked(s.size, s.time_sent, app_limited=app_limited)
            msg = s.msg
            if msg.resolved:
                continue
            msg.outstanding.pop(s.idx, None)
            if msg.lost:
                msg.lost.discard(s.idx)
            start = s.idx * CHUNK_PAYLOAD_BYTES
            if msg.acked.add(start, start + s.size):
                self.last_progress = now
                if not touched or touched[-1] is not msg:
                    touched.append(msg)
        if largest > self.largest_acked:
            self.largest_acked = largest
        if newest is not None:
            self.rtt.update(now - newest.time_sent, ack.ack_delay_us / 1e6, now)
            self.pacer.update_rate(self.cc.congestion_window, self.rtt.smoothed_rtt)
        if newly:
            self.pto_count = 0
        self._detect_lost(now)
        for msg in touched:
            self._newly_held(msg, now)

    def _detect_lost(self, now: float) -> None:
        """RFC 9002 §6.1: a packet below the largest acknowledged is lost when
        ``K_PACKET_THRESHOLD`` later ones were acknowledged or it is 9/8 RTT old."""
        self.loss_time = None
        if self.largest_acked < 0 or not self.sent:
            return
        loss_delay = self.rtt.loss_delay()
        lost: list[tuple[int, _Sent]] = []
        for pn, s in self.sent.items():
            if pn > self.largest_acked:
                break
            # (time_sent + delay <= now, not time_sent <= now - delay: the same sum as the
            # timer below, so a timer firing at exactly loss_time finds the packet lost.)
            t = s.time_sent + loss_delay
            if t <= now or self.largest_acked >= pn + K_PACKET_THRESHOLD:
                lost.append((pn, s))
            elif self.loss_time is None or t < self.loss_time:
                self.loss_time = t
        if not lost:
            return
        lost_bytes = 0
        for pn, s in lost:
            del self.sent[pn]
            lost_bytes += s.size
            msg = s.msg
            if msg.resolved or msg.outstanding.get(s.idx) != pn:
                continue  # delivered meanwhile, or a later copy is in flight
            del msg.outstanding[s.idx]
            if not msg.holds(s.idx) and s.idx not in msg.lost:
                msg.lost.add(s.idx)
                self.retransmit.append((msg, s.idx))
        self.cc.on_packets_lost(
            lost_bytes,
            lost[-1][1].time_sent,
            now,
            persistent=self._persistent(lost),
            congestive=self.rtt.queueing_delay() >= CC_RANDOM_LOSS_QUEUE_S,
        )
        self.pacer.update_rate(self.cc.congestion_window, self.rtt.smoothed_rtt)

    def _persistent(self, lost: list[tuple[int, _Sent]]) -> bool:
        """RFC 9002 §7.6.2, for one batch of losses: two lost packets sent further apart than
        the persistent congestion duration, after the first RTT sample, with none acknowledged
        between them (here: consecutive packet numbers, all lost)."""
        first = self.rtt.first_sample_time
        if first is None:
            return False
        duration = self.rtt.pto() * CC_PERSISTENT_CONGESTION_THRESHOLD
        run_start: _Sent | None = None
        prev = -2
        for pn, s in lost:
            if s.time_sent <= first:
                run_start, prev = None, -2
                continue
            if run_start is None or pn != prev + 1:
                run_start = s
            elif s.time_sent - run_start.time_sent > duration:
                return True
            prev = pn
        return False

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

    def _newly_held(self, msg: OutMessage, now: float) -> None:
        """Chunks the destination holds need no recovery; once it holds every byte, ask for
        the ``complete`` ACK with the last chunk after a probe timeout, backing off."""
        for idx in [i for i in msg.outstanding if msg.holds(i)]:
            del msg.outstanding[idx]
        if msg.all_acked and msg.probe_at is None:
            msg.probe_tries = 0
            msg.probe_at = now + self._probe_backoff(0)
