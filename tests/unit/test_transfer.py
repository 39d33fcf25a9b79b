"""The reliable-transfer halves on their own: window, timers, bounds, ack sizes, and what
"delivered" means (shown to the receiver's user), alone and over a lossy in-memory link."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_PN_RANGE_BYTES,
    ACK_RANGE_BYTES,
    CC_INITIAL_WINDOW_PACKETS,
    CC_QUEUE_TARGET_S,
    CC_RANDOM_LOSS_QUEUE_S,
    CC_WINDOW_USED_SLACK_PACKETS,
    CHUNK_PAYLOAD_BYTES,
    MAX_ACK_DELAY_S,
    MAX_ACK_RANGES,
    MAX_BUFFERED_BYTES_PER_PEER,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    MAX_PN_RANGES_KEPT,
    PACING_BURST_PACKETS,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.errors import InvalidMessage
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.inbound import ChunkRejected, Inbound
from chat_protocol.transfer.outbound import Outbound, Resolved
from chat_protocol.transfer.rangeset import RangeSet
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import Ack, Data

T = Timings()
PEER = ("10.0.0.9", 4000)


def outbound() -> Outbound:
    return Outbound(addr=PEER, sender="alice", session=1, stream=1, timings=T)


def inbound() -> Inbound:
    return Inbound(addr=PEER, sender="alice", session=1, stream=1, base=0)


def chunk(seq: int, offset: int, total: int, base: int = 0, stream: int = 1) -> Data:
    n = min(CHUNK_PAYLOAD_BYTES, total - offset)
    return Data(
        session=1,
        stream=stream,
        base=base,
        seq=seq,
        msg_id=100 + seq,
        offset=offset,
        total=total,
        sender="alice",
        payload=b"x" * n,
    )


def ack(seq: int, *ranges: tuple[int, int], complete: bool = False) -> Ack:
    return Ack(session=1, stream=1, seq=seq, complete=complete, ranges=ranges)


def deliver(ib: Inbound, ds: list[Data], now: float = 0.0) -> list[tuple[int, int, bytes]]:
    out = []
    for d in ds:
        raw = encode(d)
        got = decode(raw)
        assert isinstance(got, Data)
        out.extend(ib.on_data(got, len(raw), now))
    return out


def to_sender(ob: Outbound, acks: list[Ack], now: float) -> list[Resolved]:
    out = []
    for a in acks:
        got = decode(encode(a))
        assert isinstance(got, Ack)
        out.extend(ob.on_ack(got, now))
    return out


# --- sender -------------------------------------------------------------------------------------


def pn_ack(seq: int, *pns: tuple[int, int], delay_us: int = 0) -> Ack:
    return Ack(
        session=1, stream=1, seq=seq, complete=False, ranges=(), ack_delay_us=delay_us, pns=pns
    )


def test_congestion_window_limits_chunks_in_flight_and_grows_in_slow_start() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"y" * (1 << 20), now=0.0)
    first = ob.datagrams(0.0)
    assert len(first) == CC_INITIAL_WINDOW_PACKETS
    assert [d.pn for d in first] == list(range(CC_INITIAL_WINDOW_PACKETS))
    assert all(d.msg_id == 1 for d in first)
    assert ob.datagrams(0.0) == []  # nothing more until acks arrive
    ob.on_ack(pn_ack(0, (0, CC_INITIAL_WINDOW_PACKETS)), 0.01)
    # Slow start: each acknowledged byte opens the window by one, and the flight is empty ...
    assert ob.cc.congestion_window == 2 * CC_INITIAL_WINDOW_PACKETS * CHUNK_PAYLOAD_BYTES
    # ... but the pacer lets a burst of PACING_BURST_PACKETS go now, the rest at its rate.
    assert len(ob.datagrams(0.01)) == PACING_BURST_PACKETS
    paced = ob.next_timer()
    assert paced is not None and 0.01 < paced < 0.02
    assert ob.handle_timer(paced) == []
    assert len(ob.datagrams(paced)) >= 1


def test_flow_control_caps_the_window() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"y" * (1 << 20), now=0.0)
    now, most = 0.0, 0
    for _ in range(12):  # slow start, no loss: the window outgrows the cap
        sent = ob.datagrams(now)
        while ob.pacing_at is not None:  # the rest of the window, at the pacer's times
            now = ob.pacing_at
            ob.handle_timer(now)
            sent += ob.datagrams(now)
        most = max(most, ob.in_flight)
        assert ob.in_flight <= SEND_WINDOW_CHUNKS
        now += 0.01
        if sent:
            ob.on_ack(pn_ack(0, (sent[0].pn, sent[-1].pn + 1)), now)
    assert most == SEND_WINDOW_CHUNKS
    assert ob.cc.congestion_window > SEND_WINDOW_CHUNKS * CHUNK_PAYLOAD_BYTES
    # ... but once the flight is capped well under it, the window is not used and stops growing
    # (slow start may double what it was when the cap was last near it, no more).
    grown = ob.cc.congestion_window
    slack = CC_WINDOW_USED_SLACK_PACKETS * CHUNK_PAYLOAD_BYTES
    assert grown <= 2 * (SEND_WINDOW_CHUNKS * CHUNK_PAYLOAD_BYTES + slack)
    for _ in range(12):
        sent = ob.datagrams(now)
        while ob.pacing_at is not None:
            now = ob.pacing_at
            ob.handle_timer(now)
            sent += ob.datagrams(now)
        now += 0.01
        if sent:
            ob.on_ack(pn_ack(0, (sent[0].pn, sent[-1].pn + 1)), now)
    assert ob.cc.congestion_window == grown


def test_enqueue_refuses_sizes_the_wire_cannot_carry() -> None:
    ob = outbound()
    for size in (0, MAX_MESSAGE_BYTES + 1):
        with pytest.raises(InvalidMessage):
            ob.enqueue(msg_id=1, to="bob", payload=b"x" * size, now=0.0)


def test_retransmission_backs_off_and_gives_up() -> None:
    ob = outbound()
    ob.enqueue(msg_id=7, to="bob", payload=b"hi", now=0.0)
    assert len(ob.datagrams(0.0)) == 1
    times = []
    now = 0.0
    while True:
        t = ob.next_timer()
        assert t is not None
        now = t
        failed = ob.handle_timer(now)
        if failed:
            break
        if ob.datagrams(now):
            times.append(now)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[1] > gaps[0]  # backoff
    assert max(gaps) <= T.retransmit_max_s + 1e-9
    assert now == pytest.approx(T.delivery_timeout_s)
    assert failed == [Resolved(msg_id=7, to="bob", delivered=False, reason=FailReason.TIMEOUT)]
    assert ob.next_timer() is None


def test_acks_of_a_stale_stream_or_unknown_seq_are_ignored() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"hi", now=0.0)
    ob.datagrams(0.0)
    other = Ack(session=1, stream=2, seq=0, complete=True, ranges=())
    assert ob.on_ack(other, 0.1) == []
    assert ob.on_ack(ack(5, complete=True), 0.1) == []
    assert ob.pending == 1


def test_sender_is_not_delivered_until_the_ack_says_complete() -> None:
    ob, ib = outbound(), inbound()
    ob.enqueue(msg_id=9, to="bob", payload=b"z" * 3000, now=0.0)
    handed = deliver(ib, ob.datagrams(0.0))
    assert [(seq, mid) for seq, mid, _ in handed] == [(0, 9)]
    acks = ib.acks()
    assert [(a.complete, a.ranges) for a in acks] == [(False, ((0, 3000),))]
    assert to_sender(ob, acks, 0.01) == []  # every byte is there, but not shown: not delivered
    assert ob.pending == 1
    ib.shown(0)
    assert to_sender(ob, ib.acks(), 0.02) == [Resolved(msg_id=9, to="bob", delivered=True)]
    assert ob.pending == 0 and ob.in_flight == 0


def test_probe_recovers_a_lost_complete_ack() -> None:
    ob, ib = outbound(), inbound()
    ob.enqueue(msg_id=3, to="bob", payload=b"z" * 2500, now=0.0)
    deliver(ib, ob.datagrams(0.0))
    to_sender(ob, ib.acks(), 0.01)  # full range, not complete
    ib.shown(0)
    [lost] = ib.acks()
    assert lost.complete  # ... and the network drops it
    now, probes = 0.01, []
    while ob.pending:
        t = ob.next_timer()
        assert t is not None and t < T.delivery_timeout_s  # recovered well before the timeout
        now = t
        assert ob.handle_timer(now) == []
        sent = ob.datagrams(now)
        probes.extend(sent)
        deliver(ib, sent, now)
        resolved = to_sender(ob, ib.acks(), now + 0.01)
    assert resolved == [Resolved(msg_id=3, to="bob", delivered=True)]
    # The probe is the last chunk, sent again; the receiver counted it as a duplicate.
    assert [(d.seq, d.offset) for d in probes] == [(0, 2 * CHUNK_PAYLOAD_BYTES)]
    assert ib.duplicates == 1


def test_never_shown_message_fails_with_timeout_after_probing_with_backoff() -> None:
    ob, ib = outbound(), inbound()
    ob.enqueue(msg_id=5, to="bob", payload=b"q" * 5000, now=0.0)
    deliver(ib, ob.datagrams(0.0))
    to_sender(ob, ib.acks(), 0.01)
    progress_at = ob.last_progress
    assert progress_at == 0.01
    probe_times: list[float] = []
    failed: list[Resolved] = []
    now = 0.01
    while not failed:
        t = ob.next_timer()
        assert t is not None
        now = t
        failed = ob.handle_timer(now)
        sent = ob.datagrams(now)
        if sent:
            probe_times.append(now)
        deliver(ib, sent, now)
        assert to_sender(ob, ib.acks(), now) == []  # the same ack again: not progress
        assert ob.last_progress == progress_at
    assert failed == [Resolved(msg_id=5, to="bob", delivered=False, reason=FailReason.TIMEOUT)]
    assert now == pytest.approx(progress_at + T.delivery_timeout_s)
    gaps = [b - a for a, b in itertools.pairwise(probe_times)]
    assert len(probe_times) >= 5
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))  # backoff, never shrinking
    assert max(gaps) == pytest.approx(T.retransmit_max_s)  # ... up to its cap


def test_progress_means_new_bytes_or_completion() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"p" * (4 * CHUNK_PAYLOAD_BYTES), now=0.0)
    ob.datagrams(0.0)
    ob.on_ack(ack(0, (0, CHUNK_PAYLOAD_BYTES)), 1.0)
    assert ob.last_progress == 1.0
    ob.on_ack(ack(0, (0, CHUNK_PAYLOAD_BYTES)), 2.0)  # repeated: no progress
    ob.on_ack(ack(0, (0, CHUNK_PAYLOAD_BYTES - 1)), 2.5)  # part of a chunk counts for nothing
    assert ob.last_progress == 1.0
    ob.on_ack(ack(0, (0, 2 * CHUNK_PAYLOAD_BYTES)), 3.0)
    assert ob.last_progress == 3.0
    assert ob.on_ack(ack(0, complete=True), 4.0)[0].delivered
    assert ob.last_progress == 4.0


@pytest.mark.parametrize(
    ("acked", "lost"),
    [
        ((1, 3), []),  # two later packets acknowledged: not yet
        ((1, 4), [0]),  # the third (kPacketThreshold): packet 0 is lost
        ((2, 6), [0, 1]),
        ((5, 6), [0, 1, 2]),  # packets 3 and 4 are within the threshold of 5
    ],
)
def test_packet_threshold_declares_loss(acked: tuple[int, int], lost: list[int]) -> None:
    ob = outbound()
    c = CHUNK_PAYLOAD_BYTES
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (70 * c), now=0.0)
    assert len(ob.datagrams(0.0)) == CC_INITIAL_WINDOW_PACKETS
    ob.on_ack(pn_ack(0, acked), 0.001)  # before the time threshold of any packet
    resent = [d for d in ob.datagrams(0.001) if d.offset // c < CC_INITIAL_WINDOW_PACKETS]
    waiting = [idx for _, idx in ob.retransmit]
    assert [d.offset // c for d in resent] + waiting == lost
    # Even when the halved window is full, one may leave beyond it (RFC 9002 §7.3.2).
    assert len(resent) >= min(1, len(lost))
    assert all(d.pn >= CC_INITIAL_WINDOW_PACKETS for d in resent)  # new packet numbers
    assert ob.retransmissions == len(resent)


@pytest.mark.parametrize(("late_ack_at", "halved"), [(0.011, False), (0.060, True)])
def test_a_loss_cuts_the_window_only_while_a_queue_builds(late_ack_at: float, halved: bool) -> None:
    """CC_RANDOM_LOSS_QUEUE_S: a loss with no queueing delay (smoothed_rtt - min_rtt) is the
    link's, and the window stays; with the RTT grown by a queue, NewReno halves it."""
    ob = outbound()
    c = CHUNK_PAYLOAD_BYTES
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (70 * c), now=0.0)
    ob.datagrams(0.0)  # packets 0..9
    ob.on_ack(pn_ack(0, (0, 1)), 0.010)  # min_rtt 10 ms
    window = ob.cc.congestion_window
    ob.on_ack(pn_ack(0, (2, 6)), late_ack_at)  # packet 1 lost (packet threshold)
    assert [idx for _, idx in ob.retransmit] + [
        d.offset // c for d in ob.datagrams(late_ack_at) if d.offset == c
    ] in ([1], [1, 1])
    assert (ob.rtt.queueing_delay() >= CC_RANDOM_LOSS_QUEUE_S) is halved
    if halved:
        assert ob.cc.ssthresh == (window + 4 * c) / 2
    else:
        assert ob.cc.ssthresh == float("inf")
        assert ob.cc.congestion_window == window + 4 * c  # still in slow start


