"""The directory's table of signed-in users: who is online, under which key, until when.

The server's view of a user (new, online, gone) is the table :data:`USER_TRANSITIONS` below;
docs/PROTOCOL.md shows it row by row (tests/unit/test_docs.py checks that it shows exactly it).

:class:`UserTable` owns the users by name and by static key, their sorted names (for LIST
pages), the expiry heap (for the sweep) and how many users each source IP holds (its quota).
What may sign in is :mod:`chat_protocol.server.signin`'s question; what a user asks is
answered in :mod:`chat_protocol.server.core`.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from chat_protocol.const import (
    EXPIRY_SLICE,
    LIST_PAGE_MAX_BYTES,
    LIST_REPLY_OVERHEAD_BYTES,
    MAX_HEARTBEAT_INTERVAL_S,
    MAX_USERS,
    Timings,
)
from chat_protocol.events import ServerEvent, UserJoined, UserLeft
from chat_protocol.machine import transition
from chat_protocol.wire.messages import Addr, ListReply, ListUsers
from chat_protocol.wire.names import name_key


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
    expires: float
    static: bytes = b""
    """The static public key that signed this name in (the handshake proved it)."""
    ip: str = ""
    """The source IP it signed in from: its per-IP quota is charged there until it leaves."""
    local: tuple[Addr, ...] = ()
    """The private endpoints it declared at sign-in (private-range ones only)."""
    state: UserState = UserState.NEW
    filed: float = 0.0
    """The expiry it is filed under in the table's expiry heap (``expires`` when it was filed;
    changed only while it is out of the heap, so the heap's order holds)."""

    def move(self, trigger: UserTrigger) -> None:
        self.state = transition(USER_TRANSITIONS, self.state, trigger)

    def request(self) -> None:
        """:meth:`move` on REQUEST. Every request runs it: an online user, the table's row
        ONLINE -> ONLINE, is left as it is without the table lookup (and its enum hashing)."""
        if self.state is not UserState.ONLINE:
            self.move(UserTrigger.REQUEST)

    def __lt__(self, other: User) -> bool:
        """The expiry heap's order: a user is its own entry (8 bytes, not a tuple)."""
        return self.filed < other.filed


class KeyIndex(Protocol):
    """Where the table files each user under its static key: the server's secure endpoint,
    which holds a peer per key anyway (:meth:`SecureEndpoint.set_owner
    <chat_protocol.secure.endpoint.SecureEndpoint.set_owner>`), so no dict by key of its own."""

    def owner(self, remote_static: bytes) -> object: ...

    def set_owner(self, remote_static: bytes, owner: object) -> None: ...


