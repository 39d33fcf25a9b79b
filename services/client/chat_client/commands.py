"""The commands a user types: one table (:data:`TABLE`), and everything else made from it.

``help``, the words Tab completes, the parser below, and the command tables of README.md and
docs/CLI.md (checked against it by tests/unit/test_docs.py) all come from :data:`TABLE`. Each
command has its own word and aliases: the short words people know from IRC clients (``/msg``,
``/who``, ``/whois``, ``/quit``) and a few older ones.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from chat_protocol.errors import UsageError


@dataclass(frozen=True, kw_only=True, slots=True)
class Spec:
    """One command: its word, its arguments as help shows them, its aliases, what it does."""

    name: str
    args: str = ""
    aliases: tuple[str, ...] = ()
    summary: str

    @property
    def usage(self) -> str:
        return f"{self.name} {self.args}".rstrip()


TABLE: tuple[Spec, ...] = (
    Spec(name="list", aliases=("/who", "ls"), summary="show who is signed in"),
    Spec(
        name="send",
        args="USER MESSAGE",
        aliases=("/msg",),
        summary="send MESSAGE directly to USER (end-to-end encrypted)",
    ),
    Spec(
        name="whois",
        args="USER",
        aliases=("/whois",),
        summary="USER's key fingerprint, your safety number with them, and whether the key is "
        "verified, pinned on first use, or new",
    ),
    Spec(
        name="trust",
        args="USER [FINGERPRINT]",
        summary="pin as verified the key 'whois USER' showed (after comparing the safety number "
        "with USER), or the key with that fingerprint",
    ),
    Spec(name="help", aliases=("/help", "?"), summary="this text"),
    Spec(name="exit", aliases=("/quit", "quit"), summary="sign out and quit (also Ctrl-D, Ctrl-C)"),
)
"""Every command, in the order help lists them."""

COMMANDS = tuple(s.name for s in TABLE)
ALIASES = {a: s.name for s in TABLE for a in s.aliases}
"""alias -> command."""
WORDS = tuple(w for s in TABLE for w in (s.name, *s.aliases))
"""Every word a command line may start with (what Tab completes first)."""
WITH_USER = ("whois", "trust")
TAKES_USER = tuple(w for s in TABLE if s.args.startswith("USER") for w in (s.name, *s.aliases))
"""Words whose first argument is a user name (what Tab completes second)."""

_COLUMN = 24
_WIDTH = 92


def _help() -> str:
    lines = ["commands (case-insensitive):"]
    for s in TABLE:
        usage = "  " + s.usage
        body = textwrap.wrap(s.summary, _WIDTH - _COLUMN)
        if s.aliases:
            body.append("alias: " + ", ".join(f"{a} {s.args}".rstrip() for a in s.aliases))
        if len(usage) + 2 > _COLUMN:
            lines.append(usage)
        else:
            lines.append(usage.ljust(_COLUMN) + body.pop(0))
        lines.extend(" " * _COLUMN + b for b in body)
    return "\n".join(lines)


HELP = _help()


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    name: str
    user: str = ""
    text: str = ""
    """``send``: the message; ``trust``: the fingerprint given, if any."""


def parse_command(line: str) -> Command | None:
    """One input line -> a command, None for a blank line, or UsageError saying what is wrong.
    A usage error names the word typed (``usage: /msg USER MESSAGE``)."""
    line = line.rstrip("\r\n").lstrip()
    if not line.strip():
        return None
    word, _, rest = line.partition(" ")
    typed = word.lower()
    name = ALIASES.get(typed, typed)
    if name not in COMMANDS:
        raise UsageError(f"unknown command {word[:40]!r}; type 'help' for the commands")
    if name in WITH_USER:
        user, _, extra = rest.strip().partition(" ")
        if name == "trust" and user:
            return Command(name=name, user=user, text=extra.strip())  # text: a fingerprint
        if not user or extra.strip():
            raise UsageError(f"usage: {typed} USER" + (" [FINGERPRINT]" if name == "trust" else ""))
        return Command(name=name, user=user)
    if name != "send":
        if rest.strip():
            raise UsageError(f"'{typed}' takes no arguments")
        return Command(name=name)
    user, sep, text = rest.lstrip().partition(" ")
    if not user:
        raise UsageError(f"usage: {typed} USER MESSAGE")
    if not sep:
        raise UsageError(f"usage: {typed} USER MESSAGE (no message for {user[:40]})")
    if not text.strip():
        raise UsageError("empty message, not sent")
    return Command(name="send", user=user, text=text.lstrip())
