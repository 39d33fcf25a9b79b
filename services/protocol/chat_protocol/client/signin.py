"""Signing in to the directory server over the secure layer: the one implementation of it.

:class:`ServerLink` is the secure side of a client's link to its server: the server's key (pinned,
learned with a KEY_REQUEST and checked against a fingerprint, or refused), the HELLO riding in each
initiation (every retry a new one), a COOKIE_REPLY answered at once (at most once per retry
interval), the WELCOME out of the response, and every later request encrypted on the session. The
state machine it serves is :class:`~chat_protocol.client.directory.DirectorySession`'s
(signing_in -> registering -> online: the HEARTBEAT sent on the new session registers the user,
its answer says so).

:class:`~chat_protocol.client.core.ClientCore` routes its server's datagrams through a
:class:`ServerLink`, which it takes from a :class:`ServerSignIn` made over its own endpoint.
:class:`ServerSignIn` is the sign-in as a sans-I/O object with the core's five methods, for callers
that need a signed-in session and nothing else (the load tools' simulated users, bench/): a
:class:`SecureEndpoint`, a :class:`DirectorySession` and a :class:`ServerLink`, about 2 KB while
signing in; :meth:`ServerSignIn.session` and :attr:`DirectorySession.token` are what a signed-in
user keeps.
"""

from __future__ import annotations

from collections.abc import Callable

from chat_protocol.client.directory import DirectorySession, LookupAnswer, State
from chat_protocol.const import DEFAULT_TIMINGS, Timings
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import ClientEvent, ServerKeyPinned
from chat_protocol.secure.endpoint import (
    KeyReceived,
    RetryWithCookie,
    SecureEndpoint,
    SessionEstablished,
    TransportReceived,
)
from chat_protocol.secure.identity import fingerprint_matches
from chat_protocol.secure.noise import KeyPair
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.codec import decode
from chat_protocol.wire.messages import Addr, Message


class ServerLink:
    """The secure side of one client's link to its directory server (see the module's doc).

    ``clock_offset_s`` maps ``now`` to wall-clock seconds (the handshake timestamps).
    :attr:`malformed` and :attr:`unexpected` count what it dropped."""

    __slots__ = (
        "_cookie_retry_after",
        "_emit",
        "clock_offset_s",
        "directory",
        "malformed",
        "secure",
        "server",
        "server_fingerprint",
        "server_key",
        "unexpected",
    )

    def __init__(
        self,
        *,
        secure: SecureEndpoint,
        directory: DirectorySession,
        server_key: bytes | None,
        server_fingerprint: bytes | None,
        clock_offset_s: float,
        emit: Callable[[ClientEvent], None],
    ) -> None:
        self.secure = secure
        self.directory = directory
        self.server = directory.server
        self.server_key = server_key
        self.server_fingerprint = server_fingerprint
        self.clock_offset_s = clock_offset_s
        self._emit = emit
        self._cookie_retry_after = 0.0
        self.malformed = 0
        self.unexpected = 0

    def timestamp(self, now: float) -> int:
        """The handshake timestamp for ``now`` (nanoseconds of wall-clock time)."""
        return int((now + self.clock_offset_s) * 1e9)

    def to_server(self, payload: bytes, now: float, out: list[tuple[bytes, Addr]]) -> None:
        """Append the datagram carrying ``payload`` (a request of the directory session) to
        ``out``: a KEY_REQUEST while the server's key is unknown, the HELLO's initiation while
        signing in, else the payload encrypted on the session."""
        key = self.server_key
        if key is None:
            out.append((self.secure.request_key(self.server), self.server))
            return
        session = self.secure.session(key, now)
        if session is not None:
            out.append((session.encrypt(payload, now), session.remote_addr))
        elif self.directory.state is State.SIGNING_IN:
            # Sign-in: the HELLO rides in the handshake; each retry is a new initiation.
            init = self.secure.connect(key, payload, now, timestamp=self.timestamp(now))
            out.append((init, self.server))
        # Anything else before the session exists is dropped; its request is retried.

    def rekey_due(self, now: float) -> bytes | None:
        """The server's key, if we are online and the session with it is gone or due for a
        rekey (the caller starts the handshake); else None."""
        key = self.server_key
        if key is None or not self.directory.online:
            return None
        session = self.secure.session(key, now)
        return key if session is None or session.needs_rekey(now) else None

    def key_learned(self, key: bytes, src: Addr, now: float) -> None:
        """A KEY_REPLY: pin the server's key (or refuse it: not the fingerprint given)."""
        if src != self.server or self.server_key is not None:
            self.unexpected += 1
            return
        if self.server_fingerprint is not None and not fingerprint_matches(
            key, self.server_fingerprint
        ):
            self.directory.refuse_server_key()
            return
        self.server_key = key
        if self.server_fingerprint is None:
            self._emit(ServerKeyPinned(server=self.server, key=key))
        self.directory.resend()

    def cookie(self, key: bytes, now: float) -> None:
        """A COOKIE_REPLY from ``key``'s holder: while signing in to the server, sign in again at
        once (the new initiation carries the cookie), not a retry interval later; at most once per
        interval, so cookie replies (anyone who saw our initiation can forge one) cannot make us
        send more than one initiation per retry interval extra."""
        signing_in = self.directory.state is State.SIGNING_IN
        if signing_in and key == self.server_key and now >= self._cookie_retry_after:
            self._cookie_retry_after = now + self.directory.timings.request_retry_s
            self.directory.resend()

    def established(self, key: bytes, payload: bytes, now: float) -> bool:
        """Our initiation to ``key`` was answered with ``payload``: the WELCOME (or REFUSED) if
        it is the server's and we are signing in. True if the caller should confirm the session
        as any other (a rekey of the server's, or a peer's); False if that is done here (welcomed:
        the directory's HEARTBEAT, queued, confirms it) or must not be (refused)."""
        if key != self.server_key:
            return True
        if payload and self.directory.state is State.SIGNING_IN:
            try:
                msg = decode(payload)
            except MalformedDatagram:
                self.malformed += 1
            else:
                self.from_server(msg, now)  # (no lookup is pending before online: no answer)
        if self.directory.state is State.REGISTERING:
            return False
        return self.directory.online

    def from_server(self, msg: Message, now: float) -> LookupAnswer | None:
        """A message on the server's session, for the directory session; a lookup's answer is
        returned for the caller to route."""
        answer = self.directory.on_message(msg, now)
        if self.directory.last_unexpected:
            self.unexpected += 1
        return answer


