"""Congestion control of one destination: RFC 9002's RTT estimator (§5) with a windowed
min_rtt, NewReno controller (§7, Appendix B) with a queue-delay signal beside loss, and a pacer
(§7.7, a token bucket), each a small sans-I/O object.

Names follow RFC 9002 so a reader can hold the code beside it: ``smoothed_rtt``, ``rttvar``,
``min_rtt``, ``latest_rtt``; ``congestion_window``, ``bytes_in_flight``, ``ssthresh``,
``congestion_recovery_start_time``. Times are seconds (the caller's clock), sizes bytes. Nothing
here reads a clock: every method that needs the time takes ``now``.
"""

from __future__ import annotations

from chat_protocol.const import (
    CC_INITIAL_WINDOW_PACKETS,
    CC_LOSS_REDUCTION_FACTOR,
    CC_MIN_RTT_WINDOW_S,
    CC_MINIMUM_WINDOW_PACKETS,
    CC_PERSISTENT_CONGESTION_THRESHOLD,
    CC_QUEUE_TARGET_S,
    CC_WINDOW_USED_SLACK_PACKETS,
    K_GRANULARITY_S,
    K_TIME_THRESHOLD_DEN,
    K_TIME_THRESHOLD_NUM,
    MAX_ACK_DELAY_S,
    PACING_BURST_PACKETS,
    PACING_GAIN,
    PACING_MIN_RTT_S,
    PACING_TIMER_SLACK_S,
)

_INF = float("inf")


