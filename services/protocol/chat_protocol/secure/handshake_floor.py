"""Anti-replay floors for handshake initiations, kept across runs (issue 19, point 4).

A responder refuses an initiation whose timestamp is not above the **floor** of the initiator's
static key. The floor of a key is the greatest of:

* the timestamp of every initiation accepted from that key (WireGuard's rule: a recorded
  initiation is never accepted twice), and
* the timestamp of every initiation *we* sent to that key, less ``HANDSHAKE_CLOCK_SKEW_S`` (a
  recorded initiation older than a session we started ourselves cannot replace it).

Kept in memory only, the first half is lost when the program restarts, and a recorded
initiation from an earlier run is accepted again; so the floors live in a :class:`FloorStore`
that the shell backs with a file in the user's home (``chat_shell.floors``). The core stays
sans-I/O: it only calls :meth:`FloorStore.get` and :meth:`FloorStore.raise_to`.
:class:`MemoryFloors` is the in-memory store (tests, and programs without a home).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from chat_protocol.const import HANDSHAKE_CLOCK_SKEW_S, MAX_HANDSHAKE_FLOORS
from chat_protocol.secure.errors import LocalSecureError

SKEW_NS = int(HANDSHAKE_CLOCK_SKEW_S * 1e9)
"""``HANDSHAKE_CLOCK_SKEW_S`` in the unit of initiation timestamps (nanoseconds)."""


class FloorStore(Protocol):
    """Where a secure endpoint keeps its floors (one integer per peer static key)."""

    def get(self, key: bytes) -> int | None:
        """The floor of ``key``, or None if nothing is known of it."""
        ...

    def raise_to(self, key: bytes, timestamp: int) -> None:
        """Make the floor of ``key`` at least ``timestamp`` (never lower it)."""
        ...


class MemoryFloors:
    """A :class:`FloorStore` in memory: at most ``capacity`` keys, the least recently raised
    dropped first."""

    __slots__ = ("_floors", "capacity")

    def __init__(self, capacity: int = MAX_HANDSHAKE_FLOORS) -> None:
        if capacity < 1:
            raise LocalSecureError("a floor store keeps at least one key")
        self.capacity = capacity
        self._floors: OrderedDict[bytes, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._floors)

    def get(self, key: bytes) -> int | None:
        return self._floors.get(key)

    def raise_to(self, key: bytes, timestamp: int) -> None:
        floor = self._floors.get(key)
        if floor is not None and floor >= timestamp:
            return
        self._floors[key] = timestamp
        self._floors.move_to_end(key)
        while len(self._floors) > self.capacity:
            self._floors.popitem(last=False)


def below_floor(floors: FloorStore | None, key: bytes, timestamp: int) -> bool:
    """True if an initiation from ``key`` carrying ``timestamp`` must be refused: it is not
    above the key's floor."""
    if floors is None:
        return False
    floor = floors.get(key)
    return floor is not None and timestamp <= floor


def sent_floor(timestamp: int) -> int:
    """The floor an initiation of ours with ``timestamp`` gives its responder's key."""
    return timestamp - SKEW_NS
