"""Why a message was not delivered, for the client core and the user interface.

A send ends in one of two ways: delivered (the receiver's user was shown it) or failed for one
:class:`FailReason`; :meth:`FailReason.describe` is the line the user reads.
"""

from __future__ import annotations

from enum import Enum


class FailReason(Enum):
    """Why a send failed. Only :attr:`TIMEOUT` comes from the transfer layer itself."""

    NO_SUCH_USER = "no such user signed in"
    """The directory has no user of that name signed in."""
    LOOKUP_UNANSWERED = "the server did not answer the lookup"
    """The directory server did not answer the lookup of the name."""
    TIMEOUT = "no acknowledgement for {timeout_s:.0f} s"
    """The destination acknowledged nothing new for ``delivery_timeout_s``."""
    SIGNED_OUT = "signed out before delivery"
    """This client signed out before the message was delivered."""
    SERVER_LOST = "lost contact with the server before delivery"
    """This client lost the directory server (silent, shut down, or forgot the session)."""
    PEER_RESTARTED = "{to} restarted before confirming it was shown"
    """The receiver's program restarted (same key, new run) while the message was on its way:
    the old run may have shown it, so it is not sent again (that could show it twice)."""
    NO_DIRECT_PATH = "cannot reach {to} directly; the relay is off (--no-relay)"
    """No direct path to the receiver opened (both behind NATs that defeat hole punching, or
    UDP between them blocked), and this client does not use the directory's relay."""
    KEY_CHANGED = "key changed"
    """The directory gave a key other than the one pinned for the name: not sent."""
    WRONG_NAME = "the directory answered for another name; nothing was sent"
    """The directory's answer to the lookup named another user than the one asked: it was
    dropped, and nothing was sent."""

    def describe(self, to: str, timeout_s: float) -> str:
        """The user-facing line, e.g. ``not delivered to bob (no acknowledgement for 10 s)``.

        ``timeout_s`` is the delivery timeout in force (``Timings.delivery_timeout_s``).
        """
        if self is FailReason.KEY_CHANGED:
            return (
                f"{to}'s key has changed since you last talked; not sent. "
                f"Compare 'whois {to}' with {to}, then 'trust {to}'"
            )
        return f"not delivered to {to} ({self.value.format(timeout_s=timeout_s, to=to)})"
