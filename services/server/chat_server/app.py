"""chat-server: asyncio shell around :class:`chat_protocol.server.core.ServerCore`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from enum import IntEnum

from chat_protocol import core_kind
from chat_protocol.const import MAX_USERS_PER_IP, PROBE_TIMEOUT_S, STATS_INTERVAL_S
from chat_protocol.errors import UsageError
from chat_protocol.events import ServerEvent, UserJoined, UserLeft
from chat_protocol.secure.identity import format_fingerprint
from chat_protocol.secure.noise import KeyPair
from chat_protocol.server.bindings import NameBindings
from chat_protocol.server.core import ServerCore
from chat_protocol.server.probe import ProbeAnswered, ProbeCore, ProbeEvent
from chat_protocol.wire.names import check_name, name_key
from chat_server.names_db import NamesDbError, SqliteNames
from chat_shell import aio, cli
from chat_shell.keystore import (
    KeyStore,
    KeyStoreError,
    add_home_option,
    addr_text,
    home_path,
    home_warnings,
    resolve_home,
)

log = logging.getLogger("chat-server")
GC_THRESHOLD_OBJECTS = 50_000


class ServerExit(IntEnum):
    """chat-server's exit statuses (docs/CLI.md's table is checked against :data:`MEANING`)."""

    OK = 0
    FAILED = 1
    USAGE = 2


MEANING = {
    ServerExit.OK: "stopped by SIGTERM/SIGINT after notifying every client; `--probe`: answered",
    ServerExit.FAILED: "cannot listen (port in use, not an address of this host, unresolvable "
    "`--host`), an internal error; `--probe`: no answer; `names`: the name is not bound, or the "
    "bindings file cannot be opened",
    ServerExit.USAGE: "usage error: bad arguments, an unusable home, key or bindings file; "
    "`names release`: an invalid name",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-server",
        description="Directory server of the P2P UDP chat: clients sign in here and look each "
        "other up; messages go directly between clients.",
    )
    cli.add_port_option(p, allow_zero=True, what="UDP port to listen on; 0 picks a free one")
    add_home_option(p)
    p.add_argument(
        "--max-users-per-ip",
        type=cli.int_type(1),
        default=MAX_USERS_PER_IP,
        metavar="N",
        help="names one source IP may hold at a time (default: %(default)s)",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="more log: counters of datagrams and drops every 5 s",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="instead of serving, check that a server answers at --host (default 127.0.0.1) "
        "and --port; exit 0 if it does",
    )
    commands = p.add_subparsers(dest="command", metavar="names {list,release}")
    names = commands.add_parser(
        "names",
        help="operator commands: the names bound to keys (a name belongs to the first key that "
        "signed it in)",
    )
    names_commands = names.add_subparsers(dest="names_command", required=True)
    listing = names_commands.add_parser(
        "list", help="every bound name, its key's fingerprint, its first and latest sign-in"
    )
    release = names_commands.add_parser(
        "release",
        help="free NAME (its user lost the key): the next key to sign it in owns it; works "
        "while the server runs",
    )
    release.add_argument("name", metavar="NAME")
    for sub in (listing, release):
        sub.add_argument(
            "--home",
            metavar="DIR",
            type=home_path,
            default=argparse.SUPPRESS,
            help="the server's home directory (as for serving)",
        )
    return p.parse_args(argv)


class ServerShell(aio.DatagramShell[ServerEvent]):
    core: ServerCore

    def on_event(self, event: ServerEvent) -> None:
        match event:
            case UserJoined():
                log.info("%s signed in from %s:%d", event.name, *event.addr)
            case UserLeft():
                log.info("%s %s", event.name, "timed out" if event.timed_out else "signed out")


class ProbeShell(aio.DatagramShell[ProbeEvent]):
    core: ProbeCore

    def __init__(self, core: ProbeCore) -> None:
        super().__init__(core)
        self.result: asyncio.Future[ProbeEvent] = self.loop.create_future()

    def on_event(self, event: ProbeEvent) -> None:
        if not self.result.done():
            self.result.set_result(event)


async def serve(
    host: str, port: int, identity: KeyPair, max_users_per_ip: int, names: NameBindings
) -> int:
    loop = asyncio.get_running_loop()
    core = ServerCore(identity=identity, max_users_per_ip=max_users_per_ip, names=names)
    try:
        shell = await aio.open_endpoint(lambda: ServerShell(core), host=host, port=port)
    except OSError as exc:
        where, reason = addr_text((host, port)), exc.strerror or exc
        print(f"chat-server: error: cannot listen on {where}: {reason}", file=sys.stderr)
        return ServerExit.FAILED
    assert shell.transport is not None
    bound = shell.transport.get_extra_info("sockname")
    print(
        f"chat-server listening on {addr_text((bound[0], bound[1]))} "
        f"({aio.loop_name()}, {core_kind()}); "
        f"key fingerprint {format_fingerprint(identity.public)}",
        file=sys.stderr,
        flush=True,
    )
    loop.set_exception_handler(_report)
    stats_task = asyncio.create_task(log_stats(core)) if log.isEnabledFor(logging.DEBUG) else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if stats_task is not None:
        stats_task.cancel()
    core.shutdown(shell.now())
    shell.pump()
    # Let the notices leave the socket buffer before closing it.
    await asyncio.sleep(0)
    shell.close()
    stats = " ".join(f"{k}={v}" for k, v in core.stats.as_dict().items())
    print(
        f"chat-server stopped ({len(core.users)} users notified; {stats})",
        file=sys.stderr,
        flush=True,
    )
    return 0


def _report(_loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """An exception the event loop caught while serving (a callback, a datagram's handling): one
    log line, the traceback only with -v; the server goes on serving everyone else."""
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        log.debug("internal error", exc_info=exc)
        log.error("internal error (%s); see -v", type(exc).__name__)
    else:
        log.debug("event loop: %s", context.get("message"))


async def log_stats(core: ServerCore) -> None:
    """-v: every few seconds, a line of counters (datagrams, drops by cause, users) if changed."""
    last: dict[str, int] = {}
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        now = core.stats.as_dict() | {"users": len(core.users)}
        if now != last:
            log.debug("stats %s", " ".join(f"{k}={v}" for k, v in now.items()))
            last = now


async def probe(host: str, port: int) -> int:
    try:
        target = aio.resolve(host, port)
        local = "::" if ":" in target[0] else "0.0.0.0"
        core = ProbeCore(server=target, timeout_s=PROBE_TIMEOUT_S, tries=4, random_bytes=os.urandom)
        shell = await aio.open_endpoint(lambda: ProbeShell(core), host=local, port=0)
    except OSError as exc:
        print(f"chat-server: probe: {exc.strerror or exc}", file=sys.stderr)
        return ServerExit.FAILED
    try:
        core.start(shell.now())
        shell.pump()
        result = await shell.result
    finally:
        shell.close()
    if isinstance(result, ProbeAnswered):
        print(f"ok: server at {addr_text(target)} answers")
        return ServerExit.OK
    print(f"chat-server: probe: no answer from {addr_text(target)}", file=sys.stderr)
    return ServerExit.FAILED


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def names_command(args: argparse.Namespace) -> int:
    """``chat-server names list`` / ``names release NAME`` on the home's bindings."""
    try:
        store = SqliteNames(resolve_home(args.home))
    except NamesDbError as exc:
        print(f"chat-server: error: {exc}", file=sys.stderr)
        return ServerExit.FAILED
    try:
        if args.names_command == "list":
            bound = store.all()
            for b in bound:
                print(
                    f"{b.name}  {format_fingerprint(b.key)}  bound {_when(b.bound_at)}  "
                    f"last sign-in {_when(b.used_at)}"
                )
            if not bound:
                print("no names are bound")
            return ServerExit.OK
        try:
            name = name_key(check_name(args.name))
        except UsageError as exc:
            print(f"chat-server: error: {exc}", file=sys.stderr)
            return ServerExit.USAGE
        released = store.release(name)
        if released is None:
            print(f"chat-server: error: the name {name!r} is not bound", file=sys.stderr)
            return ServerExit.FAILED
        print(
            f"released {name!r} (it belonged to {format_fingerprint(released.key)}); the next "
            "key to sign it in owns it"
        )
        return ServerExit.OK
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """The server's one place where errors become words: a known failure is one line and its
    status (:class:`ServerExit`); anything else ``internal error (TYPE); see -v``, exit 1."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(_main(args))
    except KeyboardInterrupt:
        return ServerExit.OK
    except Exception as exc:
        log.debug("internal error", exc_info=exc)
        print(f"chat-server: error: internal error ({type(exc).__name__}); see -v", file=sys.stderr)
        return ServerExit.FAILED


def _main(args: argparse.Namespace) -> int:
    if args.command == "names":
        return names_command(args)
    if args.probe:
        host = "127.0.0.1" if args.host == "0.0.0.0" else args.host
        return aio.run(probe(host, args.port))
    # Requests allocate short-lived, acyclic objects (freed by reference counting); a large
    # directory is long-lived. Collect cycles rarely, and never re-scan what start-up made.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD_OBJECTS, 50, 1000)
    try:
        home = resolve_home(args.home)
        for warning in home_warnings(home):
            print(f"chat-server: warning: {warning}", file=sys.stderr)
        identity = KeyStore(home).server_key()
        names = SqliteNames(home)
    except (OSError, KeyStoreError, NamesDbError) as exc:
        reason = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
        print(f"chat-server: error: cannot use the home directory: {reason}", file=sys.stderr)
        return ServerExit.USAGE
    try:
        return aio.run(serve(args.host, args.port, identity, args.max_users_per_ip, names))
    finally:
        names.close()
