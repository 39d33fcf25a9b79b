"""The directory server as a sans-I/O object.

The server's view of a user (the table is :data:`USER_TRANSITIONS`):

| state  | trigger                                   | next   |
| ------ | ----------------------------------------- | ------ |
| new    | SIGN_IN (HELLO with a free, valid name)   | online |
| online | REQUEST (heartbeat, lookup, list)         | online |
| online | BYE                                       | gone   |
| online | EXPIRED (no request for the timeout)      | gone   |

Every request but HELLO and PING carries the session token from WELCOME and must come from the
address that signed in; anything else is dropped and counted (or, for an unknown token, answered
with a same-size UNKNOWN_SESSION so a client whose session expired learns it).
"""

from __future__ import annotations

import bisect
import heapq
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from chat_protocol.codec import decode, encode
from chat_protocol.const import (
    DEFAULT_TIMINGS,
    LIST_PAGE_MAX_BYTES,
    LIST_REPLY_OVERHEAD_BYTES,
    MAX_USERS,
    Timings,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import ServerEvent, UserJoined, UserLeft
from chat_protocol.machine import transition
from chat_protocol.messages import (
    Addr,
    Bye,
    ByeAck,
    Heartbeat,
    HeartbeatAck,
    Hello,
    ListReply,
    ListUsers,
    Lookup,
    LookupReply,
    Message,
    Ping,
    Pong,
    Refused,
    RefuseReason,
    Shutdown,
    UnknownSession,
    Welcome,
)
from chat_protocol.names import is_valid_name, name_key


class UserState(Enum):
    NEW = "new"
    ONLINE = "online"
    GONE = "gone"


class UserTrigger(Enum):
    SIGN_IN = "sign_in"
    REQUEST = "request"
    BYE = "bye"
    EXPIRED = "expired"


USER_TRANSITIONS: dict[UserState, dict[UserTrigger, UserState]] = {
    UserState.NEW: {UserTrigger.SIGN_IN: UserState.ONLINE},
    UserState.ONLINE: {
        UserTrigger.REQUEST: UserState.ONLINE,
        UserTrigger.BYE: UserState.GONE,
        UserTrigger.EXPIRED: UserState.GONE,
    },
    UserState.GONE: {},
}


@dataclass(slots=True)
class User:
    name: str
    key: str
    addr: Addr
    token: bytes
    hello_req: int
    expires: float
    state: UserState = UserState.NEW

    def move(self, trigger: UserTrigger) -> None:
        self.state = transition(USER_TRANSITIONS, self.state, trigger)


@dataclass(slots=True)
class ServerStats(Counters):
    datagrams: int = 0
    malformed: int = 0
    """Dropped: could not be decoded."""
    unexpected: int = 0
    """Dropped: well-formed but not something a server accepts (peer DATA, replies, ...)."""
    unauthenticated: int = 0
    """Dropped: a known token from another address."""
    unknown_session: int = 0
    sign_ins: int = 0
    refused: int = 0
    timeouts: int = 0


class ServerCore:
    def __init__(
        self,
        *,
        timings: Timings = DEFAULT_TIMINGS,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.timings = timings
        self._random_bytes = random_bytes
        self.users: dict[str, User] = {}
        self._by_token: dict[bytes, User] = {}
        self._sorted_keys: list[str] = []
        self._expiry: list[tuple[float, bytes]] = []
        """(expiry time, token), lazily: a heartbeat only moves ``User.expires``; the sweep
        re-files a user whose entry it pops early."""
        self._last_sweep = float("-inf")
        self._out: list[tuple[bytes, Addr]] = []
        self._events: list[ServerEvent] = []
        self.stats = ServerStats()
        self._timeout_factor = timings.client_timeout_s / timings.heartbeat_interval_s

    # -- public API --

    def heartbeat_interval_s(self) -> float:
        """The interval clients are told to use: stretched so heartbeats stay under a rate cap."""
        t = self.timings
        return max(t.heartbeat_interval_s, len(self.users) / t.max_heartbeats_per_s)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        self.stats.datagrams += 1
        try:
            msg = decode(data)
        except MalformedDatagram:
            self.stats.malformed += 1
            return
        self._handle(msg, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[ServerEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        """The next expiry sweep: batched, at most one per ``sweep_interval_s``."""
        if not self._expiry:
            return None
        return max(self._expiry[0][0], self._last_sweep + self.timings.sweep_interval_s)

    def handle_timer(self, now: float) -> None:
        self._last_sweep = now
        while self._expiry and self._expiry[0][0] <= now:
            _, token = heapq.heappop(self._expiry)
            user = self._by_token.get(token)
            if user is None:
                continue
            if user.expires <= now:
                self.stats.timeouts += 1
                self._remove(user, UserTrigger.EXPIRED)
            else:
                heapq.heappush(self._expiry, (user.expires, token))

    def shutdown(self) -> None:
        """Tell every signed-in user the server is going away (several copies: UDP may lose one)."""
        for user in self.users.values():
            notice = encode(Shutdown(token=user.token))
            self._out.extend([(notice, user.addr)] * self.timings.shutdown_copies)

    # -- internals --

    def _send(self, msg: Message, addr: Addr) -> None:
        self._out.append((encode(msg), addr))

    def _handle(self, msg: Message, addr: Addr, now: float) -> None:
        match msg:
            case Hello():
                self._hello(msg, addr, now)
            case Ping():
                self._send(Pong(nonce=msg.nonce, users=len(self.users)), addr)
            case Heartbeat() | Lookup() | ListUsers() | Bye():
                user = self._by_token.get(msg.token)
                if user is None:
                    self.stats.unknown_session += 1
                    self._send(UnknownSession(token=msg.token), addr)
                elif user.addr != addr:
                    self.stats.unauthenticated += 1
                else:
                    self._authenticated(msg, user, now)
            case _:
                self.stats.unexpected += 1

    def _authenticated(
        self, msg: Heartbeat | Lookup | ListUsers | Bye, user: User, now: float
    ) -> None:
        interval = self.heartbeat_interval_s()
        if type(msg) is not Bye:
            user.move(UserTrigger.REQUEST)
        user.expires = now + interval * self._timeout_factor
        match msg:
            case Heartbeat():
                ms = round(interval * 1000)
                self._send(HeartbeatAck(token=user.token, heartbeat_ms=ms), user.addr)
            case Lookup():
                found = self.users.get(name_key(msg.name))
                self._send(
                    LookupReply(
                        req_id=msg.req_id,
                        name=found.name if found else msg.name,
                        addr=found.addr if found else None,
                    ),
                    user.addr,
                )
            case ListUsers():
                self._send(self._list_page(msg), user.addr)
            case Bye():
                self._remove(user, UserTrigger.BYE)
                self._send(ByeAck(req_id=msg.req_id), user.addr)

    def _hello(self, msg: Hello, addr: Addr, now: float) -> None:
        if not is_valid_name(msg.name):
            self.stats.refused += 1
            self._send(Refused(req_id=msg.req_id, reason=RefuseReason.NAME_INVALID), addr)
            return
        key = name_key(msg.name)
        existing = self.users.get(key)
        if existing is not None:
            if existing.addr == addr and existing.hello_req == msg.req_id:
                self._welcome(existing)  # our WELCOME was lost; the client asked again
            else:
                self.stats.refused += 1
                self._send(Refused(req_id=msg.req_id, reason=RefuseReason.NAME_TAKEN), addr)
            return
        if len(self.users) >= MAX_USERS:
            self._send(Refused(req_id=msg.req_id, reason=RefuseReason.SERVER_FULL), addr)
            return
        token = self._random_bytes(8)
        while token in self._by_token:
            token = self._random_bytes(8)
        expires = now + self.heartbeat_interval_s() * self._timeout_factor
        user = User(
            name=msg.name, key=key, addr=addr, token=token, hello_req=msg.req_id, expires=expires
        )
        user.move(UserTrigger.SIGN_IN)
        self.users[key] = user
        self._by_token[token] = user
        bisect.insort(self._sorted_keys, key)
        heapq.heappush(self._expiry, (expires, token))
        self.stats.sign_ins += 1
        self._events.append(UserJoined(name=user.name, addr=addr))
        self._welcome(user)

    def _welcome(self, user: User) -> None:
        ms = round(self.heartbeat_interval_s() * 1000)
        self._send(Welcome(req_id=user.hello_req, token=user.token, heartbeat_ms=ms), user.addr)

    def _remove(self, user: User, trigger: UserTrigger) -> None:
        user.move(trigger)
        timed_out = trigger is UserTrigger.EXPIRED
        del self.users[user.key]
        del self._by_token[user.token]
        i = bisect.bisect_left(self._sorted_keys, user.key)
        del self._sorted_keys[i]
        self._events.append(UserLeft(name=user.name, addr=user.addr, timed_out=timed_out))

    def _list_page(self, msg: ListUsers) -> ListReply:
        start = bisect.bisect_right(self._sorted_keys, name_key(msg.after)) if msg.after else 0
        names: list[str] = []
        size = LIST_REPLY_OVERHEAD_BYTES
        i = start
        while i < len(self._sorted_keys):
            name = self.users[self._sorted_keys[i]].name
            size += 1 + len(name.encode())
            if size > LIST_PAGE_MAX_BYTES or len(names) >= 0xFFFF:
                break
            names.append(name)
            i += 1
        return ListReply(
            req_id=msg.req_id,
            total=len(self.users),
            more=i < len(self._sorted_keys),
            names=tuple(names),
        )
