"""Requests to one server: retransmitted until answered, failed after a timeout.

A request is a datagram with a random ``req_id`` the answer echoes. :class:`Requests` keeps each
one with a typed *purpose* (what the caller will do with the answer) and resends it every
``retry_s`` until :meth:`finish` is called or its timeout passes; :meth:`handle_timer` returns the
purposes that timed out. The client core and ``chat-server --probe`` both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Message

P = TypeVar("P")


class _Pending(Generic[P]):
    # A plain class, not a dataclass: mypyc cannot compile a generic dataclass.
    __slots__ = ("deadline", "next_retry", "payload", "purpose")

    def __init__(self, *, purpose: P, payload: bytes, deadline: float, next_retry: float) -> None:
        self.purpose = purpose
        self.payload = payload
        self.deadline = deadline
        self.next_retry = next_retry


class Requests(Generic[P]):
    def __init__(
        self, *, server: Addr, retry_s: float, random_bytes: Callable[[int], bytes]
    ) -> None:
        self.server = server
        self.retry_s = retry_s
        self._random = random_bytes
        self._pending: dict[int, _Pending[P]] = {}
        self.outbox: list[tuple[bytes, Addr]] = []

    def start(
        self, build: Callable[[int], Message], purpose: P, now: float, *, timeout_s: float
    ) -> int:
        """Send ``build(req_id)`` now and until answered or ``timeout_s`` passed; its req_id."""
        rid = int.from_bytes(self._random(4), "big")
        while rid in self._pending:
            rid = int.from_bytes(self._random(4), "big")
        payload = encode(build(rid))
        self._pending[rid] = _Pending(
            purpose=purpose,
            payload=payload,
            deadline=now + timeout_s,
            next_retry=now + self.retry_s,
        )
        self.outbox.append((payload, self.server))
        return rid

    def purpose(self, req_id: int) -> P | None:
        """What ``req_id`` was asked for, if it is still waiting for its answer."""
        p = self._pending.get(req_id)
        return None if p is None else p.purpose

    def finish(self, req_id: int) -> None:
        self._pending.pop(req_id, None)

    def purposes(self) -> Iterator[P]:
        return (p.purpose for p in self._pending.values())

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)

    def datagrams(self) -> list[tuple[bytes, Addr]]:
        out, self.outbox = self.outbox, []
        return out

    def resend(self) -> None:
        for p in self._pending.values():
            self.outbox.append((p.payload, self.server))

    def next_timer(self) -> float | None:
        if not self._pending:
            return None
        return min(min(p.next_retry, p.deadline) for p in self._pending.values())

    def handle_timer(self, now: float) -> list[P]:
        """Resend what is due; return (and forget) the purposes whose timeout passed."""
        expired: list[P] = []
        for rid, p in list(self._pending.items()):
            if p.deadline <= now:
                del self._pending[rid]
                expired.append(p.purpose)
            elif p.next_retry <= now:
                p.next_retry = now + self.retry_s
                self.outbox.append((p.payload, self.server))
        return expired
