"""RFC 9002 loss recovery for one destination: the sent-packet map of one packet-number space,
ACKs of packet numbers (an RTT sample, newly acknowledged bytes), time- and count-threshold loss
detection (§6.1), the probe timeout (§6.2) and persistent congestion (§7.6), feeding the
congestion controller and pacer of :mod:`chat_protocol.transfer.congestion`.

:class:`LossRecovery` is the base of :class:`chat_protocol.transfer.outbound.Outbound`, which
cuts messages into chunks and sends them; this part decides what was received, what was lost
(into :attr:`LossRecovery.retransmit`) and when the next probe is due.
"""

from __future__ import annotations

from bisect import bisect_right

from chat_protocol.const import (
    CC_PERSISTENT_CONGESTION_THRESHOLD,
    CC_RANDOM_LOSS_QUEUE_S,
    CHUNK_PAYLOAD_BYTES,
    K_PACKET_THRESHOLD,
    MAX_ACK_DELAY_S,
    Timings,
)
from chat_protocol.transfer.congestion import NewReno, Pacer, RttEstimator
from chat_protocol.transfer.outmessage import OutMessage, SentPacket
from chat_protocol.wire.messages import Ack


class LossRecovery:
    """One packet-number space, one RTT estimate, one congestion controller and pacer."""

    def __init__(self, timings: Timings) -> None:
        self.timings = timings
        self.sent: dict[int, SentPacket] = {}
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
        # RFC 9002 §6.2.2: before a sample, the first PTO is ``retransmit_initial_s``.
        self.rtt = RttEstimator(max(timings.retransmit_initial_s - MAX_ACK_DELAY_S, 0.0) / 3)
        self.cc = NewReno(CHUNK_PAYLOAD_BYTES)
        self.pacer = Pacer(CHUNK_PAYLOAD_BYTES)
        self.pacing_at: float | None = None
        """When the pacer lets the next datagram go, if it held one back."""
        self.last_progress = 0.0
        """When the destination last acknowledged new bytes or completed a message."""

    @property
    def in_flight(self) -> int:
        """DATA datagrams neither acknowledged nor declared lost."""
        return len(self.sent)

    def _loss_detection_timer(self) -> float | None:
        if self.loss_time is not None:
            return self.loss_time
        if not self.sent:
            return None
        return self.time_of_last_ack_eliciting + self._pto_interval()

    def _pto_interval(self) -> float:
        pto = self.rtt.pto()
        return min(pto * (1 << min(self.pto_count, 30)), max(pto, self.timings.retransmit_max_s))

    def _probe_backoff(self, tries: int) -> float:
        pto = self.rtt.pto()
        return min(pto * (1 << min(tries, 30)), max(pto, self.timings.retransmit_max_s))

    def _forget_flight(self) -> None:
        """Nothing left to send: what is in flight is no longer counted (nor recovered)."""
        for s in self.sent.values():
            self.cc.on_packet_discarded(s.size)
        self.sent.clear()
        self.retransmit.clear()
        self.loss_time = None
        self.probes_due = 0
        self.pto_count = 0
        self.pacing_at = None

    def _on_packet_numbers(self, ack: Ack, now: float) -> list[OutMessage]:
        """RFC 9002 §6 on one ACK: newly acknowledged packets, an RTT sample, lost packets.
        Returns the unresolved messages of which the destination now holds new bytes (for the
        subclass's bookkeeping: which chunks need no recovery, when to ask for completion)."""
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
        newest: SentPacket | None = None
        for pn in newly:
            s = sent.pop(pn)
            if pn == largest:
                newest = s
            self.cc.on_packet_acked(s.size, s.time_sent, app_limited=not s.window_used)
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
            self.cc.on_rtt_sample(self.rtt, newest.time_sent, now)
            self.pacer.update_rate(self.cc.congestion_window, self.rtt.smoothed_rtt)
        if newly:
            self.pto_count = 0
        self._detect_lost(now)
        return touched

    def _detect_lost(self, now: float) -> None:
        """RFC 9002 §6.1: a packet below the largest acknowledged is lost when
        ``K_PACKET_THRESHOLD`` later ones were acknowledged or it is 9/8 RTT old."""
        self.loss_time = None
        if self.largest_acked < 0 or not self.sent:
            return
        loss_delay = self.rtt.loss_delay()
        lost: list[tuple[int, SentPacket]] = []
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

    def _persistent(self, lost: list[tuple[int, SentPacket]]) -> bool:
        """RFC 9002 §7.6.2, for one batch of losses: two lost packets sent further apart than
        the persistent congestion duration, after the first RTT sample, with none acknowledged
        between them (here: consecutive packet numbers, all lost)."""
        first = self.rtt.first_sample_time
        if first is None:
            return False
        duration = self.rtt.pto() * CC_PERSISTENT_CONGESTION_THRESHOLD
        run_start: SentPacket | None = None
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
