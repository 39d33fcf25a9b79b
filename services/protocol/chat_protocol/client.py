"""The chat client as a sans-I/O object: one UDP socket's worth of protocol.

:class:`ClientCore` is small on purpose; it routes between four parts, each with one job:

* :class:`~chat_protocol.directory.DirectorySession` - sign-in, heartbeats, list, lookups,
  sign-out, and the client's state machine (its table is in that module and docs/PROTOCOL.md);
* :class:`~chat_protocol.requests.Requests` (inside it) - retransmission and timeout of requests;
* :class:`~chat_protocol.sending.SendPipeline` - typed order, lookups, reliable transfer out;
* :class:`~chat_protocol.receiving.ReceivePath` - reassembly, the sender check, showing.

A datagram goes one way: decoded here, then to the part that owns its kind (DATA to the receive
path, ACK to the send pipeline, anything from the server to the directory session), and lookup
answers from the directory back to the part that asked. Message text never goes through the server.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from chat_protocol.codec import decode
from chat_protocol.const import DEFAULT_TIMINGS, MAX_MESSAGE_BYTES, Timings
from chat_protocol.counters import Counters
from chat_protocol.directory import (
    DirectorySession,
    LookupAnswer,
    SendLookup,
    State,
    VerifyLookup,
)
from chat_protocol.errors import MalformedDatagram, UsageError
from chat_protocol.events import ClientEvent, GoneReason, ServerGone, SignedOut
from chat_protocol.messages import Ack, Addr, Data
from chat_protocol.names import check_name
from chat_protocol.outcomes import FailReason
from chat_protocol.receiving import ReceivePath
from chat_protocol.sending import SendPipeline

__all__ = ["ClientCore", "ClientStats", "State"]


@dataclass(slots=True)
class ClientStats(Counters):
    malformed: int = 0
    unexpected: int = 0
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    retransmissions: int = 0
    unverified_messages: int = 0
    dropped_unshown: int = 0


class ClientCore:
    def __init__(
        self,
        *,
        name: str,
        server: Addr,
        timings: Timings = DEFAULT_TIMINGS,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.name = check_name(name)
        self.server = server
        self.timings = timings
        self.session = int.from_bytes(random_bytes(4), "big")
        self._events: list[ClientEvent] = []
        emit = self._events.append
        self.directory = DirectorySession(
            name=self.name, server=server, timings=timings, random_bytes=random_bytes, emit=emit
        )
        self.sending = SendPipeline(
            name=self.name, session=self.session, timings=timings, emit=emit
        )
        self.receiving = ReceivePath(timings=timings, emit=emit)
        self._malformed = 0
        self._unexpected = 0
        self._finished = False

    # -- state --

    @property
    def state(self) -> State:
        return self.directory.state

    @property
    def online(self) -> bool:
        return self.directory.online

    @property
    def pending_sends(self) -> int:
        return self.sending.pending

    @property
    def stats(self) -> ClientStats:
        r = self.receiving.stats
        return ClientStats(
            malformed=self._malformed,
            unexpected=self._unexpected,
            rejected_chunks=r.rejected_chunks,
            duplicate_chunks=r.duplicate_chunks,
            retransmissions=self.sending.retransmissions,
            unverified_messages=r.unverified_messages,
            dropped_unshown=r.dropped_unshown,
        )

    def _require_online(self) -> None:
        if not self.online:
            raise UsageError("not signed in")

    # -- commands --

    def connect(self, now: float) -> None:
        self.directory.connect(now)

    def list_users(self, now: float) -> None:
        self._require_online()
        self.directory.list_users(now)

    def send(self, to: str, text: str, now: float) -> int:
        """Queue a message for ``to``; returns a handle named again by the outcome event."""
        self._require_online()
        check_name(to)
        if not text.strip():
            raise UsageError("empty message, not sent")
        payload = text.encode("utf-8")
        if len(payload) > MAX_MESSAGE_BYTES:
            raise UsageError(
                f"message too long: {len(payload)} bytes (limit {MAX_MESSAGE_BYTES} bytes)"
            )
        handle = self.sending.queue(to, payload)
        self.directory.lookup(to, SendLookup(handle), now)
        return handle

    def close(self, now: float) -> None:
        """Sign out once every command given so far has its answer (sends resolved, held
        messages shown, lists answered)."""
        self.directory.close(now)
        self._settle(now)

    # -- I/O surface (the same five methods as the server core) -------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if self.directory.gone:
            return
        try:
            msg = decode(data)
        except MalformedDatagram:
            self._malformed += 1
            return
        if isinstance(msg, Data):
            if self.online:
                verify = self.receiving.on_data(msg, len(data), addr, now)
                if verify is not None:
                    self.directory.lookup(verify.name, verify, now)
        elif isinstance(msg, Ack):
            if not self.sending.on_ack(addr, msg, now):
                self._unexpected += 1
        elif addr == self.server:
            self._route(self.directory.on_message(msg, now), now)
            if self.directory.last_unexpected:
                self._unexpected += 1
        else:
            self._unexpected += 1
        self._settle(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        # Acknowledgements of shown messages go out even after the session ended.
        out = self.directory.datagrams()
        out.extend(self.receiving.datagrams())
        if not self.directory.gone:
            out.extend(self.sending.datagrams(now))
        return out

    def events(self) -> list[ClientEvent]:
        out = self._events[:]  # the parts hold ``self._events.append``: empty it in place
        self._events.clear()
        return out

    def next_timer(self) -> float | None:
        if self.directory.gone:
            return None
        a, b = self.directory.next_timer(), self.sending.next_timer()
        if a is None or b is None:
            return a if b is None else b
        return min(a, b)

    def handle_timer(self, now: float) -> None:
        if self.directory.gone:
            return
        for answer in self.directory.handle_timer(now):
            self._route(answer, now)
        if not self.directory.gone:
            self.sending.handle_timer(now)
        self._settle(now)

    # -- routing ----------------------------------------------------------------------------

    def _route(self, answer: LookupAnswer | None, now: float) -> None:
        if answer is None:
            return
        match answer.purpose:
            case SendLookup(handle=handle):
                self.sending.looked_up(handle, answer.reply, now)
            case VerifyLookup() as v:
                self.receiving.verified(v, answer.reply, now)

    def _settle(self, now: float) -> None:
        """After any input: sign out when closing is drained; wind down when the session ended."""
        d = self.directory
        if d.state is State.CLOSING and not (
            self.sending.pending or self.receiving.holding or d.lists_pending
        ):
            d.drained(now)
        if d.gone and not self._finished:
            self._finished = True
            ended = d.ended or SignedOut()
            lost = isinstance(ended, ServerGone) and ended.reason is not GoneReason.SHUTDOWN
            self.sending.fail_all(FailReason.SERVER_LOST if lost else FailReason.SIGNED_OUT)
            self.receiving.drop_held()
            self._events.append(ended)
