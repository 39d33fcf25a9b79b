"""Simulated users of the secure protocol, signed in by the core's own sign-in (no event loop).

The load processes (bench.loadgen, bench.users, bench.liveness's observer) sign in many users,
each through :class:`chat_protocol.client.signin.ServerSignIn`: the client's own sign-in (its
:class:`~chat_protocol.client.directory.DirectorySession` and
:class:`~chat_protocol.client.signin.ServerLink`, which ClientCore routes through too), so the
datagrams are a real client's: HANDSHAKE_INIT carrying the HELLO (each retry a new one; a
COOKIE_REPLY answered at once), the WELCOME in the response, then a HEARTBEAT on the new session
whose answer says the server registered the user. Once a user is online only its
:class:`SignedIn` is kept (its session and token, a few hundred bytes and the session's AEAD
contexts); the sign-in object (about 2 KB) is dropped.

:class:`SignIns` is that phase for many users at once, as a sans-I/O stepper: :meth:`SignIns.step`
gives the datagrams to send now (each from one user's address, to the server),
:meth:`SignIns.receive` takes an answer, :meth:`SignIns.next_timer` says when to step again. No
sockets and no clock inside; :func:`sign_in` and the load processes drive it.

Every user's handshake index (chosen by its secure endpoint, unique among this process's users:
:class:`SignIns` draws again on a collision) is in bytes 1-4 of every COOKIE_REPLY and TRANSPORT
and bytes 5-8 of every RESPONSE, so an answer names its user before anything is decrypted:
:func:`receiver_index`.

:func:`local_pair` gives a session pair made in memory, for the echo baselines: the load side then
encrypts and decrypts exactly as against the chat-server, while the echo server does no crypto.
"""

from __future__ import annotations

import heapq
import os
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from chat_protocol.client.directory import State
from chat_protocol.client.signin import ServerSignIn
from chat_protocol.const import DEFAULT_TIMINGS, Timings
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import SignInFailed
from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    KeyReceived,
    SecureEndpoint,
    SessionEstablished,
)
from chat_protocol.secure.noise import KeyPair, RandomBytes
from chat_protocol.secure.packets import PacketType
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.messages import Addr

T = TypeVar("T")

RESPONSE = PacketType.HANDSHAKE_RESPONSE.value
COOKIE = PacketType.COOKIE_REPLY.value
TRANSPORT = PacketType.TRANSPORT.value
_RECEIVER = struct.Struct("!I")

SIGN_IN_TIMINGS = replace(DEFAULT_TIMINGS, request_retry_s=1.0, request_timeout_s=10.0)
"""The client's timers, but a sign-in handshake unanswered for 1 s (not 0.4 s) is started over
(a load process keeps many in flight; the server answers a few thousand a second, and each retry
costs it the same again), and one is given up (then started anew) after 10 s."""


def receiver_index(datagram: bytes) -> int:
    """The receiver index of a HANDSHAKE_RESPONSE (bytes 5-8), COOKIE_REPLY or TRANSPORT
    (bytes 1-4): the local index of the user it is for. -1 for anything else."""
    kind = datagram[0] if datagram else 0
    if kind in (TRANSPORT, COOKIE):
        return int(_RECEIVER.unpack_from(datagram, 1)[0]) if len(datagram) >= 5 else -1
    if kind == RESPONSE:
        return int(_RECEIVER.unpack_from(datagram, 5)[0]) if len(datagram) >= 9 else -1
    return -1


def ask(
    server: Addr,
    request: Callable[[], tuple[bytes, Callable[[bytes], T | None]]],
    *,
    timeout_s: float,
    retry_s: float,
    bind_host: str | None = None,
) -> T | None:
    """Send ``request()``'s datagram to ``server`` every ``retry_s`` (a fresh one each time)
    until its matcher accepts a datagram from the server (its answer, returned) or ``timeout_s``
    passed (None). Datagrams from elsewhere, and those the matcher returns None for, are
    ignored; so is anything that does not parse (the matcher raises MalformedDatagram)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if bind_host is not None:
            s.bind((bind_host, 0))
        s.settimeout(retry_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            datagram, match = request()
            s.sendto(datagram, server)
            try:
                while True:
                    data, src = s.recvfrom(2048)
                    if (src[0], src[1]) != server:
                        continue
                    try:
                        answer = match(data)
                    except MalformedDatagram:
                        continue
                    if answer is not None:
                        return answer
            except TimeoutError:
                continue
    finally:
        s.close()
    return None


def server_key(server: Addr, *, timeout_s: float = 5.0, bind_host: str | None = None) -> bytes:
    """The server's static key from a KEY_REQUEST (the secure endpoint's own, retried every
    0.25 s until ``timeout_s``). Unauthenticated, as on any first contact: the benchmark trusts
    its own server, and its users then sign in with the key pinned."""
    endpoint = SecureEndpoint(static=KeyPair.generate(os.urandom), random_bytes=os.urandom)

    def request() -> tuple[bytes, Callable[[bytes], bytes | None]]:
        def match(data: bytes) -> bytes | None:
            got = endpoint.receive(data, server, time.monotonic())
            return got.key if isinstance(got, KeyReceived) else None

        return endpoint.request_key(server), match

    key = ask(server, request, timeout_s=timeout_s, retry_s=0.25, bind_host=bind_host)
    if key is not None:
        return key
    raise TimeoutError(f"no KEY_REPLY from {server[0]}:{server[1]} within {timeout_s} s")


@dataclass(slots=True)
class SignedIn:
    """A signed-in user: its session with the server, what the server said, its public key."""

    session: SecureSession
    token: bytes
    heartbeat_s: float
    public: bytes
    """The user's static public key (what the directory hands out for its name)."""
    index: int
    """Its handshake index: the receiver index of every datagram of its session."""