def test_time_threshold_declares_loss_of_the_packet_before_the_last_acked() -> None:
    ob = outbound()
    c = CHUNK_PAYLOAD_BYTES
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (3 * c), now=0.0)
    ob.datagrams(0.0)  # packets 0, 1, 2
    ob.on_ack(pn_ack(0, (2, 3)), 0.1)  # latest_rtt = 0.1: packets 0 and 1 not yet lost
    assert ob.datagrams(0.1) == []
    assert ob.next_timer() == pytest.approx(9 / 8 * 0.1)  # kTimeThreshold x latest_rtt
    ob.handle_timer(ob.next_timer() or 0.0)
    resent = ob.datagrams(9 / 8 * 0.1)
    assert sorted(d.offset // c for d in resent) == [0, 1]


def test_rtt_sample_takes_the_ack_delay_off() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (3 * CHUNK_PAYLOAD_BYTES), now=0.0)
    ob.datagrams(0.0)
    ob.on_ack(pn_ack(0, (0, 1)), 0.02)
    assert (ob.rtt.latest_rtt, ob.rtt.min_rtt, ob.rtt.smoothed_rtt) == (0.02, 0.02, 0.02)
    ob.on_ack(pn_ack(0, (0, 2), delay_us=4000), 0.05)
    assert ob.rtt.latest_rtt == pytest.approx(0.05)
    assert ob.rtt.smoothed_rtt == pytest.approx(7 / 8 * 0.02 + 1 / 8 * 0.046)


