"""The directory server as a sans-I/O object.

The server's view of a user (new, online, gone) is the table :data:`USER_TRANSITIONS` below;
docs/PROTOCOL.md shows it row by row (tests/unit/test_docs.py checks that it shows exactly it).

Everything but the PING health probe arrives inside a secure session
(:mod:`chat_protocol.secure`): the HELLO rides in the client's Noise IK initiation and the
WELCOME in the response, so a name is bound to the static key that proved itself in the
handshake. A sign-in is kept only when the client's first TRANSPORT datagram arrives (that
proves it receives at its address); until then the server holds nothing for it but the bounded,
unconfirmed session. (The client says "signed in" only when a request on that session is
answered, so it is listed by then.) Requests must come on the session of the key that signed
the name in, and carry its token; anything else is dropped and counted.

A name belongs to the first key that signed it in, for good (:mod:`chat_protocol.server.bindings`:
the core asks an injected store, which the real server keeps on disk): a sign-in under a name
bound to another key is refused NAME_BOUND, whether the owner is online or not.

A user's address (what LOOKUP hands out, and where the server's datagrams go) moves only with
a datagram that is the newest on the user's current session (``TransportReceived.newest``):
a datagram held back and re-sent from another source, on an older session, moves nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chat_protocol.const import (
    DEFAULT_TIMINGS,
    ENDPOINT_SWEEP_S,
    EXPIRY_SLICE,
    HANDSHAKES_PER_S_UNDER_LOAD,
    LIST_PAGE_MAX_BYTES,
    LIST_REPLY_OVERHEAD_BYTES,
    MAGIC,
    MAX_HANDSHAKES_PER_IP_PER_S,
    MAX_HEARTBEAT_INTERVAL_S,
    MAX_UNCONFIRMED_SESSIONS,
    MAX_USERS,
    MAX_USERS_PER_IP,
    PINGS_PER_IP_PER_S,
    PONGS_PER_S,
    TOKEN_BYTES,
    UNCONFIRMED_SESSION_TIMEOUT_S,
    Timings,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import ServerEvent, UserJoined, UserLeft
from chat_protocol.machine import transition
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
from chat_protocol.server.bindings import MemoryNames, NameBindings, NameStoreError
from chat_protocol.server.hints import HintLimiter
from chat_protocol.server.relay import RelayPolicy
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.endpoints import private_endpoints
from chat_protocol.wire.messages import (
    Addr,
    Bye,
    ByeAck,
    Heartbeat,
    HeartbeatAck,
    Hello,
    ListReply,
    ListUsers,
    Lookup,
    LookupReply,
    Message,
    Ping,
    Pong,
    Punch,
    Refused,
    RefuseReason,
    Relay,
    Relayed,
    Shutdown,
    UnknownSession,
    Welcome,
)
from chat_protocol.wire.names import is_valid_name, name_key

Request = Heartbeat | Lookup | ListUsers | Bye | Relay
"""What a signed-in user asks the server, each carrying the user's token."""


class UserState(Enum):
    NEW = "new"
    ONLINE = "online"
    GONE = "gone"


class UserTrigger(Enum):
    SIGN_IN = "sign_in"
    REQUEST = "request"
    BYE = "bye"
    EXPIRED = "expired"


USER_TRANSITIONS: dict[UserState, dict[UserTrigger, UserState]] = {
    UserState.NEW: {UserTrigger.SIGN_IN: UserState.ONLINE},
    UserState.ONLINE: {
        UserTrigger.REQUEST: UserState.ONLINE,
        UserTrigger.BYE: UserState.GONE,
        UserTrigger.EXPIRED: UserState.GONE,
    },
    UserState.GONE: {},
}


@dataclass(slots=True)
class User:
    name: str
    key: str
    addr: Addr
    token: bytes
    expires: float
    static: bytes = b""
    """The static public key that signed this name in (the handshake proved it)."""
    ip: str = ""
    """The source IP it signed in from: its per-IP quota is charged there until it leaves."""
    local: tuple[Addr, ...] = ()
    """The private endpoints it declared at sign-in (private-range ones only)."""
    state: UserState = UserState.NEW
    filed: float = 0.0
    """The expiry it is filed under in the server's expiry heap (``expires`` when it was filed;
    changed only while it is out of the heap, so the heap's order holds)."""

    def move(self, trigger: UserTrigger) -> None:
        self.state = transition(USER_TRANSITIONS, self.state, trigger)

    def __lt__(self, other: User) -> bool:
        """The expiry heap's order: a user is its own entry (8 bytes, not a tuple)."""
        return self.filed < other.filed


