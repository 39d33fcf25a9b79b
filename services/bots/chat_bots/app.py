"""chat-bots: N scripted clients in one process, each a :class:`ClientCore` behind its own
asyncio datagram endpoint (chat_shell.aio), like chat-client but driven by a script instead of a
terminal.

Each bot signs in under a unique name (``PREFIX`` + its number), asks the directory for the
``list`` of users every ``--list-every`` seconds, keeps up to ``--peers`` of the names listed as
its partners (a partner that leaves the list is replaced), and sends one message every
``1 / --rate`` seconds (with jitter) to a random partner, at most ``--window`` of its sends
unresolved at a time. Every bot appends to ``DIR/NAME.jsonl`` with chat-client's own history
writer (docs/HISTORY.md), so ``chat-check DIR`` judges a bot run exactly as a client run.

A bot whose sign-in fails, or whose server is gone, ends that incarnation (an ``exit`` record)
and signs in again after ``--retry`` seconds as a new incarnation (a new session; the same name
and key, kept in ``--home``). SIGTERM or SIGINT: every bot stops sending, waits for its sends'
outcomes, signs out, and the program exits 0 (a second signal: at once).

With ``--key-seed`` (``$BOTS_KEY_SEED``) a bot's key is derived from the seed and its name
instead of kept in ``--home``: a task of the stack started on another node (its node drained, or
placed elsewhere after a kill) signs its bots in as the same users, whose names the directory
has bound to those keys. Anybody with the seed is any of the bots: a lab's, never a person's.

With ``--messages M`` each bot stops sending after M messages; once all have and every outcome
is in, the program prints ``bots: done`` and goes on receiving until it is told to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from chat_history import HistoryWriter, incarnation_of, message_id
from chat_protocol.client.core import ClientCore
from chat_protocol.const import NAME_MAX_CHARS
from chat_protocol.errors import UsageError
from chat_protocol.events import (
    ClientEvent,
    MessageDelivered,
    MessageReceived,
    SendFailed,
    ServerGone,
    SignedIn,
    SignedOut,
    SignInFailed,
    UserList,
)
from chat_protocol.secure.primitives import KeyPair
from chat_protocol.wire.names import NAME_RULE, is_valid_name
from chat_shell import aio, cli
from chat_shell.keystore import KeyStore, KeyStoreError, add_home_option, resolve_home

log = logging.getLogger("chat-bots")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_LOST = 4
"""The ``code`` of an ``exit`` record when an incarnation ended because its server was gone or
refused it (the program itself goes on)."""
REPORT_EVERY_S = 10.0
"""How often the program prints its counters (default of ``--report-every``)."""
STOP_GRACE_S = 15.0
"""On SIGTERM, how long bots wait for their sends' outcomes and the sign-out before exiting."""
KEY_PERSON = b"chat-bots key"
"""BLAKE2b personalisation of a key derived from ``--key-seed``."""


def derived_key(seed: str, name: str) -> KeyPair:
    """The key pair of bot ``name`` under ``seed``: BLAKE2b-256 of the name, keyed with the
    seed (at most 64 bytes of it). The same seed and name give the same key on any node."""
    raw = hashlib.blake2b(
        name.casefold().encode(), key=seed.encode()[:64], digest_size=32, person=KEY_PERSON
    ).digest()
    return KeyPair.from_private_bytes(raw)


@dataclass
class Tally:
    """Counters of the whole process (printed every REPORT_EVERY_S and at the end)."""

    online: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    shown: int = 0
    sign_ins: int = 0
    lost: int = 0

    def line(self) -> str:
        return (
            f"bots: online={self.online} sent={self.sent} delivered={self.delivered} "
            f"failed={self.failed} shown={self.shown} sign_ins={self.sign_ins} lost={self.lost}"
        )


@dataclass(frozen=True, kw_only=True)
class Script:
    """What every bot does (from the command line)."""

    rate: float
    messages: int
    peers: int
    window: int
    list_every_s: float
    retry_s: float
    size: int
    partner_prefix: str = ""
    """Only names starting with it are picked as partners (the stack: other bots, whose
    histories the check reads, not people who joined with a client)."""
    key_seed: str = ""
    """Non-empty: each bot's key is :func:`derived_key` of it, not one kept in the home."""