def _acked_one_by_one(ob: Outbound, rtts: list[float]) -> list[int]:
    """Send what the window and pacer allow, then ACK the oldest packet in flight after each
    RTT of ``rtts`` in turn (no loss; the clock moves only forward); the window after each."""
    now = 0.0
    windows = []
    for rtt in rtts:
        ob.datagrams(now)
        pn, s = next(iter(ob.sent.items()))
        now = max(now, s.time_sent + rtt)
        ob.on_ack(pn_ack(0, (pn, pn + 1)), now)
        windows.append(ob.cc.congestion_window)
    return windows


def test_a_queue_beyond_the_target_cuts_the_window_without_loss() -> None:
    """CC_QUEUE_TARGET_S: the RTT rising over min_rtt + the target, no datagram lost, is a
    congestion event: the window halves, once per round trip."""
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (200 * CHUNK_PAYLOAD_BYTES), now=0.0)
    base = 0.010
    rtts = [base] * 5 + [base + CC_QUEUE_TARGET_S * (1 + i / 4) for i in range(1, 30)]
    windows = _acked_one_by_one(ob, rtts)
    assert ob.retransmit == [] and ob.retransmissions == 0
    assert ob.rtt.min_rtt == base
    top = max(windows)
    assert ob.cc.congestion_window <= top // 2
    assert ob.cc.ssthresh < float("inf")  # out of slow start
    cuts = [i for i in range(1, len(windows)) if windows[i] < windows[i - 1]]
    assert cuts
    # Once per round trip: the ACKs of packets sent before a cut do not cut again.
    for i, j in itertools.pairwise(cuts):
        assert sum(rtts[i + 1 : j + 1]) >= rtts[i]


