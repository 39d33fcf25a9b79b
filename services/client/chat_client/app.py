"""chat-client: asyncio shell around :class:`chat_protocol.client.core.ClientCore`, plus the
terminal, the key store (identity, pins) and the optional history file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from chat_client.commands import HELP, TABLE, Command, parse_command
from chat_client.complete import NAMES_FRESH_S, ChatCompleter
from chat_client.exits import Ending, ExitCode, Failure, failure_of, reason_of, say
from chat_client.outbox import Outbox, clock
from chat_client.recall import TypedLines, recall_path
from chat_client.ui import (
    LineInput,
    Output,
    PromptParts,
    TerminalInput,
    install_excepthooks,
    open_input,
)
from chat_client.words import (
    ended,
    fail_text,
    refused_text,
    sign_in_failed,
    whois_failed_text,
    whois_text,
)
from chat_history import HistoryWriter, incarnation_of, message_id
from chat_protocol.client.core import ClientCore
from chat_protocol.errors import UsageError
from chat_protocol.events import (
    ClientEvent,
    KeyPinned,
    ListFailed,
    MessageDelivered,
    MessageReceived,
    PeerRefused,
    SendFailed,
    SendProgress,
    ServerGone,
    ServerKeyPinned,
    SignedIn,
    SignedOut,
    SignInFailed,
    UserList,
    WhoisFailed,
    WhoisInfo,
)
from chat_protocol.secure.identity import format_fingerprint, parse_fingerprint
from chat_protocol.wire.names import NAME_RULE, is_valid_name
from chat_shell import aio, cli
from chat_shell.floors import FileFloors, floors_path
from chat_shell.keystore import (
    KeyStore,
    KeyStoreError,
    PinStore,
    add_home_option,
    addr_text,
    home_warnings,
    resolve_home,
)

log = logging.getLogger("chat-client")

SIGNAL_GRACE_S = 2.0
"""After SIGTERM, SIGINT or SIGHUP, or a failure that ends it (stdout closed, an internal error),
the client signs out, waiting this long at most for the answers still due (a second signal quits
at once)."""


def user_name(text: str) -> str:
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(f"invalid user name {text[:40]!r}: use {NAME_RULE}")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-client",
        description="P2P UDP chat client: signs in to a directory server, then sends messages "
        "directly to other users. Commands: " + ", ".join(c.usage for c in TABLE) + ".",
    )
    p.add_argument("-u", "--user", required=True, type=user_name, help="your user name")
    cli.add_server_options(p)
    add_home_option(p)
    p.add_argument(
        "--server-key",
        metavar="FINGERPRINT",
        type=_fingerprint,
        help="the server's key fingerprint (as chat-server prints it); without it, the key the "
        "server shows on first contact is pinned for its address",
    )
    p.add_argument(
        "--history",
        metavar="FILE",
        help="append a JSON line per send, outcome and shown message (docs/HISTORY.md)",
    )
    p.add_argument(
        "--no-relay",
        dest="relay",
        action="store_false",
        help="never go through the directory's relay: a peer no direct path reaches is an error",
    )
    p.add_argument(
        "--time",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the local time (12:04) before each message line; default: on a terminal, "
        "not when stdin is a pipe or a file",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log protocol details to stderr")
    return p.parse_args(argv)


def _fingerprint(text: str) -> bytes:
    try:
        return parse_fingerprint(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class ClientShell(aio.DatagramShell[ClientEvent]):
    """The client's shell. Every way it ends goes through :meth:`end` (an event that ended the
    session, a signal, a history that cannot be written, stdout closed, an unknown error): one
    line from :mod:`chat_client.exits`, a sign-out where one is possible, and the status."""

    core: ClientCore

    def __init__(
        self,
        core: ClientCore,
        out: Output,
        pins: PinStore | None = None,
        history: HistoryWriter | None = None,
        *,
        show_time: bool = False,
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__(core)
        self.out = out
        self.pins = pins
        self.history = history
        self.show_time = show_time
        self.outbox = outbox
        """The user's own lines and their marks (on a terminal)."""
        self.names: tuple[str, ...] = ()
        """The names of the last list seen (what Tab completes)."""
        self.names_at = -NAMES_FRESH_S
        self.quiet_lists = 0
        """Lists asked for Tab's names whose answers are not printed."""
        self.incarnation = incarnation_of(core.session)
        self.signed_in: asyncio.Future[None] = self.loop.create_future()
        self.finished: asyncio.Future[ExitCode] = self.loop.create_future()
        self.interrupted = False
        self.signed_out_code = ExitCode.OK
        """The status once signed out (a signal may have asked for another)."""
        self.halted = False
        """Nothing more leaves (the history could not record what would)."""
        self.ending = False
        """:meth:`end` was called: its sign-out is under way."""
        out.on_reader_gone = lambda: self.loop.call_soon(self.end, say(Failure.READER_GONE))

    def refresh_names(self) -> None:
        """Ask the directory for the names online, quietly, unless the last list or the last
        such question is more recent than :data:`NAMES_FRESH_S`."""
        now = self.now()
        if now - self.names_at < NAMES_FRESH_S or not self.core.online or self.ending:
            return
        self.names_at = now  # (also for the question: at most one per NAMES_FRESH_S)
        try:
            self.core.list_users(now)
        except UsageError:
            return
        self.quiet_lists += 1
        self.pump()

    def mid(self, handle: int) -> str:
        return message_id(self.incarnation, handle)

    def pump(self) -> None:
        if not self.halted:
            super().pump()

    def on_event(self, event: ClientEvent) -> None:
        try:
            self._on_event(event)
        except Exception as exc:  # one event's failure must not stop the others being handled
            self.fail(exc)

    def record(self, write: Callable[[HistoryWriter], None]) -> bool:
        """Append to the history, if there is one; False (and the client ends) if it cannot."""
        h = self.history
        if h is None:
            return True
        try:
            write(h)
        except OSError as exc:
            self.history = None
            with contextlib.suppress(OSError):
                h.close()
            # Sign out only if that sends nothing the history would have had to record.
            self.end(
                say(Failure.HISTORY, path=h.path, reason=reason_of(exc)),
                sign_out=self.core.pending_sends == 0,
            )
            return False
        return True

    def _on_event(self, event: ClientEvent) -> None:
        out = self.out
        match event:
            case SignedIn():
                out.info(f"signed in as {event.name}; type 'help' for commands")
                if not self.record(lambda h: h.signed_in()):
                    return
                if not self.signed_in.done():
                    self.signed_in.set_result(None)
            case MessageReceived():
                when = clock() if self.show_time else ""
                out.message(event.sender, event.addr, event.text, new=event.new, when=when)
                mid = message_id(incarnation_of(event.session), event.msg_id)
                self.record(lambda h: h.shown(event.sender, mid, event.text))
            case MessageDelivered():
                if self.outbox is not None:
                    self.outbox.delivered(event.handle)
                self.record(lambda h: h.delivered(self.mid(event.handle), event.to))
            case SendProgress():
                if self.outbox is not None:
                    self.outbox.progress(event.handle, event.acked, event.total)
            case SendFailed():
                text = fail_text(event, self.core.timings)
                marked = self.outbox is not None and self.outbox.failed(event.handle, text)
                if not marked:
                    out.error(text)
                reason = event.reason.name.lower()
                self.record(
                    lambda h: h.not_delivered(self.mid(event.handle), event.to, reason, text)
                )
            case UserList():
                self.names, self.names_at = event.names, self.now()
                if self.quiet_lists:
                    self.quiet_lists -= 1
                else:
                    out.info(f"online ({event.total}): {', '.join(event.names)}")
            case ListFailed():
                if self.quiet_lists:
                    self.quiet_lists -= 1
                else:
                    out.error("the server did not answer the list")
            case WhoisInfo(key=None):
                out.error(f"no such user: {event.name}")
            case WhoisInfo(key=bytes() as key):
                out.info(whois_text(event, key, self.core.name, self.core.identity.public))
            case WhoisFailed():
                out.error(whois_failed_text(event))
            case PeerRefused():
                out.error(refused_text(event))
            case KeyPinned():
                self._persist(lambda p: p.repin(event.name, event.key, verified=event.verified))
            case ServerKeyPinned():
                notice = (
                    f"first contact with the server at {addr_text(event.server)}: its key "
                    f"{format_fingerprint(event.key)} is now pinned"
                )
                if out.interactive:  # like ssh's "Permanently added": for a person, not a pipe
                    out.info(notice)
                else:
                    log.info("%s", notice)
                self._persist(lambda p: p.repin_server(event.server, event.key))
            case SignInFailed():
                self.end(sign_in_failed(event, self.core.name), sign_out=False)
            case ServerGone():
                self.end(ended(event), sign_out=False)
            case SignedOut():
                out.info("signed out")
                self.record(lambda h: h.signed_out())
                self._finish(self.signed_out_code)

    def _persist(self, write: Any) -> None:
        if self.pins is None:
            return
        try:
            write(self.pins)
        except (OSError, KeyStoreError) as exc:
            self.out.error(f"cannot save a pinned key: {exc}")

    def interrupt(self, code: ExitCode = ExitCode.OK) -> None:
        """A signal (SIGTERM, SIGINT, SIGHUP): sign out like 'exit', but end within
        :data:`SIGNAL_GRACE_S` whatever is still due; a second one quits at once."""
        if self.interrupted or self.ending:
            self._finish(code)
            return
        self.interrupted = True
        self.signed_out_code = code
        self.loop.call_later(
            SIGNAL_GRACE_S, lambda: self.end(say(Failure.CUT_SHORT, code), sign_out=False)
        )
        self.core.close(self.now())
        self.pump()

    def end(self, ending: Ending, *, sign_out: bool = True) -> None:
        """End the client: ``ending``'s line, then its status, after a sign-out (``sign_out``:
        within :data:`SIGNAL_GRACE_S`, whatever answers are still due) or at once (nothing more
        is sent)."""
        if self.finished.done() or (self.ending and sign_out):
            return
        self.ending = True
        match ending.failure.shown:
            case "error":
                self.out.error(ending.text)
            case "info":
                self.out.info(ending.text)
        if not sign_out:
            self._finish(ending.code)
            self.halted = True
            return
        self.signed_out_code = ending.code
        self.loop.call_later(SIGNAL_GRACE_S, self._finish, ending.code)
        try:
            self.core.close(self.now())
            self.pump()
        except Exception as exc:  # (the failure being reported may be the core's own)
            log.debug("signing out", exc_info=exc)
            self._finish(ending.code)

    def is_ending(self) -> bool:
        """:meth:`end` was called (whatever it still waits for)."""
        return self.ending

    def fail(self, exc: BaseException) -> None:
        """An exception nothing closer handled: its words (:func:`failure_of`), then :meth:`end`."""
        log.debug("internal error", exc_info=exc)
        self.end(failure_of(exc))

    def _finish(self, code: ExitCode) -> None:
        if not self.finished.done():
            self.finished.set_result(code)


