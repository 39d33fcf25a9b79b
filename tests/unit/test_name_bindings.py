"""Names belong to keys (issue 19, point 2): the first key that signs a name in owns it, online or
not, across restarts of the directory; only the operator frees it (``chat-server names``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_server_core import A, B, Harness

from chat_client.exits import ExitCode, exit_code
from chat_client.words import sign_in_failed
from chat_protocol.client.directory import State
from chat_protocol.const import NAME_USE_RECORD_S, NAMES_DB_CACHE_KIB, Timings
from chat_protocol.events import SignInFailed, SignInFailure
from chat_protocol.server.bindings import MemoryNames, NameBindings, NameStoreError
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.messages import Addr, Bye, ByeAck, Refused, RefuseReason, Welcome
from chat_server.app import main
from chat_server.names_db import DB_FILE, SqliteNames
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
ALICE: Addr = ("10.0.0.2", 40000)
MALLORY: Addr = ("10.0.0.66", 6666)


def _signed_out_alice(names: NameBindings) -> Harness:
    """A server on ``names`` where alice signed in and out again: her name is bound, she is
    offline."""
    h = Harness(names=names)
    alice = h.client(A)
    token = alice.sign_in("alice")
    assert alice.ask(Bye(token=token, req_id=2)) == [ByeAck(req_id=2)]
    assert h.core.users == {}
    return h


@pytest.mark.guard("name-binding")
@pytest.mark.parametrize("claim", ["alice", "ALICE"])
def test_a_squatter_cannot_take_an_offline_users_name_even_after_a_restart(claim: str) -> None:
    names = MemoryNames()
    h = _signed_out_alice(names)
    alice_key = h.clients[A].key
    squatter = h.client(B)
    assert squatter.handshake(claim, req_id=3) == Refused(req_id=3, reason=RefuseReason.NAME_BOUND)
    assert h.core.users == {} and h.core.stats.refused == 1
    # The server restarts (a new core on the same store): still hers.
    again = Harness(names=names, seed=1)
    assert again.client(B, key=squatter.key).handshake(claim, req_id=4) == Refused(
        req_id=4, reason=RefuseReason.NAME_BOUND
    )
    answer = again.client(A, key=alice_key).handshake("Alice", req_id=5)
    assert isinstance(answer, Welcome)
    # A free name binds to the first key that completes its sign-in, and not before.
    first = again.client(("10.0.0.7", 1))
    assert isinstance(first.handshake("zoe"), Welcome)
    assert names.lookup("zoe") is None  # answered, but its address is not proven yet
    first.confirm()
    assert names.lookup("zoe") == first.key.public


class Failing:
    """A store that cannot answer while ``down`` (a locked file, a full disk). It wraps a
    MemoryNames rather than subclassing it: the compiled core's classes cannot be subclassed by
    interpreted code."""

    def __init__(self) -> None:
        self.names = MemoryNames()
        self.down = True

    def lookup(self, name: str) -> bytes | None:
        if self.down:
            raise NameStoreError("locked")
        return self.names.lookup(name)

    def bind(self, name: str, key: bytes) -> None:
        if self.down:
            raise NameStoreError("locked")
        self.names.bind(name, key)


def test_a_store_that_cannot_answer_fails_closed_and_the_retry_signs_in() -> None:
    names = Failing()
    h = Harness(names=names)
    alice = h.client(A)
    assert h.send(alice.initiation("alice", req_id=1), A) == []  # no answer, nothing kept
    assert h.core.stats.name_store_errors == 1 and h.core.users == {}
    names.down = False
    answer = alice.handshake("alice", req_id=2)  # the client's retry
    assert isinstance(answer, Welcome)
    names.down = True  # it fails again before the confirming datagram: not signed in
    alice.confirm()
    assert h.core.users == {} and h.core.stats.name_store_errors == 2
    names.down = False
    assert isinstance(h.client(A, key=alice.key).handshake("alice", req_id=3), Welcome)
    h.clients[A].confirm()
    assert list(h.core.users) == ["alice"] and names.lookup("alice") == alice.key.public


def _server(net: FakeNetwork, names: NameBindings) -> ServerCore:
    core = ServerCore(
        identity=net.key("server"), timings=T, random_bytes=net.random_bytes, names=names
    )
    net.add_node(S, core)
    return core


def _failures(net: FakeNetwork) -> list[SignInFailed]:
    return [e for e in net.client_events[MALLORY] if isinstance(e, SignInFailed)]


@pytest.mark.guard("name-binding")
def test_on_the_network_the_squatter_is_told_whose_name_it_is_and_exits_3() -> None:
    net = FakeNetwork(seed=19)
    names = MemoryNames()
    _server(net, names)
    alice = net.add_client("alice", ALICE, S, T)
    assert net.run_until(lambda: alice.online, 10)
    alice.close(net.now)
    net.flush()
    assert net.run_until(lambda: alice.state is State.GONE, 10)
    for restart in (False, True):
        if restart:
            net.kill(S)
            net.down.discard(S)
            _server(net, names)
        net.client_events[MALLORY] = []
        net.add_client("alice", MALLORY, S, T, identity=net.key("mallory"))
        assert net.run_until(lambda: _failures(net), 10)
        [failed] = _failures(net)
        assert failed == SignInFailed(
            failure=SignInFailure.REFUSED, server=S, refused=RefuseReason.NAME_BOUND
        )
        assert exit_code(failed) is ExitCode.REFUSED
        ending = sign_in_failed(failed, "alice")
        assert ending.text.startswith("the name 'alice' belongs to another key; ")
        assert ending.code is ExitCode.REFUSED
    # The owner signs in as before.
    back = net.add_client("alice", ("10.0.0.3", 40001), S, T)
    assert net.run_until(lambda: back.online, 10)


# --- the real server's store ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1.7e9

    def __call__(self) -> float:
        return self.t


def test_sqlite_store_survives_reopening_never_rebinds_and_releases(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteNames(tmp_path, clock=clock)
    k1, k2 = b"1" * 32, b"2" * 32
    assert store.lookup("alice") is None
    store.bind("alice", k1)
    store.bind("alice", k2)  # (the core never does this; the store does not rebind either)
    assert store.lookup("alice") == k1
    clock.t += NAME_USE_RECORD_S
    store.bind("alice", k1)  # a later sign-in: its use is noted
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / DB_FILE).st_mode) == 0o600
    reopened = SqliteNames(tmp_path, clock=clock)  # a restart
    [b] = reopened.all()
    assert (b.name, b.key, b.used_at - b.bound_at) == ("alice", k1, NAME_USE_RECORD_S)
    released = reopened.release("alice")
    assert released is not None and released.key == k1
    assert reopened.lookup("alice") is None and reopened.release("alice") is None
    reopened.bind("alice", k2)
    assert reopened.lookup("alice") == k2
    reopened.close()


def test_sqlite_store_keeps_a_small_page_cache(tmp_path: Path) -> None:
    """SQLite's own cache stays at NAMES_DB_CACHE_KIB (not its 2 MB default), so the server's
    memory does not grow with the bindings (bench users_bytes_per_user)."""
    store = SqliteNames(tmp_path)
    assert store._db.execute("PRAGMA cache_size").fetchone()[0] == -NAMES_DB_CACHE_KIB
    store.close()


@pytest.mark.guard("name-binding")
def test_server_on_sqlite_refuses_the_squatter_after_a_restart_until_released(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteNames(tmp_path)
    h = _signed_out_alice(store)
    alice_key = h.clients[A].key
    store.close()
    restarted = SqliteNames(tmp_path)
    again = Harness(names=restarted, seed=1)
    squatter = again.client(B)
    assert squatter.handshake("alice", req_id=3) == Refused(
        req_id=3, reason=RefuseReason.NAME_BOUND
    )
    # The operator lists and releases it while the server runs.
    assert main(["names", "list", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("alice  ")
    assert main(["names", "release", "Alice", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("released 'alice' (it belonged to ")
    assert main(["--home", str(tmp_path), "names", "release", "alice"]) == 1
    assert "'alice' is not bound" in capsys.readouterr().err
    assert isinstance(squatter.handshake("alice", req_id=4), Welcome)
    squatter.confirm()
    assert restarted.lookup("alice") == squatter.key.public != alice_key.public
    restarted.close()


def test_the_names_commands_refuse_an_empty_home_and_an_invalid_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["names", "list", "--home", ""])
    assert exited.value.code == 2
    assert "argument --home: an empty path" in capsys.readouterr().err
    assert main(["names", "release", "a b", "--home", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("chat-server: error: ")
