"""Which endpoints a client may declare as its private (local) ones, and a peer may be sent to
on someone else's word (issue 21).

A client declares its local endpoints at sign-in; the directory hands them to whoever looks the
client up, and in a PUNCH hint to the user the client looks up, who then sends handshake
initiations there. So a declared endpoint is an address of the declarer's choosing that another
user's client will send datagrams to: only private-range unicast addresses are kept (RFC 1918,
RFC 4193 ULA, RFC 6598 shared space, link-local), never loopback, unspecified, multicast,
broadcast or a public address, and never port 0. Peers behind one NAT meet there; the open
Internet cannot be aimed at through it.
"""

from __future__ import annotations

import ipaddress

from chat_protocol.const import MAX_LOCAL_ENDPOINTS
from chat_protocol.wire.messages import Addr

_SHARED = ipaddress.ip_network("100.64.0.0/10")
"""RFC 6598, the carrier-grade NAT's shared address space (Python's is_private omits it)."""


def is_private_endpoint(addr: Addr) -> bool:
    """``addr`` is a private-range unicast address with a port: one a peer may be sent to."""
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return False
    if not 0 < addr[1] < 65536:
        return False
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return False
        return ip in _SHARED or ip.is_private or ip.is_link_local
    return ip.is_private or ip.is_link_local


def private_endpoints(addrs: tuple[Addr, ...]) -> tuple[Addr, ...]:
    """The usable private endpoints of ``addrs``: first ones first, no repeats, at most
    ``MAX_LOCAL_ENDPOINTS``."""
    out: list[Addr] = []
    for addr in addrs:
        if is_private_endpoint(addr) and addr not in out:  # guard: private-endpoints =True
            out.append(addr)
    return tuple(out[:MAX_LOCAL_ENDPOINTS])
