"""NAT boxes for the in-memory network (tests/netsim.py), as RFC 4787 classifies them.

A :class:`NatNetwork` is a :class:`~netsim.FakeNetwork` with private realms: each
:class:`NatBox` owns a prefix of private addresses (``10.1.0.``) and one public IP on the wan.
A datagram from a private address to the wan leaves with its source translated to a mapping
(``public_ip``, port); one arriving at the public IP is let in only if a mapping exists and
the box's filtering allows its source, and then reaches the private address. Kinds:

| kind              | mapping (RFC 4787 4.1)           | filtering (RFC 4787 5)            |
| ----------------- | -------------------------------- | --------------------------------- |
| `full-cone`       | endpoint-independent             | endpoint-independent              |
| `port-restricted` | endpoint-independent             | address- and port-dependent       |
| `symmetric`       | address- and port-dependent      | address- and port-dependent       |

(`none`, a plain router, is a client on the wan itself.) A box does not hairpin: a datagram
from inside to its own public IP is dropped, as the lab's routers do. Private addresses of
another realm are not routable from outside it. Flows time out as Linux conntrack's do: 30 s
while unreplied, 120 s once a datagram came back on them; a mapping lives while a flow does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from chat_protocol.wire.messages import Addr
from netsim import FakeNetwork, Link

KINDS = ("full-cone", "port-restricted", "symmetric")
UNREPLIED_S = 30.0
"""conntrack's nf_conntrack_udp_timeout: a flow nothing came back on."""
ASSURED_S = 120.0
"""conntrack's nf_conntrack_udp_timeout_stream: a flow with traffic both ways."""


@dataclass
class _Flow:
    last: float
    replied: bool = False

    def alive(self, now: float) -> bool:
        return now - self.last < (ASSURED_S if self.replied else UNREPLIED_S)


@dataclass
class _Mapping:
    private: Addr
    port: int
    flows: dict[Addr, _Flow] = field(default_factory=dict)
    """Remote endpoint -> the flow to it (what filtering consults)."""

    def alive(self, now: float) -> bool:
        return any(f.alive(now) for f in self.flows.values())


class NatBox:
    def __init__(self, *, kind: str, public_ip: str, prefix: str, first_port: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown NAT kind {kind!r}")
        self.kind = kind
        self.public_ip = public_ip
        self.prefix = prefix
        self._ports = itertools.count(first_port)
        self._mappings: dict[tuple[Addr, Addr | None], _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}
        self.filtered = 0
        """Inbound datagrams dropped: no live mapping, or filtering refused the source."""

    def owns(self, ip: str) -> bool:
        return ip.startswith(self.prefix)

    def outbound(self, src: Addr, dst: Addr, now: float) -> Addr:
        """The public source a datagram from ``src`` to ``dst`` leaves with."""
        key = (src, dst if self.kind == "symmetric" else None)
        mapping = self._mappings.get(key)
        if mapping is None or not mapping.alive(now):
            mapping = _Mapping(private=src, port=next(self._ports))
            self._mappings[key] = mapping
            self._by_port[mapping.port] = mapping
        flow = mapping.flows.get(dst)
        if flow is None or not flow.alive(now):
            mapping.flows[dst] = _Flow(last=now)
        else:
            flow.last = now
        return (self.public_ip, mapping.port)

    def inbound(self, src: Addr, port: int, now: float) -> Addr | None:
        """The private address a datagram from ``src`` to our ``port`` goes to, or None."""
        mapping = self._by_port.get(port)
        if mapping is None or not mapping.alive(now):
            self.filtered += 1
            return None
        flow = mapping.flows.get(src)
        if flow is None or not flow.alive(now):
            if self.kind != "full-cone":
                self.filtered += 1
                return None
            flow = mapping.flows[src] = _Flow(last=now)
        flow.last = now
        flow.replied = True
        return mapping.private

    def mapping_for(self, src: Addr, dst: Addr, now: float) -> int | None:
        """The live mapping's public port for ``src`` towards ``dst`` (None: none is alive)."""
        mapping = self._mappings.get((src, dst if self.kind == "symmetric" else None))
        if mapping is None or not mapping.alive(now):
            return None
        flow = mapping.flows.get(dst)
        return mapping.port if flow is not None and flow.alive(now) else None


class NatNetwork(FakeNetwork):
    def __init__(self, *, seed: int = 0, link: Link | None = None) -> None:
        super().__init__(seed=seed, link=link)
        self.nats: list[NatBox] = []
        self.unroutable = 0
        self.hairpins = 0

    def add_nat(self, kind: str, *, realm: int) -> NatBox:
        """A NAT box of ``kind`` for private addresses ``10.<realm>.0.*``, public IP
        ``198.51.100.<realm>``."""
        box = NatBox(
            kind=kind,
            public_ip=f"198.51.100.{realm}",
            prefix=f"10.{realm}.0.",
            first_port=20000 + self.rng.randrange(20000),
        )
        self.nats.append(box)
        return box

    def nat_of(self, ip: str) -> NatBox | None:
        for box in self.nats:
            if box.owns(ip):
                return box
        return None

    def _transmit(self, data: bytes, src: Addr, dst: Addr) -> None:
        inside = self.nat_of(src[0])
        target = self.nat_of(dst[0])
        if target is not None:
            if target is inside:
                super()._transmit(data, src, dst)  # on the same private network
            else:
                self.unroutable += 1  # another realm's private address: no route on the wan
                self.trace.append((src, dst, data))
            return
        if inside is None:
            super()._transmit(data, src, dst)
            return
        if dst[0] == inside.public_ip:
            self.hairpins += 1  # the box does not hairpin
            self.trace.append((src, dst, data))
            return
        super()._transmit(data, inside.outbound(src, dst, self.now), dst)

    def _arrive(self, data: bytes, src: Addr, dst: Addr) -> None:
        for box in self.nats:
            if dst[0] == box.public_ip:
                private = box.inbound(src, dst[1], self.now)
                if private is not None:
                    super()._arrive(data, src, private)
                return
        super()._arrive(data, src, dst)
