"""A recorded sign-in replayed to a restarted directory (issue 19, point 4, the server's side).

The server keeps its anti-replay floors in memory only (``MemoryFloors``): after a restart it
accepts a recorded initiation from an earlier run as a handshake. These tests show why that is
safe, and fail if it stops being so: a sign-in is complete only with the HEARTBEAT that follows
the handshake, sealed under keys the replayer cannot compute (it lacks the initiator's ephemeral
private key), so the replay registers nobody, moves no address, squats no name and keeps no
state beyond the bounded half-open table.
"""

from __future__ import annotations

import pytest

from chat_protocol.client.core import ClientCore
from chat_protocol.const import Timings
from chat_protocol.events import UserList
from chat_protocol.secure.packets import PacketType
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.messages import Addr
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
EVIL: Addr = ("203.0.113.66", 666)


def recorded_sign_in(net: FakeNetwork) -> bytes:
    """alice signs in while an observer records; her first initiation to the directory."""
    alice = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: alice.online, 30)
    initiations = [
        d for src, dst, d in net.trace
        if src == A and dst == S and d[0] == PacketType.HANDSHAKE_INIT
    ]  # fmt: skip
    assert initiations, "the observer saw alice's sign-in"
    return initiations[0]


def restart_server(net: FakeNetwork) -> ServerCore:
    """The directory restarts: a new core, the same key, the same name bindings (its home)."""
    old = net.nodes[S]
    assert isinstance(old, ServerCore)
    new = ServerCore(identity=net.key("server"), timings=T, random_bytes=net.random_bytes,
                     names=old.names)  # fmt: skip
    net.nodes[S] = new
    return new


def answered_the_replay(net: FakeNetwork) -> bool:
    """The restarted directory took the replay for a handshake (it has no floor for alice's key
    any more) and answered it, to the forged source: what follows holds even so."""
    return any(
        src == S and dst == EVIL and d[0] == PacketType.HANDSHAKE_RESPONSE
        for src, dst, d in net.trace
    )


def listed(net: FakeNetwork, who: ClientCore, addr: Addr) -> list[str]:
    before = len(net.client_events[addr])
    who.list_users(net.now)
    net.flush()
    assert net.run_until(
        lambda: any(isinstance(e, UserList) for e in net.client_events[addr][before:]), 10
    )
    [answer] = [e for e in net.client_events[addr][before:] if isinstance(e, UserList)]
    return sorted(answer.names)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_recorded_sign_in_replayed_to_a_restarted_directory_registers_nobody(seed: int) -> None:
    net = FakeNetwork(seed=seed)
    net.add_server(S, T)
    recorded = recorded_sign_in(net)
    net.kill(A)  # alice is gone (and the directory forgets her when it restarts)
    srv = restart_server(net)
    for _ in range(3):  # the replay, from a forged source, a few times
        net._arrive(recorded, EVIL, S)
        net.flush()
        net.run(1.0)
    assert answered_the_replay(net)
    assert "alice" not in srv.users
    bob = net.add_client("bob", B, S, T)
    assert net.run_until(lambda: bob.online, 30)
    assert listed(net, bob, B) == ["bob"]
    # Nothing of the replay outlives the handshake timeout: the half-open entry is gone.
    net.run(T.client_timeout_s * 4)
    assert "alice" not in srv.users


@pytest.mark.parametrize("seed", [4, 5])
def test_a_recorded_sign_in_replayed_while_alice_is_back_moves_nothing(seed: int) -> None:
    net = FakeNetwork(seed=seed)
    net.add_server(S, T)
    recorded = recorded_sign_in(net)
    net.kill(A)
    srv = restart_server(net)
    # alice comes back (a new run: the same key, a fresh initiation) ...
    net.down.discard(A)
    del net.nodes[A]
    alice = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: alice.online and "alice" in srv.users, 30)
    assert srv.users["alice"].addr == A
    # ... and the attacker replays her recorded sign-in of the earlier run from elsewhere: her
    # fresh initiation raised the (in-memory) floor of her key, so it is refused unanswered.
    for _ in range(3):
        net._arrive(recorded, EVIL, S)
        net.flush()
        net.run(1.0)
    assert srv.secure.counters.replayed_initiations == 3
    assert not answered_the_replay(net)
    assert srv.users["alice"].addr == A
    bob = net.add_client("bob", B, S, T)
    assert net.run_until(lambda: bob.online, 30)
    assert listed(net, bob, B) == ["alice", "bob"]
    net.run(T.heartbeat_interval_s * 3)
    assert alice.online and srv.users["alice"].addr == A