def test_a_steady_rtt_under_the_target_does_not_cut() -> None:
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (200 * CHUNK_PAYLOAD_BYTES), now=0.0)
    windows = _acked_one_by_one(ob, [0.010] * 5 + [0.010 + CC_QUEUE_TARGET_S * 0.9] * 30)
    assert windows == sorted(windows)
    assert ob.cc.ssthresh == float("inf")


def test_an_app_limited_sender_does_not_grow_the_window() -> None:
    """RFC 9002 §7.8: one short message at a time, each acknowledged, never fills the window;
    its ACKs must not grow it (else a later burst would go out at a rate never tried)."""
    ob = outbound()
    now = 0.0
    for i in range(50):
        ob.enqueue(msg_id=i, to="bob", payload=b"hi", now=now)
        [d] = ob.datagrams(now)
        now += 0.01
        ob.on_ack(pn_ack(i, (d.pn, d.pn + 1)), now)
        ob.on_ack(ack(i, complete=True), now)
    assert ob.cc.congestion_window == CC_INITIAL_WINDOW_PACKETS * CHUNK_PAYLOAD_BYTES


def test_a_backlogged_sender_grows_the_window_from_its_first_burst() -> None:
    """The other side of the rule: a sender with more ready than the window holds uses it,
    though the first datagrams of its burst left with little in flight."""
    ob = outbound()
    ob.enqueue(msg_id=1, to="bob", payload=b"y" * (100 * CHUNK_PAYLOAD_BYTES), now=0.0)
    sent = ob.datagrams(0.0)
    assert all(s.window_used for s in ob.sent.values())
    ob.on_ack(pn_ack(0, (0, len(sent))), 0.01)
    assert ob.cc.congestion_window == 2 * CC_INITIAL_WINDOW_PACKETS * CHUNK_PAYLOAD_BYTES


