"""The secure layer of one UDP socket: both handshake roles, every session, and the dispatch of
each datagram received to the part it is for; what it returns is in
:mod:`~chat_protocol.secure.received`, the peers it holds in :mod:`~chat_protocol.secure.peers`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.constant_time import bytes_eq

from chat_protocol.const import (
    COOKIE_SECRET_LIFETIME_S,
    EVICTION_SCAN,
    HANDSHAKE_INIT_MIN_BYTES,
    LEAN_CONTEXTS,
    MAX_SECURE_PEERS,
    MAX_UNCONFIRMED_SESSIONS,
    SECURE_PROLOGUE,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.cookie import CookieJar
from chat_protocol.secure.errors import (
    BadMac,
    DecryptFailed,
    HandshakeFailed,
    LocalSecureError,
    ReplayedDatagram,
    ReplayRejected,
    SessionExpired,
    UnknownReceiver,
)
from chat_protocol.secure.handshake import CookieChallenge, IncomingHandshake, Initiator, Responder
from chat_protocol.secure.handshake_floor import FloorStore, below_floor, sent_floor
from chat_protocol.secure.noise import ContextCache, KeyPair, RandomBytes
from chat_protocol.secure.packets import (
    KEY_NONCE_BYTES,
    TRANSPORT_BYTE,
    CookieReply,
    HandshakeInit,
    HandshakeResponse,
    KeyReply,
    KeyRequest,
    Transport,
    build_key_reply,
    build_key_request,
    parse_packet,
    split_transport,
)
from chat_protocol.secure.peers import Peer, PeerTable, latest
from chat_protocol.secure.received import (
    HandshakeRequested,
    KeyReceived,
    Received,
    RetryWithCookie,
    SendReply,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.session import (
    DEFAULT_SESSION_LIMITS,
    SealTap,
    SecureSession,
    SessionLimits,
)
from chat_protocol.wire.messages import Addr

__all__ = [  # (the outcomes of receive: chat_protocol.secure.received)
    "EndpointCounters",
    "HandshakeRequested",
    "KeyReceived",
    "Received",
    "RetryWithCookie",
    "SecureEndpoint",
    "SendReply",
    "SessionEstablished",
    "TransportReceived",
]

@dataclass(kw_only=True, slots=True)
class EndpointCounters(Counters):
    bad_mac: int = 0
    handshakes_failed: int = 0
    replayed_initiations: int = 0
    cookie_replies: int = 0
    key_replies: int = 0
    unknown_receiver: int = 0
    replayed: int = 0
    stale: int = 0
    forged: int = 0
    malformed: int = 0
    evicted_peers: int = 0
    evicted_unconfirmed: int = 0


class SecureEndpoint:
    """The secure layer of one UDP socket: both handshake roles and every session.

    Feed every received datagram to :meth:`receive`; it returns what happened (a
    :data:`Received` event) or raises a :class:`MalformedDatagram` subclass, which means "drop
    and count it". Send with :meth:`session` (then :meth:`SecureSession.encrypt` to its
    ``remote_addr``) or :meth:`send`; open sessions with :meth:`connect`; answer initiations with
    :meth:`accept`. Call :meth:`expire` every few seconds.

    State is kept only for authenticated static keys (at most ``max_peers``, least recently
    active dropped first) and their sessions; unconfirmed responder sessions are capped at
    ``max_unconfirmed``, oldest dropped first. A peer holds at most three sessions: current,
    previous, and one unconfirmed.

    ``lean_sessions`` is the memory/latency policy of every session this endpoint makes: False
    (the default, for a client with few sessions) keeps an AEAD context per direction; True (for
    the directory server, a session per user) keeps only the two 32-byte keys, and the contexts
    of the most recently used keys in :attr:`contexts` (:class:`SecureSession`'s ``contexts``).
    """

    __slots__ = (
        "_by_index",
        "_key_requests",
        "_peer_of",
        "_peers",
        "_random_bytes",
        "_unconfirmed",
        "contexts",
        "counters",
        "floors",
        "keep",
        "limits",
        "max_peers",
        "max_unconfirmed",
        "prologue",
        "responder",
        "static",
        "tap",
    )

    def __init__(
        self,
        *,
        static: KeyPair,
        random_bytes: RandomBytes,
        prologue: bytes = SECURE_PROLOGUE,
        limits: SessionLimits = DEFAULT_SESSION_LIMITS,
        cookie_lifetime_s: float = COOKIE_SECRET_LIFETIME_S,
        max_peers: int = MAX_SECURE_PEERS,
        max_unconfirmed: int = MAX_UNCONFIRMED_SESSIONS,
        lean_sessions: bool = False,
        floors: FloorStore | None = None,
    ) -> None:
        self.static = static
        self.floors = floors
        """Each peer key's anti-replay floor, kept across runs (see
        :mod:`chat_protocol.secure.handshake_floor`): raised by the initiations we accept and
        send; None keeps only :attr:`Peer.timestamp`, in memory."""
        self._random_bytes = random_bytes
        self.prologue = prologue
        self.limits = limits
        if max_peers < 1 or max_unconfirmed < 1:
            raise LocalSecureError(
                "an endpoint keeps at least one peer and one unconfirmed session"
            )
        self.max_peers = max_peers
        self.max_unconfirmed = max_unconfirmed
        self.contexts = ContextCache(LEAN_CONTEXTS) if lean_sessions else None
        """Set (``lean_sessions``): every session is lean (:class:`SecureSession`), with no AEAD
        context per direction (about 4.4 KB of OpenSSL memory per session) and no handshake
        hash, and borrows the contexts of the most recently used keys from here (building one
        costs about 1 us). For a server with a session per user."""
        self.responder = Responder(
            static=static,
            random_bytes=random_bytes,
            cookies=CookieJar(random_bytes=random_bytes, lifetime_s=cookie_lifetime_s),
            prologue=prologue,
            limits=limits,
        )
        self.counters = EndpointCounters()
        self.keep: Callable[[bytes], bool] | None = None
        """Peers for which this returns True (or that hold an :meth:`owner`) are never evicted
        to make room (the owner's signed-in users, its server, its proven peers): new keys
        cannot push them out."""
        self._peers = PeerTable()
        self._peer_of = self._peers.by_key
        """The peers by key (``self._peers``' own dict: looked up per datagram without a call)."""
        self._by_index: dict[int, SecureSession | Initiator] = {}
        self._unconfirmed: OrderedDict[int, SecureSession] = OrderedDict()
        self._key_requests: dict[Addr, bytes] = {}
        self.tap: SealTap | None = None
        """A debug hook given to every session installed from now on (:attr:`SecureSession.tap`:
        each TRANSPORT datagram sealed, with its plaintext); None (the default) costs nothing."""

    # --- sending ---------------------------------------------------------------------------------

    def connect(
        self,
        remote_static: bytes,
        payload: bytes,
        now: float,
        *,
        timestamp: int,
        pad_to: int = HANDSHAKE_INIT_MIN_BYTES,
    ) -> bytes:
        """A HANDSHAKE_INIT to the peer holding ``remote_static``; send it to the peer's address.

        Call again to retransmit (after ``REKEY_TIMEOUT_S``), after a :class:`RetryWithCookie`,
        or to rekey; an existing session keeps working until the new one is established.
        """
        peer = self._peer(remote_static, create=True)
        assert peer is not None
        initiator = peer.initiator
        if initiator is None:
            initiator = Initiator(
                static=self.static,
                remote_static=remote_static,
                local_index=self._new_index(),
                random_bytes=self._random_bytes,
                prologue=self.prologue,
                limits=self.limits,
            )
            peer.initiator = initiator
            self._by_index[initiator.local_index] = initiator
        datagram = initiator.initiation(payload, now, timestamp=timestamp, pad_to=pad_to)
        if self.floors is not None:
            self.floors.raise_to(remote_static, sent_floor(timestamp))
        return datagram

    def request_key(self, addr: Addr) -> bytes:
        """A KEY_REQUEST for the static key of the responder at ``addr`` (trust on first use:
        compare the answer with a fingerprint, or pin it)."""
        nonce = self._random_bytes(KEY_NONCE_BYTES)
        self._key_requests[addr] = nonce
        return build_key_request(nonce)

    def session(self, remote_static: bytes, now: float) -> SecureSession | None:
        """The session to send on to ``remote_static``, if one works now."""
        peer = self._peer_of.get(remote_static)
        current = peer.current if peer else None
        if current is None or current.expired(now):
            return None
        return current

    def send(self, remote_static: bytes, plaintext: bytes, now: float) -> tuple[bytes, Addr]:
        """``(datagram, address)`` carrying ``plaintext`` to ``remote_static``."""
        session = self.session(remote_static, now)
        if session is None:
            raise SessionExpired("no working session with this peer: connect first")
        return session.encrypt(plaintext, now), session.remote_addr

    def remote_of(self, receiver: int) -> bytes | None:
        """The static key of the session or handshake whose local index is ``receiver``."""
        entry = self._by_index.get(receiver)
        return entry.remote_static if entry is not None else None

    def owner(self, remote_static: bytes) -> object:
        """What :meth:`set_owner` filed under ``remote_static`` (None if nothing)."""
        peer = self._peer_of.get(remote_static)
        return None if peer is None else peer.owner

    def set_owner(self, remote_static: bytes, owner: object) -> None:
        """File ``owner`` under ``remote_static`` (:attr:`Peer.owner`; None takes it back): the
        owner's own record for that key (the directory's signed-in user), kept on the key's peer
        rather than in a table beside it. The peer is not evicted while it holds one."""
        peer = self._peer(remote_static, create=owner is not None)
        if peer is not None:
            peer.owner = owner

    def initiating(self, remote_static: bytes) -> Initiator | None:
        """The handshake we have in flight towards ``remote_static`` (see ``sent_at``)."""
        peer = self._peer_of.get(remote_static)
        return peer.initiator if peer else None

    # --- receiving -------------------------------------------------------------------------------

    def receive(
        self, datagram: bytes, addr: Addr, now: float, *, under_load: bool = False
    ) -> Received:
        """Handle one datagram from ``addr``. ``under_load``: answer initiations that carry no
        valid cookie with a cookie reply instead of doing the public-key work (set it when the
        handshakes of the last second exceed what this machine should spend on them)."""
        try:
            if datagram[:1] == TRANSPORT_BYTE:  # the common case, without a Transport object
                return self._transport(*split_transport(datagram), addr, now)
            packet = parse_packet(datagram)
            if isinstance(packet, Transport):  # pragma: no cover - taken by the fast path
                return self._transport(
                    packet.receiver, packet.counter, packet.ciphertext, addr, now
                )
            if isinstance(packet, HandshakeInit):
                return self._initiation(packet, addr, now, under_load)
            if isinstance(packet, HandshakeResponse):
                return self._response(packet, addr, now)
            if isinstance(packet, CookieReply):
                initiator = self._initiator(packet.receiver)
                initiator.handle_cookie_reply(packet, now)
                return RetryWithCookie(remote_static=initiator.remote_static, addr=addr)
            if isinstance(packet, KeyRequest):
                self.counters.key_replies += 1
                return SendReply(datagram=build_key_reply(packet, self.static.public), addr=addr)
            return self._key_reply(packet, addr)
        except UnknownReceiver:
            self.counters.unknown_receiver += 1
            raise
        except BadMac:
            self.counters.bad_mac += 1
            raise
        except HandshakeFailed:
            self.counters.handshakes_failed += 1
            raise
        except ReplayedDatagram:
            self.counters.replayed += 1
            raise
        except ReplayRejected:
            self.counters.stale += 1
            raise
        except DecryptFailed:
            self.counters.forged += 1
            raise
        except MalformedDatagram:
            self.counters.malformed += 1
            raise

    def _transport(
        self, receiver: int, counter: int, ciphertext: bytes, addr: Addr, now: float
    ) -> TransportReceived:
        session = self._by_index.get(receiver)
        if not isinstance(session, SecureSession):
            raise UnknownReceiver("no session with this index")
        was_confirmed = session.confirmed
        was_at = session.remote_addr
        was_newest = session._newest
        plaintext = session.open(receiver, counter, ciphertext, addr, now)
        peer = self._peer_of.get(session.remote_static)
        if peer is not None:
            self._peers.touch(peer)
        if not was_confirmed and peer is not None and peer.next is session:
            peer.next = None
            self._unconfirmed.pop(session.local_index, None)
            self._install(peer, session)
        newest = (
            session._newest != was_newest
            and peer is not None
            and (peer.current is session or latest(peer, session))
        )
        received = TransportReceived(session=session, plaintext=plaintext, newest=newest)
        if not newest:  # guard: newest-address-follow
            return received  # older than what the peer sends now: no address moves
        if peer is not None and session.remote_addr != was_at:
            # The peer's newest datagram came from a new address: every session with it
            # follows (both sides may have initiated one; a NAT rebinding moves them all).
            for other in peer.sessions():
                other.remote_addr = session.remote_addr
        return received

    def _initiation(
        self, packet: HandshakeInit, addr: Addr, now: float, under_load: bool
    ) -> HandshakeRequested | SendReply:
        outcome = self.responder.handle_initiation(packet, addr, now, under_load=under_load)
        if isinstance(outcome, CookieChallenge):
            self.counters.cookie_replies += 1
            return SendReply(datagram=outcome.datagram, addr=outcome.addr)
        peer = self._peer_of.get(outcome.remote_static)
        if peer is not None and outcome.timestamp <= peer.timestamp:  # guard: init-timestamp
            self.counters.replayed_initiations += 1
            raise ReplayedDatagram("initiation replayed (timestamp not newer)")
        stale = below_floor(self.floors, outcome.remote_static, outcome.timestamp)
        if stale:  # guard: handshake-floor
            self.counters.replayed_initiations += 1
            raise ReplayedDatagram("initiation not newer than this key's floor")
        return HandshakeRequested(incoming=outcome)

    def accept(self, incoming: IncomingHandshake, payload: bytes, now: float) -> bytes:
        """Answer an initiation: the HANDSHAKE_RESPONSE to send to ``incoming.addr``.

        Raises :class:`ReplayedDatagram` if a newer initiation from the same key was accepted
        since ``incoming`` was received, and :class:`LocalSecureError` if ``payload`` is larger
        than ``incoming.max_response_payload``.
        """
        peer = self._peer(incoming.remote_static, create=True)
        assert peer is not None
        if incoming.timestamp <= peer.timestamp:  # guard: accept-timestamp
            self.counters.replayed_initiations += 1
            raise ReplayedDatagram("a newer initiation from this key was accepted meanwhile")
        local_index = self._new_index()
        datagram, session = incoming.accept(
            payload, local_index=local_index, now=now, contexts=self.contexts
        )
        peer.timestamp = incoming.timestamp
        if self.floors is not None:
            self.floors.raise_to(incoming.remote_static, incoming.timestamp)
        if peer.next is not None:
            self._drop(peer.next)
        peer.next = session
        self._by_index[local_index] = session
        self._unconfirmed[local_index] = session
        if len(self._unconfirmed) > self.max_unconfirmed:  # guard: half-open-bound
            _, oldest = self._unconfirmed.popitem(last=False)
            self.counters.evicted_unconfirmed += 1
            self._drop(oldest)
        return datagram

    def _initiator(self, index: int) -> Initiator:
        initiator = self._by_index.get(index)
        if not isinstance(initiator, Initiator):
            raise UnknownReceiver("no handshake in flight with this index")
        return initiator

    def _response(self, packet: HandshakeResponse, addr: Addr, now: float) -> SessionEstablished:
        initiator = self._initiator(packet.receiver)
        session, payload = initiator.handle_response(packet, addr, now, contexts=self.contexts)
        peer = self._peer(initiator.remote_static, create=True)
        assert peer is not None
        peer.initiator = None
        self._by_index[session.local_index] = session  # same index, now a session
        self._install(peer, session)
        return SessionEstablished(session=session, payload=payload)

    def _key_reply(self, packet: KeyReply, addr: Addr) -> KeyReceived:
        expected = self._key_requests.get(addr)
        if expected is None or not bytes_eq(expected, packet.nonce):
            raise MalformedDatagram("unexpected key reply")
        del self._key_requests[addr]
        return KeyReceived(key=packet.key, addr=addr)

    # --- housekeeping ----------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Forget expired sessions and handshakes abandoned for ``reject_after_time_s``."""
        for entry in list(self._by_index.values()):
            if isinstance(entry, SecureSession):
                if entry.expired(now):
                    self._drop(entry)
            elif (
                entry.sent_at is not None and now - entry.sent_at >= self.limits.reject_after_time_s
            ):
                self._drop_initiator(entry)

    def abandon(self, remote_static: bytes) -> None:
        """Drop the unconfirmed session just accepted for ``remote_static`` (its response said
        no): a later datagram on it cannot displace the peer's working session."""
        peer = self._peer_of.get(remote_static)
        if peer is not None and peer.next is not None:
            self._drop(peer.next)

    def forget(self, remote_static: bytes) -> None:
        """Drop everything held for ``remote_static`` (sessions, handshake, timestamp)."""
        peer = self._peers.pop(remote_static)
        if peer is not None:
            self._clear(peer)

    def peers(self) -> int:
        return len(self._peers)

    def sessions(self) -> int:
        return sum(1 for e in self._by_index.values() if isinstance(e, SecureSession))

    def _install(self, peer: Peer, session: SecureSession) -> None:
        if peer.previous is not None:
            self._drop_index(peer.previous)
        peer.previous = peer.current
        peer.current = session
        session.tap = self.tap

    def _drop(self, session: SecureSession) -> None:
        self._drop_index(session)
        self._unconfirmed.pop(session.local_index, None)
        peer = self._peer_of.get(session.remote_static)
        if peer is None:
            return
        if peer.current is session:
            peer.current = None
        if peer.previous is session:
            peer.previous = None
        if peer.next is session:
            peer.next = None

    def _drop_index(self, session: SecureSession) -> None:
        if self._by_index.get(session.local_index) is session:
            del self._by_index[session.local_index]

    def _drop_initiator(self, initiator: Initiator) -> None:
        if self._by_index.get(initiator.local_index) is initiator:
            del self._by_index[initiator.local_index]
        peer = self._peer_of.get(initiator.remote_static)
        if peer is not None and peer.initiator is initiator:
            peer.initiator = None

    def _clear(self, peer: Peer) -> None:
        for session in peer.sessions():
            self._drop_index(session)
            self._unconfirmed.pop(session.local_index, None)
        if peer.initiator is not None:
            self._drop_initiator(peer.initiator)
        peer.current = peer.previous = peer.next = None

    def _peer(self, remote_static: bytes, *, create: bool) -> Peer | None:
        peer = self._peer_of.get(remote_static)
        if peer is not None:
            self._peers.touch(peer)
            return peer
        if not create:
            return None
        peer = self._peers.add(remote_static)
        if len(self._peers) > self.max_peers:
            self._evict_one()
        return peer

    def _evict_one(self) -> None:
        """Drop the least recently active peer that :attr:`keep` does not protect (a bounded
        look from the oldest; if every one looked at is protected, keep them all for now)."""
        keep = self.keep
        for peer in self._peers.oldest(EVICTION_SCAN):
            if peer.owner is not None or (keep is not None and keep(peer.key)):
                self._peers.touch(peer)
                continue
            self._peers.pop(peer.key)
            self.counters.evicted_peers += 1
            self._clear(peer)
            return

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._random_bytes(4), "big")
            if index not in self._by_index:
                return index
