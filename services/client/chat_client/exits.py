"""chat-client's exit statuses and the words for every failure that ends it: the one table of
both (docs/CLI.md's tables are checked against it by tests/unit/test_exits.py).

:func:`failure_of` is the one place where an exception becomes words: every known failure (an
OS error with its errno, a broken pipe, a key store error, a decode error, recursion) maps to one
line and a status; anything else is an internal error with a pointer to ``-v``.
"""

from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from enum import Enum, IntEnum

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
    UNRESOLVED = 8
    HISTORY = 9
    HANGUP = 128 + signal.SIGHUP
    READER_GONE = 128 + signal.SIGPIPE


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "signed out normally (exit, Ctrl-D, end of piped input, Ctrl-C, SIGTERM)",
    ExitCode.INTERNAL: "internal error, or no local UDP socket could be opened",
    ExitCode.USAGE: (
        "usage error: bad arguments, an invalid name, an unusable home, key or pin file"
    ),
    ExitCode.REFUSED: (
        "sign-in refused (name taken, name bound to another key, server full, too many users "
        "from the address)"
    ),
    ExitCode.NO_SERVER: "no server answering at sign-in (within ~3 s)",
    ExitCode.SERVER_LOST: "server lost (killed; no reply for ~5 s; or it forgot this client)",
    ExitCode.SERVER_SHUTDOWN: "server shut down (SIGTERM/Ctrl-C; within ~1 s)",
    ExitCode.SERVER_KEY_MISMATCH: "the server's key is not the one given with `--server-key`",
    ExitCode.UNRESOLVED: "cannot resolve the server: `-sip` is no address and no known host name",
    ExitCode.HISTORY: "the `--history` file cannot be opened or written (nothing more is sent)",
    ExitCode.HANGUP: "SIGHUP (the terminal closed): signed out where possible",
    ExitCode.READER_GONE: "stdout closed (the reader is gone, as `cat` on SIGPIPE): quietly",
}
"""What each status means (docs/CLI.md, "Exit codes (client)")."""


class Failure(Enum):
    """Every failure that ends the client: its words (a template), its status, and how the line
    is shown (``error: ...`` on stderr, a plain line on stdout, or nothing)."""

    UNRESOLVED = ("cannot resolve the server {host!r}: {reason}", ExitCode.UNRESOLVED, "error")
    HOME = ("cannot use the home directory: {reason}", ExitCode.USAGE, "error")
    SOCKET = ("cannot open a UDP socket: {reason}", ExitCode.INTERNAL, "error")
    HISTORY = (
        "cannot write the history file {path}: {reason}; nothing more is sent",
        ExitCode.HISTORY,
        "error",
    )
    REFUSED = ("{reason}", ExitCode.REFUSED, "error")
    NO_SERVER = ("no answer from the server at {server}", ExitCode.NO_SERVER, "error")
    SERVER_KEY = (
        "the server at {server} does not have the key given with --server-key; not signing in",
        ExitCode.SERVER_KEY_MISMATCH,
        "error",
    )
    LOST = (
        "lost contact with the server (no reply for {silent} s); exiting",
        ExitCode.SERVER_LOST,
        "info",
    )
    FORGOTTEN = (
        "the server signed this client out (it heard nothing from it for too long); exiting",
        ExitCode.SERVER_LOST,
        "info",
    )
    SHUTDOWN = ("the server shut down; exiting", ExitCode.SERVER_SHUTDOWN, "info")
    CUT_SHORT = (
        "a signal ended the client before every answer came (sends not confirmed, lists not "
        "answered)",
        ExitCode.OK,
        "error",
    )
    READER_GONE = ("", ExitCode.READER_GONE, "none")
    INTERNAL = ("internal error ({type}); see --verbose", ExitCode.INTERNAL, "error")

    def __init__(self, template: str, code: ExitCode, shown: str) -> None:
        self.template = template
        self.code = code
        self.shown = shown


@dataclass(frozen=True, slots=True)
class Ending:
    """One failure, in words: ``text`` (without ``error:``) and ``code``."""

    failure: Failure
    text: str
    status: ExitCode | None = None
    """Another status than the failure's own (a signal's)."""

    @property
    def code(self) -> ExitCode:
        return self.failure.code if self.status is None else self.status


def say(failure: Failure, status: ExitCode | None = None, **fields: object) -> Ending:
    return Ending(failure, failure.template.format(**fields), status)


def reason_of(exc: BaseException) -> str:
    """An OS error as the OS says it (``No space left on device``), else its text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def is_reader_gone(exc: BaseException) -> bool:
    """A write to a closed pipe or a hung-up terminal: nobody reads the output any more."""
    return isinstance(exc, BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EIO)
    )


def failure_of(exc: BaseException) -> Ending:
    """The words for an exception nothing closer handled."""
    if is_reader_gone(exc):
        return say(Failure.READER_GONE)
    return say(Failure.INTERNAL, type=type(exc).__name__)


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


def exit_table() -> str:
    """docs/CLI.md's "Exit codes (client)" table, from :data:`MEANING`."""
    rows = [f"| {int(code)} | {MEANING[code]} |" for code in ExitCode]
    return "\n".join(["| code | meaning |", "| --- | --- |", *rows])


def failure_table() -> str:
    """docs/CLI.md's "Lines that end the client" table, from :class:`Failure` (``{...}``: filled
    in; ``error:`` lines go to stderr when piped)."""
    shown = {"error": "`error: {}`", "info": "`{}`", "none": "(nothing)"}
    rows = [
        f"| {shown[f.shown].format(f.template) if f.template else shown['none']} | "
        f"{int(f.code)} |"
        for f in Failure
    ]
    return "\n".join(["| line | exit code |", "| --- | --- |", *rows])