def test_first_rtt_sample_replaces_the_initial_estimate() -> None:
    """RFC 9002 §5.3: before a sample the PTO is retransmit_initial_s; the first sample sets
    smoothed_rtt to itself and rttvar to half of it (not an average with the guess)."""
    ob = outbound()
    assert ob.rtt.pto() == pytest.approx(T.retransmit_initial_s)
    ob.enqueue(msg_id=1, to="bob", payload=b"f" * (3 * CHUNK_PAYLOAD_BYTES), now=0.0)
    ob.datagrams(0.0)
    ob.on_ack(pn_ack(0, (0, 1)), 0.004)
    assert (ob.rtt.smoothed_rtt, ob.rtt.rttvar) == (0.004, 0.002)
    assert ob.rtt.pto() == pytest.approx(0.004 + 4 * 0.002 + MAX_ACK_DELAY_S)


# --- receiver -----------------------------------------------------------------------------------


def test_receiver_hands_over_in_order_once() -> None:
    ib = inbound()
    assert ib.on_data(chunk(1, 0, 5), 40, 0.0) == []
    assert ib.on_data(chunk(0, 0, 5), 40, 0.0) == [(0, 100, b"xxxxx"), (1, 101, b"xxxxx")]
    assert ib.on_data(chunk(0, 0, 5), 40, 0.0) == []  # duplicate: acked, not handed again
    assert ib.duplicates == 1


def test_whole_but_not_shown_is_acked_incomplete_with_its_full_range() -> None:
    ib = inbound()
    total = 2 * CHUNK_PAYLOAD_BYTES + 10
    handed = deliver(ib, [chunk(0, off, total) for off in (0, 1200, 2400)])
    assert [seq for seq, _, _ in handed] == [0]
    [a] = ib.acks()
    assert (a.seq, a.complete, a.ranges) == (0, False, ((0, total),))
    deliver(ib, [chunk(0, 0, total)])  # a retransmission before it was shown: the same answer
    [a] = ib.acks()
    assert (a.complete, a.ranges) == (False, ((0, total),))


def test_shown_queues_a_complete_ack_at_once() -> None:
    ib = inbound()
    deliver(ib, [chunk(0, 0, 5), chunk(1, 0, 5), chunk(2, 0, 5)])
    ib.acks()
    assert ib.pending_acks == {}
    ib.shown(0)
    assert [(a.seq, a.complete) for a in ib.acks()] == [(0, True)]
    ib.shown(2)  # shown is a prefix: 1 too
    assert [(a.seq, a.complete) for a in ib.acks()] == [(1, True), (2, True)]
    ib.shown(2)  # again: nothing to do
    ib.shown(77)  # never handed: ignored
    assert ib.acks() == []
    assert ib.buffered == 0


