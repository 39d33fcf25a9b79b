"""Server and clients on the in-memory lossy network: exactly-once, in-order, bounded."""

from __future__ import annotations

from typing import TypeVar

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from budget import examples
from chat_protocol.client.core import ClientCore
from chat_protocol.client.directory import State
from chat_protocol.const import CHUNK_PAYLOAD_BYTES, SEND_PROGRESS_STEPS, Timings
from chat_protocol.events import (
    ClientEvent,
    GoneReason,
    ListFailed,
    MessageDelivered,
    MessageReceived,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    SendProgress,
    ServerGone,
    SignedIn,
    SignedOut,
    SignInFailed,
    SignInFailure,
    UserList,
    WhoisFailed,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Hello, LookupReply
from netsim import FakeNetwork, Link

Ev = TypeVar("Ev", bound=ClientEvent)

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
C: Addr = ("10.0.0.4", 40002)


def setup(net: FakeNetwork, *names_addrs: tuple[str, Addr]) -> list[ClientCore]:
    """Server and signed-in clients. Sign-in runs on a clean link (the property tests are about
    what happens after it); the link's own loss applies from then on."""
    return net.sign_in(S, T, *names_addrs, clean_link=True)


def received(net: FakeNetwork, addr: Addr) -> list[MessageReceived]:
    return net.events_of(addr, MessageReceived)


def outcomes(net: FakeNetwork, addr: Addr) -> dict[int, bool]:
    """handle -> delivered, for every send of the client at ``addr`` that has its outcome."""
    events = net.client_events[addr]
    out = {e.handle: True for e in events if isinstance(e, MessageDelivered)}
    failed = [e.handle for e in events if isinstance(e, SendFailed)]
    assert not set(out) & set(failed), "a message was both delivered and failed"
    assert len(failed) == len(set(failed)), "a message failed twice"
    return out | dict.fromkeys(failed, False)


def assert_delivered_means_shown(net: FakeNetwork, sender: Addr, receiver: Addr) -> None:
    """Every "delivered" the sender heard names a message the receiver's user was shown."""
    shown = {m.msg_id for m in received(net, receiver) if m.session == sender_session(net, sender)}
    delivered = {h for h, ok in outcomes(net, sender).items() if ok}
    assert delivered <= shown, f"delivered but never shown: {sorted(delivered - shown)}"


def assert_progress_sound(net: FakeNetwork, addr: Addr, sizes: dict[int, int]) -> None:
    """``SendProgress`` (``sizes``: handle -> bytes sent): only for messages of more than one
    chunk, rising, at most one per step, never after the outcome, and at the total exactly when
    the message was delivered."""
    done: set[int] = set()
    last: dict[int, int] = {}
    delivered = outcomes(net, addr)
    for e in net.client_events[addr]:
        if isinstance(e, MessageDelivered | SendFailed):
            done.add(e.handle)
        if not isinstance(e, SendProgress):
            continue
        assert e.handle not in done, f"progress of {e.handle} after its outcome"
        assert sizes[e.handle] > CHUNK_PAYLOAD_BYTES and e.total == sizes[e.handle]
        assert last.get(e.handle, 0) < e.acked <= e.total
        last[e.handle] = e.acked
    for handle, size in sizes.items():
        if size > CHUNK_PAYLOAD_BYTES and delivered.get(handle):
            assert last.get(handle) == size, f"{handle} delivered, progress {last.get(handle)}"
    counts = [
        sum(isinstance(e, SendProgress) and e.handle == h for e in net.client_events[addr])
        for h in sizes
    ]
    assert max(counts, default=0) <= SEND_PROGRESS_STEPS


def sender_session(net: FakeNetwork, addr: Addr) -> int:
    node = net.nodes[addr]
    assert isinstance(node, ClientCore)
    return node.session


@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.3),
    dup=st.floats(0, 0.3),
    reorder=st.floats(0, 0.5),
    sizes=st.lists(st.integers(1, 6 * CHUNK_PAYLOAD_BYTES), min_size=1, max_size=25),
)
@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Found by hypothesis: at 25 % loss a heartbeat sent once per interval went unanswered three
# times in a row, and the client declared a live server dead.
@example(seed=134, loss=0.25, dup=0.0, reorder=0.40625, sizes=[2401, 1201, 1, 1, 1, 1, 1, 1])
@example(seed=134, loss=0.25, dup=0.0, reorder=0.5, sizes=[1, 1201, 1, 1, 1, 1, 1, 1])
def test_exactly_once_in_order_under_loss_duplication_reordering(
    seed: int, loss: float, dup: float, reorder: float, sizes: list[int]
) -> None:
    net = FakeNetwork(seed=seed, link=Link(loss=loss, duplicate=dup, reorder=reorder))
    a, b = setup(net, ("alice", A), ("bob", B))
    sent = [f"{i}:".encode().ljust(n, b"x").decode() for i, n in enumerate(sizes)]
    handles = [a.send("bob", text, net.now) for text in sent]
    net.flush()
    bound = T.delivery_timeout_s * (len(sent) + 2) + T.server_timeout_s
    assert net.run_until(lambda: len(outcomes(net, A)) == len(sent), bound), "a send never resolved"
    # Bob may still be checking a sender whose message alice gave up on; let that settle, then
    # let every late duplicate and retransmission arrive: none may show anything twice.
    assert net.run_until(lambda: b.receiving.holding == 0, T.server_timeout_s + 1)
    net.run(T.retransmit_max_s * 2)
    got = received(net, B)
    assert all(m.sender == "alice" and m.addr == A for m in got)
    texts = [m.text for m in got]
    # Exactly once, in order; a message may be missing only if its sender was told so. (A
    # message reported failed may still have been shown: its acknowledgements got lost.)
    assert texts == [t for t in sent if t in texts]
    delivered = outcomes(net, A)
    assert not any(delivered[h] for h, t in zip(handles, sent, strict=True) if t not in texts)
    assert_delivered_means_shown(net, A, B)
    assert_progress_sound(net, A, dict(zip(handles, sizes, strict=True)))


