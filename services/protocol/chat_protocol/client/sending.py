"""The client's send pipeline: messages the user typed, in order, to the address the directory
gave, through one :class:`~chat_protocol.transfer.outbound.Outbound` per destination.

A send waits for its lookup, which gives the receiver's address and key; the key must be the one
pinned for that name (a first key is pinned), else the send fails ``KEY_CHANGED`` and nothing is
sent. Destinations are kept by key, not address: the secure layer finds the peer wherever it is.
Sends leave in the order they were typed even when lookups are answered out of order. Every
send ends in exactly one event: ``MessageDelivered`` (the receiver
showed it) or ``SendFailed`` with a :class:`~chat_protocol.outcomes.FailReason`. A message of
more than one chunk also reports ``SendProgress`` on its way (bytes the receiver holds).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

from chat_protocol.client.pins import Pins
from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    MAX_PEERS_TRACKED,
    SEND_PROGRESS_STEPS,
    Timings,
)
from chat_protocol.events import ClientEvent, MessageDelivered, SendFailed, SendProgress
from chat_protocol.outcomes import FailReason
from chat_protocol.transfer.outbound import Outbound, Resolved
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Ack, Addr, LookupReply

PeerKey = bytes
"""A peer's static public key: who a destination is."""


class _PendingSend:
    __slots__ = ("addr", "canonical", "failure", "handle", "key", "looked_up", "payload", "to")
    # (One per send: a plain class, built natively by the compiled core.)

    def __init__(self, *, handle: int, to: str, payload: bytes) -> None:
        self.handle: Final = handle
        self.to: Final = to
        self.payload: Final = payload
        self.looked_up = False
        self.addr: Addr | None = None
        self.key: PeerKey = b""
        self.canonical = ""
        self.failure: FailReason | None = None


