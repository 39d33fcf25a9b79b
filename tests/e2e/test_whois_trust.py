"""whois and trust through the real programs (piped): trust pins only a key whois showed, the pin
is kept as verified in the home's pin file across runs, and a never-pinned sender's first line
is marked (new) (docs/CLI.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from labkit import local
from labkit.local import ChatServer
from labkit.procs import Reaper
from labkit.terminal import PipedClient

pytestmark = pytest.mark.e2e

KEY = r"[A-Z2-7]{4}(?:-[A-Z2-7]{4}){7}"


def start(reaper: Reaper, server: ChatServer, name: str, run: Path, home: Path) -> PipedClient:
    run.mkdir(parents=True, exist_ok=True)
    argv = local.client_argv(name, server.port)
    client = PipedClient.spawn(reaper, name, argv, run, env={"CHAT_HOME": str(home)})
    client.wait_signed_in()
    return client


def test_trust_pins_the_key_whois_showed_and_it_stays_verified(
    reaper: Reaper, server: ChatServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    bob = start(reaper, server, "bob", tmp_path / "bob", home)
    alice = start(reaper, server, "alice", tmp_path / "alice-1", home)
    alice.feed(b"trust bob\nwhois bob\ntrust bob\nsend bob hi\nexit\n", close=True)
    assert alice.wait_exit(10) == 0, alice.stderr()
    assert alice.stderr() == (
        "error: not trusted: no key seen for bob; run 'whois bob' and compare the safety number "
        "with bob first (or give the fingerprint: 'trust bob FINGERPRINT')\n"
    )
    out = alice.stdout().split("\n")
    shown = out.index(next(ln for ln in out if re.fullmatch(f"bob: key {KEY}", ln)))
    assert out[shown + 1].startswith("  safety number with bob: ")
    assert out[shown + 2] == (
        "  new: not pinned yet; compare the safety number with bob, then 'trust bob'"
    )
    bob_at = server.client_addr("bob")
    assert out[shown + 3] == f"  endpoints: 127.0.0.1:{bob_at[1]} (public)"  # loopback: not private
    assert out[shown + 4] == "  path: no session with bob now (the next message opens one)"
    assert out[shown + 5] == out[shown] + " (now trusted)"
    assert out[shown + 7] == "  verified: pinned as the key you compared"
    pins = json.loads((home / "pins" / "alice.json").read_text())
    assert pins["version"] == 2 and pins["users"]["bob"]["verified"] is True

    port = server.client_addr("alice")[1]
    assert f"alice (127.0.0.1:{port}) (new): hi" in bob.stdout().split("\n")

    again = start(reaper, server, "alice", tmp_path / "alice-2", home)
    again.feed(b"whois bob\nexit\n", close=True)
    assert again.wait_exit(10) == 0, again.stderr()
    assert "  verified: you trusted this key after comparing it" in again.stdout().split("\n")
