"""Simulated users of the secure protocol, for the load generators (no ClientCore, no event loop).

The load processes (bench.loadgen, bench.users, bench.liveness's observer) sign in as many users
as a real client would, but with the least state per user: a key pair and an
:class:`~chat_protocol.secure.handshake.Initiator` while the handshake is in flight, then only the
:class:`~chat_protocol.secure.session.SecureSession` it produced. The flow is ClientCore's:

1. the server's static key, from a KEY_REQUEST (:func:`server_key`; a real client pins it);
2. HANDSHAKE_INIT carrying ``encode(Hello(req_id, name))`` (:meth:`Handshake.initiation`); a
   COOKIE_REPLY (the server is under load) is answered with a new initiation carrying the cookie;
3. HANDSHAKE_RESPONSE carrying ``encode(Welcome(...))`` -> :class:`SignedIn`;
4. an empty TRANSPORT datagram at once (:meth:`SignedIn.keepalive`): the server registers the
   user only then;
5. requests as ``session.encrypt(encode(msg), now)``.

Every user's Initiator index is chosen by the caller and unique within its process, so a reply's
receiver index (bytes 1-4 of every RESPONSE, COOKIE_REPLY and TRANSPORT) names the user it is for
before anything is decrypted: :func:`receiver_index`.

:func:`local_pair` gives a session pair made in memory, for the echo baselines: the load side then
encrypts and decrypts exactly as against the chat-server, while the echo server does no crypto.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.endpoint import HandshakeRequested, SecureEndpoint, SessionEstablished
from chat_protocol.secure.handshake import Initiator
from chat_protocol.secure.noise import KeyPair, RandomBytes
from chat_protocol.secure.packets import (
    CookieReply,
    HandshakeResponse,
    KeyReply,
    PacketType,
    build_key_request,
    parse_packet,
)
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import Addr, Hello, Refused, Welcome

T = TypeVar("T")

RESPONSE = PacketType.HANDSHAKE_RESPONSE.value
COOKIE = PacketType.COOKIE_REPLY.value
TRANSPORT = PacketType.TRANSPORT.value
_RECEIVER = struct.Struct("!I")


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
    """The server's static key from a KEY_REQUEST (retried every 0.25 s until ``timeout_s``).

    Unauthenticated, as on any first contact: the benchmark trusts its own server."""

    def request() -> tuple[bytes, Callable[[bytes], bytes | None]]:
        nonce = os.urandom(8)

        def match(data: bytes) -> bytes | None:
            packet = parse_packet(data)
            return packet.key if isinstance(packet, KeyReply) and packet.nonce == nonce else None

        return build_key_request(nonce), match

    key = ask(server, request, timeout_s=timeout_s, retry_s=0.25, bind_host=bind_host)
    if key is not None:
        return key
    raise TimeoutError(f"no KEY_REPLY from {server[0]}:{server[1]} within {timeout_s} s")


@dataclass(slots=True)
class SignedIn:
    """A signed-in user: its session with the server and what the WELCOME said."""

    session: SecureSession
    token: bytes
    heartbeat_s: float

    def keepalive(self, now: float) -> bytes:
        """The empty TRANSPORT datagram that confirms the session (the server registers the
        user on it)."""
        return self.session.encrypt(b"", now)


class SignInRefused(RuntimeError):
    pass


class Handshake:
    """One user's sign-in in flight: a fresh key pair, an Initiator towards the server's key,
    and the HELLO its initiations carry."""

    __slots__ = ("hello", "initiator", "name", "public", "tries")

    def __init__(
        self,
        *,
        name: str,
        server_key: bytes,
        index: int,
        req_id: int = 1,
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.name = name
        static = KeyPair.generate(random_bytes)
        self.public = static.public
        """The user's static public key (what the directory hands out for ``name``)."""
        self.initiator = Initiator(
            static=static,
            remote_static=server_key,
            local_index=index,
            random_bytes=random_bytes,
        )
        self.hello = encode(Hello(req_id=req_id, name=name))
        self.tries = 0

    def initiation(self, now: float) -> bytes:
        """A new HANDSHAKE_INIT (fresh ephemeral key; with the cookie if one came)."""
        self.tries += 1
        return self.initiator.initiation(self.hello, now, timestamp=time.time_ns())

    def receive(self, datagram: bytes, addr: Addr, now: float) -> bytes | SignedIn:
        """A COOKIE_REPLY gives the initiation to send now; a HANDSHAKE_RESPONSE the
        :class:`SignedIn` user. Raises :class:`MalformedDatagram` (a stale response to an
        earlier attempt, say: drop it) or :class:`SignInRefused`."""
        packet = parse_packet(datagram)
        if isinstance(packet, CookieReply):
            self.initiator.handle_cookie_reply(packet, now)
            return self.initiation(now)
        if not isinstance(packet, HandshakeResponse):
            raise MalformedDatagram("not a handshake answer")
        session, payload = self.initiator.handle_response(packet, addr, now)
        msg = decode(payload)
        if isinstance(msg, Welcome):
            return SignedIn(session=session, token=msg.token, heartbeat_s=msg.heartbeat_ms / 1000)
        if isinstance(msg, Refused):
            raise SignInRefused(f"sign-in of {self.name} refused: {msg.reason.name}")
        raise SignInRefused(f"sign-in of {self.name} answered with {msg!r}")


def sign_in(
    sock: socket.socket, name: str, key: bytes, *, index: int = 1, timeout_s: float = 5.0
) -> SignedIn:
    """Sign ``name`` in over ``sock`` (connected to the server, blocking), keepalive sent."""
    hs = Handshake(name=name, server_key=key, index=index)
    server = sock.getpeername()
    server = (server[0], server[1])
    deadline = time.monotonic() + timeout_s
    old = sock.gettimeout()
    sock.settimeout(0.3)
    try:
        out = hs.initiation(time.monotonic())
        while time.monotonic() < deadline:
            sock.send(out)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                out = hs.initiation(time.monotonic())
                continue
            if receiver_index(data) != index:
                continue
            try:
                got = hs.receive(data, server, time.monotonic())
            except MalformedDatagram:
                continue
            if isinstance(got, SignedIn):
                sock.send(got.keepalive(time.monotonic()))
                return got
            out = got
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
