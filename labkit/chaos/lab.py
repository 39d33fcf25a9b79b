"""The compose project of a chaos run: compose.yaml, plus an override that gives its network a
subnet of its own.

Why the subnet: a partition is ``docker network disconnect`` then ``connect``, and the container
must come back with its address (the server's session with a client is bound to the address it
signed in from, and clients know the server by its address). Docker lets ``connect`` ask for an
address only on a network with a user-configured subnet; without one it hands out the next
free address, which after a few restarts is somebody else's.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
from pathlib import Path

from labkit.compose import COMPOSE_FILE, Compose

SUBNET_POOL = ipaddress.IPv4Network("10.210.0.0/16")
SUBNET_PREFIX = 24


def _host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations in this machine's routing table (/proc/net/route), but the
    default route."""
    out: list[ipaddress.IPv4Network] = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dest = socket.inet_ntoa(struct.pack("<L", int(cols[1], 16)))
        mask = socket.inet_ntoa(struct.pack("<L", int(cols[7], 16)))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen:
            out.append(net)
    return out


def taken_subnets(lab: Compose) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Subnets of every Docker network and of this machine's routes."""
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(_host_routes())
    for n in lab.docker.networks.list():
        for cfg in n.attrs.get("IPAM", {}).get("Config") or []:
            if cfg.get("Subnet"):
                taken.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
    return taken


def free_subnet(lab: Compose, rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 of :data:`SUBNET_POOL` that overlaps no Docker network and no route here."""
    candidates = list(SUBNET_POOL.subnets(new_prefix=SUBNET_PREFIX))
    rng.shuffle(candidates)
    taken = taken_subnets(lab)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken if t.version == 4):
            return net
    raise RuntimeError(f"no free /{SUBNET_PREFIX} in {SUBNET_POOL}")


class ChaosLab(Compose):
    """:class:`labkit.compose.Compose` with ``-f OVERRIDE`` after compose.yaml."""

    def __init__(self, name: str, override: Path) -> None:
        super().__init__(name)
        self.override = override

    def set_subnet(self, subnet: ipaddress.IPv4Network) -> None:
        self.subnet = subnet
        self.override.write_text(
            "# Written by labkit.chaos: the network has a subnet of its own, so that a container\n"
            "# reconnected after a partition gets its own address back. The gateway (the host)\n"
            "# routes the duplicated datagrams (labkit.faults.duplicate).\n"
            "networks:\n"
            "  chatnet:\n"
            "    ipam:\n"
            "      config:\n"
            f"        - subnet: {subnet}\n"
            f"          gateway: {subnet.network_address + 1}\n"
        )

    def argv(self, *args: str) -> list[str]:
        base = super().argv()
        i = base.index(str(COMPOSE_FILE)) + 1
        return [*base[:i], "-f", str(self.override), *base[i:], *args]
