"""The client's secure links to its peers: handshakes started, answered and retried, what waits
for one, the name each peer's handshake claimed, and whether a peer restarted.

:class:`PeerLinks` is one job of the client (:class:`~chat_protocol.client.core.ClientCore` only
routes to it): it owns the per-peer tables beside the secure endpoint's sessions, and queues the
datagrams it makes on its own (responses, first datagrams of a new session, rekeys) until
the core takes them (``PeerLinks.outbox``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from chat_protocol.client.relay import RelayPaths, is_relayed
from chat_protocol.client.rendezvous import Rendezvous
from chat_protocol.const import (
    HANDSHAKE_RETRY_S,
    MAX_CLAIMED_NAMES,
    MAX_WAITING_DATAGRAMS_PER_PEER,
    PEER_SILENT_REHANDSHAKE_S,
    PUNCH_NOT_NEEDED_S,
    RELAY_AFTER_S,
    RELAY_UPGRADE_S,
)
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import PathKind, PeerPath
from chat_protocol.secure.endpoint import SecureEndpoint
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.handshake import IncomingHandshake
from chat_protocol.secure.packets import HandshakeResponse, parse_packet
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.codec import decode
from chat_protocol.wire.messages import Addr, Hello, LookupReply, Punch

V = TypeVar("V")


def _remember(table: OrderedDict[bytes, V], key: bytes, value: V) -> None:
    """Set ``key`` as the most recent entry of a per-peer table of at most MAX_CLAIMED_NAMES."""
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_CLAIMED_NAMES:
        table.popitem(last=False)


class PeerLinks:
    """The links of one client to its peers, over its :class:`SecureEndpoint`.

    ``intro`` is what every handshake of ours carries (our name and run id, a HELLO);
    ``on_restart(key, now)`` is called when a peer's handshake names another run than before.
    """

    def __init__(
        self,
        *,
        secure: SecureEndpoint,
        intro: bytes,
        clock_offset_s: float,
        on_restart: Callable[[bytes, float], None],
        relay: bool = True,
    ) -> None:
        self.secure = secure
        self.intro = intro
        self.clock_offset_s = clock_offset_s
        self._on_restart = on_restart
        self._runs: OrderedDict[bytes, int] = OrderedDict()
        """Peer key -> the run id its last handshake carried."""
        self._unconfirmed_runs: OrderedDict[bytes, tuple[int, int]] = OrderedDict()
        """Peer key -> (our index of the session we answered its initiation with, the run id
        that initiation named): the run is noted only when the initiator confirms that session
        (a replayed initiation never can, so it fails nothing)."""
        self._unanswered: dict[bytes, float] = {}
        """Peer key -> when we first sent it something that it has not answered since (any
        authenticated datagram from it clears it)."""
        self._claims: OrderedDict[bytes, str] = OrderedDict()
        """Peer key -> the name its handshake claimed (checked against the directory)."""
        self._waiting: dict[bytes, list[bytes]] = {}
        """Peer key -> plaintexts waiting for the handshake with that peer to complete."""
        self.relay = relay
        """Whether handshakes unanswered for RELAY_AFTER_S also go through the relay."""
        self.relay_paths = RelayPaths()
        self._upgrade_at: dict[bytes, float] = {}
        """Peer key (reached through the relay) -> when to try a direct path next."""
        self.rendezvous = Rendezvous()
        """Each peer's candidate endpoints, punching on hints, keepalives (client/rendezvous.py)."""
        self.outbox: list[tuple[bytes, Addr]] = []
        self.rehints_due: list[bytes] = []
        """Peer keys whose hint the directory should send again (:meth:`rehints` takes them;
        the owner reads this to skip that call when none is due)."""
        self.malformed = 0
        """Peer initiations dropped: no HELLO in them, or not answerable."""

    def rehints(self) -> list[bytes]:
        """Peers a send's handshake towards is still unanswered, due for another PUNCH hint
        (the owner asks the directory: a LOOKUP with the punch flag; client/rendezvous.py)."""
        out, self.rehints_due = self.rehints_due, []
        return out

    def reply(self, datagram: bytes, addr: Addr) -> None:
        """Queue ``datagram`` (a cookie reply the secure endpoint made) for ``addr``."""
        self.outbox.append((datagram, addr))

    def heard_from(self, session: SecureSession, now: float) -> None:
        """An authenticated datagram on ``session``: its peer answers; and if it confirmed the
        session we answered the peer's initiation with last, note the run that initiation named
        (a restart of the peer fails what we sent its old run)."""
        key = session.remote_static
        self._unanswered.pop(key, None)
        self.rendezvous.heard(key, now)
        if session.is_initiator or not self._unconfirmed_runs:
            return
        pending = self._unconfirmed_runs.get(key)
        if pending is not None and pending[0] == session.local_index:
            del self._unconfirmed_runs[key]
            self._note_run(key, pending[1], now)

    def answering(self, key: bytes) -> bool:
        """Has ``key`` answered everything we sent it (nothing waits for its answer)?"""
        return key not in self._unanswered

    def punch(self, now: float) -> None:
        """Initiations to every peer we punch towards on a hint (client/rendezvous.py)."""
        r = self.rendezvous
        for key in r.due(now):
            public = r.public(key)
            if public is not None:
                self.handshake(key, public, now, self.outbox, payload=self.intro)

    def keepalive(self, now: float) -> None:
        """An empty datagram to each peer in use we sent nothing to for PEER_KEEPALIVE_S."""
        for key in self.rendezvous.keepalives_due(now):
            session = self.secure.session(key, now)
            if session is not None and session.confirmed:  # guard: keepalive
                self.outbox.append((session.encrypt(b"", now), session.remote_addr))
                self.rendezvous.sent(key, now)

    def path(self, key: bytes, now: float) -> PeerPath | None:
        """How the working session with ``key`` carries datagrams now (None: no session)."""
        session = self.secure.session(key, now)
        if session is None or not session.confirmed:
            return None
        addr = session.remote_addr
        if is_relayed(addr):
            return PeerPath(kind=PathKind.RELAY, addr=None)
        return PeerPath(kind=PathKind.DIRECT, addr=addr)

    def claimed(self, key: bytes) -> str | None:
        """The name ``key``'s handshake (or the directory, for a peer we looked up) gave it."""
        return self._claims.get(key)

    def timestamp(self, now: float) -> int:
        return int((now + self.clock_offset_s) * 1e9)

    def rekey(self, key: bytes, addr: Addr, now: float) -> None:
        """Start (or restart) a handshake with ``key`` at ``addr``, carrying our intro."""
        self.handshake(key, addr, now, self.outbox, payload=self.intro)

    def handshake(
        self,
        key: bytes,
        addr: Addr,
        now: float,
        out: list[tuple[bytes, Addr]],
        *,
        payload: bytes,
        direct: bool = False,
    ) -> None:
        """Start (or, when the last attempt is old enough, restart) a handshake with ``key``.
        ``direct``: not through the relay (an attempt to leave it)."""
        pending = self.secure.initiating(key)
        sent_at = pending.sent_at if pending is not None else None
        if sent_at is not None and now - sent_at < HANDSHAKE_RETRY_S:
            return
        init = self.secure.connect(key, payload, now, timestamp=self.timestamp(now))
        # The same initiation to every candidate (public, private): the first copy to arrive
        # is answered, the others are dropped as replays; the response's source is the path.
        relayed = self.relay_paths.addr_for(key)
        since = self.rendezvous.trying(key, now)
        for target in self.rendezvous.targets(key, addr):
            if not is_relayed(target):
                out.append((init, target))
        # The relay is the last resort: only once punching had RELAY_AFTER_S to work (or when
        # the session being renewed is already on it).
        late = now - since >= RELAY_AFTER_S
        if self.relay and not direct and (late or is_relayed(addr)):
            out.append((init, relayed))
        self.rendezvous.sent(key, now)

    def to_peer(
        self,
        payload: bytes,
        key: bytes,
        addr: Addr | None,
        now: float,
        out: list[tuple[bytes, Addr]],
    ) -> None:
        session = self.secure.session(key, now)
        self.rendezvous.used(key, now)
        if session is not None and session.confirmed:
            out.append((session.encrypt(payload, now), session.remote_addr))
            self.rendezvous.sent(key, now)
            if is_relayed(session.remote_addr):
                self._upgrade(key, now, out)
            since = self._unanswered.setdefault(key, now)
            silent = now - since > PEER_SILENT_REHANDSHAKE_S
            # Either side rekeys a session it sends on (the responder later: needs_rekey), so
            # a new one is up before the old stops working, whoever talks.
            if addr is not None and (silent or session.needs_rekey(now)):
                self.handshake(key, session.remote_addr, now, out, payload=self.intro)
            return
        if addr is None:
            return  # an ACK with no session left: the sender retransmits and rekeys
        waiting = self._waiting.setdefault(key, [])
        if len(waiting) < MAX_WAITING_DATAGRAMS_PER_PEER:
            waiting.append(payload)
        self.handshake(key, addr, now, out, payload=self.intro)
        # The peer's hint (one datagram) may have been lost: then it never punches, and its
        # router drops our initiations. Ask the directory to hint it again, a few times.
        if self.rendezvous.rehint_due(key, now):
            self.rehints_due.append(key)

    def _upgrade(self, key: bytes, now: float, out: list[tuple[bytes, Addr]]) -> None:
        """On the relay: every RELAY_UPGRADE_S, a direct initiation to the peer's candidates;
        if one is answered, its session (direct) becomes the current one and takes over."""
        at = self._upgrade_at.setdefault(key, now + RELAY_UPGRADE_S)
        public = self.rendezvous.public(key)
        if now < at or public is None:
            return
        self._upgrade_at[key] = now + RELAY_UPGRADE_S
        self.handshake(key, public, now, out, payload=self.intro, direct=True)

    def established(self, key: bytes, session: SecureSession, payload: bytes, now: float) -> None:
        """Our initiation was answered: confirm at once (the responder may send only then)."""
        try:
            intro = decode(payload) if payload else None
        except MalformedDatagram:
            intro = None
        if isinstance(intro, Hello):
            self._note_run(key, intro.req_id, now)
        for plaintext in self._waiting.pop(key, []) or [b""]:
            self.outbox.append((session.encrypt(plaintext, now), session.remote_addr))

    def incoming(self, incoming: IncomingHandshake, now: float) -> None:
        """A peer's initiation (the caller checked it may be answered at all): answer it if it
        carries a HELLO, and remember the name it claims, and its run once the peer confirms the
        session (:meth:`heard_from`)."""
        try:
            intro = decode(incoming.payload)
        except MalformedDatagram:
            self.malformed += 1
            return
        if not isinstance(intro, Hello):
            self.malformed += 1
            return
        try:
            response = self.secure.accept(incoming, self.intro, now)
        except (MalformedDatagram, LocalSecureError):
            self.malformed += 1
            return
        self.claim(incoming.remote_static, intro.name)
        answered = parse_packet(response)
        assert isinstance(answered, HandshakeResponse)
        _remember(self._unconfirmed_runs, incoming.remote_static, (answered.sender, intro.req_id))
        self.outbox.append((response, incoming.addr))

    def _note_run(self, key: bytes, run: int, now: float) -> None:
        """A peer's handshake named its run: a different run than before means it restarted."""
        before = self._runs.get(key)
        _remember(self._runs, key, run)
        if before is not None and before != run:
            self._waiting.pop(key, None)  # chunks meant for the old run
            self._on_restart(key, now)

    def hinted(self, hint: Punch, now: float) -> None:
        """The directory says ``hint.name`` (key ``hint.key``) looked us up to send: punch
        towards its endpoints (client/rendezvous.py), unless a session with it works."""
        self.claim(hint.key, hint.name)  # the directory vouches: key is name's
        r = self.rendezvous
        session = self.secure.session(hint.key, now)
        if session is not None and r.heard_within(hint.key, now, PUNCH_NOT_NEEDED_S):
            r.learn(hint.key, hint.addr, hint.local)  # the path is open: no punching
            return
        r.hinted(hint.key, hint.addr, hint.local, now)
        self.punch(now)

    def looked_up(self, reply: LookupReply) -> None:
        """The directory answered a send's lookup: a peer we start a session with is who the
        directory says (its DATA to us on that session is checked like any other), at the
        endpoints it gives."""
        if reply.addr is not None:
            self.claim(reply.key, reply.name)
            self.rendezvous.learn(reply.key, reply.addr, reply.local)

    def never_heard(self, name: str) -> bool:
        """No peer whose claimed name is ``name`` was ever heard from (a slow scan: for a
        failure's reason)."""
        return not any(self.rendezvous.ever_heard(k) for k, n in self._claims.items() if n == name)

    def claim(self, key: bytes, name: str) -> None:
        _remember(self._claims, key, name)