@dataclass(slots=True)
class ServerStats(Counters):
    datagrams: int = 0
    malformed: int = 0
    """Dropped: did not authenticate (forged, replayed, stale) or could not be decoded."""
    unexpected: int = 0
    """Dropped: well-formed but not something a server accepts (peer DATA, replies, ...)."""
    unauthenticated: int = 0
    """Dropped: a session whose key has no user, or a token that is not that user's."""
    unknown_session: int = 0
    """Requests on a working session whose user is gone, answered UNKNOWN_SESSION."""
    sign_ins: int = 0
    refused: int = 0
    timeouts: int = 0
    cookies: int = 0
    """Initiations answered with a cookie reply (under load)."""
    rate_limited: int = 0
    """Dropped for rate: initiations of a cookie-proven IP over its handshake rate, PINGs over
    their per-IP or total rate."""
    name_store_errors: int = 0
    """Sign-ins left unanswered because the name store could not answer (the client retries)."""
    hints: int = 0
    """PUNCH hints sent (a lookup to send to a signed-in user)."""
    hints_limited: int = 0
    """Lookups that asked for a hint over the asker's or the target's hint rate."""
    relayed: int = 0
    """Peer datagrams forwarded by the relay (RELAY in, RELAYED out)."""
    relayed_bytes: int = 0
    relay_dropped: int = 0
    """RELAYs dropped: to no signed-in user (or to oneself), not a secure-layer packet a peer
    answers, or over the sender's or the relay's byte budget."""


