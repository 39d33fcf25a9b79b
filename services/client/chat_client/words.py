"""What chat-client says for each outcome the core reports (one line each; docs/CLI.md)."""

from __future__ import annotations

from chat_client.exits import Ending, Failure, say
from chat_protocol.const import Timings
from chat_protocol.events import (
    GoneReason,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    ServerGone,
    SignInFailed,
    SignInFailure,
    WhoisInfo,
)
from chat_protocol.identity import format_fingerprint, safety_number
from chat_protocol.outcomes import FailReason
from chat_shell.keystore import addr_text


def fail_text(ev: SendFailed, timings: Timings) -> str:
    if ev.reason is FailReason.NO_SUCH_USER:
        return f"no such user: {ev.to}"
    return ev.reason.describe(ev.to, timings.delivery_timeout_s)


def sign_in_failed(ev: SignInFailed, name: str) -> Ending:
    server = addr_text(ev.server)
    if ev.failure is SignInFailure.REFUSED and ev.refused is not None:
        return say(Failure.REFUSED, reason=ev.refused.explain(name))
    if ev.failure is SignInFailure.SERVER_KEY_MISMATCH:
        return say(Failure.SERVER_KEY, server=server)
    return say(Failure.NO_SERVER, server=server)


def ended(ev: ServerGone) -> Ending:
    match ev.reason:
        case GoneReason.SHUTDOWN:
            return say(Failure.SHUTDOWN)
        case GoneReason.LOST:
            return say(Failure.LOST, silent=f"{ev.silent_s:.0f}")
        case GoneReason.SESSION_UNKNOWN:
            return say(Failure.FORGOTTEN)


def refused_text(ev: PeerRefused) -> str:
    if ev.reason is PeerRefusal.KEY_CHANGED:
        return (
            f"{ev.name}'s key has changed since you last talked; their messages are refused. "
            f"Compare 'whois {ev.name}' with {ev.name}, then 'trust {ev.name}'"
        )
    return (
        f"dropped messages claiming to be from {ev.name}: the directory does not have "
        f"{ev.name} with that key"
    )


def whois_text(ev: WhoisInfo, key: bytes, own_name: str, own_key: bytes) -> str:
    """What ``whois``/``trust`` shows of a user the directory knows (``key``: theirs)."""
    lines = [f"{ev.name}: key {format_fingerprint(key)}"]
    if ev.trusted:
        lines[0] += " (now trusted)"
    elif ev.pinned is not None and ev.pinned != key:
        lines.append(
            f"  CHANGED: you pinned {format_fingerprint(ev.pinned)}; "
            f"'trust {ev.name}' accepts the new key"
        )
    number = safety_number(own_name, own_key, ev.name, key)
    lines.append(f"  safety number with {ev.name}: {number}")
    return "\n".join(lines)
