"""The chat client as a sans-I/O object: one UDP socket's worth of protocol.

:class:`ClientCore` is small on purpose; it routes between the parts, each with one job:

* :class:`~chat_protocol.secure.endpoint.SecureEndpoint` - Noise IK handshakes and encrypted,
  replay-protected datagrams, to the server and to every peer (one layer for both);
* :class:`~chat_protocol.client.directory.DirectorySession` - sign-in, heartbeats, list, lookups,
  sign-out, and the client's state machine (its table is in that module and docs/PROTOCOL.md);
* :class:`~chat_protocol.transfer.requests.Requests` (inside it) - retransmission and timeout of
  requests;
* :class:`~chat_protocol.client.peerlinks.PeerLinks` - handshakes with peers, what waits for them,
  the name each peer claimed, and peer restarts; a
  :class:`~chat_protocol.secure.handshake_gate.HandshakeGate` before it asks cookies of peers
  under a flood of initiations;
* :class:`~chat_protocol.client.sending.SendPipeline` - typed order, lookups, pins, transfer out;
* :class:`~chat_protocol.client.receiving.ReceivePath` - reassembly, the sender check, showing;
* :class:`~chat_protocol.client.pins.Pins` - the keys remembered for each name (trust on first use).

A datagram goes one way: the secure endpoint authenticates and decrypts it, the codec decodes
it, and the part that owns its kind takes it (DATA: receive path, ACK: send pipeline, anything
from the server's key: the directory session); lookup answers go back to the part that asked.
Message text never goes through the server. Only a health probe is ever plaintext.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from chat_protocol.client.directory import (
    DirectorySession,
    LookupAnswer,
    SendLookup,
    State,
    VerifyLookup,
    WhoisLookup,
)
from chat_protocol.client.peerlinks import PeerLinks
from chat_protocol.client.pins import Pins
from chat_protocol.client.receiving import ReceivePath
from chat_protocol.client.relay import is_relayed, relayed_receiver
from chat_protocol.client.sending import SendPipeline
from chat_protocol.client.signin import ServerLink
from chat_protocol.const import (
    DEFAULT_TIMINGS,
    ENDPOINT_SWEEP_S,
    MAX_HALF_OPEN_PEER_SESSIONS,
    MAX_MESSAGE_BYTES,
    MAX_PEERS_TRACKED,
    PUNCH_NOT_NEEDED_S,
    Timings,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram, UsageError
from chat_protocol.events import (
    ClientEvent,
    GoneReason,
    SendFailed,
    ServerGone,
    SignedOut,
    WhoisFailed,
    WhoisFailure,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    KeyReceived,
    RetryWithCookie,
    SecureEndpoint,
    SendReply,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.handshake import IncomingHandshake
from chat_protocol.secure.handshake_floor import FloorStore, MemoryFloors
from chat_protocol.secure.handshake_gate import HandshakeGate
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.endpoints import private_endpoints
from chat_protocol.wire.messages import (
    Ack,
    Addr,
    Data,
    Hello,
    LookupReply,
    Message,
    Punch,
    Relay,
    Relayed,
)
from chat_protocol.wire.names import check_name, name_key

__all__ = ["ClientCore", "ClientStats", "State"]

_INIT_BYTE = bytes((PacketType.HANDSHAKE_INIT,))


@dataclass(slots=True)
class ClientStats(Counters):
    malformed: int = 0
    """Dropped: did not authenticate, replayed, or could not be decoded."""
    unexpected: int = 0
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    retransmissions: int = 0
    refused_messages: int = 0
    dropped_unshown: int = 0
    replayed: int = 0
    forged: int = 0
    misanswered: int = 0
    """Lookup answers dropped: they named another user than the name asked."""
    cookies: int = 0
    """Cookie replies sent to peers' initiations (under load, or a source over its rate)."""
    rate_limited: int = 0
    """Peers' initiations dropped with a valid cookie but over their source's proven rate."""