class SignInRefused(RuntimeError):
    pass


@dataclass(slots=True)
class SignInCounters:
    initiations: int = 0
    """Sign-ins started (each its first initiation)."""
    timers: int = 0
    """Timers handled (a retry: a new initiation, or the registering HEARTBEAT again)."""
    resent: int = 0
    """Initiations started over (unanswered for the retry interval)."""
    cookies: int = 0
    """COOKIE_REPLYs received (the server under load: the initiation again, with the cookie)."""
    restarted: int = 0
    """Sign-ins given up after SIGN_IN_TIMINGS.request_timeout_s and started anew."""
    refused: int = 0
    stale: int = 0
    """Answers dropped by the secure layer (to an attempt since started over, say)."""
    other: int = 0
    """Datagrams for no user signing in."""
    collisions: int = 0
    """Handshake indices drawn again (taken by another user of this process)."""


@dataclass(slots=True)
class _User:
    name: str
    attempt: int = 0
    core: ServerSignIn | None = None
    index: int = -1


@dataclass(slots=True)
class SignIns:
    """The sign-in phase of many users, as a stepper (see the module's doc).

    :meth:`add` queues user ``k`` (any hashable number the driver uses for its address) under
    ``name``. Each :meth:`step` starts at most ``per_step`` sign-ins, keeps at most ``window``
    in flight, handles the due timers of those in flight, and returns ``(datagram, k)`` pairs:
    send ``datagram`` from user ``k``'s address to the server. :meth:`receive` takes a datagram
    from the server. Users who are done come out of :meth:`signed_in`. A user refused before it
    ever signed in raises :class:`SignInRefused` (a benchmark with a bug, not a load to go on
    with); one refused after (signing in again, its old session not yet expired there) and one
    whose sign-in timed out starts over, under ``name.N``, with a new key.
    """

    server: Addr
    key: bytes
    window: int = 128
    per_step: int = 8
    timings: Timings = SIGN_IN_TIMINGS
    random_bytes: RandomBytes = os.urandom
    clock_offset_s: float = 0.0
    """Maps ``now`` to wall-clock seconds, for the handshake timestamps (as ClientCore's)."""
    taken: dict[int, int] = field(default_factory=dict)
    """Handshake index -> user, of every user this process holds (in flight or signed in):
    shared with the driver, which removes a user's entry when it drops the user."""
    counters: SignInCounters = field(default_factory=SignInCounters)
    _queue: deque[int] = field(default_factory=deque)
    _users: dict[int, _User] = field(default_factory=dict)
    _flight: dict[int, _User] = field(default_factory=dict)
    _timers: list[tuple[float, int]] = field(default_factory=list)
    _done: list[tuple[int, SignedIn]] = field(default_factory=list)
    _again: set[int] = field(default_factory=set)

    def add(self, k: int, name: str, *, again: bool = False) -> None:
        """Queue user ``k`` to sign in as ``name`` (``again``: it was signed in before)."""
        self._users[k] = _User(name=name)
        if again:
            self._again.add(k)
        self._queue.append(k)

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    @property
    def waiting(self) -> int:
        """Users queued or in flight."""
        return len(self._queue) + len(self._flight)

    def signed_in(self) -> list[tuple[int, SignedIn]]:
        out, self._done = self._done, []
        return out

    def next_timer(self) -> float | None:
        if self._queue and len(self._flight) < self.window:
            return 0.0
        return self._timers[0][0] if self._timers else None

    def step(self, now: float) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        budget = self.per_step
        while self._timers and self._timers[0][0] <= now and budget:
            t, k = heapq.heappop(self._timers)
            user = self._flight.get(k)
            if user is None or user.core is None or user.core.next_timer() != t:
                continue  # done, or superseded
            self.counters.timers += 1
            budget -= 1
            if user.core.state is State.SIGNING_IN:
                self.counters.resent += 1
            user.core.handle_timer(now)
            self._drain(k, user, now, out)
        while self._queue and len(self._flight) < self.window and budget:
            k = self._queue.popleft()
            budget -= 1
            self._start(k, self._users[k], now, out)
        return out

    def receive(self, datagram: bytes, addr: Addr, now: float) -> list[tuple[bytes, int]]:
        """A datagram from the server; what to send at once in answer (a new initiation after a
        COOKIE_REPLY, the HEARTBEAT that registers a welcomed user)."""
        out: list[tuple[bytes, int]] = []
        k = self.taken.get(receiver_index(datagram))
        user = None if k is None else self._flight.get(k)
        if k is None or user is None or user.core is None:
            self.counters.other += 1
            return out
        core = user.core
        if datagram[0] == COOKIE:
            self.counters.cookies += 1
        before = core.link.malformed
        core.receive_datagram(datagram, addr, now)
        self.counters.stale += core.link.malformed - before
        self._drain(k, user, now, out)
        return out

    def _start(self, k: int, user: _User, now: float, out: list[tuple[bytes, int]]) -> None:
        while True:
            core = ServerSignIn(
                name=user.name + (f".{user.attempt}" if user.attempt else ""),
                server=self.server,
                identity=KeyPair.generate(self.random_bytes),
                server_key=self.key,
                clock_offset_s=self.clock_offset_s,
                timings=self.timings,
                random_bytes=self.random_bytes,
            )
            core.connect(now)
            first = core.datagrams_to_send(now)
            index = core.handshake_index()
            assert index is not None  # (the key is pinned: the first datagram is an initiation)
            if index not in self.taken:
                break
            self.counters.collisions += 1
        self.counters.initiations += 1
        user.core, user.index = core, index
        self.taken[index] = k
        self._flight[k] = user
        out.extend((d, k) for d, _ in first)
        self._arm(k, core)

    def _arm(self, k: int, core: ServerSignIn) -> None:
        t = core.next_timer()
        if t is not None:
            heapq.heappush(self._timers, (t, k))

    def _drain(self, k: int, user: _User, now: float, out: list[tuple[bytes, int]]) -> None:
        core = user.core
        assert core is not None
        out.extend((d, k) for d, _ in core.datagrams_to_send(now))
        state = core.state
        if state is State.ONLINE:
            session = core.session(now)
            assert session is not None
            self._done.append(
                (
                    k,
                    SignedIn(
                        session=session,
                        token=core.token,
                        heartbeat_s=core.directory.heartbeat_s,
                        public=core.secure.static.public,
                        index=user.index,
                    ),
                )
            )
            del self._flight[k], self._users[k]
            self._again.discard(k)
        elif state is State.GONE:
            del self._flight[k]
            self.taken.pop(user.index, None)
            ended = core.directory.ended
            refused = isinstance(ended, SignInFailed) and ended.refused is not None
            if refused and k not in self._again:
                self.counters.refused += 1
                raise SignInRefused(f"sign-in of {user.name} refused: {ended}")
            if refused:
                self.counters.refused += 1
            else:
                self.counters.restarted += 1
            user.attempt += 1
            user.core = None
            self._queue.append(k)
        else:
            self._arm(k, core)