def test_unshown_messages_count_against_the_buffer_and_the_window() -> None:
    ib = inbound()
    for seq in range(MAX_PARTIAL_MESSAGES_PER_PEER):
        assert len(deliver(ib, [chunk(seq, 0, 5)])) == 1
    assert ib.buffered == 5 * MAX_PARTIAL_MESSAGES_PER_PEER
    with pytest.raises(ChunkRejected, match="too far ahead"):
        ib.on_data(chunk(MAX_PARTIAL_MESSAGES_PER_PEER, 0, 5), 50, 0.0)
    ib.shown(0)  # the user saw one: room for one more
    assert ib.buffered == 5 * (MAX_PARTIAL_MESSAGES_PER_PEER - 1)
    assert len(deliver(ib, [chunk(MAX_PARTIAL_MESSAGES_PER_PEER, 0, 5)])) == 1


def test_receiver_skips_what_the_sender_gave_up_on() -> None:
    ib = inbound()
    ib.on_data(chunk(0, 0, 3000), 1230, 0.0)  # first chunk of a 3-chunk message only
    assert ib.on_data(chunk(2, 0, 5, base=1), 40, 0.0) == []  # seq 0 abandoned; 1 not here
    assert ib.on_data(chunk(1, 0, 5, base=1), 40, 0.0) == [(1, 101, b"xxxxx"), (2, 102, b"xxxxx")]
    ib.shown(2)
    assert ib.buffered == 0


def test_a_rejected_chunk_does_not_lose_what_its_base_handed_over() -> None:
    ib = inbound()
    deliver(ib, [chunk(0, 0, 5)])  # handed, never shown: holds the window's low end at 0
    deliver(ib, [chunk(2, 0, 5)])  # whole, waiting for 1
    # The sender gave up on 1 (base 3) and sends seq 8: beyond this receiver's window (0 + 8).
    late = chunk(MAX_PARTIAL_MESSAGES_PER_PEER, 0, 5, base=3)
    assert ib.on_data(late, 40, 0.0) == [(2, 102, b"xxxxx")]
    assert ib.pending_acks.get(MAX_PARTIAL_MESSAGES_PER_PEER) is None  # dropped, unacknowledged
    with pytest.raises(ChunkRejected, match="too far ahead"):
        ib.on_data(late, 40, 0.0)


def test_receiver_bounds_partial_messages_per_peer() -> None:
    ib = inbound()
    for seq in range(MAX_PARTIAL_MESSAGES_PER_PEER):
        ib.on_data(chunk(seq, CHUNK_PAYLOAD_BYTES, 3 * CHUNK_PAYLOAD_BYTES), 1230, 0.0)
    with pytest.raises(ChunkRejected, match="too far ahead"):
        ib.on_data(chunk(MAX_PARTIAL_MESSAGES_PER_PEER, 0, 10), 50, 0.0)


def test_receiver_bounds_buffered_bytes_per_peer() -> None:
    ib = inbound()
    offset, seq = CHUNK_PAYLOAD_BYTES, 0
    with pytest.raises(ChunkRejected, match="buffer full"):
        while True:  # never the first chunk, so nothing ever completes
            ib.on_data(chunk(seq, offset, MAX_MESSAGE_BYTES), 1230, 0.0)
            offset += CHUNK_PAYLOAD_BYTES
            if offset >= MAX_MESSAGE_BYTES:
                seq, offset = seq + 1, CHUNK_PAYLOAD_BYTES
    assert ib.buffered <= MAX_BUFFERED_BYTES_PER_PEER