@given(seed=st.integers(0, 2**32), loss=st.floats(0, 0.5))
@settings(max_examples=examples(50), deadline=None)
def test_sign_in_under_loss_succeeds_or_says_why_in_bounded_time(seed: int, loss: float) -> None:
    net = FakeNetwork(seed=seed, link=Link(loss=loss))
    net.add_server(S, T)
    c = net.add_client("alice", A, S, T)
    start = net.now
    assert net.run_until(lambda: c.online or net.events_of(A, SignInFailed), 30)
    assert net.now - start <= T.request_timeout_s + T.request_retry_s
    if not c.online:
        [failed] = net.events_of(A, SignInFailed)
        assert failed.failure is SignInFailure.NO_ANSWER


def test_one_mebibyte_arrives_whole_at_25_percent_loss() -> None:
    net = FakeNetwork(seed=7, link=Link(loss=0.25, duplicate=0.05, reorder=0.1))
    a, _ = setup(net, ("alice", A), ("bob", B))
    text = "".join(chr(0x41 + i % 26) for i in range(1 << 20))
    handle = a.send("bob", text, net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B), 120)
    assert [m.text for m in received(net, B)] == [text]
    assert net.run_until(lambda: outcomes(net, A), 30)
    assert_progress_sound(net, A, {handle: len(text)})
    steps = [e.acked for e in net.events_of(A, SendProgress)]
    assert len(steps) > SEND_PROGRESS_STEPS // 2, "progress in too few steps"  # not all at the end
    assert steps[-1] == len(text)


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
    assert net.run_until(lambda: net.events_of(A, SendFailed), 5)
    [failed] = net.events_of(A, SendFailed)
    assert (failed.handle, failed.to, failed.reason) == (h, "zed", FailReason.NO_SUCH_USER)


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
    assert net.run_until(lambda: net.events_of(A, SendFailed), 30)
    [failed] = net.events_of(A, SendFailed)
    assert failed.reason is FailReason.TIMEOUT
    assert net.now - start <= T.delivery_timeout_s + 1


