"""Congestion control of one destination: RFC 9002's RTT estimator (§5), NewReno controller
(§7, Appendix B) and a pacer (§7.7, a token bucket), each a small sans-I/O object.

Names follow RFC 9002 so a reader can hold the code beside it: ``smoothed_rtt``, ``rttvar``,
``min_rtt``, ``latest_rtt``; ``congestion_window``, ``bytes_in_flight``, ``ssthresh``,
``congestion_recovery_start_time``. Times are seconds (the caller's clock), sizes bytes. Nothing
here reads a clock: every method that needs the time takes ``now``.
"""

from __future__ import annotations

from chat_protocol.const import (
    CC_INITIAL_WINDOW_PACKETS,
    CC_LOSS_REDUCTION_FACTOR,
    CC_MINIMUM_WINDOW_PACKETS,
    CC_PERSISTENT_CONGESTION_THRESHOLD,
    K_GRANULARITY_S,
    K_TIME_THRESHOLD_DEN,
    K_TIME_THRESHOLD_NUM,
    MAX_ACK_DELAY_S,
    PACING_BURST_PACKETS,
    PACING_GAIN,
    PACING_TIMER_SLACK_S,
)

_INF = float("inf")


class RttEstimator:
    """RFC 9002 §5: ``latest_rtt``, ``min_rtt``, ``smoothed_rtt``, ``rttvar``."""

    __slots__ = ("first_sample_time", "latest_rtt", "min_rtt", "rttvar", "smoothed_rtt")

    def __init__(self, initial_rtt: float) -> None:
        self.latest_rtt = 0.0
        self.min_rtt = _INF
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        self.first_sample_time: float | None = None
        """When the first sample was taken (persistent congestion needs a sample before it)."""

    @property
    def has_sample(self) -> bool:
        return self.first_sample_time is not None

    def update(self, latest_rtt: float, ack_delay: float, now: float) -> None:
        """One sample: ``latest_rtt`` of the largest newly acknowledged packet, and the
        ``ack_delay`` the peer says it held the ACK (capped at ``MAX_ACK_DELAY_S``)."""
        self.latest_rtt = latest_rtt
        if self.first_sample_time is None:
            self.first_sample_time = now
            self.min_rtt = latest_rtt
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        self.min_rtt = min(self.min_rtt, latest_rtt)
        ack_delay = min(ack_delay, MAX_ACK_DELAY_S)
        adjusted = latest_rtt
        if latest_rtt >= self.min_rtt + ack_delay:
            adjusted = latest_rtt - ack_delay
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed_rtt - adjusted)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * adjusted

    def queueing_delay(self) -> float:
        """smoothed_rtt - min_rtt: how long datagrams wait in queues beyond the path's own
        delay (``inf`` before a sample)."""
        if self.first_sample_time is None:
            return _INF
        return max(0.0, self.smoothed_rtt - self.min_rtt)

    def pto(self) -> float:
        """The probe timeout before backoff (§6.2.1)."""
        return self.smoothed_rtt + max(4 * self.rttvar, K_GRANULARITY_S) + MAX_ACK_DELAY_S

    def loss_delay(self) -> float:
        """How long after a later packet was acknowledged an earlier one is lost (§6.1.2):
        kTimeThreshold (9/8) x max(smoothed_rtt, latest_rtt), at least kGranularity."""
        rtt = max(self.latest_rtt, self.smoothed_rtt)
        return max(K_TIME_THRESHOLD_NUM * rtt / K_TIME_THRESHOLD_DEN, K_GRANULARITY_S)


