"""What the directory server counts: datagrams, and what it dropped or refused, by cause."""

from __future__ import annotations

from dataclasses import dataclass

from chat_protocol.counters import Counters


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