def test_misaligned_or_inconsistent_chunks_rejected() -> None:
    ib = inbound()
    bad = Data(
        session=1,
        stream=1,
        base=0,
        seq=0,
        msg_id=1,
        offset=7,
        total=20,
        sender="alice",
        payload=b"a",
    )
    with pytest.raises(ChunkRejected, match="aligned"):
        ib.on_data(bad, 40, 0.0)
    ib.on_data(chunk(0, 0, 3000), 1230, 0.0)
    with pytest.raises(ChunkRejected, match="total changed"):
        ib.on_data(chunk(0, CHUNK_PAYLOAD_BYTES, 4000), 1230, 0.0)
    with pytest.raises(ChunkRejected, match="stale stream"):
        ib.on_data(chunk(0, 0, 5, stream=0), 40, 0.0)
    with pytest.raises(ChunkRejected, match="sender name"):
        ib.on_data(dataclasses.replace(chunk(0, 0, 5), sender="mallory"), 40, 0.0)
    with pytest.raises(ChunkRejected, match="msg_id changed"):
        ib.on_data(dataclasses.replace(chunk(0, CHUNK_PAYLOAD_BYTES, 3000), msg_id=1), 40, 0.0)


def test_a_new_stream_starts_afresh() -> None:
    ib = inbound()
    deliver(ib, [chunk(0, 0, 5), chunk(1, 0, 3000)])
    assert deliver(ib, [chunk(4, 0, 5, base=4, stream=2)]) == [(4, 104, b"xxxxx")]
    assert ib.buffered == 5 and list(ib.partial) == [] and list(ib.unshown) == [4]
    ib.shown(0)  # a seq of the old stream: ignored
    assert list(ib.unshown) == [4]


def test_ack_is_never_larger_than_the_datagram_that_caused_it() -> None:
    ib = inbound()
    total = 40 * CHUNK_PAYLOAD_BYTES + 1
    # every other chunk, ending with the 1-byte last one: many ranges to report
    for i in range(0, 41, 2):
        d = chunk(0, i * CHUNK_PAYLOAD_BYTES, total)
        ib.on_data(d, len(encode(d)), 0.0)
    last = chunk(0, 40 * CHUNK_PAYLOAD_BYTES, total)
    ib.acks()
    ib.on_data(last, len(encode(last)), 0.0)  # duplicate tiny chunk triggers a fresh ack
    [a] = ib.acks()
    assert len(encode(a)) <= len(encode(last))
    assert len(encode(last)) < ACK_HEADER_BYTES + 2 * (ACK_PN_RANGE_BYTES + ACK_RANGE_BYTES)
    assert a.ranges == ((0, 1200),)  # the lowest that fit beside one packet-number range
    assert a.pns == ((0, 1),)  # every chunk had packet number 0 here


def test_the_receivers_packet_number_memory_is_bounded() -> None:
    """Every other packet number: one range each, the oldest forgotten past MAX_PN_RANGES_KEPT
    (and in order, one range that grows)."""
    n = MAX_PN_RANGES_KEPT + 10
    for step in (2, 1):
        ib = inbound()
        for seq in range(n):
            d = dataclasses.replace(chunk(seq, 0, 5, base=seq), pn=step * seq)
            for shown, _, _ in ib.on_data(d, 40, 0.0):
                ib.shown(shown)
        if step == 2:
            assert ib.pns.count == MAX_PN_RANGES_KEPT
            assert ib.pns.bounds() == (2 * (n - MAX_PN_RANGES_KEPT), 2 * n - 1)
        else:
            assert ib.pns.ranges() == ((0, n),)