class BotShell(aio.DatagramShell[ClientEvent]):
    """One incarnation of one bot: its core, socket and history writer."""

    core: ClientCore

    def __init__(self, bot: Bot, core: ClientCore, history: HistoryWriter) -> None:
        super().__init__(core)
        self.bot = bot
        self.history = history
        self.incarnation = incarnation_of(core.session)
        self.ended: asyncio.Future[int] = self.loop.create_future()

    def on_event(self, event: ClientEvent) -> None:
        h, t = self.history, self.bot.tally
        match event:
            case SignedIn():
                h.signed_in()
                t.online += 1
                t.sign_ins += 1
                self.bot.on_signed_in(self)
            case MessageReceived():
                h.shown(
                    event.sender,
                    message_id(incarnation_of(event.session), event.msg_id),
                    event.text,
                )
                t.shown += 1
            case MessageDelivered():
                h.delivered(message_id(self.incarnation, event.handle), event.to)
                t.delivered += 1
                self.bot.outstanding -= 1
            case SendFailed():
                reason = event.reason.name.lower()
                h.not_delivered(
                    message_id(self.incarnation, event.handle),
                    event.to,
                    reason,
                    f"not delivered to {event.to}: {reason}",
                )
                t.failed += 1
                self.bot.outstanding -= 1
                self.bot.partners.discard(event.to)
            case UserList():
                self.bot.on_list(event.names)
            case SignInFailed():
                self.bot.sign_in_failed(event)
                self._end(EXIT_LOST)
            case ServerGone():
                t.lost += 1
                self._end(EXIT_LOST)
            case SignedOut():
                h.signed_out()
                self._end(EXIT_OK)

    def _end(self, code: int) -> None:
        if self.bot.online_shell is self:
            self.bot.online_shell = None
            self.bot.tally.online -= 1
        if not self.ended.done():
            self.ended.set_result(code)


