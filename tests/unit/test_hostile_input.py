"""Anything a network can deliver is dropped or handled; it never raises out of a core, never
shows a message, and never derails a real conversation.

What the network delivers: random bytes; replays, truncations and mutations of the datagrams of
a real conversation (handshakes, key replies, sessions' datagrams with valid counters and
tags); from any address, the peers' and the server's own included. And a hostile peer with a key
of its own (never in the directory) that completes handshakes with the server and both clients,
claiming to be alice or bob, and then sends well-formed messages of every kind, with any field
values, inside its authenticated sessions.
"""

from __future__ import annotations

import itertools
from typing import Literal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_codec import addr, messages

from budget import examples
from chat_protocol.client.core import ClientCore
from chat_protocol.const import Timings
from chat_protocol.errors import MalformedDatagram
from chat_protocol.events import MessageReceived, PeerRefused
from chat_protocol.secure.endpoint import SecureEndpoint, SessionEstablished
from chat_protocol.secure.packets import PacketType
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Data, Hello
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
M: Addr = ("10.0.0.66", 6666)
"""Where the hostile peer lives."""


class Mallory:
    """A hostile peer at ``M``: its own key, never signed in. ``say`` sends a plaintext to the
    server or a client inside a session, first hand-shaking with ``intro`` as the handshake's
    payload (a HELLO claiming some name); it answers nothing and never retries."""

    def __init__(self, net: FakeNetwork, keys: dict[Addr, bytes]) -> None:
        self.endpoint = SecureEndpoint(static=net.key("mallory"), random_bytes=net.random_bytes)
        self.keys = keys
        self._queued: dict[bytes, list[bytes]] = {}
        self._out: list[tuple[bytes, Addr]] = []
        self._timestamps = itertools.count(1)

    def say(self, to: Addr, intro: bytes, plaintext: bytes, now: float) -> None:
        key = self.keys[to]
        session = self.endpoint.session(key, now)
        if session is not None:
            self._out.append((session.encrypt(plaintext, now), session.remote_addr))
            return
        self._queued.setdefault(key, []).append(plaintext)
        if self.endpoint.initiating(key) is None:
            init = self.endpoint.connect(key, intro, now, timestamp=next(self._timestamps))
            self._out.append((init, to))

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        try:
            got = self.endpoint.receive(data, addr, now)
        except MalformedDatagram:
            return
        if isinstance(got, SessionEstablished):
            session = got.session
            for plaintext in [b"", *self._queued.pop(session.remote_static, [])]:
                self._out.append((session.encrypt(plaintext, now), session.remote_addr))

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[object]:
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


def conversation() -> tuple[FakeNetwork, ServerCore, ClientCore, ClientCore]:
    """Alice and bob signed in, and alice's "before" shown to bob: ``net.trace`` holds every
    datagram of it. (Deterministic: every run is the same conversation.)"""
    net = FakeNetwork(seed=1)
    server = net.add_server(S, T)
    a = net.add_client("alice", A, S, T)
    b = net.add_client("bob", B, S, T)
    assert net.run_until(lambda: a.online and b.online and len(server.users) == 2, 5)
    a.send("bob", "before", net.now)
    net.flush()
    assert net.run_until(lambda: shown(net), 10)
    net.run(2 * T.heartbeat_interval_s)  # its acknowledgements, and heartbeats, in the trace too
    assert texts_from_alice(net) == ["before"]
    return net, server, a, b


def shown(net: FakeNetwork) -> list[MessageReceived]:
    """Every message any client showed."""
    events = itertools.chain.from_iterable(net.client_events.values())
    return [e for e in events if isinstance(e, MessageReceived)]


def texts_from_alice(net: FakeNetwork) -> list[str]:
    """What bob was shown, each checked to be alice's, from where she is."""
    got = shown(net)
    assert all(m.sender == "alice" and m.addr == A for m in got), got
    assert all(e in net.client_events[B] for e in got)
    return [m.text for m in got]


def mutate(original: bytes) -> st.SearchStrategy[bytes]:
    """``original`` replayed as is, or truncated, flipped, spliced, extended or retyped."""
    n = len(original)
    index = st.integers(0, n - 1)
    return st.one_of(
        st.just(original),
        st.integers(0, n - 1).map(lambda k: original[:k]),
        st.tuples(index, st.integers(1, 255)).map(
            lambda ix: original[: ix[0]] + bytes([original[ix[0]] ^ ix[1]]) + original[ix[0] + 1 :]
        ),
        st.tuples(index, index, st.binary(max_size=64)).map(
            lambda s: original[: min(s[:2])] + s[2] + original[max(s[:2]) :]
        ),
        st.binary(min_size=1, max_size=64).map(lambda tail: original + tail),
        st.sampled_from(list(PacketType)).map(lambda t: bytes([t]) + original[1:]),
    )


@st.composite
def forged_data(draw: st.DrawFn, session: int) -> bytes:
    """A whole one-chunk DATA that looks like alice's own (her session, small numbers)."""
    payload = draw(st.binary(min_size=1, max_size=40))
    seq = draw(st.integers(0, 3))
    msg = Data(
        session=draw(st.just(session) | st.integers(0, 2**32 - 1)),
        stream=draw(st.integers(0, 3)),
        base=draw(st.integers(0, seq)),
        seq=seq,
        msg_id=draw(st.integers(0, 3)),
        offset=0,
        total=len(payload),
        sender=draw(st.sampled_from(["alice", "Alice", "bob"])),
        payload=payload,
    )
    return encode(msg)


claims = st.sampled_from(["alice", "ALICE", "bob", "no spaces"])
"""Names the hostile peer claims: taken by others, or invalid (so it never signs in)."""
senders = st.one_of(st.sampled_from([S, A, B, M]), addr)


