"""An in-memory network for sans-I/O cores: a fake clock, seeded loss, duplication and reordering.

After h11's ConnectionPair and trio's fake net: every core is a node with an address; ``run``
moves datagrams between them and fires their timers in time order, so thousands of lossy
exchanges take milliseconds of real time.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from chat_protocol.client.core import ClientCore
from chat_protocol.const import Timings
from chat_protocol.events import ClientEvent, ServerEvent
from chat_protocol.secure.noise import KeyPair
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.messages import Addr
from chat_protocol.wire.names import name_key

Ev = TypeVar("Ev", bound=ClientEvent)


class Node(Protocol):
    """The interface every core offers its shell (chat_shell.aio.Core)."""

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]: ...
    def events(self) -> Sequence[object]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


@dataclass
class Link:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    latency_s: float = 0.001
    jitter_s: float = 0.0


@dataclass(order=True)
class _InFlight:
    at: float
    order: int
    data: bytes = field(compare=False)
    src: Addr = field(compare=False)
    dst: Addr = field(compare=False)


class FakeNetwork:
    def __init__(self, *, seed: int = 0, link: Link | None = None) -> None:
        self.rng = random.Random(seed)
        self.link = link or Link()
        self.now = 1000.0
        self.nodes: dict[Addr, Node] = {}
        self.down: set[Addr] = set()
        self.partitioned: set[Addr] = set()
        self.blocked: set[tuple[Addr, Addr]] = set()
        """(source, destination) pairs whose datagrams are dropped (one direction only)."""
        self._wire: list[_InFlight] = []
        self._order = itertools.count()
        self.client_events: dict[Addr, list[ClientEvent]] = {}
        self.events: dict[Addr, list[object]] = {}
        self.server_events: list[ServerEvent] = []
        self.sent = 0
        self.dropped = 0
        self.trace: list[tuple[Addr, Addr, bytes]] = []
        self.keys: dict[str, KeyPair] = {}

    def random_bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def key(self, owner: str) -> KeyPair:
        """A long-term key pair per owner (a user name, or "server"), drawn from the seed: a
        client started again under a name is the same user, as with a kept home directory."""
        if owner not in self.keys:
            self.keys[owner] = KeyPair.generate(self.random_bytes)
        return self.keys[owner]

    def add_server(self, addr: Addr, timings: Timings) -> ServerCore:
        core = ServerCore(
            identity=self.key("server"), timings=timings, random_bytes=self.random_bytes
        )
        self.add_node(addr, core)
        return core

    def add_node(self, addr: Addr, node: Node) -> None:
        """Any core (a hostile one in a test, too) at ``addr``."""
        self.nodes[addr] = node
        self.events[addr] = []

    def add_client(
        self,
        name: str,
        addr: Addr,
        server: Addr,
        timings: Timings,
        *,
        identity: KeyPair | None = None,
        pins: dict[str, bytes] | None = None,
        local_endpoints: tuple[Addr, ...] = (),
        relay: bool = True,
    ) -> ClientCore:
        core = ClientCore(
            local_endpoints=local_endpoints,
            relay=relay,
            name=name,
            server=server,
            identity=identity or self.key(name.casefold()),
            pins=pins,
            clock_offset_s=1.7e9,
            timings=timings,
            random_bytes=self.random_bytes,
        )
        self.add_node(addr, core)
        self.client_events[addr] = []
        core.connect(self.now)
        self.flush()
        return core

    def sign_in(
        self,
        server: Addr,
        timings: Timings,
        *people: tuple[str, Addr],
        clean_link: bool = False,
        declare: bool = False,
        relay: bool = True,
    ) -> list[ClientCore]:
        """A client per ``(name, address)`` signed in to the server at ``server`` (started if
        none is there yet): run until each is online and listed by the server.
        ``clean_link``: the sign-in runs on a link that loses nothing (the test's own link
        applies from then on); ``declare``: each declares its address as a private endpoint;
        ``relay``: each may use the directory's relay."""
        link = self.link
        if clean_link:
            self.link = Link()
        srv = self.nodes.get(server) or self.add_server(server, timings)
        assert isinstance(srv, ServerCore)
        clients = [
            self.add_client(
                n, a, server, timings, local_endpoints=(a,) if declare else (), relay=relay
            )
            for n, a in people
        ]
        assert self.run_until(
            lambda: all(c.online and name_key(c.name) in srv.users for c in clients), 30
        )
        self.link = link
        return clients

    def server_at(self, addr: Addr) -> ServerCore:
        node = self.nodes[addr]
        assert isinstance(node, ServerCore)
        return node

    def events_of(self, addr: Addr, kind: type[Ev]) -> list[Ev]:
        """The events of kind ``kind`` the client at ``addr`` told so far."""
        return [e for e in self.client_events[addr] if isinstance(e, kind)]

    def flush(self) -> None:
        """Collect what every live node wants to send and put it on the wire."""
        for addr, node in self.nodes.items():
            if addr in self.down:
                continue
            # Events first, then datagrams: the order the asyncio shell keeps (a message is shown
            # before its acknowledgement leaves).
            if isinstance(node, ServerCore):
                server_events = node.events()
                self.server_events.extend(server_events)
                self.events[addr].extend(server_events)
            elif isinstance(node, ClientCore):
                client_events = node.events()
                self.client_events[addr].extend(client_events)
                self.events[addr].extend(client_events)
            else:
                self.events[addr].extend(node.events())
            for data, dst in node.datagrams_to_send(self.now):
                self._transmit(data, addr, dst)

    def _transmit(self, data: bytes, src: Addr, dst: Addr) -> None:
        self.sent += 1
        self.trace.append((src, dst, data))
        link = self.link
        if (
            self.rng.random() < link.loss
            or src in self.partitioned
            or dst in self.partitioned
            or (src, dst) in self.blocked
        ):
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.latency_s + self.rng.random() * link.jitter_s
            if self.rng.random() < link.reorder:
                delay += self.rng.random() * 0.02
            heapq.heappush(
                self._wire, _InFlight(self.now + delay, next(self._order), data, src, dst)
            )

    def step(self) -> bool:
        """Advance to the next datagram arrival or timer; False when nothing is left to do."""
        timers = [
            (t, a)
            for a, n in self.nodes.items()
            if a not in self.down and (t := n.next_timer()) is not None
        ]
        t_timer, a_timer = min(timers) if timers else (float("inf"), None)
        t_wire = self._wire[0].at if self._wire else float("inf")
        if t_timer == float("inf") and t_wire == float("inf"):
            return False
        if t_wire <= t_timer:
            pkt = heapq.heappop(self._wire)
            self.now = max(self.now, pkt.at)
            self._arrive(pkt.data, pkt.src, pkt.dst)
        else:
            self.now = max(self.now, t_timer)
            assert a_timer is not None
            self.nodes[a_timer].handle_timer(self.now)
        self.flush()
        return True

    def _arrive(self, data: bytes, src: Addr, dst: Addr) -> None:
        """A datagram reaches ``dst`` (tests/natsim.py translates it first)."""
        node = self.nodes.get(dst)
        if node is not None and dst not in self.down:
            node.receive_datagram(data, src, self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.step():
            if self.now >= end:
                break

    def run_until(self, cond: Callable[[], object], timeout_s: float) -> bool:
        end = self.now + timeout_s
        while not cond():
            if not self.step() or self.now >= end:
                return bool(cond())
        return True

    def kill(self, addr: Addr) -> None:
        self.down.add(addr)