class UserTable:
    """The signed-in users; joins and leaves are told as events into ``events``."""

    def __init__(self, *, timings: Timings, events: list[ServerEvent], keys: KeyIndex) -> None:
        self.timings = timings
        self._events = events
        self.users: dict[str, User] = {}
        """Name (case-folded) -> user."""
        self._keys = keys
        """Static key -> user (:meth:`user_of`)."""
        self._sorted_keys: list[str] = []
        self._per_ip: dict[str, int] = {}
        """Source IP -> users signed in from it."""
        self._expiry: list[User] = []
        """Every signed-in user (and removed ones until they come up), a heap by
        :attr:`User.filed`, lazily: a heartbeat only moves ``User.expires``; the sweep re-files
        a user it pops early (:meth:`_file`)."""
        self._last_sweep = float("-inf")
        self._timeout_factor = timings.client_timeout_s / timings.heartbeat_interval_s
        self._lifetime = (-1, 0.0)
        """(users signed in, how long a user heard from then lives): :meth:`expires_at` on
        every request computes the lifetime only when the count changed."""

    def __len__(self) -> int:
        return len(self.users)

    def heartbeat_interval_s(self) -> float:
        """The interval clients are told to use: stretched so heartbeats stay under a rate cap."""
        t = self.timings
        stretched = max(t.heartbeat_interval_s, len(self.users) / t.max_heartbeats_per_s)
        return min(stretched, max(t.heartbeat_interval_s, MAX_HEARTBEAT_INTERVAL_S))

    def expires_at(self, now: float) -> float:
        """When a user heard from at ``now`` times out."""
        n, lifetime = self._lifetime
        if n != len(self.users):
            lifetime = self.heartbeat_interval_s() * self._timeout_factor
            self._lifetime = (len(self.users), lifetime)
        return now + lifetime

    def full(self) -> bool:
        """No room for another user without stretching the liveness timers past their bound."""
        t = self.timings
        cap = t.max_heartbeats_per_s * max(t.heartbeat_interval_s, MAX_HEARTBEAT_INTERVAL_S)
        return len(self.users) >= min(MAX_USERS, cap)

    def user_of(self, static: bytes) -> User | None:
        """The user signed in with the static key ``static``, if one is."""
        user = self._keys.owner(static)
        return user if isinstance(user, User) else None

    def from_ip(self, ip: str) -> int:
        """How many users signed in from ``ip``."""
        return self._per_ip.get(ip, 0)

    def add(self, user: User, now: float) -> None:
        """``user`` (its name free, its address proven) is signed in."""
        user.move(UserTrigger.SIGN_IN)
        self._per_ip[user.ip] = self._per_ip.get(user.ip, 0) + 1
        self.users[user.key] = user
        self._keys.set_owner(user.static, user)
        bisect.insort(self._sorted_keys, user.key)
        self._file(user, user.expires)
        self._events.append(UserJoined(name=user.name, addr=user.addr))

    def remove(self, user: User, trigger: UserTrigger) -> None:
        user.move(trigger)
        left = self._per_ip.get(user.ip, 0) - 1
        if left > 0:
            self._per_ip[user.ip] = left
        else:
            self._per_ip.pop(user.ip, None)
        del self.users[user.key]
        self._keys.set_owner(user.static, None)
        i = bisect.bisect_left(self._sorted_keys, user.key)
        del self._sorted_keys[i]
        timed_out = trigger is UserTrigger.EXPIRED
        self._events.append(UserLeft(name=user.name, addr=user.addr, timed_out=timed_out))

    def next_sweep(self) -> float | None:
        """The next expiry sweep: batched, at most one per ``sweep_interval_s``."""
        if not self._expiry:
            return None
        return max(self._expiry[0].filed, self._last_sweep + self.timings.sweep_interval_s)

    def sweep(self, now: float) -> int:
        """Remove the users whose time ran out (at most EXPIRY_SLICE looked at per call: if
        more are due, the next sweep is due at once); returns how many were removed."""
        if self._expiry and self._expiry[0].filed > now:
            return 0
        self._last_sweep = now
        budget = EXPIRY_SLICE
        removed = 0
        while self._expiry and self._expiry[0].filed <= now:
            if budget == 0:
                self._last_sweep = float("-inf")  # more are due: the next call comes at once
                return removed
            budget -= 1
            user = heapq.heappop(self._expiry)
            if self.user_of(user.static) is not user:
                continue  # signed out (or in again, as a new entry) since it was filed
            if user.expires <= now:
                removed += 1
                self.remove(user, UserTrigger.EXPIRED)
            else:
                self._file(user, user.expires)
        return removed

    def _file(self, user: User, expires: float) -> None:
        """Put ``user`` (not in the heap) into the expiry heap under ``expires``."""
        user.filed = expires
        heapq.heappush(self._expiry, user)

    def list_page(self, msg: ListUsers) -> ListReply:
        """The page of names after ``msg.after``, as many as fit one datagram."""
        keys = self._sorted_keys
        start = bisect.bisect_right(keys, name_key(msg.after)) if msg.after else 0
        names: list[str] = []
        size = LIST_REPLY_OVERHEAD_BYTES
        i = start
        while i < len(keys):
            name = self.users[keys[i]].name
            size += 1 + len(name.encode())
            if size > LIST_PAGE_MAX_BYTES or len(names) >= 0xFFFF:
                break
            names.append(name)
            i += 1
        return ListReply(
            req_id=msg.req_id, total=len(self.users), more=i < len(keys), names=tuple(names)
        )
