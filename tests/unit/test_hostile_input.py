"""Anything a network can deliver — random bytes, or well-formed messages of any kind with any
field values, from any address — is dropped or handled; it never raises out of a core."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import addr, messages

from chat_protocol.client import ClientCore
from chat_protocol.codec import encode
from chat_protocol.const import Timings
from chat_protocol.events import MessageReceived
from chat_protocol.messages import Addr, Data
from chat_protocol.server import ServerCore
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
senders = st.one_of(st.sampled_from([S, A, B]), addr)
datagrams = st.one_of(messages.map(encode), st.binary(max_size=1500))  # type: ignore[arg-type]


def online_pair() -> tuple[FakeNetwork, ServerCore, ClientCore, ClientCore]:
    net = FakeNetwork(seed=1)
    server = net.add_server(S, T)
    a = net.add_client("alice", A, S, T)
    b = net.add_client("bob", B, S, T)
    assert net.run_until(lambda: a.online and b.online, 5)
    return net, server, a, b


@given(st.lists(st.tuples(datagrams, senders), max_size=30), st.floats(0, 30))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_cores_survive_arbitrary_datagrams(batch: list[tuple[bytes, Addr]], later: float) -> None:
    net, server, a, b = online_pair()
    a.send("bob", "before", net.now)
    for raw, src in batch:
        for core in (server, a, b):
            core.receive_datagram(raw, src, net.now)
        net.flush()
    net.run(later)  # timers and retransmissions after the garbage must run cleanly too
    # Nobody but the server and the peers knows the tokens and sessions, so nothing in the
    # garbage can sign anyone out or derail the real conversation.
    assert a.online and b.online
    a.send("bob", "after", net.now)
    net.flush()
    assert net.run_until(
        lambda: (
            [
                m.text
                for m in net.client_events[B]
                if isinstance(m, MessageReceived) and m.sender == "alice" and m.addr == A
            ][-2:]
            == ["before", "after"]
        ),
        30,
    )


def test_forged_data_from_a_peers_address_does_not_displace_its_session() -> None:
    net, _, a, _ = online_pair()
    a.send("bob", "one", net.now)
    net.flush()
    net.run(1)
    forged = Data(
        session=a.session ^ 0xFFFF, stream=1, base=0, seq=0, msg_id=1, offset=0, total=4,
        sender="alice", payload=b"fake",
    )  # fmt: skip
    net.nodes[B].receive_datagram(encode(forged), A, net.now)  # source address forged as A
    a.send("bob", "two", net.now)
    net.flush()
    net.run(15)
    from_alice = [
        (m.text, m.verified)
        for m in net.client_events[B]
        if isinstance(m, MessageReceived) and m.addr == A
    ]
    # The forgery arrives as its own flow (the directory does confirm alice at A, so only
    # the session tells it apart); alice's real messages still arrive, in order.
    assert [t for t, _ in from_alice if t != "fake"] == ["one", "two"]
