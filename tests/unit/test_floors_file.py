"""chat_shell.floors: the peers' anti-replay floors in the home (issue 19, point 4), on
tmp_path; and a client restarted on the same home refusing an initiation of its earlier run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from chat_protocol.const import MAX_HANDSHAKE_FLOORS
from chat_protocol.secure.endpoint import HandshakeRequested, SecureEndpoint
from chat_protocol.secure.errors import ReplayedDatagram
from chat_protocol.secure.noise import KeyPair
from chat_shell.floors import FileFloors, floors_path
from chat_shell.keystore import KeyStore, KeyStoreError

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
K1, K2, K3 = (bytes([i]) * 32 for i in (1, 2, 3))


def test_floors_persist_rise_only_and_are_private(tmp_path: Path) -> None:
    path = floors_path(tmp_path, "Alice")
    assert path == tmp_path / "floors" / "alice.json"
    floors = FileFloors(path)
    assert floors.get(K1) is None and not path.exists()
    floors.raise_to(K1, 100)
    floors.raise_to(K1, 50)  # never lowered
    floors.raise_to(K2, 7)
    again = FileFloors(path)  # a restart
    assert again.get(K1) == 100 and again.get(K2) == 7
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]  # atomic: no leftovers


def test_two_programs_of_one_user_merge_their_floors(tmp_path: Path) -> None:
    path = floors_path(tmp_path, "alice")
    first, second = FileFloors(path), FileFloors(path)
    first.raise_to(K1, 10)
    second.raise_to(K2, 20)  # second never saw K1: it merges the file before writing
    assert FileFloors(path).get(K1) == 10 and FileFloors(path).get(K2) == 20


def test_floors_are_bounded_lowest_first(tmp_path: Path) -> None:
    floors = FileFloors(floors_path(tmp_path, "alice"), capacity=2)
    floors.raise_to(K1, 1)
    floors.raise_to(K2, 2)
    floors.raise_to(K3, 3)
    again = FileFloors(floors.path, capacity=2)
    assert (again.get(K1), again.get(K2), again.get(K3)) == (None, 2, 3)
    assert MAX_HANDSHAKE_FLOORS >= 256


@posix_only
def test_a_floor_file_others_may_read_or_a_corrupt_one_is_refused_clearly(tmp_path: Path) -> None:
    path = floors_path(tmp_path, "alice")
    FileFloors(path).raise_to(K1, 1)
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        FileFloors(path)
    os.chmod(path, 0o600)
    path.write_text(json.dumps({"version": 1, "floors": {"bm90IGEga2V5": -1}}))
    with pytest.raises(KeyStoreError, match="keys and timestamps"):
        FileFloors(path)


def test_a_failed_write_keeps_the_floor_in_memory(tmp_path: Path) -> None:
    path = floors_path(tmp_path, "alice")
    path.parent.write_text("a file where the floors directory should be")  # every write fails
    floors = FileFloors(path)
    floors.raise_to(K1, 2)
    assert floors.get(K1) == 2 and floors.write_errors == 1


def test_a_restarted_client_refuses_an_initiation_it_accepted_in_its_earlier_run(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path)
    alice_key = store.user_key("alice")
    bob_key = KeyPair.from_private_bytes(bytes(range(32)))
    alice = SecureEndpoint(
        static=alice_key, random_bytes=os.urandom, floors=FileFloors(floors_path(tmp_path, "alice"))
    )
    bob = SecureEndpoint(static=bob_key, random_bytes=os.urandom)
    recorded = bob.connect(alice_key.public, b"", 0.0, timestamp=5 * 10**18)
    requested = alice.receive(recorded, ("192.0.2.2", 2), 0.0)
    assert isinstance(requested, HandshakeRequested)
    alice.accept(requested.incoming, b"", 0.0)
    # The program exits; a new one starts on the same home.
    alice = SecureEndpoint(
        static=alice_key, random_bytes=os.urandom, floors=FileFloors(floors_path(tmp_path, "alice"))
    )
    with pytest.raises(ReplayedDatagram):
        alice.receive(recorded, ("203.0.113.66", 666), 10.0)