@dataclass(frozen=True, slots=True)
class _PendingSignIn:
    name: str
    key: str
    token: bytes
    req_id: int
    at: float
    """When its initiation was answered: after UNCONFIRMED_SESSION_TIMEOUT_S it is void."""
    local: tuple[Addr, ...] = ()
    """The private endpoints its HELLO declared (filtered)."""


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
        self._per_ip: dict[str, int] = {}
        """Source IP -> users signed in (or pending) from it."""
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
        self.secure.keep = self._keeps
        self.users: dict[str, User] = {}
        self._by_static: dict[bytes, User] = {}
        self._pending: OrderedDict[bytes, _PendingSignIn] = OrderedDict()
        """Sign-ins answered but not yet confirmed by the client's first TRANSPORT datagram."""
        self._sorted_keys: list[str] = []
        self._expiry: list[User] = []
        """Every signed-in user (and removed ones until they come up), a heap by
        :attr:`User.filed`, lazily: a heartbeat only moves ``User.expires``; the sweep re-files
        a user it pops early (:meth:`_file`)."""
        self._last_sweep = float("-inf")
        self._next_endpoint_sweep = 0.0
        self._handshake_window = (0.0, 0)
        """(start of the current second, initiations in it): the "under load" rate."""
        self._out: list[tuple[bytes, Addr]] = []
        self._events: list[ServerEvent] = []
        self.stats = ServerStats()
        self._timeout_factor = timings.client_timeout_s / timings.heartbeat_interval_s

    # -- public API --

    def heartbeat_interval_s(self) -> float:
        """The interval clients are told to use: stretched so heartbeats stay under a rate cap."""
        t = self.timings
        stretched = max(t.heartbeat_interval_s, len(self.users) / t.max_heartbeats_per_s)
        return min(stretched, max(t.heartbeat_interval_s, MAX_HEARTBEAT_INTERVAL_S))

    def _full(self) -> bool:
        """No room for another user without stretching the liveness timers past their bound."""
        t = self.timings
        cap = t.max_heartbeats_per_s * max(t.heartbeat_interval_s, MAX_HEARTBEAT_INTERVAL_S)
        return len(self.users) >= min(MAX_USERS, cap)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.stats.datagrams += 1
        if data[:2] == MAGIC:
            self._plaintext(data, addr, now)
            return
        try:
            loaded = self._under_load(data, addr, now)
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
                if data[:1] == bytes((PacketType.HANDSHAKE_INIT,)):
                    self.stats.cookies += 1
                self._out.append((datagram, to))
            case _:
                self.stats.unexpected += 1

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[ServerEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        """The next expiry sweep: batched, at most one per ``sweep_interval_s``."""
        t = self._next_endpoint_sweep
        if self._expiry:
            t = min(t, max(self._expiry[0].filed, self._last_sweep + self.timings.sweep_interval_s))
        return t

    def handle_timer(self, now: float) -> None:
        if now >= self._next_endpoint_sweep:
            self._next_endpoint_sweep = now + ENDPOINT_SWEEP_S
            self.secure.expire(now)
        if self._expiry and self._expiry[0].filed > now:
            return
        self._last_sweep = now
        budget = EXPIRY_SLICE
        while self._expiry and self._expiry[0].filed <= now:
            if budget == 0:
                self._last_sweep = float("-inf")  # more are due: the next call comes at once
                return
            budget -= 1
            user = heapq.heappop(self._expiry)
            if self._by_static.get(user.static) is not user:
                continue  # signed out (or in again, as a new entry) since it was filed
            if user.expires <= now:
                self.stats.timeouts += 1
                self._remove(user, UserTrigger.EXPIRED)
            else:
                self._file(user, user.expires)

    def _file(self, user: User, expires: float) -> None:
        """Put ``user`` (not in the heap) into the expiry heap under ``expires``."""
        user.filed = expires
        heapq.heappush(self._expiry, user)

    def shutdown(self, now: float) -> None:
        """Tell every signed-in user the server is going away (several copies: UDP may lose one)."""
        for user in self.users.values():
            notice = encode(Shutdown(token=user.token))
            for _ in range(self.timings.shutdown_copies):
                self._send_raw(notice, user.static, now)

    # -- internals --

    def _keeps(self, static: bytes) -> bool:
        return static in self._by_static

    def _under_load(self, data: bytes, addr: Addr, now: float) -> bool:
        """For an initiation: True when its source must first prove its address with a cookie
        (WireGuard's "under load"): the whole server is busy, or this IP spent its handshake
        rate. Forged sources can empty an IP's bucket, but not keep a real user there from
        answering a cookie; the cookie-proven get a bucket of their own (:meth:`_sign_in`)."""
        if data[:1] != bytes((PacketType.HANDSHAKE_INIT,)):
            return False
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
            if not (
                self._pings.allow(addr[0], now) and self._pongs.allow(TOTAL, now)
            ):
                self.stats.rate_limited += 1
                return
            self._out.append((encode(Pong(nonce=msg.nonce)), addr))  # no user count
        else:
            self.stats.unexpected += 1

    def _send(self, msg: Message, user: User, now: float) -> None:
        self._send_raw(encode(msg), user.static, now)

    def _send_raw(self, plaintext: bytes, static: bytes, now: float) -> None:
        # No working session: the client rekeys, or times out and is removed.
        with contextlib.suppress(LocalSecureError, SessionExpired):
            self._out.append(self.secure.send(static, plaintext, now))

    def _transport(
        self, static: bytes, addr: Addr, plaintext: bytes, now: float, newest: bool
    ) -> None:
        user = self._by_static.get(static)
        if user is None:
            pending = self._pending.pop(static, None)
            if pending is not None and now - pending.at >= UNCONFIRMED_SESSION_TIMEOUT_S:
                pending = None
            if pending is None:
                self.stats.unauthenticated += 1
                self._forgotten(static, plaintext, now)
                return
            user = self._register(pending, static, addr, now)
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
        interval = self.heartbeat_interval_s()
        if type(msg) is Relay:
            self._relay(msg, user, now)  # not a sign of life: heartbeats are
            return
        if type(msg) is not Bye:
            user.move(UserTrigger.REQUEST)
        user.expires = now + interval * self._timeout_factor
        match msg:
            case Heartbeat():
                ms = round(interval * 1000)
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
                self._send(self._list_page(msg), user, now)
            case Bye():
                self._send(ByeAck(req_id=msg.req_id), user, now)
                self._remove(user, UserTrigger.BYE)

    def _relay(self, msg: Relay, user: User, now: float) -> None:
        """Forward a peer datagram to a signed-in user's session (server/relay.py)."""
        target = self._by_static.get(msg.to)
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
        answer: Message
        if not is_valid_name(hello.name):
            answer = Refused(req_id=hello.req_id, reason=RefuseReason.NAME_INVALID)
        else:
            key = name_key(hello.name)
            existing = self.users.get(key)
            ms = round(self.heartbeat_interval_s() * 1000)
            same = existing is not None and existing.static == static
            try:
                owner = self.names.lookup(key)
            except NameStoreError:
                self.stats.name_store_errors += 1
                return  # nothing accepted, nothing kept: the client's retry asks again
            if owner is not None and owner != static:  # guard: name-binding
                answer = Refused(req_id=hello.req_id, reason=RefuseReason.NAME_BOUND)
            elif same and existing is not None and existing.addr == incoming.addr:
                # Its WELCOME was lost, or it rekeys: the same key, from where it signed in, may
                # renew its own session. (Another process with the same home is refused.)
                answer = Welcome(
                    req_id=hello.req_id,
                    token=existing.token,
                    heartbeat_ms=ms,
                    observed=incoming.addr,
                )
            elif existing is not None or any(
                p.key == key and k != static and now - p.at < UNCONFIRMED_SESSION_TIMEOUT_S
                for k, p in self._pending.items()
            ):
                answer = Refused(req_id=hello.req_id, reason=RefuseReason.NAME_TAKEN)
            elif self._full():
                answer = Refused(req_id=hello.req_id, reason=RefuseReason.SERVER_FULL)
            elif self._per_ip.get(incoming.addr[0], 0) >= self.max_users_per_ip:
                answer = Refused(req_id=hello.req_id, reason=RefuseReason.TOO_MANY_FROM_ADDRESS)
            else:
                again = self._pending.get(static)
                token = again.token if again is not None else self._random_bytes(TOKEN_BYTES)
                self._pending[static] = _PendingSignIn(
                    name=hello.name,
                    key=key,
                    token=token,
                    req_id=hello.req_id,
                    at=now,
                    local=private_endpoints(hello.endpoints),
                )
                self._pending.move_to_end(static)
                while len(self._pending) > MAX_UNCONFIRMED_SESSIONS:
                    self._pending.popitem(last=False)
                answer = Welcome(
                    req_id=hello.req_id, token=token, heartbeat_ms=ms, observed=incoming.addr
                )
        if isinstance(answer, Refused):
            self.stats.refused += 1
        try:
            self._out.append((self.secure.accept(incoming, encode(answer), now), incoming.addr))
        except (MalformedDatagram, LocalSecureError):
            self.stats.malformed += 1
            return
        if isinstance(answer, Refused):
            self.secure.abandon(static)

    def _count_ip(self, ip: str) -> None:
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1

    def _release_ip(self, ip: str) -> None:
        left = self._per_ip.get(ip, 0) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def _register(
        self, pending: _PendingSignIn, static: bytes, addr: Addr, now: float
    ) -> User | None:
        if pending.key in self.users or self._per_ip.get(addr[0], 0) >= self.max_users_per_ip:
            self.stats.refused += 1  # taken meanwhile, or the quota filled meanwhile
            return None
        # The name is free or this key's: _sign_in checked its owner, and while this sign-in is
        # pending no other key's can be (it would be refused NAME_TAKEN).
        try:
            self.names.bind(pending.key, static)
        except NameStoreError:
            self.stats.name_store_errors += 1  # not signed in: its next heartbeat learns so
            return None
        # The quota is charged only now, for an address that proved it receives: forged
        # initiations from someone's address cannot use up that address's quota.
        self._count_ip(addr[0])
        expires = now + self.heartbeat_interval_s() * self._timeout_factor
        user = User(
            name=pending.name,
            key=pending.key,
            addr=addr,
            token=pending.token,
            expires=expires,
            static=static,
            ip=addr[0],
            local=pending.local,
        )
        user.move(UserTrigger.SIGN_IN)
        self.users[pending.key] = user
        self._by_static[static] = user
        bisect.insort(self._sorted_keys, pending.key)
        self._file(user, expires)
        self.stats.sign_ins += 1
        self._events.append(UserJoined(name=user.name, addr=addr))
        return user

    def _remove(self, user: User, trigger: UserTrigger) -> None:
        user.move(trigger)
        self._release_ip(user.ip)
        timed_out = trigger is UserTrigger.EXPIRED
        del self.users[user.key]
        del self._by_static[user.static]
        i = bisect.bisect_left(self._sorted_keys, user.key)
        del self._sorted_keys[i]
        self._events.append(UserLeft(name=user.name, addr=user.addr, timed_out=timed_out))

    def _list_page(self, msg: ListUsers) -> ListReply:
        start = bisect.bisect_right(self._sorted_keys, name_key(msg.after)) if msg.after else 0
        names: list[str] = []
        size = LIST_REPLY_OVERHEAD_BYTES
        i = start
        while i < len(self._sorted_keys):
            name = self.users[self._sorted_keys[i]].name
            size += 1 + len(name.encode())
            if size > LIST_PAGE_MAX_BYTES or len(names) >= 0xFFFF:
                break
            names.append(name)
            i += 1
        return ListReply(
            req_id=msg.req_id,
            total=len(self.users),
            more=i < len(self._sorted_keys),
            names=tuple(names),
        )
