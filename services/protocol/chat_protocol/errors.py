"""Errors split by fault (after h11's LocalProtocolError / RemoteProtocolError).

* :class:`UsageError` - the local user asked for something impossible (bad name, empty message).
  The client prints its message as one line and carries on.
* :class:`InvalidMessage` - this program built a message the wire cannot carry (a field out of
  range, a name the receiver would reject). A local bug, raised by ``codec.encode``; never caused
  by anything received.
* :class:`MalformedDatagram` - a remote party sent bytes we cannot accept. The datagram is
  dropped and counted; nothing else happens.
* Network trouble (loss, a silent peer, a dead server) is not an exception: the cores report it
  as events (``SendFailed``, ``ServerGone``) because it is an expected outcome, not a bug.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base of every error this package raises."""


class UsageError(ChatError):
    """The local user made a mistake; ``str(err)`` is a one-line explanation for them."""


class InvalidMessage(ChatError, ValueError):
    """A locally built message cannot be encoded; ``str(err)`` names the field and why."""


class MalformedDatagram(ChatError):
    """A received datagram is truncated, oversized, of an unknown kind, or otherwise invalid."""


class LocalProtocolError(ChatError):
    """This program's own code asked a core for something its state does not allow (a bug)."""


class IllegalTransition(LocalProtocolError):
    """A state machine was asked to take a transition its table does not list."""
