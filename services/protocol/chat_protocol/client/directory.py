"""The client's session with the directory server: sign-in, heartbeats, list, lookups, sign-out.

Client states: the table is :data:`CLIENT_TRANSITIONS` below (signing_in, registering, online,
closing, signing_out, gone); docs/PROTOCOL.md shows it row by row, and tests/unit/test_docs.py
checks that it shows exactly this table.

``closing`` waits until every command typed before ``exit`` has its answer: pending sends are
resolved, held messages shown, list queries answered. Lookups are made here for the other parts
of the client (:mod:`chat_protocol.client.sending`, :mod:`chat_protocol.client.receiving`) and
their answers handed back with the purpose they were asked for; an answer whose name is not the
name asked is dropped, counted (:attr:`DirectorySession.misanswered`) and handed back as failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from chat_protocol.const import MIN_HEARTBEAT_INTERVAL_S, Timings
from chat_protocol.events import (
    ClientEvent,
    GoneReason,
    ListFailed,
    ServerGone,
    SignedIn,
    SignedOut,
    SignInFailed,
    SignInFailure,
    UserList,
)
from chat_protocol.machine import StateMachine
from chat_protocol.transfer.requests import Requests
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import (
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
    Refused,
    Shutdown,
    UnknownSession,
    Welcome,
)
from chat_protocol.wire.names import name_key


class State(Enum):
    SIGNING_IN = "signing_in"
    REGISTERING = "registering"
    ONLINE = "online"
    CLOSING = "closing"
    SIGNING_OUT = "signing_out"
    GONE = "gone"


class Trigger(Enum):
    WELCOMED = "welcomed"
    REGISTERED = "registered"
    REFUSED = "refused"
    NO_ANSWER = "no_answer"
    CLOSE = "close"
    DRAINED = "drained"
    BYE_DONE = "bye_done"
    SERVER_SHUTDOWN = "server_shutdown"
    SERVER_LOST = "server_lost"


_LOSS = {Trigger.SERVER_SHUTDOWN: State.GONE, Trigger.SERVER_LOST: State.GONE}

CLIENT_TRANSITIONS: dict[State, dict[Trigger, State]] = {
    State.SIGNING_IN: {
        Trigger.WELCOMED: State.REGISTERING,
        Trigger.REFUSED: State.GONE,
        Trigger.NO_ANSWER: State.GONE,
        Trigger.CLOSE: State.GONE,
    },
    # Welcomed, but the server keeps a sign-in only when a datagram on the new session reaches
    # it: not signed in until the server answers one (a HEARTBEAT, resent until answered).
    State.REGISTERING: {
        Trigger.REGISTERED: State.ONLINE,
        Trigger.NO_ANSWER: State.GONE,
        Trigger.CLOSE: State.GONE,
        **_LOSS,
    },
    State.ONLINE: {Trigger.CLOSE: State.CLOSING, **_LOSS},
    State.CLOSING: {Trigger.DRAINED: State.SIGNING_OUT, **_LOSS},
    State.SIGNING_OUT: {Trigger.BYE_DONE: State.GONE, **_LOSS},
    State.GONE: {},
}


# --- what a request was for ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    pass


@dataclass(frozen=True, slots=True)
class SignOut:
    pass


@dataclass(slots=True)
class ListPage:
    names: list[str] = field(default_factory=list)


class SendLookup:
    """A lookup for :mod:`chat_protocol.client.sending`: ``handle`` is the send it is for,
    ``name`` the name asked. (One per send: a plain class, built natively by the compiled core.)"""

    __slots__ = ("handle", "name")
    __match_args__ = ("handle", "name")

    def __init__(self, handle: int, name: str) -> None:
        self.handle: Final = handle
        self.name: Final = name


@dataclass(frozen=True, slots=True)
class VerifyLookup:
    """A lookup for :mod:`chat_protocol.client.receiving`: is ``name`` signed in with ``key``?"""

    name: str
    key: bytes


@dataclass(frozen=True, slots=True)
class WhoisLookup:
    """``whois NAME`` (``trust``: and pin the key the directory gives, if it is the key seen:
    ``fingerprint``'s, else the one ``whois`` last showed)."""

    name: str
    trust: bool = False
    fingerprint: bytes | None = None


@dataclass(frozen=True, slots=True)
class HintLookup:
    """A send's handshake towards ``name`` (key ``key``) still unanswered: ask the directory
    to hint the receiver again (client/peerlinks.py), in case its PUNCH was lost; the answer
    only refreshes the peer's endpoints."""

    name: str
    key: bytes


Purpose = SignIn | SignOut | ListPage | SendLookup | VerifyLookup | WhoisLookup | HintLookup
LookupPurpose = SendLookup | VerifyLookup | WhoisLookup | HintLookup


class LookupAnswer:
    """A lookup's outcome for the part that asked: ``reply`` None when it went unanswered, or
    when the answer named someone other than the name asked (``wrong_name``: it was dropped).
    (One per send: a plain class, built natively by the compiled core.)"""

    __slots__ = ("purpose", "reply", "wrong_name")
    __match_args__ = ("purpose", "reply", "wrong_name")

    def __init__(
        self, *, purpose: LookupPurpose, reply: LookupReply | None, wrong_name: bool = False
    ) -> None:
        self.purpose: Final = purpose
        self.reply: Final = reply
        self.wrong_name: Final = wrong_name


_Reply = Welcome | Refused | LookupReply | ListReply | ByeAck
_Notice = Shutdown | HeartbeatAck | UnknownSession


class DirectorySession:
    def __init__(
        self,
        *,
        name: str,
        server: Addr,
        timings: Timings,
        random_bytes: Callable[[int], bytes],
        emit: Callable[[ClientEvent], None],
        endpoints: tuple[Addr, ...] = (),
    ) -> None:
        self.name = name
        self.endpoints = endpoints
        """Our private endpoints, declared in the HELLO (peers behind our NAT reach us there)."""
        self.observed: Addr | None = None
        """Our public endpoint as the directory saw it (from the WELCOME)."""
        self.server = server
        self.timings = timings
        self._emit = emit
        self.machine: StateMachine[State, Trigger] = StateMachine(
            CLIENT_TRANSITIONS, State.SIGNING_IN
        )
        self.requests: Requests[Purpose] = Requests(
            server=server, retry_s=timings.request_retry_s, random_bytes=random_bytes
        )
        self.token = b""
        self.last_unexpected = False
        """Whether the last :meth:`on_message` input was not for us (the core counts it)."""
        self.misanswered = 0
        """Lookup answers dropped because they named someone other than the name asked."""
        self.ended: ClientEvent | None = None
        """The event that ended the session (set once, when the state became ``gone``)."""
        self._heartbeat_s = timings.heartbeat_interval_s
        self._server_timeout_s = self._timeout_for(self._heartbeat_s)
        self._next_heartbeat = 0.0
        self._heartbeat_sent = 0.0
        self._last_heard = 0.0
        self._register_by = 0.0
        """When signing in (HELLO, then registering) gives up: request_timeout_s after connect."""
        self.outbox: list[tuple[bytes, Addr]] = []
        self.state = State.SIGNING_IN
        self.online = False
        """Signed in: commands may be given (``closing`` still finishes earlier ones)."""
        self.gone = False

    # -- state --

    def move(self, trigger: Trigger) -> None:
        """Fire ``trigger``; the state and what follows from it, as plain attributes (read on
        every datagram, so not computed on each access)."""
        self.machine.fire(trigger)
        self.set_state(self.machine.state)

    def set_state(self, state: State) -> None:
        """Be in ``state`` (:meth:`move`; a test's core that needs no directory: ``ONLINE``)."""
        self.machine.state = state
        self.state = state
        self.online = state in (State.ONLINE, State.CLOSING)
        self.gone = state is State.GONE

    def ours(self, token: bytes) -> bool:
        """``token`` is this session's, and it is online: a notice from the server is for us."""
        return self.online and bool(self.token) and token == self.token

    def refuse_server_key(self) -> None:
        """The server answered with a key we do not trust: give up signing in."""
        self._end(
            Trigger.REFUSED,
            SignInFailed(failure=SignInFailure.SERVER_KEY_MISMATCH, server=self.server),
        )

    def resend(self) -> None:
        """Send every waiting request again now (the secure layer became ready for them)."""
        self.requests.resend()

    def _end(self, trigger: Trigger, event: ClientEvent) -> None:
        self.move(trigger)
        self.requests.clear()
        self.ended = event

    # -- commands --

    def connect(self, now: float) -> None:
        self._register_by = now + self.timings.request_timeout_s  # the whole sign-in's bound
        self.requests.start(
            lambda rid: Hello(req_id=rid, name=self.name, endpoints=self.endpoints),
            SignIn(),
            now,
            timeout_s=self.timings.request_timeout_s,
        )

    def list_users(self, now: float) -> None:
        self._list_page(ListPage(), "", now)

    def lookup(self, name: str, purpose: LookupPurpose, now: float) -> None:
        self.requests.start(
            # Only a lookup to send (or to ask its hint again) asks the directory to hint the
            # receiver to punch towards us.
            lambda rid: Lookup(
                token=self.token,
                req_id=rid,
                name=name,
                punch=isinstance(purpose, (SendLookup, HintLookup)),
            ),
            purpose,
            now,
            # Once signed in, a request fails only when the server would be declared lost anyway.
            timeout_s=self.server_timeout_s(),
        )

    def close(self, now: float) -> None:
        if self.state in (State.SIGNING_IN, State.REGISTERING):
            # (A registration that did reach the server expires there: nothing was shown as
            # signed in, and a BYE needs the answer we are still waiting for.)
            self._end(Trigger.CLOSE, SignedOut())
        elif self.state is State.ONLINE:
            self.move(Trigger.CLOSE)

    @property
    def answers_pending(self) -> int:
        """Requests of the user's own commands (list, whois, trust) still waiting for an answer:
        closing waits for them, so every command typed before ``exit`` gets its answer."""
        return sum(isinstance(p, ListPage | WhoisLookup) for p in self.requests.purposes())

    def drained(self, now: float) -> None:
        """Everything asked before ``close`` is answered: sign out."""
        self.move(Trigger.DRAINED)
        self.requests.start(
            lambda rid: Bye(token=self.token, req_id=rid),
            SignOut(),
            now,
            timeout_s=self.timings.bye_timeout_s,
        )

    # -- timers --

    def server_timeout_s(self) -> float:
        return self._server_timeout_s

    def _timeout_for(self, heartbeat_s: float) -> float:
        """The server is lost after this long silent (its advertised heartbeat scales it)."""
        factor = self.timings.server_timeout_s / self.timings.heartbeat_interval_s
        return max(self.timings.server_timeout_s, heartbeat_s * factor)

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat interval: the latest the server advertised (WELCOME, HEARTBEAT_ACK)."""
        return self._heartbeat_s

    def _set_heartbeat(self, ms: int) -> None:
        """Adopt the interval the server advertises (never below a floor, whatever it says)."""
        self._heartbeat_s = max(ms / 1000, MIN_HEARTBEAT_INTERVAL_S)
        self._server_timeout_s = self._timeout_for(self._heartbeat_s)

    def next_timer(self) -> float | None:
        state = self.state
        if state is State.GONE:
            return None
        t = self.requests.next_timer()
        if state is State.REGISTERING:
            live = min(self._next_heartbeat, self._register_by)
            t = live if t is None else min(t, live)
        elif state is not State.SIGNING_IN:
            live = self._last_heard + self._server_timeout_s
            if self._next_heartbeat < live:
                live = self._next_heartbeat
            t = live if t is None or live < t else t
        return t

    def handle_timer(self, now: float) -> list[LookupAnswer]:
        if self.gone:
            return []
        answers: list[LookupAnswer] = []
        for purpose in self.requests.handle_timer(now):
            match purpose:
                case SignIn():
                    self._end(
                        Trigger.NO_ANSWER,
                        SignInFailed(failure=SignInFailure.NO_ANSWER, server=self.server),
                    )
                    return answers
                case SignOut():
                    self._end(Trigger.BYE_DONE, SignedOut())
                    return answers
                case ListPage():
                    self._emit(ListFailed())
                case SendLookup() | VerifyLookup() | WhoisLookup() | HintLookup():
                    answers.append(LookupAnswer(purpose=purpose, reply=None))
        if self.state is State.SIGNING_IN:
            return answers
        if self.state is State.REGISTERING and now >= self._register_by:
            self._end(
                Trigger.NO_ANSWER,
                SignInFailed(failure=SignInFailure.NO_ANSWER, server=self.server),
            )
            return answers
        silent = now - self._last_heard
        if silent >= self.server_timeout_s():
            self._end(Trigger.SERVER_LOST, ServerGone(reason=GoneReason.LOST, silent_s=silent))
            return answers
        if now >= self._next_heartbeat:
            # Resent every request_retry_s until answered: one lost datagram must not cost a
            # whole interval, or a lossy link would look like a dead server.
            if self._next_heartbeat >= self._heartbeat_sent + self._heartbeat_s:
                self._heartbeat_sent = now
            self.outbox.append((encode(Heartbeat(token=self.token)), self.server))
            self._next_heartbeat = now + self.timings.request_retry_s
        return answers

    def datagrams(self) -> list[tuple[bytes, Addr]]:
        requests = self.requests
        out = requests.outbox  # (Requests.datagrams, without the call: every poll runs this)
        requests.outbox = []
        if self.outbox:
            out.extend(self.outbox)
            self.outbox = []
        return out

    # -- from the server --

    def on_message(self, msg: Message, now: float) -> LookupAnswer | None:
        """Handle a datagram from the server; a lookup answer is returned to route on.

        What is not for us sets :attr:`last_unexpected`.
        """
        self.last_unexpected = False
        if self.gone:
            return None
        if isinstance(msg, _Notice):
            self._notice(msg, now)
            return None
        if not isinstance(msg, _Reply):
            self.last_unexpected = True
            return None
        purpose = self.requests.purpose(msg.req_id)
        answer: LookupAnswer | None = None
        match purpose, msg:
            case SendLookup() | VerifyLookup() | WhoisLookup() | HintLookup(), LookupReply():
                # (First: the answer every send waits for. The cases are disjoint.)
                # An answer must echo its question (as a DNS reply does): one for another name
                # would pin, send to or vouch for that user's key under the name asked.
                asked = purpose.name  # (equal strings need no folding: no calls)
                if msg.name != asked and name_key(msg.name) != name_key(asked):  # guard: asked-name
                    self.misanswered += 1
                    answer = LookupAnswer(purpose=purpose, reply=None, wrong_name=True)
                else:
                    answer = LookupAnswer(purpose=purpose, reply=msg)
            case SignIn(), Welcome():
                self.token = msg.token
                self.observed = msg.observed
                self._set_heartbeat(msg.heartbeat_ms)
                self.move(Trigger.WELCOMED)
                # The server registers us when this (or any datagram on the session) arrives;
                # its answer is what says we are signed in.
                self._heartbeat_sent = now
                self.outbox.append((encode(Heartbeat(token=self.token)), self.server))
                self._next_heartbeat = now + self.timings.request_retry_s
            case SignIn(), Refused():
                self._end(
                    Trigger.REFUSED,
                    SignInFailed(
                        failure=SignInFailure.REFUSED, server=self.server, refused=msg.reason
                    ),
                )
            case ListPage(), ListReply():
                purpose.names.extend(msg.names)
                if msg.more and msg.names:
                    self._list_page(purpose, msg.names[-1], now)
                else:
                    self._emit(UserList(names=tuple(purpose.names), total=msg.total))
            case SignOut(), ByeAck():
                self.requests.finish(msg.req_id)
                self._end(Trigger.BYE_DONE, SignedOut())
                self._last_heard = now
                return None
            case _:
                # A late duplicate answer, a forgery, or not an answer to that request.
                self.last_unexpected = True
                return None
        self.requests.finish(msg.req_id)
        self._last_heard = now
        return answer

    def _notice(self, msg: _Notice, now: float) -> None:
        if not self.token or msg.token != self.token:
            self.last_unexpected = True
            return
        self._last_heard = now
        match msg:
            case HeartbeatAck():
                self._set_heartbeat(msg.heartbeat_ms)
                self._next_heartbeat = self._heartbeat_sent + self._heartbeat_s
                if self.state is State.REGISTERING:
                    self.move(Trigger.REGISTERED)
                    self._emit(SignedIn(name=self.name))
            case Shutdown():
                self._end(Trigger.SERVER_SHUTDOWN, ServerGone(reason=GoneReason.SHUTDOWN))
            case UnknownSession() if self.state is State.SIGNING_OUT:
                self._end(Trigger.BYE_DONE, SignedOut())
            case UnknownSession():
                self._end(Trigger.SERVER_LOST, ServerGone(reason=GoneReason.SESSION_UNKNOWN))

    def _list_page(self, page: ListPage, after: str, now: float) -> None:
        self.requests.start(
            lambda rid: ListUsers(token=self.token, req_id=rid, after=after),
            page,
            now,
            timeout_s=self.server_timeout_s(),
        )
