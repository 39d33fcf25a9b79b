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
* :class:`~chat_protocol.client.pins.Pins` - the keys remembered for each name (trust on first use);
  :func:`~chat_protocol.client.whois.whois_answered` - what a ``whois`` or ``trust`` shows;
* :class:`~chat_protocol.client.signin.ServerLink` - the server's key, the sign-in handshake and
  the server's session; :class:`~chat_protocol.client.relay.RelayLink` - the directory's relay,
  both ways; :class:`~chat_protocol.client.answers.AnswerCache` - lookup answers kept for sends.

A datagram goes one way: the secure endpoint authenticates and decrypts it, the codec decodes
it, and the part that owns its kind takes it (DATA: receive path, ACK: send pipeline, PUNCH:
peer links, RELAYED: the relay link, back into the secure endpoint, anything else from the
server's key: the directory session); lookup answers go back to the part that asked.
Message text never goes through the server. Only a health probe is ever plaintext.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping

from chat_protocol.client.answers import AnswerCache
from chat_protocol.client.directory import (
    HintLookup,
    LookupAnswer,
    SendLookup,
    State,
    VerifyLookup,
    WhoisLookup,
)
from chat_protocol.client.peerlinks import PeerLinks
from chat_protocol.client.pins import Pins
from chat_protocol.client.receiving import ReceivePath
from chat_protocol.client.relay import RelayLink
from chat_protocol.client.sending import SendPipeline
from chat_protocol.client.signin import ServerSignIn
from chat_protocol.client.stats import ClientStats
from chat_protocol.client.whois import whois_answered
from chat_protocol.const import (
    DEFAULT_TIMINGS,
    ENDPOINT_SWEEP_S,
    MAX_HALF_OPEN_PEER_SESSIONS,
    MAX_MESSAGE_BYTES,
    RELAY_HOST,
    Timings,
)
from chat_protocol.errors import MalformedDatagram, UsageError
from chat_protocol.events import (
    ClientEvent,
    GoneReason,
    SendFailed,
    ServerGone,
    SignedOut,
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
    Message,
    Punch,
    Relayed,
)
from chat_protocol.wire.names import check_name

__all__ = ["ClientCore", "ClientStats", "State"]

_INIT_BYTE = bytes((PacketType.HANDSHAKE_INIT,))


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
        sign_in = ServerSignIn(
            name=self.name,
            server=server,
            identity=identity,
            server_key=server_key,
            server_fingerprint=server_fingerprint,
            clock_offset_s=clock_offset_s,
            timings=timings,
            random_bytes=random_bytes,
            secure=self.secure,
            emit=emit,
            endpoints=private_endpoints(local_endpoints),
        )
        self.directory = sign_in.directory
        """Sign-in, heartbeats, requests to the directory, the client's state machine."""
        self.link = sign_in.link
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
        self.answers = AnswerCache(
            secure=self.secure, links=self.links, max_age_s=timings.client_timeout_s
        )
        """The directory's answers kept for later sends (client/answers.py)."""
        self.relaying = RelayLink(
            secure=self.secure,
            link=self.link,
            paths=self.links.relay_paths,
            own_key=identity.public,
            enabled=relay,
        )
        """RELAY out, RELAYED in (client/relay.py)."""
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
    def lookups_saved(self) -> int:
        """Sends that used a kept answer instead of a LOOKUP."""
        return self.answers.saved

    @property
    def pending_sends(self) -> int:
        return self.sending.pending

    @property
    def stats(self) -> ClientStats:
        r, c = self.receiving.stats, self.secure.counters
        return ClientStats(
            malformed=self._malformed
            + self.links.malformed
            + self.link.malformed
            + self.relaying.malformed,
            unexpected=self._unexpected + self.link.unexpected + self.relaying.unexpected,
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
            and self.links.never_heard(event.to)
        ):
            event = SendFailed(handle=event.handle, to=event.to, reason=FailReason.NO_DIRECT_PATH)
        self._events.append(event)

    def _require_online(self) -> None:
        if not self.directory.online:
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
        cached = self.answers.get(to, now)
        if cached is not None:
            self.sending.looked_up(handle, cached, now)
        else:
            self.directory.lookup(to, SendLookup(handle, to), now)
        return handle

    def forget_answers(self) -> None:
        """The next send to every name asks the directory again (client/answers.py)."""
        self.answers.clear()

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
        d = self.directory
        if d.gone or d.state is State.CLOSING:  # (else _settle has nothing to do: no call)
            self._settle(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        # (Every poll runs this, most with nothing to send: what is empty is skipped without a
        # call, read from the parts' queues.)
        links = self.links
        out = links.outbox
        links.outbox = []
        # Acknowledgements of shown messages go out even after the session ended.
        if self.receiving.acks_due:
            for payload, key in self.receiving.datagrams(now):
                links.to_peer(payload, key, None, now, out)
        directory = self.directory
        if not directory.gone:
            if self.sending.outbound:
                for payload, key, addr in self.sending.datagrams(now):
                    links.to_peer(payload, key, addr, now, out)
            if links.rehints_due:
                self._ask_hints(now)
        # Last, so that the hint lookups the sends above asked for go in this flush.
        if directory.outbox or directory.requests.outbox:
            for payload, _ in directory.datagrams():
                self.link.to_server(payload, now, out)
        for _, addr in out:  # (a loop, not any(): this runs for every datagram)
            if addr[0] == RELAY_HOST:  # relay.is_relayed
                return self.relaying.wrap(out, now)
        return out

    def events(self) -> list[ClientEvent]:
        events = self._events
        if not events:  # (most polls)
            return []
        out = events[:]  # the parts hold ``self._events.append``: empty it in place
        events.clear()
        return out

    def next_timer(self) -> float | None:
        if self.directory.gone:
            return None
        punch = self.links.rendezvous.next_punch() if self.directory.online else None
        first = self._next_sweep  # the earliest of these (comparisons, not a list and min())
        for t in (self.directory.next_timer(), self.sending.next_timer(), punch):
            if t is not None and t < first:
                first = t
        return first

    def handle_timer(self, now: float) -> None:
        if self.directory.gone:
            return
        if now >= self._next_sweep:
            self._next_sweep = now + ENDPOINT_SWEEP_S
            self.secure.expire(now)
            self.receiving.expire(now)
            server_key = self.link.rekey_due(now)
            if server_key is not None:
                self.links.rekey(server_key, self.server, now)
            if self.directory.online:
                self.links.keepalive(now)
        if self.directory.online:
            self.links.punch(now)
        for answer in self.directory.handle_timer(now):
            self._route(answer, now)
        if not self.directory.gone:
            self.sending.handle_timer(now)
        self._settle(now)

    def _ask_hints(self, now: float) -> None:
        """Ask the directory again to hint each peer whose handshake stays unanswered
        (client/peerlinks.py)."""
        keys = self.links.rehints()
        if not keys or not self.directory.online:
            return
        for key in keys:
            name = self.links.claimed(key)
            if name is not None:
                self.directory.lookup(name, HintLookup(name, key), now)

    # -- the secure layer -------------------------------------------------------------------

    def _established(self, established: SecureSession, payload: bytes, now: float) -> None:
        """Our initiation was answered: confirm at once (the responder may send only then)."""
        key = established.remote_static
        session = self.secure.session(key, now)
        if session is None:
            return
        if self.link.established(key, payload, now):  # (the server's WELCOME is taken there)
            self.links.established(key, session, payload, now)

    def _incoming(self, incoming: IncomingHandshake, now: float) -> None:
        if not self.directory.online or incoming.remote_static == self.link.server_key:
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
        if key == self.link.server_key:
            self._from_server(msg, now)
        elif isinstance(msg, Data):
            claimed = self.links.claimed(key)
            if claimed is None or not self.directory.online:
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
            inner = self.relaying.unwrap(msg)
            if inner is not None:
                self.receive_datagram(inner[0], inner[1], now)
            return
        self._route(self.link.from_server(msg, now), now)

    def _hinted(self, hint: Punch, now: float) -> None:
        """The directory says ``hint.name`` looked us up to send (client/peerlinks.py)."""
        if not self.directory.ours(hint.token) or hint.key == self.identity.public:
            self._unexpected += 1
            return
        self.links.hinted(hint, now)

    # -- routing ----------------------------------------------------------------------------

    def _route(self, answer: LookupAnswer | None, now: float) -> None:
        if answer is None:
            return
        reply = answer.reply
        match answer.purpose:
            case SendLookup(handle=handle, name=asked):
                if reply is not None:
                    self.links.looked_up(reply)
                self.answers.note(asked, answer, now)
                self.sending.looked_up(handle, reply, now, wrong_name=answer.wrong_name)
            case HintLookup(key=key):
                if reply is not None and reply.key == key:
                    self.links.looked_up(reply)  # its endpoints, as the directory sees them now
            case VerifyLookup() as v:
                again = self.receiving.verified(v, reply, now, wrong_name=answer.wrong_name)
                if again is not None:
                    self.directory.lookup(again.name, again, now)
            case WhoisLookup(name=name, trust=trust, fingerprint=fingerprint):
                event = whois_answered(
                    name,
                    trust,
                    fingerprint,
                    answer,
                    pins=self.pins,
                    receiving=self.receiving,
                    links=self.links,
                    now=now,
                )
                self._events.append(event)

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
