"""chat-client: asyncio shell around :class:`chat_protocol.client.core.ClientCore`, plus the
terminal, the key store (identity, pins) and the optional history file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from chat_check.history import HistoryWriter, incarnation_of, message_id
from chat_client.commands import HELP, Command, parse_command
from chat_client.exits import ExitCode, exit_code
from chat_client.ui import LineInput, Output, install_excepthooks, open_input
from chat_client.words import (
    ended_text,
    fail_text,
    refused_text,
    sign_in_failed_text,
    whois_failed_text,
    whois_text,
)
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
from chat_shell.keystore import KeyStore, KeyStoreError, PinStore, add_home_option, resolve_home

log = logging.getLogger("chat-client")

TEST_FAULT_ENV = "CHAT_TEST_FAULT"
"""Test-only: ``drop-one-shown`` makes the client skip printing the first message it is handed
(it is acknowledged all the same): a deliberately broken client for the history checker."""


def user_name(text: str) -> str:
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(f"invalid user name {text[:40]!r}: use {NAME_RULE}")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-client",
        description="P2P UDP chat client: signs in to a directory server, then sends messages "
        "directly to other users. Commands: list, send USER MESSAGE, whois USER, "
        "trust USER [FINGERPRINT], help, exit.",
    )
    p.add_argument("-u", "--user", required=True, type=user_name, help="your user name")
    p.add_argument(
        "-sip",
        "--server",
        default=os.environ.get("CHAT_SERVER", "127.0.0.1"),
        help="server IP or host name (default: $CHAT_SERVER or %(default)s)",
    )
    cli.add_port_option(p, allow_zero=False, what="server UDP port")
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
    p.add_argument("-v", "--verbose", action="store_true", help="log protocol details to stderr")
    return p.parse_args(argv)


def _fingerprint(text: str) -> bytes:
    try:
        return parse_fingerprint(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class ClientShell(aio.DatagramShell[ClientEvent]):
    core: ClientCore

    def __init__(
        self,
        core: ClientCore,
        out: Output,
        pins: PinStore | None = None,
        history: HistoryWriter | None = None,
    ) -> None:
        super().__init__(core)
        self.out = out
        self.pins = pins
        self.history = history
        self.incarnation = incarnation_of(core.session)
        self._drop_one_shown = os.environ.get(TEST_FAULT_ENV) == "drop-one-shown"
        self.signed_in: asyncio.Future[None] = self.loop.create_future()
        self.finished: asyncio.Future[ExitCode] = self.loop.create_future()
        self.interrupted = False

    def mid(self, handle: int) -> str:
        return message_id(self.incarnation, handle)

    def on_event(self, event: ClientEvent) -> None:
        out, h = self.out, self.history
        match event:
            case SignedIn():
                out.info(f"signed in as {event.name}; type 'help' for commands")
                if h:
                    h.signed_in()
                if not self.signed_in.done():
                    self.signed_in.set_result(None)
            case MessageReceived():
                if self._drop_one_shown:
                    self._drop_one_shown = False  # test-only fault: acknowledged, never shown
                    return
                out.message(event.sender, event.addr, event.text, new=event.new)
                if h:
                    mid = message_id(incarnation_of(event.session), event.msg_id)
                    h.shown(event.sender, mid, event.text)
            case MessageDelivered():
                if h:
                    h.delivered(self.mid(event.handle), event.to)
            case SendFailed():
                text = fail_text(event, self.core.timings)
                out.error(text)
                if h:
                    reason = event.reason.name.lower()
                    h.not_delivered(self.mid(event.handle), event.to, reason, text)
            case UserList():
                out.info(f"online ({event.total}): {', '.join(event.names)}")
            case ListFailed():
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
                host, port = event.server
                notice = (
                    f"first contact with the server at {host}:{port}: its key "
                    f"{format_fingerprint(event.key)} is now pinned"
                )
                if out.interactive:  # like ssh's "Permanently added": for a person, not a pipe
                    out.info(notice)
                else:
                    log.info("%s", notice)
                self._persist(lambda p: p.repin_server(event.server, event.key))
            case SignInFailed():
                out.error(sign_in_failed_text(event, self.core.name))
                self._finish(exit_code(event))
            case ServerGone():
                out.info(f"{ended_text(event)}; exiting")
                self._finish(exit_code(event))
            case SignedOut():
                out.info("signed out")
                if h:
                    h.signed_out()
                self._finish(ExitCode.OK)

    def _persist(self, write: Any) -> None:
        if self.pins is None:
            return
        try:
            write(self.pins)
        except (OSError, KeyStoreError) as exc:
            self.out.error(f"cannot save a pinned key: {exc}")

    def interrupt(self) -> None:
        """SIGTERM/SIGINT: sign out like 'exit'; a second one quits without waiting."""
        if self.interrupted:
            self._finish(ExitCode.OK)
            return
        self.interrupted = True
        self.core.close(self.now())
        self.pump()

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
                if shell.history:
                    shell.history.send(shell.mid(handle), cmd.user, cmd.text)
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


async def read_commands(shell: ClientShell, lines: LineInput) -> None:
    """Run commands until the input ends or asks to exit, then sign out (after pending sends)."""
    while True:
        line = await lines.readline()
        if line is None:
            break
        try:
            cmd = parse_command(line)
        except UsageError as exc:
            shell.out.error(str(exc))
            continue
        if cmd is None:
            continue
        execute(cmd, shell)
        if cmd.name == "exit":
            return
    shell.core.close(shell.now())
    shell.pump()


async def run(args: argparse.Namespace) -> int:
    out = Output(interactive=sys.stdin.isatty())
    install_excepthooks(out)
    try:
        server = aio.resolve(args.server, args.port)
    except (OSError, UnicodeError) as exc:
        out.error(f"cannot resolve server {args.server!r}: {exc}")
        return ExitCode.NO_SERVER
    try:
        store = KeyStore(resolve_home(args.home))
        identity = store.user_key(args.user)
        pins = store.pins(args.user)
        server_key = pins.pinned_server(server)
        pinned = pins.users()
        verified = pins.verified_users()
    except (OSError, KeyStoreError) as exc:
        out.error(f"cannot use the home directory: {exc}")
        return ExitCode.USAGE
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
            out.error(f"cannot open the history file: {exc}")
            return ExitCode.USAGE
    local = "::" if ":" in server[0] else "0.0.0.0"
    shell = await aio.open_endpoint(
        lambda: ClientShell(core, out, pins, history), host=local, port=0
    )
    code: int = ExitCode.INTERNAL
    try:
        port = int(shell.transport.get_extra_info("sockname")[1]) if shell.transport else 0
        core.declare_local(aio.local_endpoints(port, server))
        core.connect(shell.now())
        shell.pump()
        waiting: set[asyncio.Future[Any]] = {shell.signed_in, shell.finished}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if shell.finished.done():
            code = shell.finished.result()
            return code
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shell.interrupt)
        async with open_input(out) as lines:
            reader = asyncio.create_task(read_commands(shell, lines))
            code = await shell.finished
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if args.verbose:
            stats = " ".join(f"{k}={v}" for k, v in core.stats.as_dict().items())
            log.info("stats: %s", stats)
        return code
    finally:
        shell.close()
        if history is not None:
            history.exit(int(code))
            history.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(aio.run(run(args)))
    except KeyboardInterrupt:
        return ExitCode.OK