def test_dead_client_is_removed_and_then_unknown() -> None:
    net = FakeNetwork(seed=2)
    a, _ = setup(net, ("alice", A), ("bob", B))
    killed_at = net.now
    net.kill(B)
    assert net.run_until(lambda: "bob" not in net.server_at(S).users, 30)
    assert net.now - killed_at <= T.client_timeout_s + T.sweep_interval_s + 0.1
    a.send("bob", "hello?", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SendFailed), 5)
    assert net.events_of(A, SendFailed)[0].reason is FailReason.NO_SUCH_USER


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
    assert net.events_of(A, SendFailed) == []


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
    assert net.run_until(lambda: net.events_of(A, SendFailed) or len(received(net, B)) > 1, 30)
    a.send("bob", "after", net.now)
    net.flush()
    assert net.run_until(lambda: received(net, B)[-1].text == "after", 30)
    texts = [m.text for m in received(net, B)]
    failed = [e.handle for e in net.events_of(A, SendFailed)]
    # "lost" either arrived (in order) or alice was told it was not delivered; never both missing.
    assert texts in (["first", "lost", "after"], ["first", "after"])
    assert (texts == ["first", "after"]) == bool(failed)


def test_server_shutdown_tells_every_client() -> None:
    net = FakeNetwork(seed=6)
    clients = setup(net, ("alice", A), ("bob", B), ("carol", C))
    net.server_at(S).shutdown(net.now)
    net.flush()
    assert net.run_until(lambda: all(not c.online for c in clients), 1)
    for addr in (A, B, C):
        [gone] = net.events_of(addr, ServerGone)
        assert gone.reason is GoneReason.SHUTDOWN


def test_server_death_noticed_within_timeout() -> None:
    net = FakeNetwork(seed=6)
    clients = setup(net, ("alice", A), ("bob", B))
    died = net.now
    net.kill(S)
    assert net.run_until(lambda: all(not c.online for c in clients), 30)
    assert net.now - died <= T.server_timeout_s + 0.1
    for addr in (A, B):
        [gone] = net.events_of(addr, ServerGone)
        assert gone.reason is GoneReason.LOST


def test_sign_in_without_server_fails_in_bounded_time() -> None:
    net = FakeNetwork(seed=1)
    c = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: not c.online and net.events_of(A, SignInFailed), 10)
    [failed] = net.events_of(A, SignInFailed)
    assert failed.failure is SignInFailure.NO_ANSWER
    assert net.now - 1000.0 <= T.request_timeout_s + T.request_retry_s


def _block_after_initiation(net: FakeNetwork, c: ClientCore) -> None:
    """Let the client's sign-in initiation (its HELLO) through, and nothing it sends after."""

    def initiated() -> bool:
        return c.server_key is not None and c.secure.initiating(c.server_key) is not None

    assert net.run_until(initiated, 5)
    net.blocked.add((A, S))


@given(seed=st.integers(0, 2**32), loss=st.floats(0, 0.5))
def test_a_client_says_signed_in_only_once_the_server_lists_it(seed: int, loss: float) -> None:
    net = FakeNetwork(seed=seed, link=Link(loss=loss, duplicate=0.1, reorder=0.2))
    srv = net.add_server(S, T)
    c = net.add_client("alice", A, S, T)
    end = net.now + 2 * T.request_timeout_s
    while net.now < end and net.step():
        if net.events_of(A, SignedIn):
            assert c.online and "alice" in srv.users, "told signed in, unknown to the server"
            return
    assert not c.online


def test_regression_a_lost_first_datagram_after_welcome_does_not_sign_in_unlisted() -> None:
    # Found by CI (tests/e2e/test_loss_netns.py): the client said "signed in" on WELCOME; the
    # server keeps a sign-in only when a datagram on the new session arrives; that one was lost,
    # so lookups of the user answered "no such user" until its next heartbeat.
    net = FakeNetwork(seed=1)
    srv = net.add_server(S, T)
    c = net.add_client("alice", A, S, T)
    _block_after_initiation(net, c)
    net.run(T.request_retry_s * 3)
    assert c.state is State.REGISTERING  # WELCOME came back; what it sent on is lost
    assert not net.events_of(A, SignedIn) and "alice" not in srv.users
    net.blocked.clear()
    assert net.run_until(lambda: c.online, 5)
    assert "alice" in srv.users and len(net.events_of(A, SignedIn)) == 1


