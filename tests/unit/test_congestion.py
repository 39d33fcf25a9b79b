"""RFC 9002's RTT estimator, NewReno and pacer (chat_protocol.transfer.congestion), driven
through the RFC's scenarios as tables: each row a sequence of events and the state after."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_protocol import const
from chat_protocol.const import (
    CC_INITIAL_WINDOW_PACKETS,
    CC_MIN_RTT_WINDOW_S,
    CC_MINIMUM_WINDOW_PACKETS,
    CC_QUEUE_TARGET_S,
    CC_WINDOW_USED_SLACK_PACKETS,
    DEFAULT_TIMINGS,
    K_GRANULARITY_S,
    MAX_ACK_DELAY_S,
    PACING_BURST_PACKETS,
    PACING_TIMER_SLACK_S,
)
from chat_protocol.events import MessageDelivered
from chat_protocol.transfer.congestion import NewReno, Pacer, RttEstimator, WindowedMin
from netsim import FakeNetwork, Link

MSS = 1200
IW = CC_INITIAL_WINDOW_PACKETS * MSS

# --- RTT (§5) -----------------------------------------------------------------------------------

# (samples as (latest_rtt, ack_delay)), then (min_rtt, smoothed_rtt, rttvar) after them.
RTT_CASES = [
    # §5.3: the first sample sets smoothed_rtt and rttvar = sample / 2.
    ([(0.1, 0.0)], (0.1, 0.1, 0.05)),
    # Later samples: EWMA 7/8 and 3/4.
    ([(0.1, 0.0), (0.2, 0.0)], (0.1, 0.1125, 0.0625)),
    # The ack delay is taken off (when that leaves at least min_rtt) ...
    ([(0.1, 0.0), (0.105, 0.004)], (0.1, 0.100125, 0.03775)),
    # ... but never below min_rtt: 0.102 - 0.004 < 0.1, so the raw sample is used.
    ([(0.1, 0.0), (0.102, 0.004)], (0.1, 0.10025, 0.038)),
    # ... the peer's max_ack_delay is the longest it reported (here 50 ms, all taken off) ...
    ([(0.1, 0.0), (0.2, 0.05)], (0.1, 0.15 * 1 / 8 + 0.1 * 7 / 8, None)),
    # ... but no report longer than its own sample is believed (1 s: capped at 0.2, which
    # would go below min_rtt, so the raw sample is used).
    ([(0.1, 0.0), (0.2, 1.0)], (0.1, 0.2 * 1 / 8 + 0.1 * 7 / 8, None)),
    # min_rtt is the least sample, the ack delay not taken off.
    ([(0.1, 0.0), (0.05, 0.01)], (0.05, None, None)),
]


@pytest.mark.parametrize(("samples", "after"), RTT_CASES)
def test_rtt_estimator(
    samples: list[tuple[float, float]], after: tuple[float, float | None, float | None]
) -> None:
    rtt = RttEstimator(0.333)
    assert not rtt.has_sample
    for i, (latest, delay) in enumerate(samples):
        rtt.update(latest, delay, float(i))
    min_rtt, srtt, rttvar = after
    assert rtt.min_rtt == pytest.approx(min_rtt)
    if srtt is not None:
        assert rtt.smoothed_rtt == pytest.approx(srtt)
    if rttvar is not None:
        assert rtt.rttvar == pytest.approx(rttvar)
    assert rtt.first_sample_time == 0.0


def test_pto_and_loss_delay() -> None:
    rtt = RttEstimator(0.333)
    rtt.update(0.1, 0.0, 0.0)
    assert rtt.pto() == pytest.approx(0.1 + 4 * 0.05 + MAX_ACK_DELAY_S)  # §6.2.1
    assert rtt.loss_delay() == pytest.approx(9 / 8 * 0.1)  # §6.1.2
    tiny = RttEstimator(0.0)
    tiny.update(0.0, 0.0, 0.0)
    assert tiny.loss_delay() == K_GRANULARITY_S
    assert tiny.pto() == pytest.approx(K_GRANULARITY_S + MAX_ACK_DELAY_S)


def test_pto_waits_for_the_ack_delay_the_peer_reports() -> None:
    """RFC 9002 §6.2.1: PTO = smoothed_rtt + max(4 rttvar, kGranularity) + max_ack_delay, the
    peer's: a receiver that holds ACKs 40 ms is not probed 5 ms after its RTT. Its reports are
    forgotten CC_MIN_RTT_WINDOW_S later, and none counts for more than its own sample."""
    rtt = RttEstimator(0.333)
    rtt.update(0.060, 0.040, 0.0)
    assert rtt.max_ack_delay == pytest.approx(0.040)
    assert rtt.pto() == pytest.approx(0.060 + 4 * 0.030 + 0.040)
    t = 0.0
    while t < CC_MIN_RTT_WINDOW_S + 1:  # prompt ACKs from then on
        t += 0.05
        rtt.update(0.020, 0.0001, t)
        if t < CC_MIN_RTT_WINDOW_S:
            assert rtt.max_ack_delay == pytest.approx(0.040)
    assert rtt.max_ack_delay == MAX_ACK_DELAY_S
    assert rtt.pto() == pytest.approx(
        rtt.smoothed_rtt + max(4 * rtt.rttvar, K_GRANULARITY_S) + MAX_ACK_DELAY_S
    )
    rtt.update(0.020, 5.0, t + 1)
    assert rtt.max_ack_delay == 0.020


def test_min_rtt_forgets_an_old_minimum() -> None:
    """CC_MIN_RTT_WINDOW_S: a path that got longer (a new route) is learned again; with an
    all-time minimum its RTT would look like a standing queue for ever (and the queue-delay
    signal would cut the window on every round trip)."""
    rtt = RttEstimator(0.333)
    rtt.update(0.010, 0.0, 0.0)
    t = 0.0
    while t < CC_MIN_RTT_WINDOW_S + 1:
        t += 0.05
        rtt.update(0.050, 0.0, t)
        if t <= CC_MIN_RTT_WINDOW_S:
            assert rtt.min_rtt == 0.010
    assert rtt.min_rtt == 0.050


# (time, value) samples, then the windowed minimum after each, with a 10 s window.
MINMAX_CASES = {
    "a lower sample is the minimum at once": ([(0, 5), (1, 3), (2, 4)], [5, 3, 3]),
    "the minimum expires; the best later sample takes over": (
        [(0, 1), (3, 5), (6, 4), (11, 6)],
        [1, 1, 1, 4],
    ),
    "a quarter window on, a new second best is taken": (
        [(0, 1), (3, 9), (4, 8), (11, 9)],
        [1, 1, 1, 8],
    ),
    "nothing left in the window: the new sample alone": ([(0, 1), (30, 7)], [1, 7]),
}


@pytest.mark.parametrize(("samples", "mins"), MINMAX_CASES.values(), ids=MINMAX_CASES.keys())
def test_windowed_min(samples: list[tuple[float, float]], mins: list[float]) -> None:
    f = WindowedMin(10.0)
    got = []
    for i, (t, v) in enumerate(samples):
        got.append(f.reset(t, v) if i == 0 else f.update(t, v))
    assert got == mins


# --- NewReno (§7, Appendix B) -------------------------------------------------------------------

# Events: ("sent", bytes), ("acked", bytes, time_sent), ("acked_app_limited", bytes, time_sent),
# ("lost", bytes, largest_lost_time_sent, now), ("persistent", bytes, time_sent, now), and
# the same judged not congestive ("lost_random", "persistent_random").
# After them: (congestion_window, ssthresh, bytes_in_flight).
RENO_CASES = {
    "initial window is 10 datagrams (§7.2)": ([], (IW, float("inf"), 0)),
    "slow start: +1 datagram per acked datagram": (
        [("sent", MSS), ("sent", MSS), ("acked", MSS, 0.0), ("acked", MSS, 0.0)],
        (IW + 2 * MSS, float("inf"), 0),
    ),
    "app limited: no growth (§7.8)": (
        [("sent", MSS), ("acked_app_limited", MSS, 0.0)],
        (IW, float("inf"), 0),
    ),
    "loss: halve, enter recovery (B.6)": (
        [("sent", 4 * MSS), ("lost", MSS, 1.0, 2.0)],
        (IW // 2, IW / 2, 3 * MSS),
    ),
    "a loss judged the link's own (no queue): no reduction": (
        [("sent", 4 * MSS), ("lost_random", MSS, 1.0, 2.0)],
        (IW, float("inf"), 3 * MSS),
    ),
    "... but persistent congestion still collapses the window": (
        [("sent", 3 * MSS), ("persistent_random", 2 * MSS, 1.0, 2.0)],
        (CC_MINIMUM_WINDOW_PACKETS * MSS, IW / 2, MSS),
    ),
    "one reduction per recovery period": (
        [("sent", 4 * MSS), ("lost", MSS, 1.0, 2.0), ("lost", MSS, 1.5, 2.1)],
        (IW // 2, IW / 2, 2 * MSS),
    ),
    "a loss of a packet sent after recovery began: a new reduction": (
        [("sent", 4 * MSS), ("lost", MSS, 1.0, 2.0), ("lost", MSS, 2.5, 3.0)],
        (IW // 4, IW / 4, 2 * MSS),
    ),
    "acks of packets sent in recovery do not grow the window": (
        [("sent", 4 * MSS), ("lost", MSS, 1.0, 2.0), ("acked", MSS, 1.9)],
        (IW // 2, IW / 2, 2 * MSS),
    ),
    "congestion avoidance: +1 datagram per window acked": (
        [("sent", 4 * MSS), ("lost", MSS, 1.0, 2.0)]
        + [("acked", MSS, 2.5)] * 3
        + [("sent", MSS)] * 5
        + [("acked", MSS, 2.6)] * 5,
        (None, IW / 2, 0),
    ),
    "never below the minimum window": (
        [("sent", MSS)] + [x for i in range(8) for x in [("lost", 0, float(i), i + 0.5)]],
        (CC_MINIMUM_WINDOW_PACKETS * MSS, None, MSS),
    ),
    "persistent congestion: the minimum window (§7.6.2)": (
        [("sent", 3 * MSS), ("persistent", 2 * MSS, 1.0, 2.0)],
        (CC_MINIMUM_WINDOW_PACKETS * MSS, IW / 2, MSS),
    ),
}


@pytest.mark.parametrize(("events", "after"), RENO_CASES.values(), ids=RENO_CASES.keys())
def test_newreno(
    events: list[tuple[object, ...]], after: tuple[float | None, float | None, int]
) -> None:
    cc = NewReno(MSS)
    for ev in events:
        match ev:
            case ("sent", int(n)):
                cc.on_packet_sent(n)
            case ("acked", int(n), float(t)):
                cc.on_packet_acked(n, t, app_limited=False)
            case ("acked_app_limited", int(n), float(t)):
                cc.on_packet_acked(n, t, app_limited=True)
            case ("lost", int(n), float(t), float(now)):
                cc.on_packets_lost(n, t, now, persistent=False)
            case ("persistent", int(n), float(t), float(now)):
                cc.on_packets_lost(n, t, now, persistent=True)
            case ("lost_random", int(n), float(t), float(now)):
                cc.on_packets_lost(n, t, now, persistent=False, congestive=False)
            case ("persistent_random", int(n), float(t), float(now)):
                cc.on_packets_lost(n, t, now, persistent=True, congestive=False)
            case _:
                raise AssertionError(f"bad event {ev}")
    cwnd, ssthresh, flight = after
    if cwnd is not None:
        assert cc.congestion_window == cwnd
    if ssthresh is not None:
        assert cc.ssthresh == ssthresh
    assert cc.bytes_in_flight == flight


def test_congestion_avoidance_grows_by_one_datagram_per_window() -> None:
    cc = NewReno(MSS)
    cc.on_packet_sent(MSS)
    cc.on_packets_lost(MSS, 0.0, 1.0, persistent=False)
    start = cc.congestion_window
    for _ in range(start // MSS):
        cc.on_packet_sent(MSS)
        cc.on_packet_acked(MSS, 2.0, app_limited=False)
    assert start + MSS - 2 * MSS // 10 <= cc.congestion_window <= start + MSS


def test_delay_signal_halves_once_per_round_trip_and_sends_nothing_extra() -> None:
    cc = NewReno(MSS)
    rtt = RttEstimator(0.333)
    rtt.update(0.010, 0.0, 0.0)
    for _ in range(CC_INITIAL_WINDOW_PACKETS):
        cc.on_packet_sent(MSS)
    cc.on_rtt_sample(rtt, 0.0, 0.010)
    assert cc.congestion_window == IW  # no queue
    for i in range(1, 20):  # the RTT climbs: a queue builds
        rtt.update(0.010 + i * 0.005, 0.0, i * 0.01)
        cc.on_rtt_sample(rtt, 0.001, i * 0.01)  # all sent before the first cut
    assert cc.congestion_window == IW // 2  # one cut, not one per sample
    assert not cc.can_send(MSS)  # unlike a loss, no datagram beyond the window
    rtt.update(0.2, 0.0, 0.5)
    cc.on_rtt_sample(rtt, 0.4, 0.5)  # sent after the cut, the queue still there: again
    assert cc.congestion_window == IW // 4


def test_a_late_sample_alone_is_not_a_queue() -> None:
    """Both the latest sample and smoothed_rtt must be over the target: one late ACK (a
    receiver's pause) is not a standing queue."""
    rtt = RttEstimator(0.333)
    rtt.update(0.010, 0.0, 0.0)
    rtt.update(0.010 + 3 * CC_QUEUE_TARGET_S, 0.0, 0.1)
    assert not rtt.queue_beyond_target()
    for t in range(2, 40):  # (within CC_MIN_RTT_WINDOW_S: min_rtt stays)
        rtt.update(0.010 + 3 * CC_QUEUE_TARGET_S, 0.0, t / 10)
    assert rtt.queue_beyond_target()


@pytest.mark.parametrize(
    ("flight", "backlogged", "used"),
    [
        (IW, False, True),  # the window full
        (IW - CC_WINDOW_USED_SLACK_PACKETS * MSS, False, True),  # near it
        (IW - (CC_WINDOW_USED_SLACK_PACKETS + 1) * MSS, False, False),  # not near: app limited
        (MSS, True, True),  # more ready than the window holds
    ],
)
def test_a_packet_uses_the_window_when_the_flight_is_near_it(
    flight: int, backlogged: bool, used: bool
) -> None:
    cc = NewReno(MSS)
    cc.on_packet_sent(flight - MSS)
    assert cc.on_packet_sent(MSS, backlogged=backlogged) is used


def test_window_full_blocks_sending_except_one_on_entering_recovery() -> None:
    cc = NewReno(MSS)
    for _ in range(CC_INITIAL_WINDOW_PACKETS):
        assert cc.can_send(MSS)
        cc.on_packet_sent(MSS)
    assert not cc.can_send(MSS)
    cc.on_packets_lost(MSS, 0.0, 1.0, persistent=False)
    assert cc.can_send(MSS)  # §7.3.2: one datagram to speed up recovery
    cc.on_packet_sent(MSS)
    assert not cc.can_send(MSS)


# --- pacing (§7.7) ------------------------------------------------------------------------------

PACER_CASES = [
    # (cwnd, srtt, sends as (time, bytes)), then when one more MSS may go
    (IW, 0.1, [(0.0, MSS)] * PACING_BURST_PACKETS, 0.0 + MSS / (1.25 * IW / 0.1)),
    (IW, 0.1, [(0.0, MSS)] * (PACING_BURST_PACKETS - 1), 0.0),  # the burst is not used up
    (IW, 0.1, [(0.0, MSS)] * PACING_BURST_PACKETS + [(1.0, MSS)], 1.0),  # refilled while idle
]


@pytest.mark.parametrize(("cwnd", "srtt", "sends", "expected"), PACER_CASES)
def test_pacer(cwnd: int, srtt: float, sends: list[tuple[float, int]], expected: float) -> None:
    p = Pacer(MSS)
    p.update_rate(cwnd, srtt)
    now = 0.0
    for now, size in sends:
        assert p.next_send_time(size, now) == now
        p.on_sent(size, now)
    assert p.next_send_time(MSS, now) == pytest.approx(expected)


def test_unpaced_before_a_sample() -> None:
    p = Pacer(MSS)
    for _ in range(10 * PACING_BURST_PACKETS):
        assert p.next_send_time(MSS, 0.0) == 0.0
        p.on_sent(MSS, 0.0)


def test_protocol_md_lists_the_constants() -> None:
    """docs/PROTOCOL.md's table of loss-recovery and congestion constants says what const.py
    has."""
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
    section = doc.split("## Loss recovery and congestion control", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[1].strip("`"): cells[2]
        for line in section.splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert rows.pop("K_TIME_THRESHOLD_NUM / _DEN") == (
        f"{const.K_TIME_THRESHOLD_NUM}/{const.K_TIME_THRESHOLD_DEN}"
    )
    assert rows, "no table"
    for name, value in rows.items():
        assert str(getattr(const, name)) == value, name


def test_a_fast_pacer_holds_what_it_sends_in_the_timer_slack() -> None:
    """At a high rate, a timer that fires PACING_TIMER_SLACK_S late must not cap the rate at
    PACING_BURST_PACKETS per wake-up."""
    p = Pacer(MSS)
    p.update_rate(100 * MSS, 0.001)  # 150 MB/s: 300 KB per 2 ms
    assert p.capacity == int(1.25 * 100 * MSS / 0.001 * PACING_TIMER_SLACK_S)
    p.on_sent(MSS, 0.0)
    sent = 0
    while p.next_send_time(MSS, PACING_TIMER_SLACK_S) == PACING_TIMER_SLACK_S:
        p.on_sent(MSS, PACING_TIMER_SLACK_S)
        sent += 1
    assert sent >= 200


def test_a_short_path_is_paced_at_its_own_rtt_not_a_millisecond() -> None:
    """RFC 9002 §7.7's rate is N x window / smoothed_rtt with no floor: a 50 us loopback or LAN
    path is paced at its own RTT (a millisecond floor capped it at 1.25 windows per ms)."""
    p = Pacer(MSS)
    p.update_rate(IW, 50e-6)
    assert p.rate == pytest.approx(1.25 * IW / 50e-6)
    p.update_rate(IW, 0.0)  # a fake clock's sample of 0: the rate stays finite
    assert p.rate == pytest.approx(1.25 * IW / const.PACING_MIN_RTT_S)


def test_one_mib_over_a_short_path_is_not_capped_by_the_pacer() -> None:
    """In fake time (tests/netsim.py: no CPU cost, 25 us each way), 1 MiB goes in well under
    the 10 ms a millisecond floor in the pacing rate made it take: the window and the flow
    control bound it, as on a real LAN."""
    net = FakeNetwork(seed=1, link=Link(latency_s=25e-6))
    a, _ = net.sign_in(
        ("10.0.0.1", 9000), DEFAULT_TIMINGS, ("alice", ("10.0.0.2", 1)), ("bob", ("10.0.0.3", 1))
    )
    sent = net.client_events[("10.0.0.2", 1)]

    def delivered() -> bool:
        return any(isinstance(e, MessageDelivered) for e in sent)

    a.send("bob", "warm-up", net.now)  # the session and the receiver's name check
    net.flush()
    assert net.run_until(delivered, 30)
    sent.clear()
    t0 = net.now
    a.send("bob", "x" * (1 << 20), net.now)
    net.flush()
    assert net.run_until(delivered, 30)
    assert net.now - t0 < 0.003  # fake seconds: 0.8 ms here; 10.1 ms with the floor