class ClientCore:
    def __init__(
        self,
        *,
        name: str,
        server: Addr,
        identity: KeyPair,
        server_key: bytes | None = None,
        server_fingerprint: bytes | None = None,
        pins: Mapping[str, bytes] | None = None,
        verified_pins: Collection[str] = (),
        clock_offset_s: float = 0.0,
        timings: Timings = DEFAULT_TIMINGS,
        random_bytes: Callable[[int], bytes] = os.urandom,
        floors: FloorStore | None = None,
        local_endpoints: tuple[Addr, ...] = (),
        relay: bool = True,
    ) -> None:
        """``local_endpoints``: this client's private addresses (its socket's, per interface),
        declared at sign-in so that peers behind the same NAT reach it there; only
        private-range ones are sent. ``relay``: reach peers through the directory's relay when
        no direct path opens (``--no-relay`` turns it off: such sends fail "cannot reach ...
        directly").

        ``server_key``: the key pinned for ``server`` (else learned on first contact, or checked
        against ``server_fingerprint``, from ``--server-key``). ``clock_offset_s`` maps
        ``now`` to wall-clock seconds, for the handshake timestamps that defeat replays.
        ``pins``: user name -> pinned key; ``verified_pins``: those of them pinned by ``trust``.
        ``floors``: where the peers' anti-replay floors persist (the shell's file in the home;
        default: in memory, for this run only)."""
        self.name = check_name(name)
        self.server = server
        self.identity = identity
        self.clock_offset_s = clock_offset_s
        self.timings = timings
        self.session = int.from_bytes(random_bytes(4), "big")
        self._events: list[ClientEvent] = []
        self.relay = relay
        emit = self._emit
        self.pins = Pins(pins or {}, emit, verified_pins)
        self.secure = SecureEndpoint(
            static=identity,
            random_bytes=random_bytes,
            floors=floors if floors is not None else MemoryFloors(),
            max_unconfirmed=MAX_HALF_OPEN_PEER_SESSIONS,
        )
        self.secure.keep = self._keeps
        self._gate = HandshakeGate()
        """Cookies first under a flood of initiations (issue 19, point 5)."""
        self._cookies = 0
        self._rate_limited = 0
        self.directory = DirectorySession(
            name=self.name,
            server=server,
            timings=timings,
            random_bytes=random_bytes,
            emit=emit,
            endpoints=private_endpoints(local_endpoints),
        )
        self.link = ServerLink(
            secure=self.secure,
            directory=self.directory,
            server_key=server_key,
            server_fingerprint=server_fingerprint,
            clock_offset_s=clock_offset_s,
            emit=emit,
        )
        """Signing in over the secure layer (the server's key, the HELLO's initiations, cookies,
        the WELCOME): the one implementation, which the load tools use too."""
        self.sending = SendPipeline(
            name=self.name, session=self.session, timings=timings, pins=self.pins, emit=emit
        )
        self.receiving = ReceivePath(timings=timings, pins=self.pins, emit=emit)
        self.links = PeerLinks(
            secure=self.secure,
            intro=encode(Hello(req_id=self.session, name=self.name)),
            clock_offset_s=clock_offset_s,
            on_restart=self.sending.peer_restarted,
            relay=relay,
        )
        """Handshakes with peers, carrying our name and our run's id (the session), so a peer
        can tell a rekey of ours from a restart."""
        self._answers: OrderedDict[str, tuple[LookupReply, float]] = OrderedDict()
        """Name asked (case-folded) -> the directory's answer for a send to it, and when it
        came. A later send to that name uses it instead of a LOOKUP while it is younger than
        ``timings.client_timeout_s`` (the directory's own liveness bound: it keeps answering
        for a user silent that long) and while the peer's secure session works and the peer
        answers what we send. Only answers that passed the asked-name check are kept, and the
        pin is checked under the name asked on every send, cached or not."""
        self.lookups_saved = 0
        """Sends that used a cached answer instead of a LOOKUP."""
        self._next_sweep = 0.0
        self._malformed = 0
        self._unexpected = 0
        self._finished = False

    # -- state --

    @property
    def server_key(self) -> bytes | None:
        """The server's static key: pinned, or learned on first contact (None until then)."""
        return self.link.server_key

    @property
    def server_fingerprint(self) -> bytes | None:
        return self.link.server_fingerprint

    @property
    def state(self) -> State:
        return self.directory.state

    @property
    def online(self) -> bool:
        return self.directory.online

    @property
    def pending_sends(self) -> int:
        return self.sending.pending

    @property
    def stats(self) -> ClientStats:
        r, c = self.receiving.stats, self.secure.counters
        return ClientStats(
            malformed=self._malformed + self.links.malformed + self.link.malformed,
            unexpected=self._unexpected + self.link.unexpected,
            rejected_chunks=r.rejected_chunks,
            duplicate_chunks=r.duplicate_chunks,
            retransmissions=self.sending.retransmissions,
            refused_messages=r.refused_messages,
            dropped_unshown=r.dropped_unshown,
            replayed=c.replayed + c.stale,
            forged=c.forged + c.bad_mac + c.handshakes_failed,
            misanswered=self.directory.misanswered,
            cookies=self._cookies,
            rate_limited=self._rate_limited,
        )

    def _keeps(self, key: bytes) -> bool:
        """The server and the peers we send to or were shown messages from are never evicted
        from the secure layer to make room for new keys."""
        return key == self.server_key or key in self.sending.outbound or self.receiving.proven(key)

    def _emit(self, event: ClientEvent) -> None:
        """Every part's events come here. A send that timed out towards a peer never heard
        from, with the relay off, failed for want of a direct path: it says so."""
        if (
            isinstance(event, SendFailed)
            and event.reason is FailReason.TIMEOUT
            and not self.relay
            and not any(
                self.links.rendezvous.ever_heard(k) for k in self.links.keys_claiming(event.to)
            )
        ):
            event = SendFailed(handle=event.handle, to=event.to, reason=FailReason.NO_DIRECT_PATH)
        self._events.append(event)

    def _require_online(self) -> None:
        if not self.online:
            raise UsageError("not signed in")

    # -- commands --

    def declare_local(self, endpoints: tuple[Addr, ...]) -> None:
        """Our private endpoints (the shell knows them once its socket is bound): the sign-in
        declares the private-range ones. Call before :meth:`connect`."""
        self.directory.endpoints = private_endpoints(endpoints)

    def connect(self, now: float) -> None:
        self.directory.connect(now)

    def list_users(self, now: float) -> None:
        self._require_online()
        self.directory.list_users(now)

    def send(self, to: str, text: str, now: float) -> int:
        """Queue a message for ``to``; returns a handle named again by the outcome event."""
        self._require_online()
        check_name(to)
        if not text.strip():
            raise UsageError("empty message, not sent")
        payload = text.encode("utf-8")
        if len(payload) > MAX_MESSAGE_BYTES:
            raise UsageError(
                f"message too long: {len(payload)} bytes (limit {MAX_MESSAGE_BYTES} bytes)"
            )
        handle = self.sending.queue(to, payload)
        cached = self._cached_answer(to, now)
        if cached is not None:
            self.lookups_saved += 1
            self.sending.looked_up(handle, cached, now)
        else:
            self.directory.lookup(to, SendLookup(handle, to), now)
        return handle

    def forget_answers(self) -> None:
        """The next send to every name asks the directory again (see ``_answers``)."""
        self._answers.clear()

    def _cached_answer(self, to: str, now: float) -> LookupReply | None:
        """The directory's answer for ``to`` if a send may skip its LOOKUP (see ``_answers``)."""
        got = self._answers.get(name_key(to))
        if got is None:
            return None
        reply, at = got
        if (
            now - at > self.timings.client_timeout_s
            or self.secure.session(reply.key, now) is None
            or not self.links.answering(reply.key)
        ):
            del self._answers[name_key(to)]
            return None
        return reply

    def whois(
        self, name: str, now: float, *, trust: bool = False, fingerprint: bytes | None = None
    ) -> None:
        """Ask the directory for ``name``'s key; a ``WhoisInfo`` event answers, and the key
        shown is remembered. ``trust``: pin the key as verified, replacing an old pin, if it is
        the one seen (``fingerprint``'s, else the one the last ``whois`` showed); otherwise a
        ``WhoisFailed`` says why not."""
        self._require_online()
        check_name(name)
        self.directory.lookup(name, WhoisLookup(name, trust, fingerprint), now)

    def close(self, now: float) -> None:
        """Sign out once every command given so far has its answer (sends resolved, held
        messages shown, lists answered)."""
        self.directory.close(now)
        self._settle(now)

    # -- I/O surface (the same five methods as the server core) -------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if self.directory.gone:
            return
        loaded = data[:1] == _INIT_BYTE and self._gate.under_load(addr, now)
        try:
            got = self.secure.receive(data, addr, now, under_load=loaded)
        except MalformedDatagram:
            self._malformed += 1
            return
        match got:
            case TransportReceived(session=session, plaintext=plaintext):
                self.links.heard_from(session, now)
                if plaintext:
                    self._on_plaintext(plaintext, session.remote_static, session.remote_addr, now)
            case SessionEstablished(session=session, payload=payload):
                self._established(session, payload, now)
            case HandshakeRequested(incoming=incoming):
                if loaded and not self._gate.proven(addr, now):
                    self._rate_limited += 1  # a proven address over its rate: no more work
                else:
                    self._incoming(incoming, now)
            case KeyReceived(key=key, addr=src):
                self.link.key_learned(key, src, now)
            case RetryWithCookie(remote_static=key):
                self.link.cookie(key, now)
            case SendReply(datagram=reply, addr=to):
                if loaded:  # a cookie reply: smaller than the initiation it answers
                    self._cookies += 1
                    self.links.reply(reply, to)
                else:
                    self._unexpected += 1  # a client answers no key requests
        self._settle(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out = self.links.datagrams()
        for payload, _ in self.directory.datagrams():
            self.link.to_server(payload, now, out)
        # Acknowledgements of shown messages go out even after the session ended.
        for payload, key in self.receiving.datagrams(now):
            self.links.to_peer(payload, key, None, now, out)
        if not self.directory.gone:
            for payload, key, addr in self.sending.datagrams(now):
                self.links.to_peer(payload, key, addr, now, out)
        if any(is_relayed(addr) for _, addr in out):
            out = self._through_relay(out, now)
        return out

    def _through_relay(
        self, out: list[tuple[bytes, Addr]], now: float
    ) -> list[tuple[bytes, Addr]]:
        """Datagrams for a pseudo-address go in a RELAY to the directory (client/relay.py)."""
        direct: list[tuple[bytes, Addr]] = []
        for datagram, addr in out:
            if not is_relayed(addr):
                direct.append((datagram, addr))
                continue
            key = self.links.relay_paths.key_of(addr)
            if key is None or key == self.server_key or not (self.relay and self.online):
                continue
            relay = Relay(token=self.directory.token, to=key, datagram=datagram)
            self.link.to_server(encode(relay), now, direct)
        return direct

    def events(self) -> list[ClientEvent]:
        out = self._events[:]  # the parts hold ``self._events.append``: empty it in place
        self._events.clear()
        return out

    def next_timer(self) -> float | None:
        if self.directory.gone:
            return None
        times = [self._next_sweep]
        punch = self.links.rendezvous.next_punch() if self.online else None
        for t in (self.directory.next_timer(), self.sending.next_timer(), punch):
            if t is not None:
                times.append(t)
        return min(times)

    def handle_timer(self, now: float) -> None:
        if self.directory.gone:
            return
        if now >= self._next_sweep:
            self._next_sweep = now + ENDPOINT_SWEEP_S
            self.secure.expire(now)
            self.receiving.expire(now)
            self._rekey_server(now)
            if self.online:
                self.links.keepalive(now)
        if self.online:
            self.links.punch(now)
        for answer in self.directory.handle_timer(now):
            self._route(answer, now)
        if not self.directory.gone:
            self.sending.handle_timer(now)
        self._settle(now)

    # -- the secure layer -------------------------------------------------------------------

    def _rekey_server(self, now: float) -> None:
        key = self.server_key
        if key is None or not self.online:
            return
        session = self.secure.session(key, now)
        if session is None or session.needs_rekey(now):
            self.links.rekey(key, self.server, now)

    def _established(self, established: SecureSession, payload: bytes, now: float) -> None:
        """Our initiation was answered: confirm at once (the responder may send only then)."""
        key = established.remote_static
        session = self.secure.session(key, now)
        if session is None:
            return
        if self.link.established(key, payload, now):  # (the server's WELCOME is taken there)
            self.links.established(key, session, payload, now)

    def _incoming(self, incoming: IncomingHandshake, now: float) -> None:
        if not self.online or incoming.remote_static == self.server_key:
            self._unexpected += 1
            return
        self.links.incoming(incoming, now)

    # -- inside the sessions ----------------------------------------------------------------

    def _on_plaintext(self, plaintext: bytes, key: bytes, addr: Addr, now: float) -> None:
        try:
            msg = decode(plaintext)
        except MalformedDatagram:
            self._malformed += 1
            return
        if key == self.server_key:
            self._from_server(msg, now)
        elif isinstance(msg, Data):
            claimed = self.links.claimed(key)
            if claimed is None or not self.online:
                self._unexpected += 1
                return
            verify = self.receiving.on_data(msg, len(plaintext), key, claimed, addr, now)
            if verify is not None:
                self.directory.lookup(verify.name, verify, now)
        elif isinstance(msg, Ack):
            if not self.sending.on_ack(key, msg, now):
                self._unexpected += 1
        else:
            self._unexpected += 1

    def _from_server(self, msg: Message, now: float) -> None:
        if isinstance(msg, Punch):
            self._hinted(msg, now)
            return
        if isinstance(msg, Relayed):
            self._relayed(msg, now)
            return
        self._route(self.link.from_server(msg, now), now)

    def _relayed(self, msg: Relayed, now: float) -> None:
        """A peer's datagram through the relay: into the secure layer as from the peer's
        pseudo-address. Only packets for the sender's own sessions or handshakes (or a new
        initiation, which must prove the sender's key): a relayed datagram cannot move the
        address of the server's session, or of anyone else's."""
        d = self.directory
        ours = self.online and d.token and msg.token == d.token and self.relay
        if not ours or msg.sender in (self.server_key, self.identity.public):
            self._unexpected += 1
            return
        inner = msg.datagram
        if inner[:1] != bytes((PacketType.HANDSHAKE_INIT,)):
            try:
                receiver = relayed_receiver(inner)
            except MalformedDatagram:
                self._malformed += 1
                return
            if self.secure.remote_of(receiver) != msg.sender:  # guard: relay-sender-bound
                self._unexpected += 1
                return
        self.receive_datagram(inner, self.links.relay_paths.addr_for(msg.sender), now)

    def _hinted(self, hint: Punch, now: float) -> None:
        """The directory says ``hint.name`` (key ``hint.key``) looked us up to send: punch
        towards its endpoints (client/rendezvous.py), unless a session with it works."""
        d = self.directory
        ours = self.online and d.token and hint.token == d.token
        if not ours or hint.key == self.identity.public:
            self._unexpected += 1
            return
        self.links.claim(hint.key, hint.name)  # the directory vouches: key is name's
        r = self.links.rendezvous
        session = self.secure.session(hint.key, now)
        if session is not None and r.heard_within(hint.key, now, PUNCH_NOT_NEEDED_S):
            r.learn(hint.key, hint.addr, hint.local)  # the path is open: no punching
            return
        r.hinted(hint.key, hint.addr, hint.local, now)
        self.links.punch(now)

    # -- routing ----------------------------------------------------------------------------

    def _route(self, answer: LookupAnswer | None, now: float) -> None:
        if answer is None:
            return
        reply = answer.reply
        match answer.purpose:
            case SendLookup(handle=handle, name=asked):
                if reply is not None and reply.addr is not None:
                    # A peer we start a session with is who the directory says (its DATA to
                    # us on that session is checked like any other).
                    self.links.claim(reply.key, reply.name)
                    self.links.rendezvous.learn(reply.key, reply.addr, reply.local)
                if reply is not None and reply.addr is not None and not answer.wrong_name:
                    self._answers[name_key(asked)] = (reply, now)
                    self._answers.move_to_end(name_key(asked))
                    if len(self._answers) > MAX_PEERS_TRACKED:
                        self._answers.popitem(last=False)
                else:
                    self._answers.pop(name_key(asked), None)
                self.sending.looked_up(handle, reply, now, wrong_name=answer.wrong_name)
            case VerifyLookup() as v:
                again = self.receiving.verified(v, reply, now, wrong_name=answer.wrong_name)
                if again is not None:
                    self.directory.lookup(again.name, again, now)
            case WhoisLookup(name=name, trust=trust, fingerprint=fingerprint):
                self._whois_answered(name, trust, fingerprint, answer)

    def _whois_answered(
        self, name: str, trust: bool, fingerprint: bytes | None, answer: LookupAnswer
    ) -> None:
        """Pins are read and written under ``name``, the name asked."""
        reply = answer.reply
        if reply is None:
            why = WhoisFailure.WRONG_NAME if answer.wrong_name else WhoisFailure.NO_ANSWER
            self._events.append(WhoisFailed(name=name, reason=why))
            return
        if reply.addr is None:
            self._events.append(WhoisInfo(name=name, key=None, pinned=self.pins.get(name)))
            return
        key = reply.key
        status = self.pins.status(name, key)
        if trust:
            refused = self.pins.trust(name, key, fingerprint)
            if refused is not None:
                self._events.append(WhoisFailed(name=name, reason=refused, key=key))
                return
            self.receiving.forget_verdicts(name)
        else:
            self.pins.showed(name, key)
        self._events.append(
            WhoisInfo(
                name=reply.name, key=key, pinned=self.pins.get(name), trusted=trust, status=status
            )
        )

    def _settle(self, now: float) -> None:
        """After any input: sign out when closing is drained; wind down when the session ended."""
        d = self.directory
        if d.state is State.CLOSING and not (
            self.sending.pending or self.receiving.holding or d.answers_pending
        ):
            d.drained(now)
        if d.gone and not self._finished:
            self._finished = True
            ended = d.ended or SignedOut()
            lost = isinstance(ended, ServerGone) and ended.reason is not GoneReason.SHUTDOWN
            self.sending.fail_all(FailReason.SERVER_LOST if lost else FailReason.SIGNED_OUT)
            self.receiving.drop_held()
            self._events.append(ended)
