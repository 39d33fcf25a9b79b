"""What an endpoint holds per authenticated static key, and the table of them (least recently
active first, for eviction)."""

from __future__ import annotations

from chat_protocol.secure.handshake import Initiator
from chat_protocol.secure.session import SecureSession


class Peer:
    """What an endpoint holds for one authenticated static key (WireGuard's keypairs)."""

    __slots__ = (
        "current",
        "initiator",
        "key",
        "newer",
        "next",
        "older",
        "owner",
        "previous",
        "timestamp",
    )

    def __init__(self, key: bytes) -> None:
        self.key = key
        """The peer's static public key."""
        self.older: Peer | None = None
        """The peer active just before this one (:class:`PeerTable`'s order) ..."""
        self.newer: Peer | None = None
        """... and the one active just after."""
        self.current: SecureSession | None = None
        """The session we send on."""
        self.previous: SecureSession | None = None
        """The one before, kept to decrypt datagrams still in flight."""
        self.next: SecureSession | None = None
        """A responder session whose initiator has not confirmed it yet."""
        self.initiator: Initiator | None = None
        self.timestamp = -1
        """The greatest initiation timestamp accepted from this key."""
        self.owner: object = None
        """What the endpoint's owner files under this key (the directory: the user signed in
        with it), so it needs no table of its own by key (one per signed-in user: ~45 bytes
        each). The endpoint never reads it; a peer that holds one is never evicted."""

    def sessions(self) -> list[SecureSession]:
        return [s for s in (self.current, self.previous, self.next) if s is not None]


class PeerTable:
    """An endpoint's peers by static key, least recently active first.

    A dict, and the recency order as a list threaded through the peers themselves: what an
    OrderedDict does, for about 50 bytes less per peer (a directory server holds one peer per
    signed-in user). Every operation is O(1); :meth:`oldest` walks only as far as it is asked.
    """

    __slots__ = ("_by_key", "_newest", "_oldest")

    def __init__(self) -> None:
        self._by_key: dict[bytes, Peer] = {}
        """(Read it through :attr:`by_key`; only this class changes it.)"""
        self._oldest: Peer | None = None
        self._newest: Peer | None = None

    def __len__(self) -> int:
        return len(self._by_key)

    @property
    def by_key(self) -> dict[bytes, Peer]:
        """The peers by key, to read only (an endpoint looks its peers up in it per datagram)."""
        return self._by_key

    def get(self, key: bytes) -> Peer | None:
        return self._by_key.get(key)

    def add(self, key: bytes) -> Peer:
        """A new peer for ``key`` (not in the table), the most recently active."""
        peer = self._by_key[key] = Peer(key)
        self._append(peer)
        return peer

    def touch(self, peer: Peer) -> None:
        """``peer`` (in the table) becomes the most recently active."""
        if peer is not self._newest:
            self._unlink(peer)
            self._append(peer)

    def pop(self, key: bytes) -> Peer | None:
        peer = self._by_key.pop(key, None)
        if peer is not None:
            self._unlink(peer)
        return peer

    def oldest(self, n: int) -> list[Peer]:
        """The ``n`` least recently active peers (fewer if there are fewer), oldest first."""
        out: list[Peer] = []
        peer = self._oldest
        while peer is not None and len(out) < n:
            out.append(peer)
            peer = peer.newer
        return out

    def _append(self, peer: Peer) -> None:
        peer.older, peer.newer = self._newest, None
        if self._newest is None:
            self._oldest = peer
        else:
            self._newest.newer = peer
        self._newest = peer

    def _unlink(self, peer: Peer) -> None:
        older, newer = peer.older, peer.newer
        if older is None:
            self._oldest = newer
        else:
            older.newer = newer
        if newer is None:
            self._newest = older
        else:
            newer.older = older
        peer.older = peer.newer = None


def latest(peer: Peer, session: SecureSession) -> bool:
    """True if ``session`` of ``peer`` is one that the peer's newest datagrams come on, so that a
    datagram newest on it is newer than anything the peer sent before (WireGuard's "latest
    authenticated packet") and may move the peer's address: the session we send on (current),
    or the previous one if no session created after it has replaced it. The second case is two
    handshakes at once: each side then sends on the session the other installed first, which
    was created (its response received) after the one installed last (its initiation
    accepted). A previous session that a later handshake replaced (a rekey) is older than what
    the peer sends now: a datagram held back on it and re-sent from elsewhere moves nothing."""
    current = peer.current
    if current is session:
        return True
    return peer.previous is session and (current is None or current.created_at < session.created_at)