def test_registration_never_answered_fails_sign_in_in_bounded_time() -> None:
    net = FakeNetwork(seed=1)
    net.add_server(S, T)
    c = net.add_client("alice", A, S, T)
    _block_after_initiation(net, c)
    assert net.run_until(lambda: net.events_of(A, SignInFailed), 10)
    assert net.events_of(A, SignInFailed)[0].failure is SignInFailure.NO_ANSWER
    assert not net.events_of(A, SignedIn) and c.state is State.GONE
    assert net.now - 1000.0 <= T.request_timeout_s + T.request_retry_s


def test_under_load_the_cookie_is_answered_at_once_not_a_retry_later() -> None:
    # A busy server answers a sign-in with a cookie first (WireGuard's "under load"): the client
    # signs in again with it at once, so a crowded server costs a real user one round trip more,
    # not a retry interval (0.4 s; found by the hostile-load e2e test: 1.2 s sign-ins).
    net = FakeNetwork(seed=9)
    srv = net.add_server(S, T)
    srv._handshake_window = (net.now, 10**9)  # as if flooded with initiations this second
    c = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: c.online, 5)
    assert srv.stats.cookies >= 1
    assert net.now - 1000.0 < T.request_retry_s


def test_duplicate_sign_in_refused() -> None:
    net = FakeNetwork(seed=1)
    setup(net, ("alice", A))
    net.add_client("Alice", B, S, T, identity=net.key("another alice"))
    assert net.run_until(lambda: net.events_of(B, SignInFailed), 5)
    assert net.events_of(B, SignInFailed)[0].failure is SignInFailure.REFUSED


def test_close_waits_for_pending_sends_then_signs_out() -> None:
    net = FakeNetwork(seed=8, link=Link(loss=0.2))
    a, _ = setup(net, ("alice", A), ("bob", B))
    for i in range(20):
        a.send("bob", f"m{i}", net.now)
    a.close(net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SignedOut), 60)
    assert len(received(net, B)) == 20
    assert "alice" not in net.server_at(S).users


def test_an_impostor_name_is_never_shown() -> None:
    net = FakeNetwork(seed=9)
    _, b, mallory = setup(net, ("alice", A), ("bob", B), ("mallory", C))
    # Mallory's own key, but her handshake and her DATA claim to be alice.
    mallory.name = mallory.sending.name = "alice"
    mallory.links.intro = encode(Hello(req_id=0, name="alice"))
    mallory.send("bob", "I am alice", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(B, PeerRefused), 10)
    [refused] = net.events_of(B, PeerRefused)
    assert refused.name == "alice" and refused.reason is PeerRefusal.NOT_IN_DIRECTORY
    assert net.run_until(lambda: net.events_of(C, SendFailed), T.delivery_timeout_s + 2)
    assert received(net, B) == [] and b.stats.refused_messages == 1


def test_lossy_link_does_not_look_like_a_dead_server() -> None:
    net = FakeNetwork(seed=12, link=Link(loss=0.3))
    clients = setup(net, ("alice", A), ("bob", B), ("carol", C))
    net.run(300)
    assert all(c.online for c in clients)
    assert set(net.server_at(S).users) == {"alice", "bob", "carol"}


# --- "delivered" means shown: every way a receiver can go away ----------------------------------


def _held_at_bob(net: FakeNetwork, b: ClientCore) -> None:
    """Alice's message reaches bob whole, but his check of the sender cannot be answered: bob's
    datagrams to the server are dropped (as with iptables on his side)."""
    net.blocked.add((B, S))
    assert net.run_until(lambda: b.receiving.holding == 1, 5)
    assert received(net, B) == []