def test_ack_work_does_not_grow_with_what_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: a repeated chunk of a big partial message cost a sort of every range it held.
    Structurally now: a contiguous partial is one range, and an ACK reads at most
    MAX_ACK_RANGES of them (the set is never iterated whole)."""
    ib = inbound()
    total = MAX_MESSAGE_BYTES
    for off in range(0, 3000 * CHUNK_PAYLOAD_BYTES, CHUNK_PAYLOAD_BYTES):
        ib.on_data(chunk(0, off, total), 1300, 0.0)
        assert ib.partial[0].have.count == 1
    holes = inbound()
    for off in range(0, 6000 * CHUNK_PAYLOAD_BYTES, 2 * CHUNK_PAYLOAD_BYTES):
        holes.on_data(chunk(0, off, total), 1300, 0.0)
    assert holes.partial[0].have.count == 3000
    holes.acks()

    def whole_set_read(self: RangeSet) -> object:
        raise AssertionError("an ACK read every range held")

    monkeypatch.setattr(RangeSet, "__iter__", whole_set_read)
    for _ in range(3):
        holes.on_data(chunk(0, 0, total), 1300, 0.0)  # a repeated chunk
        [a] = holes.acks()
        assert len(a.ranges) == MAX_ACK_RANGES
    small = chunk(0, 0, total)
    holes.on_data(small, ACK_HEADER_BYTES + ACK_PN_RANGE_BYTES + 8 * 3, 0.0)  # fewer ranges
    assert len(holes.acks()[0].ranges) == 3


# --- both halves over a lossy link ----------------------------------------------------------


@dataclass(order=True)
class _Packet:
    at: float
    order: int
    raw: bytes = field(compare=False)
    to_receiver: bool = field(compare=False)


@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0, 0.3),
    dup=st.floats(0, 0.2),
    reorder=st.floats(0, 0.5),
    sizes=st.lists(st.integers(1, 5 * CHUNK_PAYLOAD_BYTES), min_size=1, max_size=12),
    show_delay=st.sampled_from([0.0, 0.0, 0.05, 0.5]),
    stop_showing_after=st.none() | st.integers(0, 12),
)
def test_exactly_once_in_order_and_delivered_means_shown(
    seed: int,
    loss: float,
    dup: float,
    reorder: float,
    sizes: list[int],
    show_delay: float,
    stop_showing_after: int | None,
) -> None:
    rng = random.Random(seed)
    ob, ib = outbound(), inbound()
    sent = {1000 + i: f"{i}:".encode().ljust(n, b"m") for i, n in enumerate(sizes)}
    for mid, payload in sent.items():
        ob.enqueue(msg_id=mid, to="bob", payload=payload, now=0.0)
    wire: list[_Packet] = []
    order = itertools.count()
    to_show: list[tuple[float, int, int]] = []  # (when, seq, msg_id)
    handed: list[tuple[int, int, bytes]] = []
    shown: set[int] = set()
    outcome: dict[int, Resolved] = {}
    now = 0.0

    def transmit(raw: bytes, to_receiver: bool) -> None:
        if rng.random() < loss:
            return
        for _ in range(2 if rng.random() < dup else 1):
            delay = 0.005 + (rng.random() * 0.03 if rng.random() < reorder else 0.0)
            heapq.heappush(wire, _Packet(now + delay, next(order), raw, to_receiver))

    while len(outcome) < len(sent):
        for d in ob.datagrams(now):
            transmit(encode(d), True)
        for a in ib.acks():
            transmit(encode(a), False)
        t_wire = wire[0].at if wire else float("inf")
        t_show = to_show[0][0] if to_show else float("inf")
        t_timer = ob.next_timer() or float("inf")
        now = min(t_wire, t_show, t_timer)
        assert now < 1000, "the transfer never finished"
        if now == t_show:
            _, seq, mid = to_show.pop(0)
            shown.add(mid)
            ib.shown(seq)
        elif now == t_wire:
            pkt = heapq.heappop(wire)
            msg = decode(pkt.raw)
            if isinstance(msg, Data):
                for seq, mid, payload in ib.on_data(msg, len(pkt.raw), now):
                    handed.append((seq, mid, payload))
                    if stop_showing_after is None or len(handed) <= stop_showing_after:
                        to_show.append((now + show_delay, seq, mid))
            else:
                assert isinstance(msg, Ack)
                for r in ob.on_ack(msg, now):
                    assert r.msg_id not in outcome
                    assert not r.delivered or r.msg_id in shown, "delivered but never shown"
                    outcome[r.msg_id] = r
        else:
            for r in ob.handle_timer(now):
                assert r.msg_id not in outcome and r.reason is FailReason.TIMEOUT
                outcome[r.msg_id] = r
    # Exactly once, in order, intact; a message is missing only if its sender gave up on it.
    seqs = [seq for seq, _, _ in handed]
    assert seqs == sorted(set(seqs))
    assert all(sent[mid] == payload for _, mid, payload in handed)
    assert all(not outcome[mid].delivered for mid in sent.keys() - {m for _, m, _ in handed})
    assert {m for m, r in outcome.items() if r.delivered} <= shown
    if stop_showing_after is not None:
        assert not any(outcome[m].delivered for _, m, _ in handed[stop_showing_after:])
    event("some failed" if not all(r.delivered for r in outcome.values()) else "all delivered")
    event("retransmitted" if ob.retransmissions else "no retransmission")
    event("duplicates seen" if ib.duplicates else "no duplicate")
