"""A health probe as a sans-I/O core: PING the server until a PONG answers or time runs out.

``chat-server --probe`` (the container healthcheck) runs it in the same asyncio shell as the
real cores; it reuses :class:`~chat_protocol.transfer.requests.Requests` for the retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chat_protocol.errors import MalformedDatagram
from chat_protocol.transfer.requests import Requests
from chat_protocol.wire.codec import decode
from chat_protocol.wire.messages import Addr, Ping, Pong


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeAnswered:
    """The server answered (a PONG says nothing more: no user count to strangers)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeUnanswered:
    pass


ProbeEvent = ProbeAnswered | ProbeUnanswered


class ProbeCore:
    def __init__(
        self,
        *,
        server: Addr,
        timeout_s: float,
        tries: int,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self.timeout_s = timeout_s
        self._requests: Requests[bool] = Requests(
            server=server, retry_s=timeout_s / tries, random_bytes=random_bytes
        )
        self._events: list[ProbeEvent] = []

    def start(self, now: float) -> None:
        self._requests.start(lambda rid: Ping(nonce=rid), True, now, timeout_s=self.timeout_s)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            msg = decode(data)
        except MalformedDatagram:
            return
        if isinstance(msg, Pong) and self._requests.purpose(msg.nonce) is not None:
            self._requests.clear()
            self._events.append(ProbeAnswered())

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        return self._requests.datagrams()

    def events(self) -> list[ProbeEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        return self._requests.next_timer()

    def handle_timer(self, now: float) -> None:
        if self._requests.handle_timer(now):
            self._events.append(ProbeUnanswered())
