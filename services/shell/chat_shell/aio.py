"""The thin asyncio layer both programs share: an event loop (uvloop when installed), and a
datagram endpoint that moves bytes between a socket and a sans-I/O core and arms one timer.

This is the only module of the package that touches sockets or clocks; the cores never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from chat_protocol.secure.endpoint import SecureEndpoint
from chat_protocol.wire.messages import Addr
from chat_shell.wirelog import WIRE_LOG_ENV, WireLog

SOCKET_BUFFER_BYTES = 1 << 20
T = TypeVar("T")
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)
S = TypeVar("S", bound="DatagramShell[Any]")


class Core(Protocol[E_co]):
    """What every sans-I/O core offers its shell (the server, the client and the probe alike)."""

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]: ...
    def events(self) -> Sequence[E_co]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


def loop_name() -> str:
    """'uvloop' or 'asyncio': what :func:`run` uses here."""
    if os.environ.get("CHAT_NO_UVLOOP"):
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (and CHAT_NO_UVLOOP is not set)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop_name() == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


class DatagramShell(asyncio.DatagramProtocol, Generic[E]):
    """Feeds received datagrams to ``core``, acts on its events, sends its datagrams, fires its
    timer.

    Subclasses implement :meth:`on_event`. Events are acted on *before* the datagrams leave, so
    an acknowledgement of a shown message is sent only after it was shown. Time is the loop's
    monotonic clock, passed to the core as ``now``. ``CHAT_WIRE_LOG=PATH`` logs every datagram
    (:mod:`chat_shell.wirelog`).

    A burst is answered together (issue 24): the first datagram of a loop turn is answered at
    once (a lone request or DATA waits for nothing), and the rest that the loop hands over in the
    same turn (uvloop reads up to 32 per wake-up) are fed to the core and answered by one pump
    when the turn ends: one ACK for a burst of DATA, one timer re-armed, not one each.
    """

    def __init__(self, core: Core[E]) -> None:
        self.core = core
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_burst = False
        """A datagram of this loop turn was answered; the rest wait for the turn's end."""
        self._burst_due = False
        """Datagrams were fed to the core since that answer."""
        log_path = os.environ.get(WIRE_LOG_ENV)
        secure = getattr(core, "secure", None)
        endpoint = secure if isinstance(secure, SecureEndpoint) else None
        self.wire_log: WireLog | None = None
        if log_path:
            try:
                self.wire_log = WireLog(Path(log_path), endpoint)
            except OSError as exc:
                why = f"{WIRE_LOG_ENV}: cannot open {log_path}: {exc.strerror}; not logging"
                print(why, file=sys.stderr)

    def now(self) -> float:
        return self.loop.time()

    # -- asyncio callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # IPv6 addresses arrive as 4-tuples; the cores use (host, port) everywhere.
        peer = addr if len(addr) == 2 else (addr[0], addr[1])
        if self.wire_log is not None:
            self.wire_log.received(data, peer)
        self.core.receive_datagram(data, peer, self.loop.time())
        if self._in_burst:
            self._burst_due = True  # answered with the rest of the burst, at the turn's end
            return
        self._in_burst = True
        self.loop.call_soon(self._end_burst)
        self.pump()

    def _end_burst(self) -> None:
        self._in_burst = False
        if self._burst_due:
            self._burst_due = False
            self.pump()

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (a peer's port closed) surface here; the protocol's timers handle them."""

    # -- plumbing --

    def on_event(self, event: E) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        """Handle the core's events, send everything it has queued, and re-arm the timer."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        core = self.core
        for ev in core.events():
            self.on_event(ev)
        wire_log = self.wire_log
        for data, addr in core.datagrams_to_send(self.loop.time()):
            if wire_log is not None:  # before it leaves: its time precedes any answer's
                wire_log.sent(data, addr)
            transport.sendto(data, addr)
        if wire_log is not None:
            wire_log.settle()
        self._arm()

    def _arm(self) -> None:
        at = self.core.next_timer()
        # Re-arm only for an earlier deadline: a timer that fires early just finds nothing due
        # and re-arms, which is cheaper than cancelling and recreating one per datagram.
        if at is None or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self.now())
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.wire_log is not None:
            self.wire_log.close()


async def open_endpoint(factory: Callable[[], S], *, host: str, port: int) -> S:
    """Bind a UDP socket to (host, port) and attach ``factory()``'s shell to it.

    Binding here, not in asyncio, keeps the OS's own error ("Address already in use") for the
    caller's message. Raises OSError (socket.gaierror for an unknown host).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        with contextlib.suppress(OSError):  # headroom for bursts; the kernel caps it at rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    _, shell = await loop.create_datagram_endpoint(factory, sock=sock)
    return shell


def local_endpoints(port: int, toward: Addr) -> tuple[Addr, ...]:
    """This host's address on its route towards ``toward``, with ``port`` (our socket's): the
    private endpoint a client declares at sign-in, so peers behind the same NAT reach it there.
    A connected probe socket asks the routing table; nothing is sent. () if there is no route."""
    family = socket.AF_INET6 if ":" in toward[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(toward)
            return ((str(probe.getsockname()[0]), port),)
    except OSError:
        return ()


def resolve(host: str, port: int) -> Addr:
    """The first UDP address of ``host`` (an IP literal or a name), IPv4 preferred."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    sockaddr = infos[0][4]
    return (str(sockaddr[0]), int(sockaddr[1]))
