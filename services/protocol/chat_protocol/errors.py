"""Errors split by fault (after h11's LocalProtocolError / RemoteProtocolError).

* :class:`UsageError` - the local user asked for something impossible (bad name, empty message).
  The client prints its message as one line and carries on.
* :class:`MalformedDatagram` - a remote party sent bytes we cannot accept. The datagram is
  dropped and counted; nothing else happens.
* Network trouble (loss, a silent peer, a dead server) is not an exception: the cores report it
  as events (``DeliveryFailed``, ``ServerLost``) because it is an expected outcome, not a bug.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every error this package raises."""


class UsageError(ChatError):
    """The local user made a mistake; ``str(err)`` is a one-line explanation for them."""


class MalformedDatagram(ChatError):
    """A received datagram is truncated, oversized, of an unknown kind, or otherwise invalid."""
