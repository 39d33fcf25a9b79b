"""The client's side of the directory's relay (issue 21; the server's is server/relay.py).

A peer reached through the relay has a pseudo-address, ``(RELAY_HOST, n)``: the secure layer
keeps it as the session's ``remote_addr`` like any address, so the Noise session between the
peers is the very one a direct path would use, and a direct path that opens later moves the
session off it (the endpoint follows the newest authenticated datagram's source). The core
wraps every datagram for such an address in a RELAY to the directory, and unwraps every
RELAYED into a datagram from the sender's pseudo-address. :class:`RelayPaths` is the table
between pseudo-addresses and peer keys.
"""

from __future__ import annotations

from collections import OrderedDict

from chat_protocol.const import MAX_CANDIDATE_PEERS, RELAY_HOST
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.packets import HandshakeResponse, Transport, parse_packet
from chat_protocol.wire.messages import Addr


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