def sign_in(sock: socket.socket, name: str, key: bytes, *, timeout_s: float = 5.0) -> SignedIn:
    """Sign ``name`` in over ``sock`` (connected to the server, blocking): :class:`SignIns` for
    one user, driven by a loop on the socket."""
    peer = sock.getpeername()
    server: Addr = (peer[0], peer[1])
    phase = SignIns(
        server=server, key=key, window=1, clock_offset_s=time.time() - time.monotonic()
    )
    phase.add(0, name)
    deadline = time.monotonic() + timeout_s
    old = sock.gettimeout()
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            for datagram, _ in phase.step(now):
                sock.send(datagram)
            done = phase.signed_in()
            if done:
                return done[0][1]
            t = phase.next_timer()
            sock.settimeout(max(0.001, min(deadline, t if t is not None else deadline) - now))
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            for datagram, _ in phase.receive(data, server, time.monotonic()):
                sock.send(datagram)
            done = phase.signed_in()
            if done:
                return done[0][1]
    finally:
        sock.settimeout(old)
    raise TimeoutError(f"{name} could not sign in within {timeout_s} s")


def local_pair(
    now: float, random_bytes: RandomBytes = os.urandom
) -> tuple[SecureSession, SecureSession]:
    """(sender, receiver): two ends of one session made at ``now`` by a handshake in memory. What
    the sender encrypts, the receiver decrypts; the echo baselines use it so that the load side
    does the same crypto as against the chat-server."""
    a_addr: Addr = ("127.0.0.1", 1)
    b_addr: Addr = ("127.0.0.1", 2)
    a = SecureEndpoint(static=KeyPair.generate(random_bytes), random_bytes=random_bytes)
    b = SecureEndpoint(static=KeyPair.generate(random_bytes), random_bytes=random_bytes)
    init = a.connect(b.static.public, b"", now, timestamp=time.time_ns())
    requested = b.receive(init, a_addr, now)
    assert isinstance(requested, HandshakeRequested)
    established = a.receive(b.accept(requested.incoming, b"", now), b_addr, now)
    assert isinstance(established, SessionEstablished)
    b.receive(established.session.encrypt(b"", now), a_addr, now)
    receiver = b.session(a.static.public, now)
    assert receiver is not None
    return established.session, receiver
