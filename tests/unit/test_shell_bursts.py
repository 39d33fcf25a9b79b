"""The asyncio shell answers a burst of datagrams together (issue 24): the first of a loop turn
at once, the rest with one pump when the turn ends."""

from __future__ import annotations

import asyncio
from typing import Any

from chat_protocol.wire.messages import Addr
from chat_shell import aio


class _Recorder:
    """A core that logs what the shell asks of it, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.fed = 0

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.fed += 1
        self.log.append(f"in {data.decode()}")

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        self.log.append(f"send after {self.fed}")
        return [(b"ack %d" % self.fed, ("127.0.0.1", 9))]

    def events(self) -> list[object]:
        self.log.append("events")
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None: ...


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return False


def _turns(*bursts: int) -> tuple[_Recorder, _Transport]:
    """Feed the shell ``bursts``: each a number of datagrams handed over in one loop turn (as
    uvloop does with what one wake-up reads), with the loop run to its next turn between."""

    async def go() -> tuple[_Recorder, _Transport]:
        core = _Recorder()
        shell = aio.DatagramShell(core)
        transport = _Transport()
        shell.transport = transport  # type: ignore[assignment]
        n = 0
        for size in bursts:
            for _ in range(size):
                n += 1
                shell.datagram_received(b"d%d" % n, ("127.0.0.1", 7))
            await asyncio.sleep(0)  # the turn ends: call_soon callbacks run
        return core, transport

    return asyncio.run(go())


def test_a_burst_is_answered_at_its_first_datagram_and_once_for_the_rest() -> None:
    core, transport = _turns(5)
    assert transport.sent == [b"ack 1", b"ack 5"]
    # The events of the core are handled before each answer leaves.
    assert core.log.count("events") == 2
    assert core.log.index("send after 1") < core.log.index("in d2")


def test_lone_datagrams_are_each_answered_at_once() -> None:
    _, transport = _turns(1, 1, 1)
    assert transport.sent == [b"ack 1", b"ack 2", b"ack 3"]


def test_each_turn_starts_a_new_burst() -> None:
    _, transport = _turns(3, 2)
    assert transport.sent == [b"ack 1", b"ack 3", b"ack 4", b"ack 5"]
