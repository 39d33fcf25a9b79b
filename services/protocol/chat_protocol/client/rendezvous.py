"""Where a client's peers may be reached, and when to punch or keep a path open (issue 21).

:class:`Rendezvous` is part of :class:`~chat_protocol.client.peerlinks.PeerLinks`:

* **candidates**: per peer key, the public endpoint the directory observes for it and the
  private ones it declared (from a LOOKUP_REPLY or a PUNCH hint). Every handshake initiation
  towards a peer goes to each of them (the same initiation: the responder takes the first copy
  and drops the rest as replays), and the session settles on the address whose response
  arrived first (peers behind one NAT meet on their private addresses, no hairpin needed);
* **punching**: after a PUNCH hint, initiations go to the asker every ``HANDSHAKE_RETRY_S`` for
  ``PUNCH_WINDOW_S`` or until the asker is heard on a session, so that both NATs see outbound
  traffic first (simultaneous open);
* **hints asked again**: a hint is one datagram, which may be lost; while a send's handshake
  goes unanswered, the sender asks the directory for another one after ``PUNCH_REHINT_S``, then
  after twice as long each time, ``PUNCH_REHINTS`` times at most (hearing the peer stops it);
* **keepalives**: a peer in use (a message sent to it or received from it within
  ``PEER_IDLE_S``) gets an empty datagram when nothing was sent to it for ``PEER_KEEPALIVE_S``,
  which keeps the NAT mappings on both sides open; an idle peer gets none.

Pure bookkeeping: times come in, decisions go out; the owner does the sending.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from chat_protocol.const import (
    HANDSHAKE_RETRY_S,
    MAX_CANDIDATE_PEERS,
    MAX_PUNCH_TARGETS,
    PEER_IDLE_S,
    PEER_KEEPALIVE_S,
    PUNCH_REHINT_S,
    PUNCH_REHINTS,
    PUNCH_WINDOW_S,
)
from chat_protocol.wire.endpoints import private_endpoints
from chat_protocol.wire.messages import Addr

V = TypeVar("V")


def _bounded(table: OrderedDict[bytes, V], key: bytes, value: V, most: int) -> None:
    """``table[key] = value`` as its most recent entry, the least recent dropped beyond
    ``most``."""
    if key in table:
        table[key] = value
        table.move_to_end(key)
        return
    table[key] = value
    while len(table) > most:
        table.popitem(last=False)


class Rendezvous:
    __slots__ = (
        "_candidates",
        "_heard",
        "_next_punch",
        "_punch_until",
        "_rehints",
        "_sent",
        "_since",
        "_trying",
        "_used",
    )

    def __init__(self) -> None:
        self._candidates: OrderedDict[bytes, tuple[Addr, ...]] = OrderedDict()
        """Peer key -> (public endpoint, private endpoints...)."""
        self._punch_until: OrderedDict[bytes, float] = OrderedDict()
        """Peer key -> when punching towards it on a hint stops."""
        self._next_punch: dict[bytes, float] = {}
        """Peer key -> when the next initiation of the punching goes (every HANDSHAKE_RETRY_S)."""
        self._since: dict[bytes, float] = {}
        """Peer key -> when its hint came (being heard after it ends the punching)."""
        self._heard: OrderedDict[bytes, float] = OrderedDict()
        """Peer key -> when an authenticated datagram last came from it."""
        self._used: OrderedDict[bytes, float] = OrderedDict()
        """Peer key -> when a message (DATA or ACK) last went to it or came from it."""
        self._sent: OrderedDict[bytes, float] = OrderedDict()
        """Peer key -> when we last sent it any datagram."""
        self._trying: OrderedDict[bytes, float] = OrderedDict()
        """Peer key -> when our first initiation it has not answered went (hearing from it
        clears it): how long direct paths had to open."""
        self._rehints: OrderedDict[bytes, int] = OrderedDict()
        """Peer key -> hints asked again since its first unanswered initiation (hearing from it
        clears it, as it clears ``_trying``)."""

    # -- candidates --

    def learn(self, key: bytes, public: Addr, local: tuple[Addr, ...]) -> None:
        """The directory says ``key`` is at ``public`` and declared ``local``."""
        found = (public, *private_endpoints(local))
        self._candidates[key] = found
        self._candidates.move_to_end(key)
        while len(self._candidates) > MAX_CANDIDATE_PEERS:
            self._candidates.popitem(last=False)

    def targets(self, key: bytes, addr: Addr) -> list[Addr]:
        """Where an initiation towards ``key`` goes: ``addr`` and every candidate, once each."""
        out = [addr]
        for candidate in self._candidates.get(key, ()):
            if candidate not in out:
                out.append(candidate)
        return out

    def public(self, key: bytes) -> Addr | None:
        found = self._candidates.get(key)
        return found[0] if found else None

    def endpoints(self, key: bytes) -> tuple[Addr, ...]:
        return self._candidates.get(key, ())

    # -- punching --

    def hinted(self, key: bytes, public: Addr, local: tuple[Addr, ...], now: float) -> None:
        """A PUNCH hint: ``key`` will send to us from ``public`` / ``local``; punch towards it."""
        self.learn(key, public, local)
        _bounded(self._punch_until, key, now + PUNCH_WINDOW_S, MAX_PUNCH_TARGETS)
        self._since[key] = now
        self._next_punch[key] = now
        for gone in [k for k in self._since if k not in self._punch_until]:
            del self._since[gone]
            self._next_punch.pop(gone, None)

    def punching(self) -> list[bytes]:
        return list(self._punch_until)

    def due(self, now: float) -> list[bytes]:
        """Keys to send an initiation to now (the owner skips those with one sent within
        ``HANDSHAKE_RETRY_S``; the next is due that long after this); punching ends for keys
        past their window or heard since their hint."""
        out: list[bytes] = []
        for key, until in list(self._punch_until.items()):
            heard = self._heard.get(key)
            if now >= until or (heard is not None and heard >= self._since.get(key, until)):
                del self._punch_until[key]
                self._since.pop(key, None)
                self._next_punch.pop(key, None)
            elif self._next_punch.get(key, now) <= now:
                self._next_punch[key] = now + HANDSHAKE_RETRY_S
                out.append(key)
        return out

    def next_punch(self) -> float | None:
        """When :meth:`due` should next be asked (None: nobody to punch towards)."""
        best: float | None = None
        next_punch = self._next_punch
        for k, until in self._punch_until.items():  # (a loop, not min() of a generator)
            at = next_punch.get(k, until)
            if until < at:
                at = until
            if best is None or at < best:
                best = at
        return best

    # -- liveness --

    def heard(self, key: bytes, now: float) -> None:
        heard = self._heard
        if key in heard:  # (the usual case, without a call)
            heard[key] = now
            heard.move_to_end(key)
        else:
            _bounded(heard, key, now, MAX_CANDIDATE_PEERS)
        if self._trying:
            self._trying.pop(key, None)
            self._rehints.pop(key, None)

    def trying(self, key: bytes, now: float) -> float:
        """An initiation goes to ``key``: since when it has gone unanswered."""
        since = self._trying.get(key)
        if since is None:
            _bounded(self._trying, key, now, MAX_CANDIDATE_PEERS)
            return now
        return since

    def rehint_due(self, key: bytes, now: float) -> bool:
        """Should we ask the directory to hint ``key`` again now? True once its handshake has
        gone unanswered for ``PUNCH_REHINT_S`` x (2, 4, 8 ... - 1) since the first initiation,
        ``PUNCH_REHINTS`` times at most (counted as asked when True)."""
        since = self._trying.get(key)
        if since is None:
            return False
        asked = self._rehints.get(key, 0)
        if asked >= PUNCH_REHINTS:  # guard: rehints-bounded
            return False
        if now - since < PUNCH_REHINT_S * (2 ** (asked + 1) - 1):
            return False
        _bounded(self._rehints, key, asked + 1, MAX_CANDIDATE_PEERS)
        return True

    def ever_heard(self, key: bytes) -> bool:
        return key in self._heard

    def heard_within(self, key: bytes, now: float, seconds: float) -> bool:
        heard = self._heard.get(key)
        return heard is not None and now - heard < seconds

    def sent(self, key: bytes, now: float) -> None:
        sent = self._sent
        if key in sent:
            sent[key] = now
            sent.move_to_end(key)
        else:
            _bounded(sent, key, now, MAX_CANDIDATE_PEERS)

    def used(self, key: bytes, now: float) -> None:
        """A message went to ``key`` or came from it: its path is in use."""
        used = self._used
        if key in used:
            used[key] = now
            used.move_to_end(key)
        else:
            _bounded(used, key, now, MAX_CANDIDATE_PEERS)

    def in_use(self) -> list[bytes]:
        """Peers whose paths are kept open (a message within ``PEER_IDLE_S``, as of the last
        :meth:`keepalives_due`)."""
        return list(self._used)

    def keepalives_due(self, now: float) -> list[bytes]:
        """Peers in use whose mapping needs a keepalive now; idle ones are forgotten here."""
        out: list[bytes] = []
        for key, used in list(self._used.items()):
            if now - used > PEER_IDLE_S:  # guard: keepalive-idle-stop
                del self._used[key]
            elif now - self._sent.get(key, used) >= PEER_KEEPALIVE_S:
                out.append(key)
        return out