def test_regression_receiver_holding_a_message_is_not_delivered_when_it_loses_the_server() -> None:
    # Before: bob acknowledged the message complete while his sender check was pending, alice
    # was told nothing (success), and bob exited 5 s later without ever showing it.
    net = FakeNetwork(seed=21)
    a, b = setup(net, ("alice", A), ("bob", B))
    net.blocked.add((B, S))
    a.send("bob", "are you there?", net.now)
    net.flush()
    _held_at_bob(net, b)
    assert net.run_until(lambda: net.events_of(B, ServerGone), T.server_timeout_s + 1)
    assert received(net, B) == []
    assert net.run_until(lambda: len(outcomes(net, A)) == 1, T.delivery_timeout_s + 1)
    [failed] = net.events_of(A, SendFailed)
    assert failed.reason is FailReason.TIMEOUT
    assert net.events_of(A, MessageDelivered) == []


def test_exit_while_a_message_is_held_shows_it_before_signing_out() -> None:
    net = FakeNetwork(seed=22)
    a, b = setup(net, ("alice", A), ("bob", B))
    net.blocked.add((B, S))
    a.send("bob", "one more thing", net.now)
    net.flush()
    _held_at_bob(net, b)
    b.close(net.now)  # 'exit' and Ctrl-C both come here
    net.flush()
    assert net.run_until(lambda: not b.online and len(outcomes(net, A)) == 1, 30)
    assert_delivered_means_shown(net, A, B)


def test_server_shutdown_while_a_message_is_held_reports_it_not_delivered() -> None:
    net = FakeNetwork(seed=23)
    a, b = setup(net, ("alice", A), ("bob", B))
    net.blocked.add((B, S))
    a.send("bob", "before the shutdown", net.now)
    net.flush()
    _held_at_bob(net, b)
    net.server_at(S).shutdown(net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(B, ServerGone), 2)
    assert net.run_until(lambda: len(outcomes(net, A)) == 1, T.delivery_timeout_s + 1)
    assert received(net, B) == [] and net.events_of(A, MessageDelivered) == []


def test_a_client_refused_at_sign_in_never_acknowledges_a_message() -> None:
    net = FakeNetwork(seed=24)
    a, _ = setup(net, ("alice", A), ("bob", B))
    impostor = net.add_client("bob", C, S, T, identity=net.key("not bob"))  # bob is taken
    assert net.run_until(lambda: net.events_of(C, SignInFailed), 5)
    # Alice's transfer layer is pointed at the refused client's address directly.
    assert a.sending.queue("bob", b"for the real bob") == 1
    a.sending.pins.pin("bob", net.key("not bob").public, replaced=True)
    a.sending.looked_up(1, _reply("bob", C, net.key("not bob").public), net.now)
    net.flush()
    assert net.run_until(lambda: len(outcomes(net, A)) == 1, T.delivery_timeout_s + 1)
    assert net.events_of(A, MessageDelivered) == [] and received(net, C) == []
    assert not impostor.online


def _reply(name: str, addr: Addr, key: bytes) -> LookupReply:
    return LookupReply(req_id=0, name=name, addr=addr, key=key)


@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.3),
    ending=st.sampled_from(["exit", "server_lost", "shutdown", "killed"]),
    after_s=st.floats(0, 3),
    n=st.integers(1, 6),
)
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_ends_the_receiver_delivered_means_shown(
    seed: int, loss: float, ending: str, after_s: float, n: int
) -> None:
    net = FakeNetwork(seed=seed, link=Link(loss=loss))
    a, b = setup(net, ("alice", A), ("bob", B))
    for i in range(n):
        a.send("bob", f"m{i}", net.now)
    net.flush()
    net.run(after_s)
    match ending:
        case "exit":
            b.close(net.now)
        case "server_lost":
            net.blocked.add((B, S))
            net.blocked.add((S, B))
        case "shutdown":
            net.server_at(S).shutdown(net.now)
        case "killed":
            net.kill(B)
    net.flush()
    bound = T.delivery_timeout_s * (n + 2) + T.server_timeout_s
    assert net.run_until(lambda: len(outcomes(net, A)) == n, bound), "a send never resolved"
    assert_delivered_means_shown(net, A, B)


