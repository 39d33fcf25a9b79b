"""chat-client's words for whois/trust and lookups answered for another name, the parsing of
``trust USER [FINGERPRINT]``, the ``(new)`` mark, and docs/CLI.md showing each of those lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_client.commands import Command, parse_command
from chat_client.render import CONTINUATION
from chat_client.ui import Output
from chat_client.words import (
    STATUS_TEXT,
    fail_text,
    path_text,
    refused_text,
    whois_failed_text,
    whois_text,
)
from chat_protocol.const import RELAY_HOST, Timings
from chat_protocol.errors import UsageError
from chat_protocol.events import (
    KeyStatus,
    PathKind,
    PeerPath,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    WhoisFailed,
    WhoisFailure,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.identity import format_fingerprint, parse_fingerprint

CLI_MD = (Path(__file__).parents[2] / "docs" / "CLI.md").read_text(encoding="utf-8")
OWN, BOB, OLD = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
ADDR = ("127.0.0.1", 57384)


def test_trust_takes_an_optional_fingerprint() -> None:
    fp = format_fingerprint(BOB)
    assert parse_command("trust bob") == Command(name="trust", user="bob")
    assert parse_command(f"TRUST bob {fp}") == Command(name="trust", user="bob", text=fp)
    spaced = fp.replace("-", " ")
    cmd = parse_command(f"trust bob {spaced}")
    assert cmd is not None and parse_fingerprint(cmd.text) == parse_fingerprint(fp)
    with pytest.raises(UsageError, match=r"^usage: trust USER \[FINGERPRINT\]$"):
        parse_command("trust")
    with pytest.raises(UsageError, match=r"^usage: whois USER$"):
        parse_command("whois bob extra")


@pytest.mark.parametrize("status", list(KeyStatus))
def test_whois_says_what_the_key_is(status: KeyStatus) -> None:
    pinned = OLD if status is KeyStatus.CHANGED else None if status is KeyStatus.NEW else BOB
    info = WhoisInfo(name="bob", key=BOB, pinned=pinned, status=status)
    lines = whois_text(info, BOB, "alice", OWN).split("\n")
    assert lines[0] == f"bob: key {format_fingerprint(BOB)}"
    assert lines[1].startswith("  safety number with bob: ")
    assert lines[2] == "  " + STATUS_TEXT[status].format(
        name="bob", pinned=format_fingerprint(pinned) if pinned else ""
    )
    assert lines[3] == "  " + path_text("bob", None)  # no endpoints known, no session
    assert len(lines) == 4
    # docs/CLI.md shows each status line (fingerprints shortened to XXXX-...).
    assert STATUS_TEXT[status].format(name="bob", pinned="XXXX-...") in CLI_MD


@pytest.mark.parametrize(
    "path",
    [
        None,
        PeerPath(kind=PathKind.DIRECT, addr=("198.51.100.3", 40123)),
        PeerPath(kind=PathKind.RELAY, addr=None),
    ],
    ids=["none", "direct", "relay"],
)
def test_whois_shows_the_endpoints_and_the_path(path: PeerPath | None) -> None:
    """Issue 21: ``whois bob`` shows bob's endpoints (the directory's public one first, then
    the private ones he declared) and the path of the session with him, if one works."""
    endpoints = (("198.51.100.3", 40123), ("10.211.2.10", 40000))
    info = WhoisInfo(name="bob", key=BOB, pinned=BOB, status=KeyStatus.PINNED,
                     endpoints=endpoints, path=path)  # fmt: skip
    lines = whois_text(info, BOB, "alice", OWN).split("\n")
    assert lines[3] == "  endpoints: 198.51.100.3:40123 (public), 10.211.2.10:40000 (private)"
    expected = {
        None: "path: no session with bob now (the next message opens one)",
        PathKind.DIRECT: "path: direct, to 198.51.100.3:40123",
        PathKind.RELAY: "path: via relay (the directory forwards the session's ciphertext)",
    }[path.kind if path else None]
    assert lines[4] == "  " + expected and len(lines) == 5
    assert f"`  {expected}`" in CLI_MD  # docs/CLI.md shows each form


def test_trust_says_now_trusted() -> None:
    info = WhoisInfo(name="bob", key=BOB, pinned=BOB, trusted=True, status=KeyStatus.NEW)
    lines = whois_text(info, BOB, "alice", OWN).split("\n")
    assert lines[0].endswith(" (now trusted)")
    assert lines[2] == "  verified: pinned as the key you compared"
    assert lines[2].strip() in CLI_MD


@pytest.mark.parametrize("reason", list(WhoisFailure))
def test_whois_and_trust_failures_are_one_documented_line(reason: WhoisFailure) -> None:
    text = whois_failed_text(WhoisFailed(name="bob", reason=reason, key=BOB))
    assert "\n" not in text and "bob" in text
    documented = text.replace(format_fingerprint(BOB), "XXXX-...")
    assert f"`error: {documented}`" in CLI_MD, documented


def test_answers_for_another_name_are_explained() -> None:
    sent = fail_text(SendFailed(handle=1, to="bob", reason=FailReason.WRONG_NAME), Timings())
    refused = refused_text(PeerRefused(name="bob", key=BOB, reason=PeerRefusal.WRONG_NAME))
    for text in (sent, refused):
        assert "another name" in text and f"`error: {text}`" in CLI_MD, text


def test_the_first_line_from_a_sender_never_pinned_is_marked_new(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = Output(interactive=False)
    out.message("alice", ADDR, "hello\n(new): not a header", new=True)
    out.message("alice", ADDR, "again")
    assert capsys.readouterr().out == (
        "alice (127.0.0.1:57384) (new): hello\\n\n"
        f"{CONTINUATION}(new): not a header\n"
        "alice (127.0.0.1:57384): again\n"
    )
    assert "`alice (172.18.0.3:40211) (new): hello`" in CLI_MD


def test_no_direct_path_and_the_relay_are_one_documented_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 21: with --no-relay, a peer no direct path reaches is one line saying so; a
    message that came through the relay says 'via relay' where the address would be."""
    text = fail_text(SendFailed(handle=1, to="bob", reason=FailReason.NO_DIRECT_PATH), Timings())
    assert "cannot reach bob directly" in text
    flat = " ".join(CLI_MD.split())
    assert f"`error: {text}`" in flat, text
    Output(interactive=False).message("alice", (RELAY_HOST, 1), "hello")
    shown = capsys.readouterr().out
    assert shown == "alice (via relay): hello\n"
    assert f"`{shown.strip()}`" in flat
