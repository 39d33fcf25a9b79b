"""Errors of the secure layer (:mod:`chat_protocol.secure`, its Noise in ``secure.noise`` too).

They extend :mod:`chat_protocol.errors` and keep its split by fault:

* Received bytes we cannot accept are :class:`~chat_protocol.errors.MalformedDatagram` subclasses,
  so the cores' existing "drop and count" path catches them all. Each cause has its own class, so
  it can be counted on its own: a forged or corrupted datagram (:class:`DecryptFailed`), a replay
  (:class:`ReplayedDatagram`), one older than the replay window (:class:`StaleDatagram`), a
  datagram for no session we hold (:class:`UnknownReceiver`), and a handshake message that does
  not verify (:class:`HandshakeFailed`, :class:`BadMac`).
* A local bug (a handshake call out of turn, sending on a session that may not send yet) is
  :class:`LocalSecureError`; running out of a session's key budget is :class:`SessionExpired`,
  an expected event the caller answers with a new handshake.
"""

from __future__ import annotations

from chat_protocol.errors import ChatError, MalformedDatagram

# --- what a remote party (or the network) sent wrong ---------------------------------------------


class HandshakeFailed(MalformedDatagram):
    """A handshake message is truncated, does not authenticate, or carries an invalid key."""


class BadMac(HandshakeFailed):
    """A handshake packet's MAC does not verify: sent by someone who lacks the recipient's public
    key, or altered on the way. Checked before any public-key work, so junk costs one HMAC."""


class DecryptFailed(MalformedDatagram):
    """A transport datagram does not authenticate under its session's key (forged, corrupted)."""


class ReplayRejected(MalformedDatagram):
    """A transport datagram's counter cannot be accepted (see the subclasses)."""


class ReplayedDatagram(ReplayRejected):
    """This counter was already accepted on this session: a duplicate or a replay."""


class StaleDatagram(ReplayRejected):
    """The counter is too far behind the newest one accepted to be checked for replay."""


class UnknownReceiver(MalformedDatagram):
    """The receiver index names no session this endpoint holds (never made, or expired)."""


# --- what this program did wrong, or must react to -----------------------------------------------


class LocalSecureError(ChatError):
    """This program asked the secure layer for something its state does not allow (a bug):
    a handshake step out of turn, a payload too large, sending before a session may send."""


class SessionExpired(ChatError):
    """The session used up its time or message budget; start a new handshake to go on."""
