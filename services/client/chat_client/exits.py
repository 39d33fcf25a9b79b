"""chat-client's exit statuses (docs/CLI.md): the program's words, not the protocol's."""

from __future__ import annotations

from enum import IntEnum

from chat_protocol.events import (
    ClientEvent,
    GoneReason,
    ServerGone,
    SignedOut,
    SignInFailed,
    SignInFailure,
)


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    REFUSED = 3
    """Sign-in refused: name taken, bound to another key, invalid; server full; address quota."""
    NO_SERVER = 4
    SERVER_LOST = 5
    SERVER_SHUTDOWN = 6
    SERVER_KEY_MISMATCH = 7


def exit_code(ended: ClientEvent) -> ExitCode:
    """The status for the event that ended a session."""
    match ended:
        case SignInFailed(failure=SignInFailure.REFUSED):
            return ExitCode.REFUSED
        case SignInFailed(failure=SignInFailure.SERVER_KEY_MISMATCH):
            return ExitCode.SERVER_KEY_MISMATCH
        case SignInFailed():
            return ExitCode.NO_SERVER
        case ServerGone(reason=GoneReason.SHUTDOWN):
            return ExitCode.SERVER_SHUTDOWN
        case ServerGone():
            return ExitCode.SERVER_LOST
        case SignedOut():
            return ExitCode.OK
    return ExitCode.INTERNAL