class WindowedMin:
    """The least value seen in the last ``window`` seconds: Kathleen Nichols' windowed filter,
    as Linux's ``lib/win_minmax.c`` (BBR's min_rtt). It keeps the best, second best and third
    best samples of three sub-windows, so an old minimum is forgotten ``window`` after it was
    seen, in constant memory. Times must not go backwards."""

    __slots__ = ("t0", "t1", "t2", "v0", "v1", "v2", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.t0 = self.t1 = self.t2 = -_INF
        self.v0 = self.v1 = self.v2 = _INF

    def reset(self, now: float, value: float) -> float:
        self.t0 = self.t1 = self.t2 = now
        self.v0 = self.v1 = self.v2 = value
        return value

    def update(self, now: float, value: float) -> float:
        """Take a sample; return the windowed minimum."""
        win = self.window
        if value <= self.v0 or now - self.t2 > win:  # a new minimum, or nothing left in it
            return self.reset(now, value)
        if value <= self.v1:
            self.t1 = self.t2 = now
            self.v1 = self.v2 = value
        elif value <= self.v2:
            self.t2 = now
            self.v2 = value
        dt = now - self.t0
        if dt > win:  # the best one expired: the second and third move up
            self.t0, self.v0 = self.t1, self.v1
            self.t1, self.v1 = self.t2, self.v2
            self.t2, self.v2 = now, value
            if now - self.t0 > win:
                self.t0, self.v0 = self.t1, self.v1
                self.t1, self.v1 = self.t2, self.v2
                self.t2, self.v2 = now, value
        elif self.t1 == self.t0 and dt > win / 4:  # a quarter passed: a new second best
            self.t1 = self.t2 = now
            self.v1 = self.v2 = value
        elif self.t2 == self.t1 and dt > win / 2:  # half passed: a new third best
            self.t2 = now
            self.v2 = value
        return self.v0


class RttEstimator:
    """RFC 9002 §5: ``latest_rtt``, ``min_rtt``, ``smoothed_rtt``, ``rttvar``; and the peer's
    ``max_ack_delay`` (§6.2.1), learned from the ack delays it reports."""

    __slots__ = (
        "_ack_delays",
        "_min_filter",
        "first_sample_time",
        "latest_rtt",
        "max_ack_delay",
        "min_rtt",
        "rttvar",
        "smoothed_rtt",
    )

    def __init__(self, initial_rtt: float) -> None:
        self.latest_rtt = 0.0
        self.min_rtt = _INF
        """The least sample of the last ``CC_MIN_RTT_WINDOW_S`` (not of all time: a path that
        got longer, a new route, is learned again)."""
        self.smoothed_rtt = initial_rtt
        self.rttvar = initial_rtt / 2
        self.max_ack_delay = MAX_ACK_DELAY_S
        """The longest the peer holds an ACK (RFC 9002's max_ack_delay, which QUIC's peer
        declares): the longest ack delay it reported in ``CC_MIN_RTT_WINDOW_S`` (each no more
        than the RTT sample it came with), at least ``MAX_ACK_DELAY_S``."""
        self.first_sample_time: float | None = None
        """When the first sample was taken (persistent congestion needs a sample before it)."""
        self._min_filter = WindowedMin(CC_MIN_RTT_WINDOW_S)
        self._ack_delays = WindowedMin(CC_MIN_RTT_WINDOW_S)
        """Of the reported ack delays, negated: its minimum is their maximum."""

    @property
    def has_sample(self) -> bool:
        return self.first_sample_time is not None

    def update(self, latest_rtt: float, ack_delay: float, now: float) -> None:
        """One sample: ``latest_rtt`` of the largest newly acknowledged packet, and the
        ``ack_delay`` the peer says it held the ACK (capped at ``max_ack_delay``)."""
        self.latest_rtt = latest_rtt
        reported = -min(ack_delay, latest_rtt)
        if self.first_sample_time is None:
            # §5.3: the first sample replaces the initial estimate (not averaged with it).
            self.first_sample_time = now
            self.min_rtt = self._min_filter.reset(now, latest_rtt)
            self.max_ack_delay = max(MAX_ACK_DELAY_S, -self._ack_delays.reset(now, reported))
            self.smoothed_rtt = latest_rtt
            self.rttvar = latest_rtt / 2
            return
        self.min_rtt = self._min_filter.update(now, latest_rtt)
        self.max_ack_delay = max(MAX_ACK_DELAY_S, -self._ack_delays.update(now, reported))
        ack_delay = min(ack_delay, self.max_ack_delay)
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
        """The probe timeout before backoff (§6.2.1), with the peer's ``max_ack_delay``."""
        return self.smoothed_rtt + max(4 * self.rttvar, K_GRANULARITY_S) + self.max_ack_delay

    def queue_beyond_target(self) -> bool:
        """The RTT, latest and smoothed both, is over min_rtt + ``CC_QUEUE_TARGET_S``: a
        standing queue at the bottleneck (both, so one late sample is not taken for one)."""
        rtt = self.latest_rtt if self.latest_rtt < self.smoothed_rtt else self.smoothed_rtt
        return self.first_sample_time is not None and rtt > self.min_rtt + CC_QUEUE_TARGET_S

    def loss_delay(self) -> float:
        """How long after a later packet was acknowledged an earlier one is lost (§6.1.2):
        kTimeThreshold (9/8) x max(smoothed_rtt, latest_rtt), at least kGranularity."""
        rtt = max(self.latest_rtt, self.smoothed_rtt)
        return max(K_TIME_THRESHOLD_NUM * rtt / K_TIME_THRESHOLD_DEN, K_GRANULARITY_S)


class NewReno:
    """RFC 9002 Appendix B: slow start, congestion avoidance, a recovery period, persistent
    congestion; and a queue-delay signal (``CC_QUEUE_TARGET_S``) that is a congestion event as
    a loss is. It counts bytes; the caller tells it what was sent, acknowledged and lost, and
    each RTT sample."""

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

    def window_used(self, flight: int) -> bool:
        """``flight`` bytes in flight use the window: they are within
        ``CC_WINDOW_USED_SLACK_PACKETS`` full datagrams of it."""
        slack = CC_WINDOW_USED_SLACK_PACKETS * self.max_datagram_size
        return flight + slack >= self.congestion_window

    def on_packet_sent(self, sent_bytes: int, *, backlogged: bool = False) -> bool:
        """One packet sent; return whether it used the window (RFC 9002 §7.8): bytes in
        flight, it included, are near the window (:meth:`window_used`), or the sender is
        ``backlogged`` (it has enough ready to fill the window; the window or the pacer hold it
        back, not want of data). Its acknowledgement grows the window only then
        (``app_limited`` of :meth:`on_packet_acked` is the opposite)."""
        if self.bytes_in_flight + sent_bytes > self.congestion_window and self.recovery_allowance:
            self.recovery_allowance -= 1
        self.bytes_in_flight += sent_bytes
        return backlogged or self.window_used(self.bytes_in_flight)

    def on_packet_acked(self, sent_bytes: int, time_sent: float, *, app_limited: bool) -> None:
        """One acknowledged packet (B.5): the window grows unless the packet was sent during the
        current recovery period or the sender was not using the window when it sent it (app
        limited, §7.8: see :meth:`on_packet_sent`)."""
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

    def on_congestion_event(self, sent_time: float, now: float, *, loss: bool = True) -> None:
        """B.6: at most one reduction per round trip (the recovery period). After a ``loss``,
        one datagram may leave beyond the window (the lost one, resent)."""
        if self.in_congestion_recovery(sent_time):
            return
        self.congestion_recovery_start_time = now
        self.ssthresh = self.congestion_window * CC_LOSS_REDUCTION_FACTOR
        self.congestion_window = max(int(self.ssthresh), self.minimum_window)
        self.recovery_allowance = 1 if loss else 0

    def on_rtt_sample(self, rtt: RttEstimator, sent_time: float, now: float) -> None:
        """After ``rtt`` took the sample of a packet sent at ``sent_time``: a queue beyond
        ``CC_QUEUE_TARGET_S`` is a congestion event (once per round trip, as a loss is), so
        the window shrinks before the bottleneck's buffer fills and drops."""
        if rtt.queue_beyond_target():
            self.on_congestion_event(sent_time, now, loss=False)

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
        self.rate = PACING_GAIN * congestion_window / max(smoothed_rtt, PACING_MIN_RTT_S)
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
        if now > self.last:  # (else refilled already: by next_send_time, for the same now)
            self._refill(now)
        self.tokens = max(0.0, self.tokens - size)
