"""The directory server as a sans-I/O object: it routes each datagram to the part that owns it.

* :mod:`chat_protocol.secure` - the secure layer: everything but the PING health probe arrives
  inside a Noise session, and the handshake and ping rates are token buckets
  (:mod:`chat_protocol.secure.ratelimit`);
* :mod:`chat_protocol.server.signin` - HELLO in, WELCOME or REFUSED out, and the registration
  a client's first TRANSPORT datagram confirms (names are bound to keys by
  :mod:`chat_protocol.server.bindings`);
* :mod:`chat_protocol.server.users` - the signed-in users, their state table, their expiry and
  the LIST pages;
* :mod:`chat_protocol.server.hints` and :mod:`chat_protocol.server.relay` - the PUNCH hints a
  LOOKUP to send triggers, and the relay's rules and budgets.

Requests must come on the session of the key that signed the name in, and carry its token;
anything else is dropped and counted.

A user's address (what LOOKUP hands out, and where the server's datagrams go) moves only with
a datagram that is the newest on the user's current session (``TransportReceived.newest``):
a datagram held back and re-sent from another source, on an older session, moves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from chat_protocol.const import (
    DEFAULT_TIMINGS,
    ENDPOINT_SWEEP_S,
    HANDSHAKES_PER_S_UNDER_LOAD,
    MAGIC,
    MAX_HANDSHAKES_PER_IP_PER_S,
    MAX_USERS_PER_IP,
    PINGS_PER_IP_PER_S,
    PONGS_PER_S,
    Timings,
)
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import ServerEvent
from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    SecureEndpoint,
    SendReply,
    TransportReceived,
)
from chat_protocol.secure.errors import LocalSecureError, SessionExpired
from chat_protocol.secure.handshake import IncomingHandshake
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.ratelimit import TOTAL, RateLimiter
from chat_protocol.server.bindings import MemoryNames, NameBindings
from chat_protocol.server.hints import HintLimiter
from chat_protocol.server.relay import RelayPolicy
from chat_protocol.server.signin import SignIns
from chat_protocol.server.stats import ServerStats
from chat_protocol.server.users import User, UserTable, UserTrigger
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import (
    Addr,
    Bye,
    ByeAck,
    Heartbeat,
    HeartbeatAck,
    Hello,
    ListUsers,
    Lookup,
    LookupReply,
    Message,
    Ping,
    Pong,
    Punch,
    Refused,
    Relay,
    Relayed,
    Shutdown,
    UnknownSession,
)
from chat_protocol.wire.names import name_key

_INIT_BYTE = bytes((PacketType.HANDSHAKE_INIT,))

Request = Heartbeat | Lookup | ListUsers | Bye | Relay
"""What a signed-in user asks the server, each carrying the user's token."""


