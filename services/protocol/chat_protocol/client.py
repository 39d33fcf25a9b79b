"""The chat client as a sans-I/O object: one UDP socket's worth of protocol.

Client states:

| state       | entered by                     | left by                                          |
| ----------- | ------------------------------ | ------------------------------------------------ |
| signing_in  | ``connect()``                  | WELCOME -> online; REFUSED or no answer -> gone  |
| online      | WELCOME                        | ``close()`` -> closing; server gone -> gone      |
| closing     | ``close()``                    | pending sends resolved -> signing_out            |
| signing_out | BYE sent                       | BYE_ACK or ``bye_timeout_s`` -> gone             |
| gone        | sign-in failed, server gone, signed out | -                                       |

A ``send`` looks the receiver up in the directory, then hands the message to the reliable
transfer (:mod:`chat_protocol.transfer`) toward the address the server gave: message text never
goes through the server. Sends leave in the order they were asked for, even though their lookups
may be answered out of order.

A received message is shown once its sender's claimed name is confirmed by a directory lookup of
that name (cached for ``verify_cache_s``); a mismatch is delivered marked unverified.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from chat_protocol.codec import decode, encode
from chat_protocol.const import (
    DEFAULT_TIMINGS,
    MAX_MESSAGE_BYTES,
    MAX_PEERS_TRACKED,
    MIN_HEARTBEAT_INTERVAL_S,
    Timings,
)
from chat_protocol.counters import Counters
from chat_protocol.errors import MalformedDatagram, UsageError
from chat_protocol.events import (
    ClientEvent,
    ExitCode,
    MessageDelivered,
    MessageReceived,
    RequestFailed,
    SendFailed,
    ServerGone,
    SignedIn,
    SignedOut,
    SignInFailed,
    UserList,
)
from chat_protocol.messages import (
    Ack,
    Addr,
    Bye,
    ByeAck,
    Data,
    Heartbeat,
    HeartbeatAck,
    Hello,
    ListReply,
    ListUsers,
    Lookup,
    LookupReply,
    Message,
    Refused,
    Shutdown,
    UnknownSession,
    Welcome,
)
from chat_protocol.names import check_name, name_key
from chat_protocol.transfer import ChunkRejected, Inbound, Outbound, Resolved

MAX_RETIRED_SESSIONS = 4096
MAX_VERIFIED_ENTRIES = 4096


class State(Enum):
    SIGNING_IN = "signing_in"
    ONLINE = "online"
    CLOSING = "closing"
    SIGNING_OUT = "signing_out"
    GONE = "gone"


@dataclass(slots=True)
class _Request:
    kind: str
    payload: bytes
    first_sent: float
    next_retry: float
    context: object = None


@dataclass(slots=True)
class _PendingSend:
    handle: int
    to: str
    payload: bytes
    looked_up: bool = False
    addr: Addr | None = None
    canonical: str = ""
    error: str = ""


@dataclass(slots=True)
class _ListQuery:
    names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Verify:
    name: str
    addr: Addr


@dataclass(slots=True)
class ClientStats(Counters):
    malformed: int = 0
    unexpected: int = 0
    rejected_chunks: int = 0
    duplicate_chunks: int = 0
    retransmissions: int = 0
    unverified_messages: int = 0


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
        self._random = random_bytes
        self.state = State.SIGNING_IN
        self.session = self._rand32()
        self._token = b""
        self._heartbeat_s = timings.heartbeat_interval_s
        self._next_heartbeat = 0.0
        self._heartbeat_sent = 0.0
        self._last_from_server = 0.0
        self._requests: dict[int, _Request] = {}
        self._sends: deque[_PendingSend] = deque()
        self._next_handle = 1
        self._next_stream = 1
        self._outbound: OrderedDict[Addr, Outbound] = OrderedDict()
        self._inbound: OrderedDict[tuple[Addr, int], Inbound] = OrderedDict()
        self._retired: OrderedDict[tuple[Addr, int], None] = OrderedDict()
        self._verified: dict[tuple[str, Addr], tuple[bool, float]] = {}
        """(sender key, address) -> (directory agrees, until when that answer is trusted)."""
        self._held: dict[tuple[str, Addr], list[str]] = {}
        """Messages waiting for their sender's verification, in arrival order."""
        self._out: list[tuple[bytes, Addr]] = []
        self._events: list[ClientEvent] = []
        self._stats = ClientStats()

    def _rand32(self) -> int:
        return int.from_bytes(self._random(4), "big")

    # -- commands ---------------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        self._request("hello", lambda rid: Hello(req_id=rid, name=self.name), now)

    def list_users(self, now: float) -> None:
        self._require_online()
        self._request_list(_ListQuery(), "", now)

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
        ps = _PendingSend(handle=self._next_handle, to=to, payload=payload)
        self._next_handle += 1
        self._sends.append(ps)
        self._request("lookup", lambda rid: Lookup(token=self._token, req_id=rid, name=to), now, ps)
        return ps.handle

    def close(self, now: float) -> None:
        """Sign out once every pending send is resolved (delivered or failed)."""
        if self.state is State.SIGNING_IN:
            self._gone(SignedOut())
        elif self.state is State.ONLINE:
            self.state = State.CLOSING
            self._maybe_sign_out(now)

    @property
    def stats(self) -> ClientStats:
        self._stats.retransmissions = sum(o.retransmissions for o in self._outbound.values())
        return self._stats

    def _alive(self) -> bool:
        return self.state is not State.GONE

    @property
    def pending_sends(self) -> int:
        return len(self._sends) + sum(o.pending for o in self._outbound.values())

    @property
    def online(self) -> bool:
        return self.state in (State.ONLINE, State.CLOSING)

    def _require_online(self) -> None:
        if not self.online:
            raise UsageError("not signed in")

    # -- I/O surface ------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if self.state is State.GONE:
            return
        try:
            msg = decode(data)
        except MalformedDatagram:
            self._stats.malformed += 1
            return
        if isinstance(msg, Data):
            self._on_data(msg, len(data), addr, now)
        elif isinstance(msg, Ack):
            out = self._outbound.get(addr)
            if out is None:
                self._stats.unexpected += 1
            else:
                self._resolved(out.on_ack(msg, now))
        elif addr == self.server:
            self._on_server(msg, now)
        else:
            self._stats.unexpected += 1
        self._maybe_sign_out(now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        if self.state is State.GONE:
            return out
        for ob in self._outbound.values():
            out.extend((encode(d), ob.addr) for d in ob.datagrams(now))
        for ib in self._inbound.values():
            if ib.pending_acks:
                out.extend((encode(a), ib.addr) for a in ib.acks())
        return out

    def events(self) -> list[ClientEvent]:
        out, self._events = self._events, []
        return out

    def next_timer(self) -> float | None:
        if self.state is State.GONE:
            return None
        times = [r.next_retry for r in self._requests.values()]
        if self.online:
            times.append(self._next_heartbeat)
            times.append(self._last_from_server + self._server_timeout_s())
        for ob in self._outbound.values():
            t = ob.next_timer()
            if t is not None:
                times.append(t)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self.state is State.GONE:
            return
        for rid, req in list(self._requests.items()):
            if req.next_retry > now:
                continue
            if now - req.first_sent >= self._request_timeout_s(req):
                del self._requests[rid]
                self._request_failed(req, now)
                if not self._alive():
                    return
            else:
                req.next_retry = now + self.timings.request_retry_s
                self._out.append((req.payload, self.server))
        if self.online:
            if now - self._last_from_server >= self._server_timeout_s():
                secs = self._server_timeout_s()
                self._gone(
                    ServerGone(
                        reason=f"lost contact with the server (no reply for {secs:.0f} s)",
                        exit_code=ExitCode.SERVER_LOST,
                    )
                )
                return
            if now >= self._next_heartbeat:
                # Resent every request_retry_s until answered: one lost datagram must not cost
                # a whole interval, or a lossy link would look like a dead server.
                if self._next_heartbeat >= self._heartbeat_sent + self._heartbeat_s:
                    self._heartbeat_sent = now
                self._out.append((encode(Heartbeat(token=self._token)), self.server))
                self._next_heartbeat = now + self.timings.request_retry_s
        for ob in self._outbound.values():
            self._resolved(ob.handle_timer(now))
        self._maybe_sign_out(now)

    # -- requests to the server -------------------------------------------------------------------

    def _request(
        self, kind: str, build: Callable[[int], Message], now: float, context: object = None
    ) -> None:
        rid = self._rand32()
        while rid in self._requests:
            rid = self._rand32()
        payload = encode(build(rid))
        self._requests[rid] = _Request(
            kind=kind,
            payload=payload,
            first_sent=now,
            next_retry=now + self.timings.request_retry_s,
            context=context,
        )
        self._out.append((payload, self.server))

    def _request_list(self, q: _ListQuery, after: str, now: float) -> None:
        self._request(
            "list", lambda rid: ListUsers(token=self._token, req_id=rid, after=after), now, q
        )

    def _request_timeout_s(self, req: _Request) -> float:
        if req.kind == "bye":
            return self.timings.bye_timeout_s
        if req.kind == "hello":
            return self.timings.request_timeout_s
        # Once signed in, a request fails only when the server would be declared lost anyway.
        return self._server_timeout_s()

    def _set_heartbeat(self, ms: int) -> None:
        """Adopt the interval the server advertises (never below a floor, whatever it says)."""
        self._heartbeat_s = max(ms / 1000, MIN_HEARTBEAT_INTERVAL_S)

    def _server_timeout_s(self) -> float:
        factor = self.timings.server_timeout_s / self.timings.heartbeat_interval_s
        return max(self.timings.server_timeout_s, self._heartbeat_s * factor)

    def _request_failed(self, req: _Request, now: float) -> None:
        host, port = self.server
        if req.kind == "hello":
            self._gone(
                SignInFailed(
                    reason=f"no answer from the server at {host}:{port}",
                    exit_code=ExitCode.NO_SERVER,
                )
            )
        elif req.kind == "bye":
            self._gone(SignedOut())
        elif req.kind == "list":
            self._events.append(RequestFailed(reason="the server did not answer the list"))
        elif req.kind == "lookup":
            assert isinstance(req.context, _PendingSend)
            req.context.looked_up = True
            req.context.error = "the server did not answer the lookup"
            self._flush_sends(now)
        elif req.kind == "verify":
            assert isinstance(req.context, _Verify)
            self._verify_done(req.context, None, now, answered=False)

    def _on_server(self, msg: Message, now: float) -> None:
        if isinstance(msg, Shutdown | HeartbeatAck | UnknownSession):
            if not self._token or msg.token != self._token:
                self._stats.unexpected += 1
                return
            self._last_from_server = now
            if isinstance(msg, HeartbeatAck):
                self._set_heartbeat(msg.heartbeat_ms)
                self._next_heartbeat = self._heartbeat_sent + self._heartbeat_s
            elif isinstance(msg, Shutdown):
                self._gone(
                    ServerGone(reason="the server shut down", exit_code=ExitCode.SERVER_SHUTDOWN)
                )
            elif self.state is not State.SIGNING_OUT:
                self._gone(
                    ServerGone(
                        reason="the server no longer knows this session (it restarted?)",
                        exit_code=ExitCode.SERVER_LOST,
                    )
                )
            else:
                self._gone(SignedOut())
            return
        rid = getattr(msg, "req_id", None)
        req = self._requests.pop(rid, None) if isinstance(rid, int) else None
        if req is None:
            self._stats.unexpected += 1  # a late duplicate answer, or a forgery
            return
        self._last_from_server = now
        if isinstance(msg, Welcome) and req.kind == "hello":
            self._token = msg.token
            self._set_heartbeat(msg.heartbeat_ms)
            self._heartbeat_sent = now
            self._next_heartbeat = now + self._heartbeat_s
            self.state = State.ONLINE
            self._events.append(SignedIn(name=self.name))
        elif isinstance(msg, Refused) and req.kind == "hello":
            self._gone(
                SignInFailed(reason=msg.reason.explain(self.name), exit_code=ExitCode.REFUSED)
            )
        elif isinstance(msg, LookupReply) and isinstance(req.context, _PendingSend):
            ps = req.context
            ps.looked_up, ps.addr, ps.canonical = True, msg.addr, msg.name
            if msg.addr is None:
                ps.error = "no such user"
            self._flush_sends(now)
        elif isinstance(msg, LookupReply) and isinstance(req.context, _Verify):
            self._verify_done(req.context, msg.addr, now, answered=True)
        elif isinstance(msg, ListReply) and isinstance(req.context, _ListQuery):
            q = req.context
            q.names.extend(msg.names)
            if msg.more and msg.names:
                self._request_list(q, msg.names[-1], now)
            else:
                self._events.append(UserList(names=tuple(q.names), total=msg.total))
        elif isinstance(msg, ByeAck) and req.kind == "bye":
            self._gone(SignedOut())
        else:
            self._stats.unexpected += 1
            self._requests[rid] = req  # type: ignore[index]  # not an answer to it; keep waiting

    def _gone(self, event: ClientEvent) -> None:
        self.state = State.GONE
        self._requests.clear()
        for ps in self._sends:
            self._events.append(SendFailed(handle=ps.handle, to=ps.to, reason="signed out"))
        self._sends.clear()
        for ob in self._outbound.values():
            for m in ob.queue:
                self._events.append(
                    SendFailed(handle=m.handle, to=m.to, reason="signed out before delivery")
                )
            ob.queue.clear()
        self._events.append(event)

    def _maybe_sign_out(self, now: float) -> None:
        if self.state is State.CLOSING and self.pending_sends == 0:
            self.state = State.SIGNING_OUT
            self._request("bye", lambda rid: Bye(token=self._token, req_id=rid), now)

    # -- sending ----------------------------------------------------------------------------------

    def _flush_sends(self, now: float) -> None:
        """Hand looked-up sends to the transfer layer in the order the user issued them."""
        while self._sends and self._sends[0].looked_up:
            ps = self._sends.popleft()
            if ps.addr is None:  # not found, or the lookup failed: ``error`` says which
                self._events.append(SendFailed(handle=ps.handle, to=ps.to, reason=ps.error))
                continue
            self._outbound_for(ps.addr).enqueue(
                handle=ps.handle, to=ps.canonical or ps.to, payload=ps.payload, now=now
            )

    def _outbound_for(self, addr: Addr) -> Outbound:
        ob = self._outbound.get(addr)
        if ob is None:
            ob = Outbound(
                addr=addr,
                sender=self.name,
                session=self.session,
                stream=self._next_stream,
                timings=self.timings,
            )
            self._next_stream += 1
            self._outbound[addr] = ob
            if len(self._outbound) > MAX_PEERS_TRACKED:
                idle = next((a for a, o in self._outbound.items() if o.pending == 0), None)
                if idle is not None:
                    del self._outbound[idle]
        else:
            self._outbound.move_to_end(addr)
        return ob

    def _resolved(self, items: list[Resolved]) -> None:
        for r in items:
            if r.delivered:
                self._events.append(MessageDelivered(handle=r.handle, to=r.to))
            else:
                secs = self.timings.delivery_timeout_s
                reason = f"not delivered (no acknowledgement for {secs:.0f} s)"
                self._events.append(SendFailed(handle=r.handle, to=r.to, reason=reason))

    # -- receiving --------------------------------------------------------------------------------

    def _on_data(self, d: Data, size: int, addr: Addr, now: float) -> None:
        if not self.online:
            return
        # Keyed by (address, session), not address alone: a datagram with a forged source
        # address and a made-up session must not displace the real sender's state.
        key = (addr, d.session)
        ib = self._inbound.get(key)
        if ib is None:
            if key in self._retired:
                self._stats.rejected_chunks += 1
                return
            ib = Inbound(
                addr=addr, sender=d.sender, session=d.session, stream=d.stream, base=d.base
            )
            self._inbound[key] = ib
            if len(self._inbound) > MAX_PEERS_TRACKED:
                _, oldest = self._inbound.popitem(last=False)
                self._retire(oldest)
        else:
            self._inbound.move_to_end(key)
        before = ib.duplicates
        try:
            texts = ib.on_data(d, size, now)
        except ChunkRejected:
            self._stats.rejected_chunks += 1
            return
        self._stats.duplicate_chunks += ib.duplicates - before
        if texts:
            self._deliver(
                ib.sender, addr, [t.decode("utf-8", errors="replace") for t in texts], now
            )

    def _retire(self, ib: Inbound) -> None:
        self._retired[(ib.addr, ib.session)] = None
        while len(self._retired) > MAX_RETIRED_SESSIONS:
            self._retired.popitem(last=False)

    def _deliver(self, sender: str, addr: Addr, texts: list[str], now: float) -> None:
        key = (name_key(sender), addr)
        cached = self._verified.get(key)
        if cached is not None and cached[1] > now:
            for text in texts:
                self._emit_received(sender, addr, text, cached[0])
            return
        held = self._held.get(key)
        if held is not None:
            held.extend(texts)
            return
        self._held[key] = list(texts)
        v = _Verify(name=sender, addr=addr)
        self._request(
            "verify", lambda rid: Lookup(token=self._token, req_id=rid, name=sender), now, v
        )

    def _verify_done(self, v: _Verify, found: Addr | None, now: float, *, answered: bool) -> None:
        key = (name_key(v.name), v.addr)
        ok = found == v.addr
        if answered:
            if len(self._verified) >= MAX_VERIFIED_ENTRIES:
                self._verified.clear()
            self._verified[key] = (ok, now + self.timings.verify_cache_s)
        for text in self._held.pop(key, []):
            self._emit_received(v.name, v.addr, text, ok)

    def _emit_received(self, sender: str, addr: Addr, text: str, verified: bool) -> None:
        if not verified:
            self._stats.unverified_messages += 1
        self._events.append(MessageReceived(sender=sender, addr=addr, text=text, verified=verified))
