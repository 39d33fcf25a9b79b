"""chat_shell.keystore: the home directory, key files and pins (on tmp_path)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from chat_protocol.errors import UsageError
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.noise import KeyPair
from chat_shell.keystore import (
    KeyStore,
    KeyStoreError,
    PinMismatch,
    PinStore,
    addr_text,
    resolve_home,
    write_private_file,
)
from labkit.util import in_ci

posix_only = pytest.mark.skipif(os.name != "posix" and not in_ci(), reason="file modes are POSIX")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the home directory --------------------------------------------------------------------------


def test_home_resolution_order(tmp_path: Path) -> None:
    env = {"HOME": "/home/u", "XDG_DATA_HOME": "/xdg", "CHAT_HOME": "/chat"}
    assert resolve_home(str(tmp_path), env) == tmp_path
    assert resolve_home(None, env) == Path("/chat")
    del env["CHAT_HOME"]
    assert resolve_home(None, env) == Path("/xdg/p2p-chat")
    env["XDG_DATA_HOME"] = "relative/path"  # the XDG spec says to ignore relative paths
    assert resolve_home(None, env) == Path("/home/u/.local/share/p2p-chat")
    del env["XDG_DATA_HOME"]
    assert resolve_home(None, env) == Path("/home/u/.local/share/p2p-chat")
    assert resolve_home("", {"CHAT_HOME": "", "HOME": "/h"}) == Path("/h/.local/share/p2p-chat")


def test_home_option() -> None:
    import argparse

    from chat_shell.keystore import add_home_option

    parser = argparse.ArgumentParser()
    add_home_option(parser)
    assert parser.parse_args(["--home", "/x"]).home == "/x"
    assert parser.parse_args([]).home is None


# --- keys ----------------------------------------------------------------------------------------


@posix_only
def test_keys_are_created_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = KeyStore(home)
    alice = store.user_key("Alice")
    path = store.user_key_path("alice")
    assert path.exists() and mode(path) == 0o600
    assert mode(home) == 0o700 and mode(home / "keys") == 0o700
    again = KeyStore(home).user_key("alice")  # a new process, another spelling
    assert again.public == alice.public and again.private_bytes() == alice.private_bytes()
    assert KeyStore(home).user_key("bob").public != alice.public
    server = store.server_key()
    assert server.public not in (alice.public, store.user_key("bob").public)
    assert KeyStore(home).server_key().public == server.public
    assert [p.name for p in (home / "keys").iterdir() if p.name.startswith(".")] == []


def test_key_files_use_the_injected_randomness(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, random_bytes=lambda n: bytes(range(n)))
    assert store.user_key("x").public == KeyPair.from_private_bytes(bytes(range(32))).public


def test_invalid_names_are_usage_errors(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    for name in ("", "../etc", "a/b", ".hidden", "x" * 33):
        with pytest.raises(UsageError):
            store.user_key(name)


@posix_only
def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.user_key("alice")
    path = store.user_key_path("alice")
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.user_key("alice")


def test_corrupt_key_files_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.user_key("alice")
    path = store.user_key_path("alice")
    good = json.loads(path.read_text())
    cases = [
        b"not json",
        json.dumps({"version": 2}).encode(),
        json.dumps({**good, "type": "ed25519"}).encode(),
        json.dumps({**good, "private": "!!"}).encode(),
        json.dumps({**good, "private": "AAAA"}).encode(),
        json.dumps({**good, "public": good["private"]}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "public"}).encode(),
        json.dumps([1, 2]).encode(),
    ]
    for content in cases:
        write_private_file(path, content)
        with pytest.raises(KeyStoreError):
            store.user_key("alice")


def test_a_key_created_meanwhile_by_another_process_wins(tmp_path: Path) -> None:
    from chat_shell.keystore import _create_private_file

    target = tmp_path / "keys" / "f.json"
    assert _create_private_file(target, b"first")
    assert not _create_private_file(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


@posix_only
def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "file"
    write_private_file(target, b"one")
    write_private_file(target, b"two")
    assert target.read_bytes() == b"two" and mode(target) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file"]


# --- pins ----------------------------------------------------------------------------------------


def test_trust_on_first_use(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins()
    key, other = bytes([1]) * 32, bytes([2]) * 32
    assert pins.pinned("Bob") is None
    assert pins.pin("Bob", key) is True
    assert pins.pin("bob", key) is False  # same key again: fine, nothing new
    assert pins.pinned("BOB") == key
    with pytest.raises(PinMismatch) as caught:
        pins.pin("bob", other)
    assert caught.value.pinned == key and caught.value.offered == other
    assert "changed" in str(caught.value)
    pins.repin("bob", other)  # the user's "trust bob"
    assert pins.pinned("bob") == other
    pins.unpin("bob")
    assert pins.pinned("bob") is None


def test_pins_persist_and_are_shared(tmp_path: Path) -> None:
    PinStore(tmp_path / "pins.json").pin("alice", bytes([7]) * 32)
    assert KeyStore(tmp_path).pins().pinned("alice") == bytes([7]) * 32


def test_server_pins_by_address(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins()
    key = bytes([9]) * 32
    assert pins.pin_server(("192.0.2.1", 5000), key)
    assert pins.pinned_server("192.0.2.1:5000") == key
    assert pins.pinned_server(("192.0.2.1", 5001)) is None
    assert pins.pinned("192.0.2.1") is None  # users and servers are apart
    with pytest.raises(PinMismatch):
        pins.pin_server(("192.0.2.1", 5000), bytes(32))
    pins.repin_server(("192.0.2.1", 5000), bytes(32))
    assert pins.pinned_server(("192.0.2.1", 5000)) == bytes(32)
    assert addr_text(("::1", 5000)) == "[::1]:5000"
    assert pins.pin_server(("::1", 5000), key)
    assert pins.pinned_server("[::1]:5000") == key


@posix_only
def test_the_pin_file_is_private(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins()
    pins.pin("a", bytes(32))
    assert mode(pins.path) == 0o600
    os.chmod(pins.path, 0o644)  # readable is fine: pins are public keys
    assert pins.pinned("a") == bytes(32)
    os.chmod(pins.path, 0o666)  # writable by others is not: anyone could swap a pin
    with pytest.raises(KeyStoreError, match="chmod 600"):
        pins.pinned("a")
    os.chmod(pins.path, 0o600)
    data = json.loads(pins.path.read_text())
    assert data["version"] == 2 and set(data["users"]) == {"a"}


def test_bad_pins(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins()
    with pytest.raises(LocalSecureError):
        pins.pin("a", b"short")
    with pytest.raises(UsageError):
        pins.pin("no/slashes", bytes(32))
    write_private_file(pins.path, json.dumps({"version": 1, "users": {"a": 5}}).encode())
    with pytest.raises(KeyStoreError):
        pins.pinned("a")
    write_private_file(pins.path, json.dumps({"version": 1, "users": {"a": "AAAA"}}).encode())
    with pytest.raises(KeyStoreError):
        pins.pinned("a")


def test_pins_keep_whether_the_user_verified_them(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins("alice")
    key, other = bytes([1]) * 32, bytes([2]) * 32
    pins.pin("bob", key)  # first use
    pins.repin("Carol", other, verified=True)  # the user's "trust carol"
    assert pins.users() == {"bob": key, "carol": other}
    assert pins.verified_users() == {"carol"}
    data = json.loads(pins.path.read_text())
    assert data["version"] == 2
    assert data["users"]["carol"] == {"key": base64.b64encode(other).decode(), "verified": True}
    assert data["users"]["bob"]["verified"] is False
    pins.repin("carol", key)  # pinned again on first use (not by trust): no longer verified
    assert pins.verified_users() == set()
    pins.repin("bob", other, verified=True)
    pins.unpin("bob")
    assert pins.verified_users() == set() and pins.pinned("bob") is None


def test_a_version_1_pin_file_is_still_read_and_upgraded_on_change(tmp_path: Path) -> None:
    pins = KeyStore(tmp_path).pins("alice")
    key, other = bytes([3]) * 32, bytes([4]) * 32
    b64 = base64.b64encode(key).decode()
    v1 = {"version": 1, "users": {"bob": b64}, "servers": {"192.0.2.1:5000": b64}}
    write_private_file(pins.path, json.dumps(v1).encode())
    assert pins.users() == {"bob": key} and pins.verified_users() == set()
    assert pins.pinned_server(("192.0.2.1", 5000)) == key
    pins.repin("dave", other, verified=True)
    data = json.loads(pins.path.read_text())
    assert data["version"] == 2
    assert data["users"]["bob"] == {"key": b64, "verified": False}
    assert data["servers"] == {"192.0.2.1:5000": b64}
    assert pins.verified_users() == {"dave"}


@pytest.mark.parametrize(
    "users",
    [
        {"a": "AAAA"},
        {"a": {"key": "AAAA"}},
        {"a": {"verified": True}},
        {"a": {"key": 5, "verified": False}},
    ],
)
def test_bad_version_2_pins(tmp_path: Path, users: dict[str, object]) -> None:
    pins = KeyStore(tmp_path).pins()
    write_private_file(pins.path, json.dumps({"version": 2, "users": users}).encode())
    with pytest.raises(KeyStoreError):
        pins.pinned("a")