class Bot:
    """One scripted user: signs in (again after each failure), lists, sends."""

    def __init__(
        self,
        name: str,
        *,
        server: tuple[str, int],
        store: KeyStore,
        hist_path: str,
        script: Script,
        tally: Tally,
        rng: random.Random,
        stopping: asyncio.Event,
    ) -> None:
        self.name = name
        self.server = server
        """Host name (or IP) and port of the directory, resolved anew by each incarnation."""
        self.store = store
        self.hist_path = hist_path
        self.script = script
        self.tally = tally
        self.rng = rng
        self.stopping = stopping
        self.partners: set[str] = set()
        self.online_shell: BotShell | None = None
        self.sent = 0
        self.outstanding = 0
        """Sends of the current incarnation without an outcome yet."""
        self.last_failure = ""

    @property
    def done(self) -> bool:
        """Sent all it was asked to, and has every outcome."""
        return 0 < self.script.messages <= self.sent and self.outstanding == 0

    def identity(self) -> KeyPair:
        """Its key: derived from the script's seed, else kept in (or made in) the home."""
        if self.script.key_seed:
            return derived_key(self.script.key_seed, self.name)
        return self.store.user_key(self.name)

    def sign_in_failed(self, event: SignInFailed) -> None:
        """Say why, once per reason (the bot tries again every ``--retry`` seconds)."""
        why = (
            event.refused.explain(self.name)
            if event.refused is not None
            else event.failure.name.lower().replace("_", " ")
        )
        if why != self.last_failure:
            self.last_failure = why
            print(f"chat-bots: {self.name}: {why}; trying again", file=sys.stderr, flush=True)

    def on_signed_in(self, shell: BotShell) -> None:
        self.last_failure = ""
        self.online_shell = shell
        shell.core.list_users(shell.now())

    def on_list(self, names: tuple[str, ...]) -> None:
        prefix = self.script.partner_prefix
        listed = {n for n in names if n.startswith(prefix)} - {self.name}
        self.partners &= listed
        fresh = sorted(listed - self.partners)
        self.rng.shuffle(fresh)
        self.partners.update(fresh[: max(0, self.script.peers - len(self.partners))])

    async def run(self) -> None:
        """Incarnations, one after another, until the program stops."""
        while not self.stopping.is_set():
            code = await self._incarnation()
            if self.stopping.is_set() or code == EXIT_OK:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.script.retry_s)

    async def _incarnation(self) -> int:
        loop = asyncio.get_running_loop()
        try:  # each time: a directory task started again may have a new address (dnsrr)
            server = await loop.run_in_executor(None, aio.resolve, *self.server)
        except (OSError, UnicodeError) as exc:
            log.warning("%s: cannot resolve %s: %s", self.name, self.server[0], exc)
            return EXIT_LOST
        core = ClientCore(
            name=self.name,
            server=server,
            identity=self.identity(),
            clock_offset_s=time.time() - loop.time(),
        )
        history = HistoryWriter(
            self.hist_path,
            client=self.name,
            incarnation=incarnation_of(core.session),
            clock=time.monotonic,
            wall=time.time,
        )
        shell = await aio.open_endpoint(
            lambda: BotShell(self, core, history), host="0.0.0.0", port=0
        )
        self.outstanding = 0
        code = EXIT_LOST
        try:
            core.connect(shell.now())
            shell.pump()
            code = await self._drive(shell)
        finally:
            shell.close()
            history.exit(code)
            history.close()
        return code

    async def _drive(self, shell: BotShell) -> int:
        """Send while online and not stopping; then sign out and wait for it (bounded)."""
        s = self.script
        interval = 1.0 / s.rate if s.rate > 0 else 0.0
        next_list = shell.now() + s.list_every_s
        # Bots start out of step, so a task's clients do not send in bursts.
        await self._pause(shell, self.rng.uniform(0, interval or 1.0))
        while not shell.ended.done() and not self.stopping.is_set():
            now = shell.now()
            if self.online_shell is shell:
                if now >= next_list:
                    shell.core.list_users(now)
                    next_list = now + s.list_every_s
                if interval and (s.messages == 0 or self.sent < s.messages):
                    self._send_one(shell, now)
            await self._pause(shell, interval * self.rng.uniform(0.5, 1.5) if interval else 1.0)
        if shell.ended.done():
            return shell.ended.result()
        shell.core.close(shell.now())  # after every pending send has its outcome
        shell.pump()
        try:
            return await asyncio.wait_for(asyncio.shield(shell.ended), STOP_GRACE_S)
        except TimeoutError:
            return EXIT_LOST

    async def _pause(self, shell: BotShell, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(shell.ended), seconds)

    def _send_one(self, shell: BotShell, now: float) -> None:
        if not self.partners or self.outstanding >= self.script.window:
            return
        to = self.rng.choice(sorted(self.partners))
        self.sent += 1
        text = f"{self.name} #{self.sent} " + "x" * max(0, self.script.size)
        try:
            handle = shell.core.send(to, text, now)
        except UsageError as exc:  # not online any more: the next incarnation sends
            log.debug("%s: %s", self.name, exc)
            self.sent -= 1
            return
        shell.history.send(message_id(shell.incarnation, handle), to, text)
        self.outstanding += 1
        self.tally.sent += 1
        shell.pump()


def bot_name(text: str) -> str:
    if not is_valid_name(text + "0" * 3):
        raise argparse.ArgumentTypeError(
            f"invalid name prefix {text[:40]!r}: with 3 digits added it must be {NAME_RULE}"
        )
    return text