Raw = tuple[Literal["raw"], bytes, Addr]
Said = tuple[Literal["say"], Addr, bytes, bytes]


@given(st.data(), st.floats(0, 30))
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_cores_survive_arbitrary_datagrams(data: st.DataObject, later: float) -> None:
    net, server, a, b = conversation()
    keys = {S: net.key("server").public, A: net.key("alice").public, B: net.key("bob").public}
    mallory = Mallory(net, keys)
    net.add_node(M, mallory)
    captured = [raw for _, _, raw in net.trace]
    datagrams = st.one_of(
        st.binary(max_size=1500),
        st.sampled_from(captured).flatmap(mutate),
    )
    raw: st.SearchStrategy[Raw] = st.tuples(st.just("raw"), datagrams, senders)
    said: st.SearchStrategy[Said] = st.tuples(
        st.just("say"),
        st.sampled_from([S, A, B]),
        claims.map(lambda name: encode(Hello(req_id=0, name=name))) | st.binary(max_size=64),
        messages.map(encode) | forged_data(a.session) | st.binary(max_size=200),
    )
    actions = data.draw(st.lists(st.one_of(raw, said), max_size=30), label="actions")
    for action in actions:
        if action[0] == "raw":
            _, datagram, src = action
            for core in (server, a, b):
                core.receive_datagram(datagram, src, net.now)
        else:
            _, to, intro, plaintext = action
            mallory.say(to, intro, plaintext, net.now)
        net.flush()
        net.run(0.01)  # let mallory's handshakes complete and her sessions' datagrams arrive
        assert texts_from_alice(net) == ["before"]
    event(f"mallory's sessions: {mallory.endpoint.sessions()}")
    refused = any(isinstance(e, PeerRefused) for e in net.client_events[B])
    event(f"bob refused the impostor: {refused}")
    net.run(later)  # timers and retransmissions after the garbage must run cleanly too
    assert texts_from_alice(net) == ["before"]
    # Nobody but the server and the peers holds the keys, sessions and tokens, so nothing in
    # the garbage can sign anyone out or derail the real conversation.
    assert a.online and b.online
    assert {n: u.static for n, u in server.users.items()} == {"alice": keys[A], "bob": keys[B]}
    a.send("bob", "after", net.now)
    net.flush()
    assert net.run_until(lambda: texts_from_alice(net) == ["before", "after"], 30)


def _alice_to_bob(net: FakeNetwork, kind: PacketType) -> list[bytes]:
    return [d for src, dst, d in net.trace if (src, dst) == (A, B) and d[0] == kind]


FORGERIES = ["plaintext", "forged counter", "replayed", "impostor handshake", "replayed handshake"]


def _forgery(how: str, net: FakeNetwork, a: ClientCore) -> bytes:
    """A datagram from alice's address that is not alice's (authenticated) work."""
    if how == "plaintext":
        return encode(
            Data(
                session=a.session,
                stream=1,
                base=0,
                seq=1,
                msg_id=2,
                offset=0,
                total=4,
                sender="alice",
                payload=b"fake",
            )
        )
    if how in ("forged counter", "replayed"):
        real = max(_alice_to_bob(net, PacketType.TRANSPORT), key=len)  # one of her DATA
        if how == "replayed":
            return real
        # A counter far ahead of hers: it would move bob's replay window, were it accepted.
        return real[:5] + (2**40).to_bytes(8, "big") + real[13:]
    if how == "replayed handshake":
        [init] = _alice_to_bob(net, PacketType.HANDSHAKE_INIT)
        return init
    # Mallory's own key, claiming alice's name, from alice's address: bob answers to alice's
    # address, so the handshake never completes.
    mallory = SecureEndpoint(static=net.key("mallory"), random_bytes=net.random_bytes)
    intro = encode(Hello(req_id=0, name="alice"))
    return mallory.connect(net.key("bob").public, intro, net.now, timestamp=2**62)


@pytest.mark.parametrize("how", FORGERIES)
def test_forgeries_from_a_peers_address_are_not_shown_nor_displace_its_session(how: str) -> None:
    net, _, a, b = conversation()
    a.send("bob", "one", net.now)
    net.flush()
    assert net.run_until(lambda: texts_from_alice(net) == ["before", "one"], 5)
    alice_key = net.key("alice").public
    session = b.secure.session(alice_key, net.now)
    mark = len(net.trace)
    forged = _forgery(how, net, a)
    before = b.stats
    b.receive_datagram(forged, A, net.now)  # source address forged as A
    dropped = b.stats
    net.flush()
    # The forgery was looked at, and dropped for its own reason.
    if how == "impostor handshake":  # answered (to alice's address), then nothing
        sent = [d[0] for src, _, d in net.trace[mark:] if src == B]
        assert sent == [PacketType.HANDSHAKE_RESPONSE]
    else:
        field = {"plaintext": "malformed", "forged counter": "forged"}.get(how, "replayed")
        assert getattr(dropped, field) > getattr(before, field), how
    net.run(1)
    a.send("bob", "two", net.now)
    net.flush()
    net.run(T.delivery_timeout_s)
    assert texts_from_alice(net) == ["before", "one", "two"], how
    # Bob still talks to alice on the same session: the forgery made nobody hand-shake again.
    assert b.secure.session(alice_key, net.now) is session, how
    assert not [d for _, _, d in net.trace[mark:] if d[0] == PacketType.HANDSHAKE_INIT]


def test_a_replayed_initiation_counts_once() -> None:
    net, _, _, b = conversation()
    [init] = _alice_to_bob(net, PacketType.HANDSHAKE_INIT)
    before = b.stats.replayed
    b.receive_datagram(init, A, net.now)
    assert b.stats.replayed == before + 1
