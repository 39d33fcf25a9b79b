"""Parsing of the commands a user types (pure functions; the shell executes them)."""

from __future__ import annotations

from dataclasses import dataclass

from chat_protocol.errors import UsageError

HELP = """commands (case-insensitive):
  list                  show who is signed in
  send USER MESSAGE     send MESSAGE directly to USER (end-to-end encrypted)
  whois USER            USER's key fingerprint, your safety number with them, and whether
                        the key is verified, pinned on first use, or new
  trust USER [FINGERPRINT]
                        pin as verified the key 'whois USER' showed (after comparing the
                        safety number with USER), or the key with that fingerprint
  help                  this text
  exit                  sign out and quit (also Ctrl-D, Ctrl-C)"""

COMMANDS = ("list", "send", "whois", "trust", "help", "exit")
WITH_USER = ("whois", "trust")
ALIASES = {"quit": "exit", "ls": "list", "?": "help"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Command:
    name: str
    user: str = ""
    text: str = ""
    """``send``: the message; ``trust``: the fingerprint given, if any."""


def parse_command(line: str) -> Command | None:
    """One input line -> a command, None for a blank line, or UsageError saying what is wrong."""
    line = line.rstrip("\r\n").lstrip()
    if not line.strip():
        return None
    word, _, rest = line.partition(" ")
    name = word.lower()
    name = ALIASES.get(name, name)
    if name not in COMMANDS:
        raise UsageError(f"unknown command {word[:40]!r}; type 'help' for the commands")
    if name in WITH_USER:
        user, _, extra = rest.strip().partition(" ")
        if name == "trust" and user:
            return Command(name=name, user=user, text=extra.strip())  # text: a fingerprint
        if not user or extra.strip():
            raise UsageError(f"usage: {name} USER" + (" [FINGERPRINT]" if name == "trust" else ""))
        return Command(name=name, user=user)
    if name != "send":
        if rest.strip():
            raise UsageError(f"'{name}' takes no arguments")
        return Command(name=name)
    user, sep, text = rest.lstrip().partition(" ")
    if not user:
        raise UsageError("usage: send USER MESSAGE")
    if not sep:
        raise UsageError(f"usage: send USER MESSAGE (no message for {user[:40]})")
    if not text.strip():
        raise UsageError("empty message, not sent")
    return Command(name="send", user=user, text=text.lstrip())
