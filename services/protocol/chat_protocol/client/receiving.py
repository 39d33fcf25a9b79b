"""The client's receive path: reassembly per sender session, the sender check, and showing.

DATA arrives only inside a secure session, so the sender's static key is proven; the name it
claims (in its handshake) is not. A message that arrives whole is shown (a ``MessageReceived``
event) once the directory confirms that name is signed in with that key (answers cached for
``verify_cache_s``) and the key is the one pinned for the name (a first key is pinned). Anything
else is never shown: the messages are dropped and the user told once (``PeerRefused``).

Only a shown message is acknowledged ``complete``, so its sender hears "delivered" only for what
this user was shown. A message still waiting for its check when the client goes away is dropped
unacknowledged: its sender reports it not delivered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from chat_protocol.client.directory import VerifyLookup
from chat_protocol.client.pins import Pins
from chat_protocol.const import (
    MAX_BUFFERED_BYTES_PER_PEER,
    MAX_PEERS_TRACKED,
    MAX_RETIRED_SESSIONS,
    MAX_SESSIONS_PER_PEER,
    MAX_VERIFIED_ENTRIES,
    PARTIAL_TIMEOUT_S,
    RECEIVE_BUDGET_BYTES,
    Timings,
)
from chat_protocol.events import ClientEvent, MessageReceived, PeerRefusal, PeerRefused
from chat_protocol.transfer.inbound import ChunkRejected, Inbound
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Data, LookupReply
from chat_protocol.wire.names import name_key

PeerKey = bytes


class _Held:
    __slots__ = ("inbound", "msg_id", "seq", "text")  # (one per message: not a dataclass)

    def __init__(self, *, inbound: Inbound, seq: int, msg_id: int, text: str) -> None:
        self.inbound: Final = inbound
        self.seq: Final = seq
        self.msg_id: Final = msg_id
        self.text: Final = text


@dataclass(slots=True)
class ReceiveStats:
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    refused_messages: int = 0
    dropped_unshown: int = 0
    over_budget: int = 0
    """Chunks dropped unacknowledged: the receiver-wide budget was spent."""
    reclaimed_bytes: int = 0
    """Bytes of partial messages dropped to give room to a sender holding less (budget spent)."""
    stalled_partials: int = 0
    """Bytes of partial messages freed after PARTIAL_TIMEOUT_S without a new chunk."""


class ReceivePath:
    def __init__(
        self,
        *,
        timings: Timings,
        pins: Pins,
        emit: Callable[[ClientEvent], None],
        budget_bytes: int = RECEIVE_BUDGET_BYTES,
    ) -> None:
        self.timings = timings
        self.budget_bytes = budget_bytes
        self.held_bytes = 0
        """Bytes held for every sender together (partial and not yet shown messages)."""
        self._unproven_bytes = 0
        self._proven: set[PeerKey] = set()
        """Keys with a message shown: the directory and the pins vouched for them."""
        self._heard: dict[tuple[PeerKey, int], float] = {}
        """(key, sender session) -> when its receive state last took a chunk (for the
        partial-message timeout)."""
        self.pins = pins
        self._emit = emit
        self.stats = ReceiveStats()
        self._inbound: OrderedDict[tuple[PeerKey, int], Inbound] = OrderedDict()
        self._sessions: dict[PeerKey, OrderedDict[int, None]] = {}
        """Key -> the sender sessions it has a receive state for, least recently heard first
        (at most MAX_SESSIONS_PER_PEER: one key cannot fill the table)."""
        self._key_bytes: dict[PeerKey, int] = {}
        """Key -> bytes held for it, all its sessions together (at most
        MAX_BUFFERED_BYTES_PER_PEER)."""
        self.acks_due: dict[Inbound, PeerKey] = {}
        """Receive states with acknowledgements to send (so a pump does not walk them all; the
        owner skips :meth:`datagrams` while it is empty)."""
        self._retired: OrderedDict[tuple[PeerKey, int], None] = OrderedDict()
        self._verified: dict[tuple[str, PeerKey], tuple[bool, float]] = {}
        """(sender name key, sender key) -> (directory and pin agree, until when trusted)."""
        self._held: dict[tuple[str, PeerKey], list[_Held]] = {}
        """Messages waiting for their sender's check, in arrival order."""
        self._refused: set[tuple[str, PeerKey]] = set()

    def proven(self, key: PeerKey) -> bool:
        return key in self._proven

    @property
    def holding(self) -> int:
        return sum(len(h) for h in self._held.values())

    def on_data(
        self, d: Data, size: int, key: PeerKey, claimed: str, addr: Addr, now: float
    ) -> VerifyLookup | None:
        """Take one chunk from the session of ``key``, whose handshake claimed the name
        ``claimed``; a sender check to ask the directory for, if one is now needed."""
        # (equal strings need no folding: the usual case, without two calls)
        if d.sender != claimed and name_key(d.sender) != name_key(claimed):  # guard: claim
            # The sender's name is the one its current handshake claimed (and the directory
            # checks): a chunk of a message begun under an earlier claim cannot finish it.
            self.stats.rejected_chunks += 1
            return None
        if not self._room(key, len(d.payload)):
            self.stats.over_budget += 1
            return None
        ikey = (key, d.session)
        ib = self._inbound.get(ikey)
        if ib is None:
            if ikey in self._retired:
                self.stats.rejected_chunks += 1
                return None
            sessions = self._sessions.setdefault(key, OrderedDict())
            if len(sessions) >= MAX_SESSIONS_PER_PEER:
                self._drop_state((key, next(iter(sessions))))  # its own, least recently heard
            ib = Inbound(addr=addr, sender=claimed, session=d.session, stream=d.stream, base=d.base)
            self._inbound[ikey] = ib
            sessions[d.session] = None
            if len(self._inbound) > MAX_PEERS_TRACKED:
                self._evict()
        else:
            ib.addr = addr
            self._inbound.move_to_end(ikey)
            self._sessions[key].move_to_end(d.session)
        before, held_before = ib.duplicates, ib.buffered
        try:
            complete = ib.on_data(d, size, now)
        except ChunkRejected:
            self.stats.rejected_chunks += 1
            return None
        finally:
            self._account(key, ib.buffered - held_before)
            if ib.pending_acks:
                self.acks_due[ib] = key
        self._heard[ikey] = now
        self.stats.duplicate_chunks += ib.duplicates - before
        if not complete:
            return None
        held = [
            _Held(inbound=ib, seq=seq, msg_id=mid, text=raw.decode("utf-8", errors="replace"))
            for seq, mid, raw in complete
        ]
        vkey = (name_key(claimed), key)
        waiting = self._held.get(vkey)
        if waiting is not None:
            waiting.extend(held)
            return None
        cached = self._verified.get(vkey)
        if cached is not None and cached[1] > now:
            self._settle(vkey, held, cached[0], key)
            return None
        self._held[vkey] = held
        return VerifyLookup(name=claimed, key=key)

    def _account(self, key: PeerKey, delta: int) -> None:
        if not delta:
            return
        self.held_bytes += delta
        if key not in self._proven:
            self._unproven_bytes += delta
        left = self._key_bytes.get(key, 0) + delta
        if left > 0:
            self._key_bytes[key] = left
        else:
            self._key_bytes.pop(key, None)

    def _room(self, key: PeerKey, n: int) -> bool:
        """Whether ``n`` more bytes from ``key`` may be held. All senders together never make
        us hold more than budget_bytes; one key (all its sessions) at most
        MAX_BUFFERED_BYTES_PER_PEER; senders nobody vouched for yet share a quarter of the
        budget. When the budget is spent, the sender holding the most gives room back to one
        that holds less (QUIC's receiver-wide flow control, shared fairly): so no sender, proven
        or not, can starve the others by hoarding partial messages."""
        if self._key_bytes.get(key, 0) + n > MAX_BUFFERED_BYTES_PER_PEER:
            return False
        if key not in self._proven and self._unproven_bytes + n > self.budget_bytes // 4:
            return False
        while self.held_bytes + n > self.budget_bytes:
            if not self._reclaim(key, n):
                return False
        return True

    def _reclaim(self, key: PeerKey, n: int) -> bool:
        """Drop the largest partial message of the largest receive state of the key holding the
        most, if that key would still hold more than ``key`` does with ``n`` more. A partial
        message was never shown nor acknowledged complete: its sender reports it not
        delivered."""
        kb = self._key_bytes
        top = max(kb, key=kb.__getitem__, default=None)
        if top is None or top == key or kb[top] <= kb.get(key, 0) + n:
            return False
        biggest = max(
            (self._inbound[(top, s)] for s in self._sessions.get(top, ())),
            key=lambda ib: ib.buffered,
            default=None,
        )
        freed = biggest.drop_largest_partial() if biggest is not None else 0
        if not freed:
            return False
        self._account(top, -freed)
        self.stats.reclaimed_bytes += freed
        return True

    def _evict(self) -> None:
        """One receive state too many: drop the least recently heard one of a sender nobody
        vouched for (it was never shown anything, so forgetting it cannot show anything twice).
        Only when every state is a proven peer's is one retired (its late chunks are refused,
        never shown again): the least recently heard of the key with the most states. Nothing
        an unproven sender does can evict a proven one, and no key can evict another that has
        fewer states than it (each key has at most MAX_SESSIONS_PER_PEER)."""
        proven = self._proven
        victim = next((k for k in self._inbound if k[0] not in proven), None)
        if victim is None:
            most = max(self._sessions, key=lambda k: len(self._sessions[k]))
            victim = (most, next(iter(self._sessions[most])))
        self._drop_state(victim)

    def _drop_state(self, ikey: tuple[PeerKey, int]) -> None:
        """Forget one receive state; a proven key's is retired (it may have shown messages:
        its late chunks must not make a fresh state that shows them again)."""
        key, session = ikey
        if key in self._proven:
            self._retire(key, session)
        ib = self._inbound.pop(ikey)
        self._heard.pop(ikey, None)
        self.acks_due.pop(ib, None)
        sessions = self._sessions[key]
        del sessions[session]
        if not sessions:
            del self._sessions[key]
        self._account(key, -ib.buffered)

    def expire(self, now: float) -> None:
        """Free partial messages whose sender went quiet for PARTIAL_TIMEOUT_S."""
        for ikey, ib in self._inbound.items():
            if ib.partial and now - self._heard.get(ikey, now) >= PARTIAL_TIMEOUT_S:
                freed = ib.drop_partials()
                self._account(ikey[0], -freed)
                self.stats.stalled_partials += freed

    def _retire(self, key: PeerKey, session: int) -> None:
        self._retired[(key, session)] = None
        while len(self._retired) > MAX_RETIRED_SESSIONS:
            self._retired.popitem(last=False)

    def verified(
        self, v: VerifyLookup, reply: LookupReply | None, now: float, *, wrong_name: bool = False
    ) -> VerifyLookup | None:
        """The directory answered the check (``reply``), or did not (None: ask again, which
        goes on until the server is declared lost and the held messages are dropped), or
        answered for another name than the one asked (``wrong_name``: refused)."""
        vkey = (name_key(v.name), v.key)
        if reply is None and not wrong_name:
            return v if vkey in self._held else None
        held = self._held.pop(vkey, [])
        in_directory = reply is not None and reply.addr is not None and reply.key == v.key
        first = in_directory and self.pins.get(v.name) is None
        ok = in_directory
        # Checked and pinned under the name claimed and asked, never the answer's.
        if in_directory and not self.pins.accept(v.name, v.key):  # guard: receive-pin
            ok = False
        if len(self._verified) >= MAX_VERIFIED_ENTRIES:
            self._verified.clear()
        self._verified[vkey] = (ok, now + self.timings.verify_cache_s)
        if not ok and vkey not in self._refused:
            self._refused.add(vkey)
            if wrong_name:
                why = PeerRefusal.WRONG_NAME
            elif not in_directory:
                why = PeerRefusal.NOT_IN_DIRECTORY
            else:
                why = PeerRefusal.KEY_CHANGED
            self._emit(PeerRefused(name=v.name, key=v.key, reason=why))
        self._settle(vkey, held, ok, v.key, first=first)
        return None

    def forget_verdicts(self, name: str) -> None:
        """``trust NAME`` changed the pin: check that name's senders again."""
        nk = name_key(name)
        for vkey in [k for k in self._verified if k[0] == nk]:
            del self._verified[vkey]
        self._refused = {k for k in self._refused if k[0] != nk}

    def _settle(
        self,
        vkey: tuple[str, PeerKey],
        held: list[_Held],
        ok: bool,
        key: PeerKey,
        *,
        first: bool = False,
    ) -> None:
        """Show ``held`` (``ok``) or drop it. ``first``: the sender's key was pinned just now
        (never pinned before): its first message shown is marked ``new``."""
        if not ok:
            self.stats.refused_messages += len(held)
            for h in held:
                before = h.inbound.buffered
                h.inbound.discard(h.seq)
                self._account(key, h.inbound.buffered - before)
            return
        if key not in self._proven:
            self._proven.add(key)
            self._unproven_bytes -= self._key_bytes.get(key, 0)
        for h in held:
            ib = h.inbound
            self._emit(
                MessageReceived(
                    sender=ib.sender,
                    addr=ib.addr,
                    text=h.text,
                    session=ib.session,
                    msg_id=h.msg_id,
                    new=first,
                )
            )
            first = False
            before = ib.buffered
            ib.shown(h.seq)
            self._account(key, ib.buffered - before)
            self.acks_due[ib] = key

    def drop_held(self) -> None:
        """The client is going away: what was never shown is dropped (and never acknowledged)."""
        self.stats.dropped_unshown += self.holding
        self._held.clear()

    def datagrams(self, now: float | None = None) -> list[tuple[bytes, PeerKey]]:
        out: list[tuple[bytes, PeerKey]] = []
        if self.acks_due:
            for ib, key in self.acks_due.items():
                if ib.pending_acks:
                    for a in ib.acks(now):  # (a loop, not a generator)
                        out.append((encode(a), key))
            self.acks_due.clear()
        return out