def execute(cmd: Command, shell: ClientShell) -> None:
    core, out, now = shell.core, shell.out, shell.now()
    try:
        match cmd.name:
            case "help":
                out.info(HELP)
            case "list":
                core.list_users(now)
            case "send":
                handle = core.send(cmd.user, cmd.text, now)
                if not shell.record(lambda h: h.send(shell.mid(handle), cmd.user, cmd.text)):
                    return  # not recorded, so not sent (:meth:`ClientShell.end` halted it)
                if shell.outbox is not None:
                    shell.outbox.sent(handle, cmd.user, cmd.text)
            case "whois":
                core.whois(cmd.user, now)
            case "trust":
                fingerprint = parse_fingerprint(cmd.text) if cmd.text else None
                core.whois(cmd.user, now, trust=True, fingerprint=fingerprint)
            case "exit":
                core.close(now)
    except UsageError as exc:
        out.error(str(exc))
    shell.pump()


def is_send(line: str) -> bool:
    """A line that sends a message: on a terminal its echo (with its mark) replaces it. (A line
    the core refuses, such as one naming an invalid user, stays: its error follows it.)"""
    try:
        cmd = parse_command(line)
    except UsageError:
        return False
    return cmd is not None and cmd.name == "send" and is_valid_name(cmd.user)