class SendPipeline:
    def __init__(
        self,
        *,
        name: str,
        session: int,
        timings: Timings,
        pins: Pins,
        emit: Callable[[ClientEvent], None],
    ) -> None:
        self.name = name
        self.pins = pins
        self.session = session
        self.timings = timings
        self._emit = emit
        self._sends: deque[_PendingSend] = deque()
        self._by_handle: dict[int, _PendingSend] = {}
        self._next_handle = 1
        self._next_stream = 1
        self.outbound: OrderedDict[PeerKey, Outbound] = OrderedDict()
        self._progress: dict[int, tuple[int, int]] = {}
        """Handle of a message of more than one chunk in transfer -> (the progress step last
        reported, its total bytes)."""

    @property
    def pending(self) -> int:
        return len(self._sends) + sum(o.pending for o in self.outbound.values())

    @property
    def retransmissions(self) -> int:
        return sum(o.retransmissions for o in self.outbound.values())

    def queue(self, to: str, payload: bytes) -> int:
        """A new send waiting for its lookup; its handle (also the message's id on the wire)."""
        ps = _PendingSend(handle=self._next_handle, to=to, payload=payload)
        self._next_handle += 1
        self._sends.append(ps)
        self._by_handle[ps.handle] = ps
        return ps.handle

    def looked_up(
        self, handle: int, reply: LookupReply | None, now: float, *, wrong_name: bool = False
    ) -> None:
        """The lookup for send ``handle`` answered (``reply``), went unanswered (None), or was
        answered for another name than the one asked (``wrong_name``: nothing is sent)."""
        ps = self._by_handle.pop(handle, None)
        if ps is None:
            return
        ps.looked_up = True
        if wrong_name:
            ps.failure = FailReason.WRONG_NAME
        elif reply is None:
            ps.failure = FailReason.LOOKUP_UNANSWERED
        elif reply.addr is None:
            ps.failure = FailReason.NO_SUCH_USER
        elif not self.pins.accept(ps.to, reply.key):  # guard: send-pin
            # (Checked and pinned under the name the user asked for, never the answer's.)
            ps.failure = FailReason.KEY_CHANGED
        else:
            ps.addr, ps.key, ps.canonical = reply.addr, reply.key, reply.name
        self._flush(now)

    def _flush(self, now: float) -> None:
        """Hand looked-up sends to the transfer layer in the order the user issued them."""
        while self._sends and self._sends[0].looked_up:
            ps = self._sends.popleft()
            if ps.addr is None:
                self._emit(
                    SendFailed(
                        handle=ps.handle, to=ps.to, reason=ps.failure or FailReason.NO_SUCH_USER
                    )
                )
                continue
            self._outbound_for(ps.key, ps.addr).enqueue(
                msg_id=ps.handle, to=ps.canonical or ps.to, payload=ps.payload, now=now
            )
            if len(ps.payload) > CHUNK_PAYLOAD_BYTES:
                self._progress[ps.handle] = (0, len(ps.payload))

    def _outbound_for(self, key: PeerKey, addr: Addr) -> Outbound:
        ob = self.outbound.get(key)
        if ob is None:
            ob = Outbound(
                addr=addr,
                sender=self.name,
                session=self.session,
                stream=self._next_stream,
                timings=self.timings,
            )
            self._next_stream += 1
            self.outbound[key] = ob
            if len(self.outbound) > MAX_PEERS_TRACKED:
                idle = next((a for a, o in self.outbound.items() if o.pending == 0), None)
                if idle is not None:
                    del self.outbound[idle]
        else:
            ob.addr = addr  # where the directory says the peer is now
            self.outbound.move_to_end(key)
        return ob

    def on_ack(self, key: PeerKey, ack: Ack, now: float) -> bool:
        """False when no destination state matches (the caller counts it as unexpected)."""
        out = self.outbound.get(key)
        if out is None:
            return False
        resolved = out.on_ack(ack, now)
        if self._progress:
            for m in out.queue:
                if m.msg_id in self._progress:
                    self._report(m.msg_id, m.to, len(m.acked))
        self._resolved(resolved)
        return True

    def _report(self, handle: int, to: str, acked: int) -> None:
        """``SendProgress`` if ``acked`` reached a further step of the message's total."""
        last, total = self._progress[handle]
        step = acked * SEND_PROGRESS_STEPS // total
        if step > last:
            self._progress[handle] = (step, total)
            self._emit(SendProgress(handle=handle, to=to, acked=acked, total=total))

    def _resolved(self, items: list[Resolved]) -> None:
        for r in items:
            if r.msg_id in self._progress:
                if r.delivered:  # shown, so held whole
                    self._report(r.msg_id, r.to, self._progress[r.msg_id][1])
                del self._progress[r.msg_id]
            if r.delivered:
                self._emit(MessageDelivered(handle=r.msg_id, to=r.to))
            else:
                self._emit(
                    SendFailed(handle=r.msg_id, to=r.to, reason=r.reason or FailReason.TIMEOUT)
                )

    def datagrams(self, now: float) -> list[tuple[bytes, PeerKey, Addr]]:
        """(plaintext, peer key, the peer's address as the directory gave it)."""
        out: list[tuple[bytes, PeerKey, Addr]] = []
        for key, ob in self.outbound.items():
            # (no call for an empty queue, the usual poll: nothing is due then, since the
            # destination's flight was forgotten when its queue emptied)
            if ob.queue:
                for d in ob.datagrams(now):
                    out.append((encode(d), key, ob.addr))
        return out

    def next_timer(self) -> float | None:
        t: float | None = None
        for ob in self.outbound.values():
            o = ob.next_timer()
            if o is not None and (t is None or o < t):
                t = o
        return t

    def handle_timer(self, now: float) -> None:
        for ob in self.outbound.values():
            self._resolved(ob.handle_timer(now))

    def peer_restarted(self, key: PeerKey, now: float) -> None:
        """The program holding ``key`` restarted: what was (partly) sent to the old run fails,
        since that run may have shown it; what was never sent goes to the new run."""
        ob = self.outbound.pop(key, None)
        if ob is None:
            return
        fresh = None
        for m in ob.queue:
            if m.next_new > 0:
                self._progress.pop(m.msg_id, None)
                self._emit(SendFailed(handle=m.msg_id, to=m.to, reason=FailReason.PEER_RESTARTED))
                continue
            if fresh is None:
                fresh = self._outbound_for(key, ob.addr)
            fresh.enqueue(msg_id=m.msg_id, to=m.to, payload=m.payload, now=now)

    def fail_all(self, reason: FailReason) -> None:
        """The session ended: every unresolved send fails with ``reason``."""
        for ps in self._sends:
            self._emit(SendFailed(handle=ps.handle, to=ps.to, reason=reason))
        self._sends.clear()
        self._by_handle.clear()
        self._progress.clear()
        for ob in self.outbound.values():
            for m in ob.queue:
                self._emit(SendFailed(handle=m.msg_id, to=m.to, reason=reason))
            ob.queue.clear()