def default_prefix() -> str:
    """``$BOTS_PREFIX``, else the host name (a container's id) cut to leave room for digits."""
    raw = os.environ.get("BOTS_PREFIX") or "b" + socket.gethostname()[:8]
    return raw[: NAME_MAX_CHARS - 4]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="chat-bots",
        description="Run N scripted chat clients in one process: each signs in as PREFIX-NNN, "
        "picks partners from the directory's list, sends at a rate, and writes a history file "
        "(DIR/NAME.jsonl) for chat-check.",
    )
    pos = cli.int_type(1, what="a number", name="count")
    p.add_argument(
        "-n",
        "--count",
        type=pos,
        default=int(os.environ.get("BOTS", "20")),
        help="clients in this process (default: $BOTS or 20)",
    )
    p.add_argument(
        "--prefix",
        type=bot_name,
        default=default_prefix(),
        help="name prefix; bot k is PREFIX-k (default: $BOTS_PREFIX or b+hostname)",
    )
    cli.add_server_options(p, what="directory server")
    add_home_option(p)
    p.add_argument(
        "--history-dir",
        default=os.environ.get("BOTS_HISTORY", "."),
        help="directory of the history files (default: $BOTS_HISTORY or .)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("BOTS_RATE", "1")),
        help="messages per second per bot (default: $BOTS_RATE or 1)",
    )
    p.add_argument(
        "--messages",
        type=cli.int_type(0),
        default=int(os.environ.get("BOTS_MESSAGES", "0")),
        help="messages per bot, then only receive (0: no end; $BOTS_MESSAGES)",
    )
    p.add_argument("--peers", type=pos, default=8, help="partners each bot keeps (default 8)")
    p.add_argument(
        "--partners",
        default=os.environ.get("BOTS_PARTNERS", ""),
        metavar="PREFIX",
        help="pick partners only among names starting with PREFIX (default: $BOTS_PARTNERS, "
        "else anyone listed)",
    )
    p.add_argument(
        "--key-seed",
        default=os.environ.get("BOTS_KEY_SEED", ""),
        metavar="SEED",
        help="derive each bot's key from SEED and its name instead of keeping it in the home "
        "(the same users on any node; default: $BOTS_KEY_SEED, else keys in the home)",
    )
    p.add_argument(
        "--window", type=pos, default=8, help="unresolved sends per bot at most (default 8)"
    )
    p.add_argument(
        "--list-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between list requests (default 5)",
    )
    p.add_argument(
        "--retry",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds before signing in again after a failure (default 2)",
    )
    p.add_argument(
        "--size",
        type=cli.int_type(0, 1000),
        default=16,
        help="filler bytes per message (default 16)",
    )
    p.add_argument(
        "--report-every",
        type=float,
        default=REPORT_EVERY_S,
        metavar="S",
        help=f"seconds between counter lines on stdout (default {REPORT_EVERY_S:g})",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the bots' choices")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    args = p.parse_args(argv)
    if args.rate < 0 or min(args.list_every, args.retry, args.report_every) <= 0:
        p.error("--rate must be >= 0; --list-every, --retry and --report-every > 0")
    return args


async def _report(
    tally: Tally,
    bots: list[Bot],
    stopping: asyncio.Event,
    say: Callable[[str], None],
    every_s: float,
) -> None:
    announced = False
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
        say(tally.line())
        if not announced and bots and all(b.done for b in bots):
            announced = True
            say(f"bots: done ({tally.sent} sent)")


async def run(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(line, flush=True)

    server = (args.server, args.port)
    try:
        store = KeyStore(resolve_home(args.home))
        os.makedirs(args.history_dir, exist_ok=True)
    except (OSError, KeyStoreError) as exc:
        print(f"chat-bots: {exc}", file=sys.stderr)
        return EXIT_USAGE
    script = Script(
        rate=args.rate,
        messages=args.messages,
        peers=args.peers,
        window=args.window,
        list_every_s=args.list_every,
        retry_s=args.retry,
        size=args.size,
        partner_prefix=args.partners,
        key_seed=args.key_seed,
    )
    tally = Tally()
    stopping = asyncio.Event()
    rng = random.Random(args.seed)
    bots = [
        Bot(
            f"{args.prefix}-{k:03d}",
            server=server,
            store=store,
            hist_path=os.path.join(args.history_dir, f"{args.prefix}-{k:03d}.jsonl"),
            script=script,
            tally=tally,
            rng=random.Random(rng.random()),
            stopping=stopping,
        )
        for k in range(args.count)
    ]
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def stop() -> None:
        if stopping.is_set():  # a second signal: do not wait
            for t in tasks:
                t.cancel()
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    say(
        f"bots: {args.count} as {args.prefix}-000..{args.count - 1:03d}, "
        f"server {server[0]}:{server[1]}, {args.rate}/s each"
    )
    tasks = [asyncio.create_task(b.run()) for b in bots]
    reporter = asyncio.create_task(_report(tally, bots, stopping, say, args.report_every))
    await asyncio.gather(*tasks, return_exceptions=True)
    stopping.set()
    await reporter
    say(tally.line())
    say("bots: stopped")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli.log_to_stderr(args.verbose)
    try:
        return aio.run(run(args))
    except KeyboardInterrupt:
        return EXIT_OK
