"""The client's receive path: reassembly per sender session, the sender check, and showing.

A message that arrives whole is shown (a ``MessageReceived`` event) once the directory confirms
its claimed sender is signed in at the address it came from (answers cached for
``verify_cache_s``); a sender the directory does not confirm is shown marked unverified. Only a
shown message is acknowledged ``complete``, so its sender hears "delivered" only for what this
user was shown. A message still waiting for its check when the client goes away is dropped
unacknowledged: its sender reports it not delivered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chat_protocol.codec import encode
from chat_protocol.const import (
    MAX_PEERS_TRACKED,
    MAX_RETIRED_SESSIONS,
    MAX_VERIFIED_ENTRIES,
    Timings,
)
from chat_protocol.directory import VerifyLookup
from chat_protocol.events import ClientEvent, MessageReceived
from chat_protocol.messages import Addr, Data, LookupReply
from chat_protocol.names import name_key
from chat_protocol.transfer import ChunkRejected, Inbound


@dataclass(frozen=True, slots=True)
class _Held:
    inbound: Inbound
    seq: int
    msg_id: int
    text: str


@dataclass(slots=True)
class ReceiveStats:
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    unverified_messages: int = 0
    dropped_unshown: int = 0


class ReceivePath:
    def __init__(self, *, timings: Timings, emit: Callable[[ClientEvent], None]) -> None:
        self.timings = timings
        self._emit = emit
        self.stats = ReceiveStats()
        self._inbound: OrderedDict[tuple[Addr, int], Inbound] = OrderedDict()
        self._retired: OrderedDict[tuple[Addr, int], None] = OrderedDict()
        self._verified: dict[tuple[str, Addr], tuple[bool, float]] = {}
        """(sender key, address) -> (directory agrees, until when that answer is trusted)."""
        self._held: dict[tuple[str, Addr], list[_Held]] = {}
        """Messages waiting for their sender's check, in arrival order."""

    @property
    def holding(self) -> int:
        return sum(len(h) for h in self._held.values())

    def on_data(self, d: Data, size: int, addr: Addr, now: float) -> VerifyLookup | None:
        """Take one chunk; a sender check to ask the directory for, if one is now needed."""
        # Keyed by (address, session), not address alone: a datagram with a forged source
        # address and a made-up session must not displace the real sender's state.
        key = (addr, d.session)
        ib = self._inbound.get(key)
        if ib is None:
            if key in self._retired:
                self.stats.rejected_chunks += 1
                return None
            ib = Inbound(
                addr=addr, sender=d.sender, session=d.session, stream=d.stream, base=d.base
            )
            self._inbound[key] = ib
            if len(self._inbound) > MAX_PEERS_TRACKED:
                _, oldest = self._inbound.popitem(last=False)
                self._retire(oldest)
        else:
            self._inbound.move_to_end(key)
        before = ib.duplicates
        try:
            complete = ib.on_data(d, size, now)
        except ChunkRejected:
            self.stats.rejected_chunks += 1
            return None
        self.stats.duplicate_chunks += ib.duplicates - before
        if not complete:
            return None
        held = [
            _Held(inbound=ib, seq=seq, msg_id=mid, text=raw.decode("utf-8", errors="replace"))
            for seq, mid, raw in complete
        ]
        vkey = (name_key(ib.sender), addr)
        waiting = self._held.get(vkey)
        if waiting is not None:
            waiting.extend(held)
            return None
        cached = self._verified.get(vkey)
        if cached is not None and cached[1] > now:
            for h in held:
                self._show(h, cached[0])
            return None
        self._held[vkey] = held
        return VerifyLookup(name=ib.sender, addr=addr)

    def _retire(self, ib: Inbound) -> None:
        self._retired[(ib.addr, ib.session)] = None
        while len(self._retired) > MAX_RETIRED_SESSIONS:
            self._retired.popitem(last=False)

    def verified(self, v: VerifyLookup, reply: LookupReply | None, now: float) -> None:
        """The directory answered the check (``reply``), or did not (None): show what waited."""
        key = (name_key(v.name), v.addr)
        ok = reply is not None and reply.addr == v.addr
        if reply is not None:
            if len(self._verified) >= MAX_VERIFIED_ENTRIES:
                self._verified.clear()
            self._verified[key] = (ok, now + self.timings.verify_cache_s)
        for h in self._held.pop(key, []):
            self._show(h, ok)

    def _show(self, h: _Held, verified: bool) -> None:
        if not verified:
            self.stats.unverified_messages += 1
        ib = h.inbound
        self._emit(
            MessageReceived(
                sender=ib.sender,
                addr=ib.addr,
                text=h.text,
                verified=verified,
                session=ib.session,
                msg_id=h.msg_id,
            )
        )
        ib.shown(h.seq)

    def drop_held(self) -> None:
        """The client is going away: what was never shown is dropped (and never acknowledged)."""
        self.stats.dropped_unshown += self.holding
        self._held.clear()

    def datagrams(self) -> list[tuple[bytes, Addr]]:
        out: list[tuple[bytes, Addr]] = []
        for ib in self._inbound.values():
            if ib.pending_acks:
                out.extend((encode(a), ib.addr) for a in ib.acks())
        return out
