"""Sign-in and registration at the directory: whether a HELLO gets a WELCOME or a REFUSED, and
when a welcomed client becomes a user.

The HELLO rides in the client's Noise IK initiation and the WELCOME in the response, so a name
is bound to the static key that proved itself in the handshake. A sign-in is kept only when the
client's first TRANSPORT datagram arrives (that proves it receives at its address); until then
the server holds nothing for it but the bounded, unconfirmed :class:`PendingSignIn`. (The client
says "signed in" only when a request on that session is answered, so it is listed by then.)

A name belongs to the first key that signed it in, for good (:mod:`chat_protocol.server.bindings`:
the core asks an injected store, which the real server keeps on disk): a sign-in under a name
bound to another key is refused NAME_BOUND, whether the owner is online or not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chat_protocol.const import MAX_UNCONFIRMED_SESSIONS, TOKEN_BYTES, UNCONFIRMED_SESSION_TIMEOUT_S
from chat_protocol.server.bindings import NameBindings, NameStoreError
from chat_protocol.server.stats import ServerStats
from chat_protocol.server.users import User, UserTable
from chat_protocol.wire.endpoints import private_endpoints
from chat_protocol.wire.messages import Addr, Hello, Refused, RefuseReason, Welcome
from chat_protocol.wire.names import name_key, valid_name_once


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    name: str
    key: str
    token: bytes
    req_id: int
    at: float
    """When its initiation was answered: after UNCONFIRMED_SESSION_TIMEOUT_S it is void."""
    local: tuple[Addr, ...] = ()
    """The private endpoints its HELLO declared (filtered)."""


class SignIns:
    """The answers to HELLOs, and the sign-ins answered but not yet confirmed."""

    def __init__(
        self,
        *,
        users: UserTable,
        names: NameBindings,
        stats: ServerStats,
        random_bytes: Callable[[int], bytes],
        max_users_per_ip: int,
    ) -> None:
        self.users = users
        self.names = names
        self.stats = stats
        self.max_users_per_ip = max_users_per_ip
        self._random_bytes = random_bytes
        self._pending: OrderedDict[bytes, PendingSignIn] = OrderedDict()
        """Sign-ins answered but not yet confirmed by the client's first TRANSPORT datagram."""

    def answer(
        self, hello: Hello, static: bytes, addr: Addr, now: float
    ) -> Welcome | Refused | None:
        """The answer to ``hello`` from ``static`` at ``addr`` (a WELCOME is held as pending);
        None when the name store cannot tell now (nothing accepted, nothing kept: the client's
        retry asks again)."""
        if not valid_name_once(hello.name):  # (uncached: once per sign-in)
            return Refused(req_id=hello.req_id, reason=RefuseReason.NAME_INVALID)
        key = name_key(hello.name)
        existing = self.users.users.get(key)
        ms = round(self.users.heartbeat_interval_s() * 1000)
        same = existing is not None and existing.static == static
        try:
            owner = self.names.lookup(key)
        except NameStoreError:
            self.stats.name_store_errors += 1
            return None
        if owner is not None and owner != static:  # guard: name-binding
            return Refused(req_id=hello.req_id, reason=RefuseReason.NAME_BOUND)
        if same and existing is not None and existing.addr == addr:
            # Its WELCOME was lost, or it rekeys: the same key, from where it signed in, may
            # renew its own session. (Another process with the same home is refused.)
            return Welcome(
                req_id=hello.req_id, token=existing.token, heartbeat_ms=ms, observed=addr
            )
        if existing is not None or any(
            p.key == key and k != static and now - p.at < UNCONFIRMED_SESSION_TIMEOUT_S
            for k, p in self._pending.items()
        ):
            return Refused(req_id=hello.req_id, reason=RefuseReason.NAME_TAKEN)
        if self.users.full():
            return Refused(req_id=hello.req_id, reason=RefuseReason.SERVER_FULL)
        if self.users.from_ip(addr[0]) >= self.max_users_per_ip:
            return Refused(req_id=hello.req_id, reason=RefuseReason.TOO_MANY_FROM_ADDRESS)
        again = self._pending.get(static)
        token = again.token if again is not None else self._random_bytes(TOKEN_BYTES)
        self._pending[static] = PendingSignIn(
            name=hello.name,
            key=key,
            token=token,
            req_id=hello.req_id,
            at=now,
            local=private_endpoints(hello.endpoints),
        )
        self._pending.move_to_end(static)
        while len(self._pending) > MAX_UNCONFIRMED_SESSIONS:
            self._pending.popitem(last=False)
        return Welcome(req_id=hello.req_id, token=token, heartbeat_ms=ms, observed=addr)

    def take(self, static: bytes, now: float) -> PendingSignIn | None:
        """The sign-in pending for ``static`` (removed), if it is still valid: the client's
        first TRANSPORT datagram on that session confirms it (:meth:`register`)."""
        pending = self._pending.pop(static, None)
        if pending is None or now - pending.at >= UNCONFIRMED_SESSION_TIMEOUT_S:
            return None
        return pending

    def register(
        self, pending: PendingSignIn, static: bytes, addr: Addr, now: float
    ) -> User | None:
        users = self.users
        if pending.key in users.users or users.from_ip(addr[0]) >= self.max_users_per_ip:
            self.stats.refused += 1  # taken meanwhile, or the quota filled meanwhile
            return None
        # The name is free or this key's: answer() checked its owner, and while this sign-in is
        # pending no other key's can be (it would be refused NAME_TAKEN).
        try:
            self.names.bind(pending.key, static)
        except NameStoreError:
            self.stats.name_store_errors += 1  # not signed in: its next heartbeat learns so
            return None
        # The quota is charged only now, for an address that proved it receives: forged
        # initiations from someone's address cannot use up that address's quota.
        user = User(
            name=pending.name,
            key=pending.key,
            addr=addr,
            token=pending.token,
            expires=users.expires_at(now),
            static=static,
            ip=addr[0],
            local=pending.local,
        )
        users.add(user, now)
        self.stats.sign_ins += 1
        return user
