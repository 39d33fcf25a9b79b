"""chat-client: asyncio shell around :class:`chat_protocol.client.ClientCore`, plus the terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from chat_client.commands import HELP, Command, parse_command
from chat_client.exits import ExitCode, exit_code
from chat_client.ui import LineInput, Output, open_input
from chat_client.words import ended_text, fail_text, sign_in_failed_text
from chat_protocol.client import ClientCore
from chat_protocol.errors import UsageError
from chat_protocol.events import (
    ClientEvent,
    ListFailed,
    MessageReceived,
    SendFailed,
    ServerGone,
    SignedIn,
    SignedOut,
    SignInFailed,
    UserList,
)
from chat_protocol.names import NAME_RULE, is_valid_name
from chat_shell import aio, cli

log = logging.getLogger("chat-client")


def user_name(text: str) -> str:
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(f"invalid user name {text[:40]!r}: use {NAME_RULE}")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-client",
        description="P2P UDP chat client: signs in to a directory server, then sends messages "
        "directly to other users. Commands: list, send USER MESSAGE, help, exit.",
    )
    p.add_argument("-u", "--user", required=True, type=user_name, help="your user name")
    p.add_argument(
        "-sip",
        "--server",
        default=os.environ.get("CHAT_SERVER", "127.0.0.1"),
        help="server IP or host name (default: $CHAT_SERVER or %(default)s)",
    )
    cli.add_port_option(p, allow_zero=False, what="server UDP port")
    p.add_argument("-v", "--verbose", action="store_true", help="log protocol details to stderr")
    return p.parse_args(argv)


class ClientShell(aio.DatagramShell[ClientEvent]):
    core: ClientCore

    def __init__(self, core: ClientCore, out: Output) -> None:
        super().__init__(core)
        self.out = out
        self.signed_in: asyncio.Future[None] = self.loop.create_future()
        self.finished: asyncio.Future[ExitCode] = self.loop.create_future()
        self.interrupted = False

    def on_event(self, event: ClientEvent) -> None:
        out = self.out
        match event:
            case SignedIn():
                out.info(f"signed in as {event.name}; type 'help' for commands")
                if not self.signed_in.done():
                    self.signed_in.set_result(None)
            case MessageReceived():
                out.message(event.sender, event.addr, event.text, verified=event.verified)
            case UserList():
                out.info(f"online ({event.total}): {', '.join(event.names)}")
            case SendFailed():
                out.error(fail_text(event, self.core.timings))
            case ListFailed():
                out.error("the server did not answer the list")
            case SignInFailed():
                out.error(sign_in_failed_text(event, self.core.name))
                self._finish(exit_code(event))
            case ServerGone():
                out.info(f"{ended_text(event)}; exiting")
                self._finish(exit_code(event))
            case SignedOut():
                out.info("signed out")
                self._finish(ExitCode.OK)
            case _:
                log.debug("%s", event)

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
                core.send(cmd.user, cmd.text, now)
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
    try:
        server = aio.resolve(args.server, args.port)
    except (OSError, UnicodeError) as exc:
        out.error(f"cannot resolve server {args.server!r}: {exc}")
        return ExitCode.NO_SERVER
    core = ClientCore(name=args.user, server=server)
    local = "::" if ":" in server[0] else "0.0.0.0"
    shell = await aio.open_endpoint(lambda: ClientShell(core, out), host=local, port=0)
    try:
        core.connect(shell.now())
        shell.pump()
        waiting: set[asyncio.Future[Any]] = {shell.signed_in, shell.finished}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if shell.finished.done():
            return shell.finished.result()
        loop = asyncio.get_running_loop()
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