async def read_commands(shell: ClientShell, lines: LineInput) -> None:
    """Run commands until the input ends or asks to exit, then sign out (after pending sends)."""
    while not shell.is_ending():
        try:
            line = await lines.readline()
            if line is None:
                break
            if shell.is_ending():  # (no command runs once the client is ending)
                return
            cmd = parse_command(line)
        except UsageError as exc:
            shell.out.error(str(exc))
            continue
        if cmd is None:
            continue
        execute(cmd, shell)
        if cmd.name == "exit":
            return
    if not shell.is_ending():
        shell.core.close(shell.now())
        shell.pump()


async def run(args: argparse.Namespace) -> int:
    out = Output(interactive=sys.stdin.isatty())
    install_excepthooks(out)
    try:
        server = aio.resolve(args.server, args.port)
    except (OSError, UnicodeError) as exc:
        return out.ending(say(Failure.UNRESOLVED, host=args.server, reason=reason_of(exc)))
    try:
        home = resolve_home(args.home)
        for warning in home_warnings(home):
            out.warning(warning)
        store = KeyStore(home)
        identity = store.user_key(args.user)
        pins = store.pins(args.user)
        server_key = pins.pinned_server(server)
        pinned = pins.users()
        verified = pins.verified_users()
        floors = FileFloors(floors_path(store.home, args.user))
    except (OSError, KeyStoreError) as exc:
        return out.ending(say(Failure.HOME, reason=reason_of_file(exc)))
    loop = asyncio.get_running_loop()
    core = ClientCore(
        name=args.user,
        server=server,
        identity=identity,
        server_key=None if args.server_key else server_key,
        server_fingerprint=args.server_key,
        pins=pinned,
        verified_pins=verified,
        clock_offset_s=time.time() - loop.time(),
        floors=floors,
        relay=args.relay,
    )
    history = None
    if args.history:
        try:
            history = HistoryWriter(
                args.history,
                client=args.user,
                incarnation=incarnation_of(core.session),
                clock=time.monotonic,
                wall=time.time,
            )
        except OSError as exc:
            return out.ending(say(Failure.HISTORY, path=args.history, reason=reason_of(exc)))
    show_time = out.interactive if args.time is None else args.time
    outbox = (
        Outbox(print_rows=out.rows, changed=lambda: None, show_time=show_time, width=out.width)
        if out.interactive
        else None
    )
    local = "::" if ":" in server[0] else "0.0.0.0"
    try:
        shell = await aio.open_endpoint(
            lambda: ClientShell(core, out, pins, history, show_time=show_time, outbox=outbox),
            host=local,
            port=0,
        )
    except OSError as exc:
        return out.ending(say(Failure.SOCKET, reason=reason_of(exc)))
    install_excepthooks(out, on_error=shell.fail)
    code: int = ExitCode.INTERNAL
    try:
        port = int(shell.transport.get_extra_info("sockname")[1]) if shell.transport else 0
        core.declare_local(aio.local_endpoints(port, server))
        for sig, status in SIGNALS.items():
            loop.add_signal_handler(sig, shell.interrupt, status)
        core.connect(shell.now())
        shell.pump()
        waiting: set[asyncio.Future[Any]] = {shell.signed_in, shell.finished}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if shell.finished.done():
            code = shell.finished.result()
            return code
        parts = None
        if outbox is not None:
            parts = PromptParts(
                above=outbox.live,
                completer=ChatCompleter(lambda: shell.names, shell.refresh_names),
                history=TypedLines(recall_path(store.home, args.user), out.warning),
                erase=is_send,
            )
            shell.refresh_names()
        async with open_input(out, parts) as lines:
            if outbox is not None and isinstance(lines, TerminalInput):
                outbox.changed = lines.redraw
            reader = asyncio.create_task(read_commands(shell, lines))
            reader.add_done_callback(_report_failure(shell))
            code = await shell.finished
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if args.verbose:
            stats = " ".join(f"{k}={v}" for k, v in core.stats.as_dict().items())
            log.info("stats: %s", stats)
        return code
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        shell.close()
        if shell.history is not None:
            with contextlib.suppress(OSError):  # it was told (HISTORY) if writing failed before
                shell.history.exit(int(code))
            with contextlib.suppress(OSError):
                shell.history.close()


SIGNALS = {
    signal.SIGTERM: ExitCode.OK,
    signal.SIGINT: ExitCode.OK,
    signal.SIGHUP: ExitCode.HANGUP,
}
"""The signals that sign the client out, and the status each ends it with."""


def _report_failure(shell: ClientShell) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            shell.fail(exc)

    return done


def reason_of_file(exc: BaseException) -> str:
    """A key store error as it says itself; an OS error as ``PATH: reason``."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {reason_of(exc)}"
    return reason_of(exc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.log_to_stderr(args.verbose)
    try:
        return int(aio.run(run(args)))
    except KeyboardInterrupt:
        return ExitCode.OK
