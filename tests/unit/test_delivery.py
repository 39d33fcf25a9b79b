"""Server and clients on the in-memory lossy network: exactly-once, in-order, bounded."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chat_protocol.client import ClientCore
from chat_protocol.const import CHUNK_PAYLOAD_BYTES, Timings
from chat_protocol.events import (
    ExitCode,
    MessageDelivered,
    MessageReceived,
    SendFailed,
    ServerGone,
    SignedOut,
    SignInFailed,
)
from chat_protocol.messages import Addr
from netsim import FakeNetwork, Link

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
C: Addr = ("10.0.0.4", 40002)


def setup(net: FakeNetwork, *names_addrs: tuple[str, Addr]) -> list[ClientCore]:
    net.add_server(S, T)
    clients = [net.add_client(n, a, S, T) for n, a in names_addrs]
    assert net.run_until(lambda: all(c.online for c in clients), 30)
    return clients


def received(net: FakeNetwork, addr: Addr) -> list[MessageReceived]:
    return [e for e in net.client_events[addr] if isinstance(e, MessageReceived)]


def of_type(net: FakeNetwork, addr: Addr, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in net.client_events[addr] if isinstance(e, kind)]


@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.3),
    dup=st.floats(0, 0.3),
    reorder=st.floats(0, 0.5),
    sizes=st.lists(st.integers(1, 6 * CHUNK_PAYLOAD_BYTES), min_size=1, max_size=25),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by hypothesis: at 25 % loss a heartbeat sent once per interval went unanswered three
# times in a row, and the client declared a live server dead.
@example(seed=134, loss=0.25, dup=0.0, reorder=0.40625, sizes=[2401, 1201, 1, 1, 1, 1, 1, 1])
@example(seed=134, loss=0.25, dup=0.0, reorder=0.5, sizes=[1, 1201, 1, 1, 1, 1, 1, 1])
def test_exactly_once_in_order_under_loss_duplication_reordering(
    seed: int, loss: float, dup: float, reorder: float, sizes: list[int]
) -> None:
    net = FakeNetwork(seed=seed, link=Link(loss=loss, duplicate=dup, reorder=reorder))
    a, _ = setup(net, ("alice", A), ("bob", B))
    sent = [f"{i}:".encode().ljust(n, b"x").decode() for i, n in enumerate(sizes)]
    handles = [a.send("bob", text, net.now) for text in sent]
    net.flush()

    def outcomes() -> dict[int, bool]:
        events = net.client_events[A]
        out = {e.handle: True for e in events if isinstance(e, MessageDelivered)}
        failed = [e.handle for e in events if isinstance(e, SendFailed)]
        assert not set(out) & set(failed), "a message was both delivered and failed"
        return out | dict.fromkeys(failed, False)

    assert net.run_until(lambda: len(outcomes()) == len(sent), 120), "a send never resolved"
    net.run(3)  # late duplicates and retransmissions must not deliver anything twice
    got = received(net, B)
    assert all(m.sender == "alice" and m.addr == A and m.verified for m in got)
    texts = [m.text for m in got]
    # Exactly once, in order; a message may be missing only if its sender was told so. (A
    # message reported failed may still have arrived: its acknowledgements were what got lost.)
    assert texts == [t for t in sent if t in texts]
    delivered = outcomes()
    assert not any(delivered[h] for h, t in zip(handles, sent, strict=True) if t not in texts)


def test_one_mebibyte_arrives_whole_at_25_percent_loss() -> None:
    net = FakeNetwork(seed=7, link=Link(loss=0.25, duplicate=0.05, reorder=0.1))
    a, _ = setup(net, ("alice", A), ("bob", B))
    text = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
    a.send("bob", text, net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B), 120)
    assert [m.text for m in received(net, B)] == [text]


def test_three_senders_each_in_order_to_one_receiver() -> None:
    net = FakeNetwork(seed=3, link=Link(loss=0.2, reorder=0.3))
    a, b, _c = setup(net, ("alice", A), ("bob", B), ("carol", C))
    for i in range(30):
        a.send("carol", f"a{i}", net.now)
        b.send("carol", f"b{i}", net.now)
    net.flush()
    assert net.run_until(lambda: len(received(net, C)) == 60, 120)
    got = received(net, C)
    assert [m.text for m in got if m.sender == "alice"] == [f"a{i}" for i in range(30)]
    assert [m.text for m in got if m.sender == "bob"] == [f"b{i}" for i in range(30)]


def test_send_to_unknown_user_fails_with_no_such_user() -> None:
    net = FakeNetwork(seed=1)
    a, _ = setup(net, ("alice", A), ("bob", B))
    h = a.send("zed", "hi", net.now)
    net.flush()
    assert net.run_until(lambda: of_type(net, A, SendFailed), 5)
    [failed] = of_type(net, A, SendFailed)
    assert (failed.handle, failed.to, failed.reason) == (h, "zed", "no such user")


def test_sends_keep_their_order_when_lookups_are_answered_out_of_order() -> None:
    net = FakeNetwork(seed=11, link=Link(reorder=0.9, jitter_s=0.01))
    a, _ = setup(net, ("alice", A), ("bob", B))
    for i in range(50):
        a.send("bob", str(i), net.now)
    net.flush()
    assert net.run_until(lambda: len(received(net, B)) == 50, 30)
    assert [m.text for m in received(net, B)] == [str(i) for i in range(50)]


def test_dead_receiver_is_reported_not_delivered_never_silently_lost() -> None:
    net = FakeNetwork(seed=2)
    a, _ = setup(net, ("alice", A), ("bob", B))
    net.kill(B)
    start = net.now
    a.send("bob", "anyone there?", net.now)
    net.flush()
    assert net.run_until(lambda: of_type(net, A, SendFailed), 30)
    [failed] = of_type(net, A, SendFailed)
    assert failed.reason.startswith("not delivered")
    assert net.now - start <= T.delivery_timeout_s + 1


def test_dead_client_is_removed_and_then_unknown() -> None:
    net = FakeNetwork(seed=2)
    a, _ = setup(net, ("alice", A), ("bob", B))
    server = net.nodes[S]
    killed_at = net.now
    net.kill(B)
    assert net.run_until(lambda: "bob" not in server.users, 30)  # type: ignore[union-attr]
    assert net.now - killed_at <= T.client_timeout_s + T.sweep_interval_s + 0.1
    a.send("bob", "hello?", net.now)
    net.flush()
    assert net.run_until(lambda: of_type(net, A, SendFailed), 5)
    assert of_type(net, A, SendFailed)[0].reason == "no such user"


def test_partition_shorter_than_timeout_heals_and_delivers() -> None:
    net = FakeNetwork(seed=4)
    a, _ = setup(net, ("alice", A), ("bob", B))
    net.partitioned.add(B)
    for i in range(5):
        a.send("bob", f"during {i}", net.now)
    net.flush()
    net.run(3.0)
    net.partitioned.clear()
    assert net.run_until(lambda: len(received(net, B)) == 5, 20)
    assert [m.text for m in received(net, B)] == [f"during {i}" for i in range(5)]
    assert of_type(net, A, SendFailed) == []


def test_after_a_failed_delivery_later_messages_still_flow_in_order() -> None:
    net = FakeNetwork(seed=5)
    a, _ = setup(net, ("alice", A), ("bob", B))
    a.send("bob", "first", net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B), 5)
    net.partitioned.add(B)
    a.send("bob", "lost", net.now)
    net.flush()
    # Alice is told; bob's heartbeats are cut too, so heal before the server drops him.
    net.run(T.client_timeout_s - 1)
    net.partitioned.clear()
    assert net.run_until(lambda: of_type(net, A, SendFailed) or len(received(net, B)) > 1, 30)
    a.send("bob", "after", net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B)[-1].text == "after", 30)
    texts = [m.text for m in received(net, B)]
    failed = [e.handle for e in of_type(net, A, SendFailed)]
    # "lost" either arrived (in order) or alice was told it was not delivered; never both missing.
    assert texts in (["first", "lost", "after"], ["first", "after"])
    assert (texts == ["first", "after"]) == bool(failed)


def test_server_shutdown_tells_every_client() -> None:
    net = FakeNetwork(seed=6)
    clients = setup(net, ("alice", A), ("bob", B), ("carol", C))
    net.nodes[S].shutdown()  # type: ignore[union-attr]
    net.flush()
    assert net.run_until(lambda: all(not c.online for c in clients), 1)
    for addr in (A, B, C):
        [gone] = of_type(net, addr, ServerGone)
        assert gone.exit_code is ExitCode.SERVER_SHUTDOWN


def test_server_death_noticed_within_timeout() -> None:
    net = FakeNetwork(seed=6)
    clients = setup(net, ("alice", A), ("bob", B))
    died = net.now
    net.kill(S)
    assert net.run_until(lambda: all(not c.online for c in clients), 30)
    assert net.now - died <= T.server_timeout_s + 0.1
    for addr in (A, B):
        [gone] = of_type(net, addr, ServerGone)
        assert gone.exit_code is ExitCode.SERVER_LOST


def test_sign_in_without_server_fails_in_bounded_time() -> None:
    net = FakeNetwork(seed=1)
    c = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: not c.online and of_type(net, A, SignInFailed), 10)
    [failed] = of_type(net, A, SignInFailed)
    assert failed.exit_code is ExitCode.NO_SERVER
    assert net.now - 1000.0 <= T.request_timeout_s + T.request_retry_s


def test_duplicate_sign_in_refused() -> None:
    net = FakeNetwork(seed=1)
    setup(net, ("alice", A))
    net.add_client("Alice", B, S, T)
    assert net.run_until(lambda: of_type(net, B, SignInFailed), 5)
    assert of_type(net, B, SignInFailed)[0].exit_code is ExitCode.REFUSED


def test_close_waits_for_pending_sends_then_signs_out() -> None:
    net = FakeNetwork(seed=8, link=Link(loss=0.2))
    a, _ = setup(net, ("alice", A), ("bob", B))
    for i in range(20):
        a.send("bob", f"m{i}", net.now)
    a.close(net.now)
    net.flush()
    assert net.run_until(lambda: of_type(net, A, SignedOut), 60)
    assert len(received(net, B)) == 20
    assert "alice" not in net.nodes[S].users  # type: ignore[union-attr]


def test_impostor_name_is_marked_unverified() -> None:
    net = FakeNetwork(seed=9)
    _, _, mallory = setup(net, ("alice", A), ("bob", B), ("mallory", C))
    mallory.name = "alice"  # mallory's transfer layer now claims to be alice
    mallory.send("bob", "I am alice", net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B), 10)
    [msg] = received(net, B)
    assert msg.sender == "alice" and msg.addr == C and not msg.verified


def test_lossy_link_does_not_look_like_a_dead_server() -> None:
    net = FakeNetwork(seed=12, link=Link(loss=0.3))
    clients = setup(net, ("alice", A), ("bob", B), ("carol", C))
    net.run(300)
    assert all(c.online for c in clients)
    assert set(net.nodes[S].users) == {"alice", "bob", "carol"}  # type: ignore[union-attr]
