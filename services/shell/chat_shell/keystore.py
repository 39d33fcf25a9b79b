"""Long-term keys and trusted-key pins on disk (the I/O half of the secure sessions).

The home directory is, in order: ``--home DIR``, ``$CHAT_HOME``, ``$XDG_DATA_HOME/p2p-chat``
(when that variable holds an absolute path, as the XDG spec requires), ``~/.local/share/p2p-chat``.
Its layout::

    HOME/                       0700
      keys/                     0700
        user-<name>.json        0600  one X25519 key pair per user name (name in lower case)
        server.json             0600  the server's key pair
      pins/<name>.json          0600  the public keys user <name> trusts (pins.json: the
                                      home's shared pins, same format):
                                      {"version": 2,
                                       "users": {"bob": {"key": "<base64>", "verified": true}},
                                       "servers": {"192.0.2.7:5000": "<base64>"}}
      floors/<name>.json        0600  each peer key's anti-replay floor (chat_shell.floors)

A user's pin is ``verified`` when the user pinned it with ``trust`` (after comparing the safety
number or the fingerprint), and not when it was pinned on first use. Version 1 pin files
(``"users": {"bob": "<base64>"}``, every pin on first use) are still read; the next change
writes version 2.

A key file is JSON: ``{"version": 1, "type": "x25519", "name": ..., "private": "<base64>",
"public": "<base64>"}``; loading checks that the public key matches the private one and refuses a
key file that group or others may read (as ssh does), and a pin file others may write. Every
write goes to a temporary file in the same directory, is flushed to disk, and is renamed over
the target (``os.replace``), so a crash leaves the old file or the new one, never half of one.
Two processes creating the same key at once agree on one (the first to link its file wins; the
other loads it). Updates of the pin file are serialized with an advisory lock
(``pins.json.lock``) where ``fcntl`` exists.

User names are keyed case-insensitively (:func:`chat_protocol.wire.names.name_key`): ``Bob`` and
``bob`` share one key file and one pin.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from chat_protocol.errors import ChatError
from chat_protocol.secure.errors import LocalSecureError
from chat_protocol.secure.noise import DHLEN, KeyPair
from chat_protocol.wire.names import check_name, name_key

if sys.platform != "win32":
    import fcntl

HOME_ENV = "CHAT_HOME"
APP_DIR_NAME = "p2p-chat"
FILE_VERSION = 1
PIN_FILE_VERSION = 2
PIN_FILE_VERSIONS = (1, 2)
"""The pin file versions read (1: ``users`` maps a name to a key; 2: to ``{key, verified}``)."""
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

Addr = tuple[str, int]


class KeyStoreError(ChatError):
    """A key or pin file is missing its protection, unreadable or corrupt; ``str(err)`` says which
    file and what to do."""


class PinMismatch(KeyStoreError):
    """A key differs from the one pinned for that name or server (trust on first use broken)."""

    def __init__(self, what: str, pinned: bytes, offered: bytes) -> None:
        super().__init__(
            f"the key of {what} changed since it was first trusted: it may be an attacker "
            "(or a reinstall); compare fingerprints before trusting the new key"
        )
        self.what = what
        self.pinned = pinned
        self.offered = offered


# --- the home directory --------------------------------------------------------------------------


def resolve_home(arg: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The chat's home directory (not created here)."""
    env = os.environ if env is None else env
    if arg:  # (an empty --home is refused by its argparse type, :func:`home_path`)
        return Path(arg).expanduser()
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    xdg = env.get("XDG_DATA_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR_NAME
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / APP_DIR_NAME


def home_path(text: str) -> str:
    """``--home``'s argparse type: an empty path is a usage error, not the default home."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (leave --home out for the default home)")
    return text


def home_warnings(home: Path) -> list[str]:
    """What is unsafe about an existing home: writable by others, who could swap its keys."""
    try:
        mode = home.stat().st_mode
    except OSError:
        return []
    if os.name == "posix" and stat.S_ISDIR(mode) and stat.S_IMODE(mode) & 0o022:
        return [
            f"{home} is writable by other users, who could replace your keys; run: chmod 700 {home}"
        ]
    return []


def add_home_option(parser: argparse.ArgumentParser) -> None:
    """``--home DIR``; resolve it with :func:`resolve_home`."""
    parser.add_argument(
        "--home",
        metavar="DIR",
        type=home_path,
        default=None,
        help=f"keys and trusted keys (default: ${HOME_ENV}, else $XDG_DATA_HOME/{APP_DIR_NAME}, "
        f"else ~/.local/share/{APP_DIR_NAME})",
    )


# --- files ---------------------------------------------------------------------------------------


def _private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; parents get the default mode."""
    if not path.is_dir():
        for part in (path, *path.parents):
            if part.exists() and not part.is_dir():
                raise KeyStoreError(f"{part} is not a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=PRIVATE_DIR_MODE)
            os.chmod(path, PRIVATE_DIR_MODE)
    return path


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_file(path: Path, data: bytes) -> str:
    """A flushed 0600 temporary file beside ``path`` holding ``data``; returns its name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp, PRIVATE_FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the advisory lock of ``path`` (a ``.lock`` file beside it, in a private directory):
    a read-modify-write of the file by two processes of the same home is then one after the
    other."""
    _private_dir(path.parent)
    if sys.platform == "win32":  # pragma: no cover - no advisory locks: last writer wins
        yield
        return
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600."""
    _private_dir(path.parent)
    tmp = _temp_file(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _create_private_file(path: Path, data: bytes) -> bool:
    """Write ``path`` only if it does not exist (atomically); False if it already did."""
    _private_dir(path.parent)
    tmp = _temp_file(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: no race protection, still atomic
            if path.exists():
                return False
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _read_private_json(
    path: Path,
    *,
    forbidden_mode: int = 0o077,
    versions: tuple[int, ...] = (FILE_VERSION,),
    what: str = "key file",
) -> dict[str, Any]:
    """Load a JSON file of ours; refuse it if its mode has any ``forbidden_mode`` bit (keys: no
    access for others at all; pins, which are public: no writing by others)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise KeyStoreError(f"{path} is not a regular file")
        if os.name == "posix" and stat.S_IMODE(info.st_mode) & forbidden_mode:
            raise KeyStoreError(f"{path} is open to other users; run: chmod 600 {path}")
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"cannot read {path}: {_why(exc)}") from None
    if not isinstance(data, dict) or data.get("version") not in versions:
        which = " or ".join(map(str, versions))
        raise KeyStoreError(f"{path} is not a version {which} chat {what}")
    return data


def _why(exc: Exception) -> str:
    """An OS error as the OS words it (``Permission denied``); a JSON error as itself."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return f"not JSON ({exc})" if isinstance(exc, ValueError) else str(exc)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object, path: Path, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyStoreError(f"{path}: {what} missing")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError(f"{path}: {what} is not base64") from None
    if len(raw) != DHLEN:
        raise KeyStoreError(f"{path}: {what} is not a {DHLEN}-byte key")
    return raw


def _check_key(key: bytes) -> bytes:
    if len(key) != DHLEN:
        raise LocalSecureError(f"a public key is {DHLEN} bytes")
    return key


def addr_text(addr: Addr | str) -> str:
    """``host:port`` (``[v6]:port``), the key of a server in the pin file."""
    if isinstance(addr, str):
        return addr
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- key pairs -----------------------------------------------------------------------------------


class KeyStore:
    """The long-term key pairs kept under one home directory."""

    __slots__ = ("_random_bytes", "home")

    def __init__(self, home: Path, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.home = home
        self._random_bytes = random_bytes

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    def user_key_path(self, name: str) -> Path:
        return self.keys_dir / f"user-{name_key(check_name(name))}.json"

    def server_key_path(self) -> Path:
        return self.keys_dir / "server.json"

    def user_key(self, name: str) -> KeyPair:
        """The key pair of user ``name``, created on first use."""
        return self._key(self.user_key_path(name), name)

    def server_key(self) -> KeyPair:
        """The server's key pair, created on first use."""
        return self._key(self.server_key_path(), "server")

    def pins(self, owner: str | None = None) -> PinStore:
        """The pins of user ``owner`` (each user of a shared home keeps their own), or the
        home's shared pin file."""
        if owner is None:
            return PinStore(self.home / "pins.json")
        return PinStore(self.home / "pins" / f"{name_key(check_name(owner))}.json")

    def _key(self, path: Path, label: str) -> KeyPair:
        if not path.exists():
            _private_dir(self.home)
            _private_dir(self.keys_dir)
            pair = KeyPair.generate(self._random_bytes)
            document = {
                "version": FILE_VERSION,
                "type": "x25519",
                "name": label,
                "private": _b64(pair.private_bytes()),
                "public": _b64(pair.public),
            }
            if _create_private_file(path, json.dumps(document, indent=1).encode("ascii")):
                return pair
        return self._load(path, label)

    @staticmethod
    def _load(path: Path, label: str) -> KeyPair:
        data = _read_private_json(path)
        if data.get("type") != "x25519":
            raise KeyStoreError(f"{path}: not an X25519 key")
        owner = data.get("name")
        if owner is not None and (not isinstance(owner, str) or owner.lower() != label.lower()):
            raise KeyStoreError(f"{path} holds the key of {str(owner)[:40]!r}, not of {label!r}")
        pair = KeyPair.from_private_bytes(_unb64(data.get("private"), path, "private key"))
        if pair.public != _unb64(data.get("public"), path, "public key"):
            raise KeyStoreError(f"{path}: the public key does not match the private key")
        return pair


# --- pins ----------------------------------------------------------------------------------------


class PinStore:
    """Public keys trusted on first use, or verified: one per user name, one per server address.

    :meth:`pin` records a key the first time and accepts the same key later; a different key
    raises :class:`PinMismatch` (the caller warns the user). :meth:`repin` replaces a pin
    deliberately (the chat's ``trust USER`` command, ``verified=True``). Every call reads the file
    afresh, so several programs sharing a home see each other's pins.
    """

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    # users

    def pinned(self, name: str) -> bytes | None:
        return self._get("users", name_key(check_name(name)))

    def users(self) -> dict[str, bytes]:
        """Every pinned user: name (case-folded) -> key."""
        return {
            n: _unb64(v, self.path, f"the pin of {n!r}") for n, v in self._read()["users"].items()
        }

    def verified_users(self) -> set[str]:
        """The pinned users (case-folded) whose pin the user verified (``trust``)."""
        return set(self._read()["verified"])

    def pin(self, name: str, key: bytes) -> bool:
        """Trust ``key`` for ``name`` if nothing is pinned; True if it was pinned just now."""
        return self._pin("users", name_key(check_name(name)), key, f"user {name!r}")

    def repin(self, name: str, key: bytes, *, verified: bool = False) -> None:
        """Pin ``key`` for ``name`` whatever was pinned; ``verified``: by the user's ``trust``."""
        self._set("users", name_key(check_name(name)), key, verified=verified)

    def unpin(self, name: str) -> None:
        self._set("users", name_key(check_name(name)), None)

    # servers

    def pinned_server(self, addr: Addr | str) -> bytes | None:
        return self._get("servers", addr_text(addr))

    def pin_server(self, addr: Addr | str, key: bytes) -> bool:
        return self._pin("servers", addr_text(addr), key, f"the server at {addr_text(addr)}")

    def repin_server(self, addr: Addr | str, key: bytes) -> None:
        self._set("servers", addr_text(addr), key)

    # the file: sections "users" and "servers" (key -> base64 key), and "verified" (the users
    # whose pin is verified; the value is unused)

    def _get(self, section: str, key: str) -> bytes | None:
        entry = self._read()[section].get(key)
        return None if entry is None else _unb64(entry, self.path, f"the pin of {key!r}")

    def _pin(self, section: str, key: str, public: bytes, what: str) -> bool:
        _check_key(public)
        with self._locked():
            data = self._read()
            entry = data[section].get(key)
            if entry is not None:
                pinned = _unb64(entry, self.path, f"the pin of {key!r}")
                if pinned != public:
                    raise PinMismatch(what, pinned, public)
                return False
            data[section][key] = _b64(public)
            self._write(data)
            return True

    def _set(self, section: str, key: str, public: bytes | None, *, verified: bool = False) -> None:
        if public is not None:
            _check_key(public)
        with self._locked():
            data = self._read()
            if public is None:
                data[section].pop(key, None)
            else:
                data[section][key] = _b64(public)
            if section == "users":
                if verified and public is not None:
                    data["verified"][key] = ""
                else:
                    data["verified"].pop(key, None)
            self._write(data)

    def _read(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {"users": {}, "servers": {}, "verified": {}}
        data = _read_private_json(
            self.path, forbidden_mode=0o022, versions=PIN_FILE_VERSIONS, what="pin file"
        )
        users = data.get("users", {})
        verified: dict[str, str] = {}
        if data["version"] >= 2 and isinstance(users, dict):
            flat: dict[str, object] = {}
            for name, entry in users.items():
                if not isinstance(entry, dict) or not isinstance(entry.get("verified"), bool):
                    raise KeyStoreError(f"{self.path}: the pin of {name!r} is not a key entry")
                flat[name] = entry.get("key")
                if entry["verified"]:
                    verified[name] = ""
            users = flat
        sections: dict[str, dict[str, str]] = {"verified": verified}
        for section, entries in (("users", users), ("servers", data.get("servers", {}))):
            if not isinstance(entries, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entries.items()
            ):
                raise KeyStoreError(f"{self.path}: {section!r} is not a table of keys")
            sections[section] = dict(entries)
        return sections

    def _write(self, sections: dict[str, dict[str, str]]) -> None:
        verified = sections["verified"]
        users = {
            name: {"key": key, "verified": name in verified}
            for name, key in sections["users"].items()
        }
        document = {"version": PIN_FILE_VERSION, "users": users, "servers": sections["servers"]}
        write_private_file(
            self.path, json.dumps(document, indent=1, sort_keys=True).encode("ascii")
        )

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.path)
