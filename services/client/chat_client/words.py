"""What chat-client says for each outcome the core reports (one line each; docs/CLI.md)."""

from __future__ import annotations

from chat_client.exits import Ending, Failure, say
from chat_protocol.const import Timings
from chat_protocol.events import (
    GoneReason,
    KeyStatus,
    PathKind,
    PeerPath,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    ServerGone,
    SignInFailed,
    SignInFailure,
    WhoisFailed,
    WhoisFailure,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.identity import format_fingerprint, safety_number
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
    if ev.reason is PeerRefusal.WRONG_NAME:
        return (
            f"dropped messages claiming to be from {ev.name}: the directory answered for "
            "another name"
        )
    return (
        f"dropped messages claiming to be from {ev.name}: the directory does not have "
        f"{ev.name} with that key"
    )


STATUS_TEXT = {
    KeyStatus.VERIFIED: "verified: you trusted this key after comparing it",
    KeyStatus.PINNED: "pinned on first use, not verified: compare the safety number with {name}, "
    "then 'trust {name}'",
    KeyStatus.NEW: "new: not pinned yet; compare the safety number with {name}, then "
    "'trust {name}'",
    KeyStatus.CHANGED: "CHANGED: you pinned {pinned}; compare the safety number with {name}, "
    "then 'trust {name}' accepts the new key",
}
"""The status line of ``whois`` (docs/CLI.md shows each)."""


def whois_text(ev: WhoisInfo, key: bytes, own_name: str, own_key: bytes) -> str:
    """What ``whois``/``trust`` shows of a user the directory knows (``key``: theirs)."""
    lines = [f"{ev.name}: key {format_fingerprint(key)}"]
    if ev.trusted:
        lines[0] += " (now trusted)"
    number = safety_number(own_name, own_key, ev.name, key)
    lines.append(f"  safety number with {ev.name}: {number}")
    if ev.trusted:
        lines.append("  verified: pinned as the key you compared")
    else:
        pinned = format_fingerprint(ev.pinned) if ev.pinned is not None else ""
        lines.append("  " + STATUS_TEXT[ev.status].format(name=ev.name, pinned=pinned))
    if ev.endpoints:
        public, *private = ev.endpoints
        shown = [f"{addr_text(public)} (public)", *(f"{addr_text(a)} (private)" for a in private)]
        lines.append(f"  endpoints: {', '.join(shown)}")
    lines.append("  " + path_text(ev.name, ev.path))
    return "\n".join(lines)


def path_text(name: str, path: PeerPath | None) -> str:
    """The ``whois`` line of the path to ``name`` (docs/CLI.md shows each form)."""
    if path is None:
        return f"path: no session with {name} now (the next message opens one)"
    if path.kind is PathKind.RELAY or path.addr is None:
        return "path: via relay (the directory forwards the session's ciphertext)"
    return f"path: direct, to {addr_text(path.addr)}"


def whois_failed_text(ev: WhoisFailed) -> str:
    """Why ``whois NAME`` or ``trust NAME`` has no answer, or ``trust`` pinned nothing."""
    name = ev.name
    match ev.reason:
        case WhoisFailure.NO_ANSWER:
            return f"the server did not answer 'whois {name}'"
        case WhoisFailure.WRONG_NAME:
            return f"the directory answered 'whois {name}' for another name; ignored"
        case WhoisFailure.NOT_SEEN:
            return (
                f"not trusted: no key seen for {name}; run 'whois {name}' and compare the "
                f"safety number with {name} first (or give the fingerprint: "
                f"'trust {name} FINGERPRINT')"
            )
        case WhoisFailure.KEY_DIFFERS:
            now = format_fingerprint(ev.key) if ev.key is not None else "another key"
            return (
                f"not trusted: the directory now gives {name} the key {now}, not the one you "
                f"saw; nothing pinned (run 'whois {name}' and compare again)"
            )