class ServerSignIn:
    """One user's sign-in to the directory server and nothing else, sans-I/O: the core's
    :class:`DirectorySession` and :class:`ServerLink` over a :class:`SecureEndpoint` of its own.

    Drive it like a core: :meth:`connect`, then :meth:`receive_datagram`,
    :meth:`datagrams_to_send`, :meth:`next_timer` / :meth:`handle_timer`. :attr:`state` goes
    signing_in -> registering -> online (or gone: :attr:`DirectorySession.ended` says why).
    Once online, :meth:`session` and :attr:`token` are the signed-in user; the directory session
    keeps heartbeating while it is driven."""

    __slots__ = ("_events", "directory", "link", "secure")

    def __init__(
        self,
        *,
        name: str,
        server: Addr,
        identity: KeyPair,
        server_key: bytes | None = None,
        server_fingerprint: bytes | None = None,
        clock_offset_s: float = 0.0,
        timings: Timings = DEFAULT_TIMINGS,
        random_bytes: Callable[[int], bytes],
        secure: SecureEndpoint | None = None,
        emit: Callable[[ClientEvent], None] | None = None,
        endpoints: tuple[Addr, ...] = (),
    ) -> None:
        """``secure``: the endpoint to sign in over (a client's, which also serves its peers;
        default: one of its own); ``emit``: where its events go (default: :meth:`events`);
        ``endpoints``: the private endpoints the HELLO declares."""
        self._events: list[ClientEvent] = []
        if emit is None:
            emit = self._events.append
        if secure is None:
            secure = SecureEndpoint(static=identity, random_bytes=random_bytes)
        self.secure = secure
        self.directory = DirectorySession(
            name=name,
            server=server,
            timings=timings,
            random_bytes=random_bytes,
            emit=emit,
            endpoints=endpoints,
        )
        self.link = ServerLink(
            secure=secure,
            directory=self.directory,
            server_key=server_key,
            server_fingerprint=server_fingerprint,
            clock_offset_s=clock_offset_s,
            emit=emit,
        )

    @property
    def state(self) -> State:
        return self.directory.state

    @property
    def online(self) -> bool:
        return self.directory.online

    @property
    def token(self) -> bytes:
        return self.directory.token

    def session(self, now: float) -> SecureSession | None:
        """The session with the server, once the handshake is done."""
        key = self.link.server_key
        return None if key is None else self.secure.session(key, now)

    def handshake_index(self) -> int | None:
        """The receiver index the server's answers to our handshake (and, after it, every
        TRANSPORT datagram of the session) carry; None before the first initiation."""
        key = self.link.server_key
        if key is None:
            return None
        initiator = self.secure.initiating(key)
        if initiator is not None:
            return initiator.local_index
        session = self.secure.session(key, 0.0)
        return None if session is None else session.local_index

    def connect(self, now: float) -> None:
        self.directory.connect(now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if self.directory.gone:
            return
        try:
            got = self.secure.receive(data, addr, now)
        except MalformedDatagram:
            self.link.malformed += 1
            return
        match got:
            case TransportReceived(session=session, plaintext=plaintext):
                if session.remote_static != self.link.server_key:
                    self.link.unexpected += 1
                elif plaintext:
                    try:
                        msg = decode(plaintext)
                    except MalformedDatagram:
                        self.link.malformed += 1
                    else:
                        self.link.from_server(msg, now)
            case SessionEstablished(session=session, payload=payload):
                self.link.established(session.remote_static, payload, now)
            case KeyReceived(key=key, addr=src):
                self.link.key_learned(key, src, now)
            case RetryWithCookie(remote_static=key):
                self.link.cookie(key, now)
            case _:
                self.link.unexpected += 1  # no peers: nobody else's handshake is answered

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out: list[tuple[bytes, Addr]] = []
        for payload, _ in self.directory.datagrams():
            self.link.to_server(payload, now, out)
        return out

    def events(self) -> list[ClientEvent]:
        out = self._events[:]
        self._events.clear()
        return out

    def next_timer(self) -> float | None:
        return self.directory.next_timer()

    def handle_timer(self, now: float) -> None:
        self.directory.handle_timer(now)  # (no lookups are asked here: no answers to route)
