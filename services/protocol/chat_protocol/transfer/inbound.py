"""The receiver's side of a transfer: chunks from one sender session reassembled, handed over
in order, once, and acknowledged (see :mod:`chat_protocol.transfer`)."""

from __future__ import annotations

from typing import Final

from chat_protocol.const import (
    ACK_HEADER_BYTES,
    ACK_PN_RANGE_BYTES,
    ACK_RANGE_BYTES,
    CHUNK_PAYLOAD_BYTES,
    MAX_ACK_PN_RANGES,
    MAX_ACK_RANGES,
    MAX_BUFFERED_BYTES_PER_PEER,
    MAX_PARTIAL_MESSAGES_PER_PEER,
    MAX_PN_RANGES_KEPT,
)
from chat_protocol.transfer.rangeset import RangeSet
from chat_protocol.wire.messages import Ack, Addr, Data


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
        if self.total <= CHUNK_PAYLOAD_BYTES:  # one chunk, the usual message: no generator
            return self.chunks[0]
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
        self.pns = RangeSet()
        """Packet numbers received (accepted) in this stream: the newest ``MAX_PN_RANGES_KEPT``
        ranges, for the ACKs' packet-number ranges."""
        self.largest_pn = -1
        self.largest_pn_at = 0.0
        """When ``largest_pn`` arrived (an ACK's ack delay counts from it)."""

    def on_data(self, d: Data, size: int, now: float) -> list[tuple[int, int, bytes]]:
        """Take one chunk (``size``: its datagram's length).

        Returns ``(seq, msg_id, payload)`` of the messages now whole and next in order, for the
        client core to show; it calls :meth:`shown` for each, in order, once its user saw it.
        Raises :class:`ChunkRejected` (the chunk is dropped unacknowledged) for a chunk that is
        inconsistent or beyond the limits.
        """
        if d.sender != self.sender:
            raise ChunkRejected("sender name changed within a session")
        left = d.total - d.offset
        if d.offset % CHUNK_PAYLOAD_BYTES or len(d.payload) != (
            left if left < CHUNK_PAYLOAD_BYTES else CHUNK_PAYLOAD_BYTES
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
            self.pns.clear()
            self.largest_pn = -1
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
        self._note_pn(d.pn, now)
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

    def _note_pn(self, pn: int, now: float) -> None:
        """A chunk taken (new or a duplicate): its packet number is acknowledged."""
        self.pns.add_kept(pn, pn + 1, MAX_PN_RANGES_KEPT)
        if pn > self.largest_pn:
            self.largest_pn = pn
            self.largest_pn_at = now

    def _want_ack(self, seq: int, size: int) -> None:
        if size >= self.pending_acks.get(seq, 0):
            self.pending_acks[seq] = size

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

    def acks(self, now: float | None = None) -> list[Ack]:
        """The ACKs asked for since the last call: ``complete`` for a message shown, the full
        range of one handed over but not shown yet, else the lowest byte ranges held. Each also
        carries the newest packet-number ranges received and, with ``now``, how long the newest
        was held (the ack delay)."""
        out = []
        delay_us = 0
        if now is not None and self.largest_pn >= 0:
            delay_us = min(max(0, int((now - self.largest_pn_at) * 1e6)), 0xFFFFFFFF)
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
                        ack_delay_us=delay_us,
                        pns=self.pns.newest(self._pn_limit(trigger_size)),
                    )
                )
                continue
            p = self.partial.get(seq)
            if p is None:
                continue
            # No reply larger than what caused it: ranges are capped by the trigger's size.
            n_pns = self._pn_limit(trigger_size)
            room = (trigger_size - ACK_HEADER_BYTES - n_pns * ACK_PN_RANGE_BYTES) // ACK_RANGE_BYTES
            limit = max(1, min(MAX_ACK_RANGES, room))
            out.append(
                Ack(
                    session=self.session,
                    stream=self.stream,
                    seq=seq,
                    complete=False,
                    ranges=p.have.ranges(limit),
                    ack_delay_us=delay_us,
                    pns=self.pns.newest(n_pns),
                )
            )
        self.pending_acks.clear()
        return out

    @staticmethod
    def _pn_limit(trigger_size: int) -> int:
        """Packet-number ranges an ACK to a datagram of ``trigger_size`` bytes carries: one per
        (packet-number range + byte range) that fits, at least one, at most
        ``MAX_ACK_PN_RANGES``; the byte ranges take the rest of the room."""
        room = (trigger_size - ACK_HEADER_BYTES) // (ACK_PN_RANGE_BYTES + ACK_RANGE_BYTES)
        return max(1, min(MAX_ACK_PN_RANGES, room))
