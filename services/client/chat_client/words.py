"""What chat-client says for each outcome the core reports (one line each; docs/CLI.md)."""

from __future__ import annotations

from chat_protocol.const import Timings
from chat_protocol.events import GoneReason, SendFailed, ServerGone, SignInFailed, SignInFailure
from chat_protocol.outcomes import FailReason


def fail_text(ev: SendFailed, timings: Timings) -> str:
    if ev.reason is FailReason.NO_SUCH_USER:
        return f"no such user: {ev.to}"
    return ev.reason.describe(ev.to, timings.delivery_timeout_s)


def sign_in_failed_text(ev: SignInFailed, name: str) -> str:
    if ev.failure is SignInFailure.REFUSED and ev.refused is not None:
        return ev.refused.explain(name)
    host, port = ev.server
    return f"no answer from the server at {host}:{port}"


def ended_text(ev: ServerGone) -> str:
    match ev.reason:
        case GoneReason.SHUTDOWN:
            return "the server shut down"
        case GoneReason.LOST:
            return f"lost contact with the server (no reply for {ev.silent_s:.0f} s)"
        case GoneReason.SESSION_UNKNOWN:
            return "the server no longer knows this session (it restarted?)"
