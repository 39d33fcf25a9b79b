"""The client's side of the directory's relay (issue 21; the server's is server/relay.py).

A peer reached through the relay has a pseudo-address, ``(RELAY_HOST, n)``: the secure layer
keeps it as the session's ``remote_addr`` like any address, so the Noise session between the
peers is the very one a direct path would use, and a direct path that opens later moves the
session off it (the endpoint follows the newest authenticated datagram's source). The core
wraps every datagram for such an address in a RELAY to the directory, and unwraps every
RELAYED into a datagram from the sender's pseudo-address (:class:`RelayLink`).
:class:`RelayPaths` is the table between pseudo-addresses and peer keys.
"""

from __future__ import annotations

from collections import OrderedDict

from chat_protocol.client.signin import ServerLink
from chat_protocol.const import MAX_CANDIDATE_PEERS, RELAY_HOST
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.endpoint import SecureEndpoint
from chat_protocol.secure.packets import (
    HandshakeResponse,
    PacketType,
    Transport,
    parse_packet,
)
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Relay, Relayed

_INIT_BYTE = bytes((PacketType.HANDSHAKE_INIT,))


def relayed_receiver(datagram: bytes) -> int:
    """The receiver index of a relayed HANDSHAKE_RESPONSE or TRANSPORT (whose session or
    handshake it is for); MalformedDatagram for anything else."""
    packet = parse_packet(datagram)
    if isinstance(packet, HandshakeResponse | Transport):
        return packet.receiver
    raise MalformedDatagram("not a packet a peer sends through the relay")


def is_relayed(addr: Addr) -> bool:
    """``addr`` is a pseudo-address: the peer is reached through the relay."""
    return addr[0] == RELAY_HOST


class RelayPaths:
    __slots__ = ("_by_key", "_by_number", "_next")

    def __init__(self) -> None:
        self._by_key: OrderedDict[bytes, int] = OrderedDict()
        self._by_number: dict[int, bytes] = {}
        self._next = 1

    def addr_for(self, key: bytes) -> Addr:
        """The pseudo-address of the peer holding ``key`` (made on first use)."""
        number = self._by_key.get(key)
        if number is None:
            number = self._next
            self._next += 1
            self._by_key[key] = number
            self._by_number[number] = key
            while len(self._by_key) > MAX_CANDIDATE_PEERS:
                _, old = self._by_key.popitem(last=False)
                del self._by_number[old]
        self._by_key.move_to_end(key)
        return (RELAY_HOST, number)

    def key_of(self, addr: Addr) -> bytes | None:
        """The peer key behind a pseudo-address (None: not one of ours)."""
        if not is_relayed(addr):
            return None
        return self._by_number.get(addr[1])


class RelayLink:
    """The relay both ways, for one client: :meth:`wrap` what goes to pseudo-addresses in
    RELAYs on the server's session, :meth:`unwrap` a RELAYED into the peer's datagram.
    ``enabled``: False with ``--no-relay`` (nothing goes through the relay, nothing comes).
    :attr:`malformed` and :attr:`unexpected` count the RELAYEDs dropped."""

    __slots__ = ("enabled", "link", "malformed", "own_key", "paths", "secure", "unexpected")

    def __init__(
        self,
        *,
        secure: SecureEndpoint,
        link: ServerLink,
        paths: RelayPaths,
        own_key: bytes,
        enabled: bool,
    ) -> None:
        self.secure = secure
        self.link = link
        self.paths = paths
        self.own_key = own_key
        self.enabled = enabled
        self.malformed = 0
        self.unexpected = 0

    def wrap(self, out: list[tuple[bytes, Addr]], now: float) -> list[tuple[bytes, Addr]]:
        """``out`` with each datagram for a pseudo-address put in a RELAY to the directory
        (dropped when the relay is off or we are not signed in)."""
        direct: list[tuple[bytes, Addr]] = []
        directory = self.link.directory
        for datagram, addr in out:
            if not is_relayed(addr):
                direct.append((datagram, addr))
                continue
            key = self.paths.key_of(addr)
            if key is None or key == self.link.server_key or not self.enabled:
                continue
            if not directory.online:
                continue
            relay = Relay(token=directory.token, to=key, datagram=datagram)
            self.link.to_server(encode(relay), now, direct)
        return direct

    def unwrap(self, msg: Relayed) -> tuple[bytes, Addr] | None:
        """A peer's datagram through the relay, as from the peer's pseudo-address; None if
        it is dropped. Only packets for the sender's own sessions or handshakes (or a new
        initiation, which must prove the sender's key): a relayed datagram cannot move the
        address of the server's session, or of anyone else's."""
        ours = self.enabled and self.link.directory.ours(msg.token)
        if not ours or msg.sender in (self.link.server_key, self.own_key):
            self.unexpected += 1
            return None
        inner = msg.datagram
        if inner[:1] != _INIT_BYTE:
            try:
                receiver = relayed_receiver(inner)
            except MalformedDatagram:
                self.malformed += 1
                return None
            if self.secure.remote_of(receiver) != msg.sender:  # guard: relay-sender-bound
                self.unexpected += 1
                return None
        return inner, self.paths.addr_for(msg.sender)