class NewReno:
    """RFC 9002 Appendix B: slow start, congestion avoidance, a recovery period, persistent
    congestion. It counts bytes; the caller tells it what was sent, acknowledged and lost."""

    __slots__ = (
        "bytes_in_flight",
        "congestion_recovery_start_time",
        "congestion_window",
        "max_datagram_size",
        "recovery_allowance",
        "ssthresh",
    )

    def __init__(self, max_datagram_size: int) -> None:
        self.max_datagram_size = max_datagram_size
        self.congestion_window = CC_INITIAL_WINDOW_PACKETS * max_datagram_size
        self.bytes_in_flight = 0
        self.congestion_recovery_start_time = -_INF
        self.ssthresh = _INF
        self.recovery_allowance = 0
        """Datagrams that may leave beyond the window: one on entering recovery (§7.3.2: the
        sender MAY send one packet to speed up loss recovery), so the lost one is resent at
        once instead of after the flight drains below the halved window."""

    @property
    def minimum_window(self) -> int:
        return CC_MINIMUM_WINDOW_PACKETS * self.max_datagram_size

    def in_slow_start(self) -> bool:
        return self.congestion_window < self.ssthresh

    def in_congestion_recovery(self, sent_time: float) -> bool:
        return sent_time <= self.congestion_recovery_start_time

    def can_send(self, size: int) -> bool:
        return self.bytes_in_flight + size <= self.congestion_window or self.recovery_allowance > 0

    def on_packet_sent(self, sent_bytes: int) -> None:
        if self.bytes_in_flight + sent_bytes > self.congestion_window and self.recovery_allowance:
            self.recovery_allowance -= 1
        self.bytes_in_flight += sent_bytes

    def on_packet_acked(self, sent_bytes: int, time_sent: float, *, app_limited: bool) -> None:
        """One acknowledged packet (B.5): the window grows unless the packet was sent during the
        current recovery period or the sender was not using the window (app limited, §7.8)."""
        self.bytes_in_flight -= sent_bytes
        if app_limited or self.in_congestion_recovery(time_sent):
            return
        if self.in_slow_start():
            self.congestion_window += sent_bytes
        else:
            self.congestion_window += self.max_datagram_size * sent_bytes // self.congestion_window

    def on_packet_discarded(self, sent_bytes: int) -> None:
        """A packet no longer counted in flight, neither acknowledged nor lost (its destination
        state is gone)."""
        self.bytes_in_flight -= sent_bytes

    def on_congestion_event(self, sent_time: float, now: float) -> None:
        """B.6: at most one reduction per round trip (the recovery period)."""
        if self.in_congestion_recovery(sent_time):
            return
        self.congestion_recovery_start_time = now
        self.ssthresh = self.congestion_window * CC_LOSS_REDUCTION_FACTOR
        self.congestion_window = max(int(self.ssthresh), self.minimum_window)
        self.recovery_allowance = 1

    def on_packets_lost(
        self,
        lost_bytes: int,
        largest_lost_sent_time: float,
        now: float,
        *,
        persistent: bool,
        congestive: bool = True,
    ) -> None:
        """B.8: ``lost_bytes`` leave the flight; one congestion event for the newest lost
        packet (unless the caller judged the loss not ``congestive``: see
        ``CC_RANDOM_LOSS_QUEUE_S``); on persistent congestion the window collapses to the
        minimum whatever the judgement."""
        self.bytes_in_flight -= lost_bytes
        if congestive or persistent:
            self.on_congestion_event(largest_lost_sent_time, now)
        if persistent:
            self.congestion_window = self.minimum_window
            self.congestion_recovery_start_time = -_INF

    @staticmethod
    def persistent_congestion_duration(rtt: RttEstimator) -> float:
        """§7.6.1: (smoothed_rtt + max(4 rttvar, kGranularity) + max_ack_delay) x 3."""
        return rtt.pto() * CC_PERSISTENT_CONGESTION_THRESHOLD


class Pacer:
    """§7.7: a token bucket of bytes, filled at ``PACING_GAIN`` x congestion_window /
    smoothed_rtt, holding ``PACING_BURST_PACKETS`` datagrams, or what the rate sends in
    ``PACING_TIMER_SLACK_S`` if that is more. Before the first RTT
    sample nothing is paced (the initial window goes out as one burst, as RFC 9002 allows)."""

    __slots__ = ("burst", "capacity", "last", "rate", "tokens")

    def __init__(self, max_datagram_size: int) -> None:
        self.burst = PACING_BURST_PACKETS * max_datagram_size
        self.capacity = self.burst
        self.tokens = float(self.capacity)
        self.rate = _INF
        """Bytes per second; ``inf`` while unpaced."""
        self.last = -_INF

    def update_rate(self, congestion_window: int, smoothed_rtt: float) -> None:
        self.rate = PACING_GAIN * congestion_window / max(smoothed_rtt, K_GRANULARITY_S)
        # The bucket holds at least what the rate sends in PACING_TIMER_SLACK_S: a timer that
        # fires that much late (a millisecond poll, a busy event loop) costs no rate.
        self.capacity = max(self.burst, int(self.rate * PACING_TIMER_SLACK_S))

    def _refill(self, now: float) -> None:
        if now > self.last:
            if self.rate == _INF or self.last == -_INF:
                self.tokens = float(self.capacity)
            else:
                self.tokens = min(float(self.capacity), self.tokens + (now - self.last) * self.rate)
            self.last = now

    def next_send_time(self, size: int, now: float) -> float:
        """When a datagram of ``size`` bytes may leave: ``now`` if the bucket holds it."""
        self._refill(now)
        if self.tokens >= size - 1 or self.rate == _INF:  # (a byte of slack for rounding)
            return now
        return now + (size - self.tokens) / self.rate

    def on_sent(self, size: int, now: float) -> None:
        self._refill(now)
        self.tokens = max(0.0, self.tokens - size)
