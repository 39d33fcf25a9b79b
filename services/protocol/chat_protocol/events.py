"""What the cores tell their shells. Immutable; the shell prints or logs them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from chat_protocol.messages import Addr


class ExitCode(IntEnum):
    """Client exit statuses (docs/CLI.md)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    REFUSED = 3
    NO_SERVER = 4
    SERVER_LOST = 5
    SERVER_SHUTDOWN = 6


# --- client events ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedIn:
    name: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SignInFailed:
    reason: str
    exit_code: ExitCode


@dataclass(frozen=True, kw_only=True, slots=True)
class UserList:
    names: tuple[str, ...]
    total: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RequestFailed:
    """A list request got no answer."""

    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageReceived:
    sender: str
    addr: Addr
    text: str
    verified: bool
    """The directory confirms ``sender`` is signed in at ``addr``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class MessageDelivered:
    handle: int
    to: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SendFailed:
    handle: int
    to: str
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerGone:
    reason: str
    exit_code: ExitCode


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedOut:
    pass


ClientEvent = (
    SignedIn
    | SignInFailed
    | UserList
    | RequestFailed
    | MessageReceived
    | MessageDelivered
    | SendFailed
    | ServerGone
    | SignedOut
)


# --- server events ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class UserJoined:
    name: str
    addr: Addr


@dataclass(frozen=True, kw_only=True, slots=True)
class UserLeft:
    name: str
    addr: Addr
    timed_out: bool


ServerEvent = UserJoined | UserLeft
