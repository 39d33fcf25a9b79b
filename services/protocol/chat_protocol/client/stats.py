"""What a client counts (drops by cause, retransmissions, cookies, ...): the sum over its parts,
which :attr:`chat_protocol.client.core.ClientCore.stats` gathers."""

from __future__ import annotations

from dataclasses import dataclass

from chat_protocol.counters import Counters


@dataclass(slots=True)
class ClientStats(Counters):
    malformed: int = 0
    """Dropped: did not authenticate, replayed, or could not be decoded."""
    unexpected: int = 0
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    retransmissions: int = 0
    refused_messages: int = 0
    dropped_unshown: int = 0
    replayed: int = 0
    forged: int = 0
    misanswered: int = 0
    """Lookup answers dropped: they named another user than the name asked."""
    cookies: int = 0
    """Cookie replies sent to peers' initiations (under load, or a source over its rate)."""
    rate_limited: int = 0
    """Peers' initiations dropped with a valid cookie but over their source's proven rate."""
