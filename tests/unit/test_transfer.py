"""The reliable-transfer halves on their own: window, timers, bounds, ack sizes."""

from __future__ import annotations

import pytest

from chat_protocol.codec import encode
from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    SEND_WINDOW_CHUNKS,
    Timings,
)
from chat_protocol.messages import Ack, Data
from chat_protocol.transfer import (
    MAX_BUFFERED_BYTES_PER_PEER,
    ChunkRejected,
    Inbound,
    Outbound,
)

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
        offset=offset,
        total=total,
        sender="alice",
        payload=b"x" * n,
    )


def test_window_limits_chunks_in_flight() -> None:
    ob = outbound()
    ob.enqueue(handle=1, to="bob", payload=b"y" * (1 << 20), now=0.0)
    first = list(ob.datagrams(0.0))
    assert len(first) == SEND_WINDOW_CHUNKS
    assert list(ob.datagrams(0.0)) == []  # nothing more until acks arrive
    ack = Ack(session=1, stream=1, seq=0, complete=False, ranges=((0, 10 * CHUNK_PAYLOAD_BYTES),))
    ob.on_ack(ack, 0.01)
    assert len(list(ob.datagrams(0.01))) == 10


def test_retransmission_backs_off_and_gives_up() -> None:
    ob = outbound()
    ob.enqueue(handle=1, to="bob", payload=b"hi", now=0.0)
    assert len(list(ob.datagrams(0.0))) == 1
    times = []
    now = 0.0
    while True:
        t = ob.next_timer()
        assert t is not None
        now = t
        failed = ob.handle_timer(now)
        if failed:
            break
        if list(ob.datagrams(now)):
            times.append(now)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert gaps[1] > gaps[0]  # backoff
    assert max(gaps) <= T.retransmit_max_s + 1e-9
    assert now == pytest.approx(T.delivery_timeout_s)
    assert [(r.handle, r.delivered) for r in failed] == [(1, False)]


def test_receiver_delivers_in_order_once() -> None:
    ib = inbound()
    assert ib.on_data(chunk(1, 0, 5), 40, 0.0) == []
    assert ib.on_data(chunk(0, 0, 5), 40, 0.0) == [b"xxxxx", b"xxxxx"]
    assert ib.on_data(chunk(0, 0, 5), 40, 0.0) == []  # duplicate: acked, not delivered
    acks = list(ib.acks())
    assert [(a.seq, a.complete) for a in acks] == [(1, True), (0, True)]


def test_receiver_skips_what_the_sender_gave_up_on() -> None:
    ib = inbound()
    ib.on_data(chunk(0, 0, 3000), 1230, 0.0)  # first chunk of a 3-chunk message only
    assert ib.on_data(chunk(2, 0, 5, base=1), 40, 0.0) == []  # seq 0 abandoned; 1 not here
    assert ib.on_data(chunk(1, 0, 5, base=1), 40, 0.0) == [b"xxxxx", b"xxxxx"]
    assert ib.buffered == 0


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
    bad = Data(session=1, stream=1, base=0, seq=0, offset=7, total=20, sender="alice", payload=b"a")
    with pytest.raises(ChunkRejected, match="aligned"):
        ib.on_data(bad, 40, 0.0)
    ib.on_data(chunk(0, 0, 3000), 1230, 0.0)
    with pytest.raises(ChunkRejected, match="total changed"):
        ib.on_data(chunk(0, CHUNK_PAYLOAD_BYTES, 4000), 1230, 0.0)
    with pytest.raises(ChunkRejected, match="stale stream"):
        ib.on_data(chunk(0, 0, 5, stream=0), 40, 0.0)


def test_ack_is_never_larger_than_the_datagram_that_caused_it() -> None:
    ib = inbound()
    total = 40 * CHUNK_PAYLOAD_BYTES + 1
    # every other chunk, ending with the 1-byte last one: many ranges to report
    for i in range(0, 41, 2):
        d = chunk(0, i * CHUNK_PAYLOAD_BYTES, total)
        ib.on_data(d, len(encode(d)), 0.0)
    last = chunk(0, 40 * CHUNK_PAYLOAD_BYTES, total)
    list(ib.acks())
    ib.on_data(last, len(encode(last)), 0.0)  # duplicate tiny chunk triggers a fresh ack
    [ack] = list(ib.acks())
    assert len(encode(ack)) <= len(encode(last))
