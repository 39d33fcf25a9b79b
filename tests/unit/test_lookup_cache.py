"""Issue 24: a send to a peer with a live session does not pay the directory round trip again.
The answer is cached under the name asked for the directory's liveness bound
(``client_timeout_s``), only while the peer's session works and it answers; the pin is checked
under the name asked on every send, cached or not (issue 19)."""

from __future__ import annotations

from test_delivery import A, B, S, T, setup

from chat_protocol.client.core import ClientCore
from chat_protocol.events import MessageDelivered, SendFailed
from chat_protocol.outcomes import FailReason
from netsim import FakeNetwork


def to_server(net: FakeNetwork) -> int:
    """Datagrams A has sent the directory so far."""
    return sum(1 for src, dst, _ in net.trace if src == A and dst == S)


def send_and_wait(net: FakeNetwork, a: ClientCore, to: str, text: str) -> object:
    handle = a.send(to, text, net.now)
    net.flush()

    def outcome() -> object:
        for e in net.client_events[A]:
            if isinstance(e, MessageDelivered | SendFailed) and e.handle == handle:
                return e
        return None

    assert net.run_until(outcome, 10)
    return outcome()


def test_a_send_to_a_peer_with_a_live_session_skips_the_lookup() -> None:
    net = FakeNetwork(seed=1)
    a, _ = setup(net, ("alice", A), ("bob", B))
    before = to_server(net)
    assert isinstance(send_and_wait(net, a, "bob", "one"), MessageDelivered)
    assert to_server(net) > before  # the first send asked the directory
    before = to_server(net)
    assert isinstance(send_and_wait(net, a, "Bob", "two"), MessageDelivered)  # same name
    assert to_server(net) == before  # ... the second did not
    assert a.lookups_saved == 1


def test_the_cached_answer_lasts_the_directory_liveness_bound_only() -> None:
    net = FakeNetwork(seed=2)
    a, _ = setup(net, ("alice", A), ("bob", B))
    assert isinstance(send_and_wait(net, a, "bob", "one"), MessageDelivered)
    net.run(T.client_timeout_s + 0.1)
    assert isinstance(send_and_wait(net, a, "bob", "two"), MessageDelivered)
    assert a.lookups_saved == 0  # older than client_timeout_s: asked again


def test_a_cached_answer_is_still_checked_against_the_pin() -> None:
    net = FakeNetwork(seed=3)
    a, _ = setup(net, ("alice", A), ("bob", B))
    assert isinstance(send_and_wait(net, a, "bob", "one"), MessageDelivered)
    a.pins.pin("bob", b"\x01" * 32, replaced=True, verified=True)  # bob's key "changed"
    before = to_server(net)
    failed = send_and_wait(net, a, "bob", "two")
    assert isinstance(failed, SendFailed) and failed.reason is FailReason.KEY_CHANGED
    assert a.lookups_saved == 1 and to_server(net) == before


def test_forget_answers_makes_the_next_send_ask() -> None:
    net = FakeNetwork(seed=4)
    a, _ = setup(net, ("alice", A), ("bob", B))
    assert isinstance(send_and_wait(net, a, "bob", "one"), MessageDelivered)
    a.forget_answers()
    before = to_server(net)
    assert isinstance(send_and_wait(net, a, "bob", "two"), MessageDelivered)
    assert to_server(net) > before and a.lookups_saved == 0
