"""The sender's side of a transfer: messages to one destination, cut into chunks, sent as the
congestion window and pacer allow, and retransmitted until acknowledged (see
:mod:`chat_protocol.transfer`). What is lost, and when to probe, is decided by the RFC 9002 loss
recovery it is built on (:mod:`chat_protocol.transfer.recovery`)."""

from __future__ import annotations

from typing import Final

from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.outmessage import OutMessage, Resolved, SentPacket
from chat_protocol.transfer.recovery import LossRecovery
from chat_protocol.wire.messages import Ack, Addr, Data

__all__ = ["PTO_PROBES", "OutMessage", "Outbound", "Resolved"]

_MAX_WINDOW_BYTES: Final = SEND_WINDOW_CHUNKS * CHUNK_PAYLOAD_BYTES
"""Flow control: the congestion window is used up to this many bytes in flight at most."""
PTO_PROBES: Final = 2
"""DATA datagrams a probe timeout sends (RFC 9002 §6.2.4: one or two)."""


class Outbound(LossRecovery):
    """Messages to one destination address, in the order they were queued, over one
    :class:`LossRecovery` (packet-number space, RTT, congestion controller, pacer)."""

    def __init__(
        self, *, addr: Addr, sender: str, session: int, stream: int, timings: Timings
    ) -> None:
        super().__init__(timings)
        self.addr = addr
        self.sender = sender
        self.session = session
        self.stream = stream
        self.queue: list[OutMessage] = []
        """Unresolved messages, lowest seq first."""
        self.next_seq = 0
        self.next_pn = 0
        self.completion_due: list[OutMessage] = []
        """Messages whose completion probe is due at the next :meth:`datagrams`."""
        self.retransmissions = 0
        self.datagrams_sent = 0
        self.backlogged = False
        """At the last :meth:`datagrams`, enough was ready to fill the congestion window (its
        datagrams use the window, though the window or pacer stop it first: not app limited)."""

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

    def _send(
        self, msg: OutMessage, idx: int, now: float, out: list[Data], *, new: bool, size: int = -1
    ) -> None:
        """Send chunk ``idx`` of ``msg`` (``size``: its size, if the caller knows it). One call
        per datagram: the DATA is built here, its ``base`` the oldest unresolved message."""
        pn = self.next_pn
        self.next_pn += 1
        off = idx * CHUNK_PAYLOAD_BYTES
        payload = msg.payload
        if size < 0:
            left = len(payload) - off
            size = left if left < CHUNK_PAYLOAD_BYTES else CHUNK_PAYLOAD_BYTES
        if not new:
            self.retransmissions += 1
        if msg.lost:
            msg.lost.discard(idx)
        msg.outstanding[idx] = pn
        used = self.cc.on_packet_sent(size, backlogged=self.backlogged)
        self.sent[pn] = SentPacket(msg=msg, idx=idx, size=size, time_sent=now, window_used=used)
        self.pacer.on_sent(size, now)
        self.time_of_last_ack_eliciting = now
        self.datagrams_sent += 1
        queue = self.queue
        out.append(
            Data(
                session=self.session,
                stream=self.stream,
                base=queue[0].seq if queue else self.next_seq,
                seq=msg.seq,
                pn=pn,
                msg_id=msg.msg_id,
                offset=off,
                total=len(payload),
                sender=self.sender,
                payload=payload[off : off + CHUNK_PAYLOAD_BYTES],
            )
        )

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

    def _ready_bytes(self, enough: int) -> int:
        """Bytes ready to send (lost chunks, then new ones of the messages the destination may
        take), counted up to ``enough`` at most."""
        c = CHUNK_PAYLOAD_BYTES
        ready = len(self.retransmit) * c
        window_seq = self.queue[0].seq + MAX_PARTIAL_MESSAGES_PER_PEER
        for msg in self.queue:
            if ready >= enough or msg.seq >= window_seq:
                break
            ready += (msg.n_chunks - msg.next_new) * c
        return ready

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
            return out
        # Flow control caps the flight: a window beyond it is not used (app limited).
        flight = self.cc.bytes_in_flight
        room = min(self.cc.congestion_window, _MAX_WINDOW_BYTES) - flight
        ready = self._ready_bytes(room) if room > 0 else 0
        self.backlogged = self.cc.window_used(flight + min(ready, room))
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
        while True:
            # (no call for an empty retransmit queue: the usual case, once per datagram)
            item = (self._next_retransmission() if self.retransmit else None) or self._next_new()
            if item is None:
                break
            msg, idx = item
            left = len(msg.payload) - idx * CHUNK_PAYLOAD_BYTES  # the chunk's size
            size = left if left < CHUNK_PAYLOAD_BYTES else CHUNK_PAYLOAD_BYTES
            if self.cc.bytes_in_flight + size > _MAX_WINDOW_BYTES:
                break  # flow control, not congestion: app limited
            if not self.cc.can_send(size):
                break
            at = self.pacer.next_send_time(size, now)
            if at > now:
                self.pacing_at = at
                break
            self._send(msg, idx, now, out, new=self._consume(item), size=size)
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

    def _forget_flight(self) -> None:
        super()._forget_flight()
        self.completion_due.clear()

    # -- input --

    def on_ack(self, ack: Ack, now: float) -> list[Resolved]:
        if ack.session != self.session or ack.stream != self.stream:
            return []
        touched = self._on_packet_numbers(ack, now) if ack.pns else []
        msg = self._find(ack.seq)
        done = msg if ack.complete else None
        for m in touched:
            if m is not done:  # (a message this ACK completes needs no completion probe)
                self._newly_held(m, now)
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
        if msg.outstanding:
            for idx in [i for i in msg.outstanding if msg.holds(i)]:
                del msg.outstanding[idx]
        if msg.all_acked and msg.probe_at is None:
            msg.probe_tries = 0
            msg.probe_at = now + self._probe_backoff(0)