def test_regression_a_receiver_restarted_with_the_same_key_is_not_shown_a_message_twice() -> None:
    # Found by `make chaos` (seed 3): carol showed a message, her acknowledgement was lost, she
    # was killed and came back with the same key; alice resent it and the new carol showed it
    # again. Now the handshake names the peer's run: what the old run may have shown fails.
    net = FakeNetwork(seed=25)
    a, _ = setup(net, ("alice", A), ("bob", B))
    a.send("bob", "hello", net.now)
    net.flush()
    assert net.run_until(lambda: len(outcomes(net, A)) == 1, 5)  # the session is up
    net.blocked.add((B, A))  # from now on bob's acknowledgements are lost
    a.send("bob", "exactly once", net.now)
    a.send("bob", "also once", net.now)
    net.flush()
    assert net.run_until(lambda: len(received(net, B)) == 3, 5)
    first_run = list(net.client_events[B])
    net.kill(B)
    net.down.discard(B)
    del net.nodes[B]
    new_bob = net.add_client("bob", B, S, T)  # same name, same key, same address: a restart
    assert net.run_until(lambda: new_bob.online, 10)
    net.blocked.clear()
    a.send("bob", "after the restart", net.now)  # may still leave on the old run's session
    net.flush()
    assert net.run_until(lambda: len(outcomes(net, A)) == 4, T.delivery_timeout_s * 3)
    a.send("bob", "later", net.now)  # the restart is known now: a new transfer, delivered
    net.flush()
    assert net.run_until(lambda: len(outcomes(net, A)) == 5, T.delivery_timeout_s)
    shown = [e.text for e in first_run + net.client_events[B] if isinstance(e, MessageReceived)]
    assert all(shown.count(t) == 1 for t in ("exactly once", "also once", "later"))
    assert shown.count("after the restart") <= 1
    failed = {e.handle: e.reason for e in net.events_of(A, SendFailed)}
    assert failed[2] is FailReason.PEER_RESTARTED and failed[3] is FailReason.PEER_RESTARTED
    delivered = [e.handle for e in net.events_of(A, MessageDelivered)]
    assert 1 in delivered and 5 in delivered


@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.5),
    commands=st.lists(st.sampled_from(["list", "whois bob", "whois zed", "trust bob"]), max_size=6),
    cut=st.booleans(),
)
@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_command_typed_before_exit_is_answered_before_signing_out(
    seed: int, loss: float, commands: list[str], cut: bool
) -> None:
    # Before: piped `list` then `exit` printed nothing, and a `whois` answer could be lost the
    # same way (close waited for sends only); an unanswered whois said "no such user".
    net = FakeNetwork(seed=seed, link=Link(loss=loss))
    a, _ = setup(net, ("alice", A), ("bob", B))
    if cut:  # the server never hears alice again: every answer must be a failure, still printed
        net.blocked.add((A, S))
    for command in commands:
        match command.split():
            case ["list"]:
                a.list_users(net.now)
            case [verb, name]:
                a.whois(name, net.now, trust=verb == "trust")
    a.close(net.now)
    net.flush()
    bound = (len(commands) + 2) * (T.server_timeout_s + T.bye_timeout_s)
    assert net.run_until(
        lambda: bool(net.events_of(A, SignedOut) or net.events_of(A, ServerGone)), bound
    )
    events = net.client_events[A]
    [end] = [i for i, e in enumerate(events) if isinstance(e, SignedOut | ServerGone)]
    answers = [
        e for e in events[:end] if isinstance(e, UserList | ListFailed | WhoisInfo | WhoisFailed)
    ]
    assert len(answers) == len(commands), f"{len(answers)} answers to {commands}"
    assert not [
        e for e in events[end:] if isinstance(e, UserList | ListFailed | WhoisInfo | WhoisFailed)
    ]
    for e in answers:
        if isinstance(e, WhoisInfo):  # an answer is the truth: bob exists, zed does not
            assert (e.key is None) == (e.name == "zed")
        if cut:
            assert isinstance(e, ListFailed | WhoisFailed)