class ServerCore:
    def __init__(
        self,
        *,
        identity: KeyPair,
        timings: Timings = DEFAULT_TIMINGS,
        random_bytes: Callable[[int], bytes] = os.urandom,
        max_users_per_ip: int = MAX_USERS_PER_IP,
        max_handshakes_per_ip_per_s: float = MAX_HANDSHAKES_PER_IP_PER_S,
        names: NameBindings | None = None,
    ) -> None:
        self.timings = timings
        self.names: NameBindings = MemoryNames() if names is None else names
        """Which key owns which name, across restarts (the shell gives its on-disk store)."""
        self.max_users_per_ip = max_users_per_ip
        self.max_handshakes_per_ip_per_s = max_handshakes_per_ip_per_s
        self._handshakes = RateLimiter(max_handshakes_per_ip_per_s)
        """The handshake rate per source IP."""
        self._proven = RateLimiter(max_handshakes_per_ip_per_s)
        """The same, for initiations that carried a valid cookie while their IP was over."""
        self._pings = RateLimiter(PINGS_PER_IP_PER_S)
        """PINGs per source IP ..."""
        self._pongs = RateLimiter(PONGS_PER_S, max_tracked=1)
        """... and PONGs from this server in all (one bucket, :data:`TOTAL`)."""
        self.hints = HintLimiter()
        """PUNCH hints per asker and per target (server/hints.py)."""
        self.relay = RelayPolicy()
        """The relay's rules and byte budgets (server/relay.py)."""
        self.identity = identity
        self._random_bytes = random_bytes
        # One session per signed-in user, mostly idle: lean ones keep their keys, not ~4.4 KB of
        # OpenSSL contexts each (a datagram on a session whose keys are not among the most
        # recently used costs about 1 us more, to build its context).
        self.secure = SecureEndpoint(static=identity, random_bytes=random_bytes, lean_sessions=True)
        self._events: list[ServerEvent] = []
        self.stats = ServerStats()
        self.table = UserTable(timings=timings, events=self._events, keys=self.secure)
        """The signed-in users (server/users.py)."""
        self.users = self.table.users
        """Name (case-folded) -> signed-in user."""
        self.sign_ins = SignIns(
            users=self.table,
            names=self.names,
            stats=self.stats,
            random_bytes=random_bytes,
            max_users_per_ip=max_users_per_ip,
        )
        """HELLOs answered, and registrations (server/signin.py)."""
        self._next_endpoint_sweep = 0.0
        self._handshake_window = (0.0, 0)
        """(start of the current second, initiations in it): the "under load" rate."""
        self._out: list[tuple[bytes, Addr]] = []

    # -- public API --

    def heartbeat_interval_s(self) -> float:
        """The interval clients are told to use: stretched so heartbeats stay under a rate cap."""
        return self.table.heartbeat_interval_s()

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.stats.datagrams += 1
        if data[:2] == MAGIC:
            self._plaintext(data, addr, now)
            return
        try:
            loaded = data[:1] == _INIT_BYTE and self._under_load(addr, now)
            got = self.secure.receive(data, addr, now, under_load=loaded)
        except MalformedDatagram:
            self.stats.malformed += 1
            return
        match got:
            case TransportReceived(session=session, plaintext=plaintext):
                self._transport(
                    session.remote_static, session.remote_addr, plaintext, now, got.newest
                )
            case HandshakeRequested(incoming=incoming):
                if loaded and not self._proven.allow(addr[0], now):
                    self.stats.rate_limited += 1  # a proven address over its rate: no work
                    return
                self._sign_in(incoming, now)
            case SendReply(datagram=datagram, addr=to):
                if data[:1] == _INIT_BYTE:
                    self.stats.cookies += 1
                self._out.append((datagram, to))
            case _:
                self.stats.unexpected += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[ServerEvent]:
        events = self._events
        if not events:  # (most polls)
            return []
        out = events[:]  # the user table holds ``self._events``: empty it in place
        events.clear()
        return out

    def next_timer(self) -> float | None:
        """The next expiry sweep: batched, at most one per ``sweep_interval_s``."""
        t = self._next_endpoint_sweep
        sweep = self.table.next_sweep()
        return t if sweep is None else min(t, sweep)

    def handle_timer(self, now: float) -> None:
        if now >= self._next_endpoint_sweep:
            self._next_endpoint_sweep = now + ENDPOINT_SWEEP_S
            self.secure.expire(now)
        self.stats.timeouts += self.table.sweep(now)

    def shutdown(self, now: float) -> None:
        """Tell every signed-in user the server is going away (several copies: UDP may lose one)."""
        for user in self.users.values():
            notice = encode(Shutdown(token=user.token))
            for _ in range(self.timings.shutdown_copies):
                self._send_raw(notice, user.static, now)

    # -- internals --

    def _under_load(self, addr: Addr, now: float) -> bool:
        """For an initiation (the caller checks its first byte): True when its source must
        first prove its address with a cookie (WireGuard's "under load"): the whole server is
        busy, or this IP spent its handshake rate. Forged sources can empty an IP's bucket, but
        not keep a real user there from answering a cookie; the cookie-proven get a bucket of
        their own (:meth:`_sign_in`)."""
        start, count = self._handshake_window
        if now - start >= 1.0:
            start, count = now, 0
        count += 1
        self._handshake_window = (start, count)
        over_ip = not self._handshakes.allow(addr[0], now)
        return over_ip or count > HANDSHAKES_PER_S_UNDER_LOAD

    def _plaintext(self, data: bytes, addr: Addr, now: float) -> None:
        """Only the health probe is plaintext: PING gets a PONG no larger than itself."""
        try:
            msg = decode(data)
        except MalformedDatagram:
            self.stats.malformed += 1
            return
        if isinstance(msg, Ping):
            if not (self._pings.allow(addr[0], now) and self._pongs.allow(TOTAL, now)):
                self.stats.rate_limited += 1
                return
            self._out.append((encode(Pong(nonce=msg.nonce)), addr))  # no user count
        else:
            self.stats.unexpected += 1

    def _send(self, msg: Message, user: User, now: float) -> None:
        self._send_raw(encode(msg), user.static, now)

    def _send_raw(self, plaintext: bytes, static: bytes, now: float) -> None:
        # No working session: the client rekeys, or times out and is removed. (try, not
        # contextlib.suppress: three calls fewer for every answer.)
        try:  # noqa: SIM105
            self._out.append(self.secure.send(static, plaintext, now))
        except (LocalSecureError, SessionExpired):
            pass

    def _transport(
        self, static: bytes, addr: Addr, plaintext: bytes, now: float, newest: bool
    ) -> None:
        user = self.table.user_of(static)
        if user is None:
            pending = self.sign_ins.take(static, now)
            if pending is None:
                self.stats.unauthenticated += 1
                self._forgotten(static, plaintext, now)
                return
            user = self.sign_ins.register(pending, static, addr, now)
            if user is None:
                return
        if newest:  # guard: newest-address =True
            user.addr = addr  # the newest authenticated source: NAT rebinding keeps the user
        if not plaintext:
            return  # the client's keepalive confirming its session
        try:
            msg = decode(plaintext)
        except MalformedDatagram:
            self.stats.malformed += 1
            return
        if not isinstance(msg, Request):
            self.stats.unexpected += 1
        elif msg.token != user.token:
            self.stats.unauthenticated += 1
        else:
            self._authenticated(msg, user, now)

    def _forgotten(self, static: bytes, plaintext: bytes, now: float) -> None:
        """A request on a working session whose user is gone (timed out while its client was
        paused or cut off, or signed out): UNKNOWN_SESSION, with the request's token, so that
        client ends at once (and says why) rather than after 5 s of unanswered heartbeats.
        The session authenticated the sender, and the answer is no larger than the request."""
        try:
            msg = decode(plaintext)
        except MalformedDatagram:
            return
        if isinstance(msg, Request):
            self.stats.unknown_session += 1
            self._send_raw(encode(UnknownSession(token=msg.token)), static, now)

    def _authenticated(self, msg: Request, user: User, now: float) -> None:
        if type(msg) is Relay:
            self._relay(msg, user, now)  # not a sign of life: heartbeats are
            return
        if type(msg) is not Bye:
            user.request()
        user.expires = self.table.expires_at(now)
        match msg:
            case Heartbeat():
                ms = round(self.heartbeat_interval_s() * 1000)
                self._send(HeartbeatAck(token=user.token, heartbeat_ms=ms), user, now)
            case Lookup():
                found = self.users.get(name_key(msg.name))
                if found is None:
                    reply = LookupReply(req_id=msg.req_id, name=msg.name, addr=None)
                else:
                    reply = LookupReply(
                        req_id=msg.req_id,
                        name=found.name,
                        addr=found.addr,
                        key=found.static,
                        local=found.local,
                    )
                self._send(reply, user, now)
                hint = found is not None and found is not user
                if not msg.punch:  # guard: hint-only-to-send
                    hint = False  # whois and a receiver's sender check tell nobody
                if hint and found is not None:
                    self._hint(user, found, now)
            case ListUsers():
                self._send(self.table.list_page(msg), user, now)
            case Bye():
                self._send(ByeAck(req_id=msg.req_id), user, now)
                self.table.remove(user, UserTrigger.BYE)

    def _relay(self, msg: Relay, user: User, now: float) -> None:
        """Forward a peer datagram to a signed-in user's session (server/relay.py)."""
        target = self.table.user_of(msg.to)
        if target is None or target is user or not self.relay.allow(user.static, msg.datagram, now):
            self.stats.relay_dropped += 1
            return
        self.stats.relayed += 1
        self.stats.relayed_bytes += len(msg.datagram)
        out = Relayed(token=target.token, sender=user.static, datagram=msg.datagram)
        self._send(out, target, now)

    def _hint(self, asker: User, target: User, now: float) -> None:
        """Tell ``target`` that ``asker`` will send to it, and where ``asker`` is (its own
        observed and declared endpoints only), within the hint rates."""
        if not self.hints.allow(asker.static, target.static, now):
            self.stats.hints_limited += 1
            return
        self.stats.hints += 1
        hint = Punch(
            token=target.token,
            name=asker.name,
            key=asker.static,
            addr=asker.addr,
            local=asker.local,
        )
        self._send(hint, target, now)

    def _sign_in(self, incoming: IncomingHandshake, now: float) -> None:
        """An initiation authenticated: its payload is the HELLO; answer in the response."""
        try:
            hello = decode(incoming.payload)
        except MalformedDatagram:
            self.stats.malformed += 1
            return
        if not isinstance(hello, Hello):
            self.stats.unexpected += 1
            return
        static = incoming.remote_static
        answer = self.sign_ins.answer(hello, static, incoming.addr, now)
        if answer is None:
            return  # the name store cannot tell now: the client's retry asks again
        if isinstance(answer, Refused):
            self.stats.refused += 1
        try:
            self._out.append((self.secure.accept(incoming, encode(answer), now), incoming.addr))
        except (MalformedDatagram, LocalSecureError):
            self.stats.malformed += 1
            return
        if isinstance(answer, Refused):
            self.secure.abandon(static)
