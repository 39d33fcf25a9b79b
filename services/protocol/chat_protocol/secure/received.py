"""What :meth:`SecureEndpoint.receive <chat_protocol.secure.endpoint.SecureEndpoint.receive>`
returns for one datagram: a typed outcome per case (a reply to send, an initiation to answer, a
cookie to retry with, a session established, a transport datagram authenticated, a key
learned)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chat_protocol.secure.handshake import IncomingHandshake
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.messages import Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class SendReply:
    """Send ``datagram`` to ``addr`` (a cookie or key reply: never larger than its request)."""

    datagram: bytes
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class HandshakeRequested:
    """An initiation authenticated; call :meth:`SecureEndpoint.accept` to answer it, or drop it."""

    incoming: IncomingHandshake


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryWithCookie:
    """The responder at ``addr`` is under load and sent a cookie: send a new initiation now."""

    remote_static: bytes
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionEstablished:
    """Our initiation was answered; send a first TRANSPORT datagram (b"" will do) at once, so the
    responder may start sending too."""

    session: SecureSession
    payload: bytes


class TransportReceived:
    """An authenticated datagram (``plaintext`` b"" is a keepalive) on ``session``.

    ``newest``: its counter is the highest yet on ``session``, and ``session`` is the peer's
    latest (:func:`latest`): only such a datagram may move the peer's address. One held back on
    an older session and re-sent from elsewhere after a rekey is authentic but not ``newest``.

    (A plain class, not a dataclass: one is made per datagram, and the compiled core builds
    it natively, where a dataclass's generated ``__init__`` runs as Python.)"""

    __slots__ = ("newest", "plaintext", "session")
    __match_args__ = ("session", "plaintext")

    def __init__(self, *, session: SecureSession, plaintext: bytes, newest: bool = True) -> None:
        self.session: Final = session
        self.plaintext: Final = plaintext
        self.newest: Final = newest


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyReceived:
    """The (unauthenticated) static key of the responder at ``addr``, which we asked for."""

    key: bytes
    addr: Addr


Received = (
    SendReply
    | HandshakeRequested
    | RetryWithCookie
    | SessionEstablished
    | TransportReceived
    | KeyReceived
)
