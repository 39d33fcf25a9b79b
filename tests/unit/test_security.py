"""What an attacker on the network can and cannot do (issue "Peers that prove who they are").

Every test runs the real cores on the in-memory network, whose ``trace`` is a packet capture of
everything sent; an attacker injects datagrams with any source address it likes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from chat_protocol.client.core import ClientCore
from chat_protocol.client.directory import State
from chat_protocol.const import Timings
from chat_protocol.events import (
    MessageDelivered,
    MessageReceived,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    ServerGone,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.identity import safety_number
from chat_protocol.server.bindings import MemoryNames
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Hello, LookupReply
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
M: Addr = ("10.0.0.66", 6666)
FRESH: Addr = ("10.9.9.9", 9999)


def converse(net: FakeNetwork, a: ClientCore, b: ClientCore, texts: list[str]) -> None:
    """Each text alice -> bob and a reply bob -> alice, all delivered."""
    before_a = len(net.events_of(A, MessageDelivered))
    before_b = len(net.events_of(B, MessageDelivered))
    for t in texts:
        a.send("bob", t, net.now)
        b.send("alice", "re: " + t, net.now)
    net.flush()
    assert net.run_until(
        lambda: (
            len(net.events_of(A, MessageDelivered)) == before_a + len(texts)
            and len(net.events_of(B, MessageDelivered)) == before_b + len(texts)
        ),
        30,
    )


SECRETS = ["the launch code is 0000", "meet me at the old mill"]


def test_a_capture_of_a_whole_conversation_shows_no_text_name_or_token() -> None:
    net = FakeNetwork(seed=31)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    a.list_users(net.now)
    net.flush()
    converse(net, a, b, SECRETS)
    tokens = [a.directory.token, b.directory.token]
    a.close(net.now)
    b.close(net.now)
    net.flush()
    assert net.run_until(lambda: not a.online and not b.online, 10)
    assert len(net.trace) > 20
    needles = [t.encode() for t in SECRETS] + [b"alice", b"bob", b"ALICE"] + tokens
    needles += [("re: " + t).encode() for t in SECRETS]
    for src, dst, data in net.trace:
        for needle in needles:
            assert needle not in data, f"{needle!r} in clear in a datagram {src} -> {dst}"


def _replays(net: FakeNetwork) -> Iterator[tuple[bytes, Addr, Addr]]:
    """Every captured datagram, once from a fresh address and once from its own source."""
    for src, dst, data in list(net.trace):
        yield data, FRESH, dst
        yield data, src, dst


def test_replaying_every_datagram_shows_nothing_twice_and_signs_nobody_out() -> None:
    net = FakeNetwork(seed=32)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["one", "two", "three"])
    shown_before = {addr: len(net.events_of(addr, MessageReceived)) for addr in (A, B)}
    srv = net.nodes[S]
    assert isinstance(srv, ServerCore)
    for data, src, dst in _replays(net):
        before = len(net.trace)
        node = net.nodes[dst]
        node.receive_datagram(data, src, net.now)
        net.flush()
        # Nothing answers a fresh address with more than it sent (no amplification).
        for s, d, reply in net.trace[before:]:
            if d == FRESH:
                assert len(reply) <= len(data), (s, len(reply), len(data))
    net.run(T.delivery_timeout_s + 1)
    assert {addr: len(net.events_of(addr, MessageReceived)) for addr in (A, B)} == shown_before
    assert a.online and b.online and set(srv.users) == {"alice", "bob"}
    assert a.stats.replayed + b.stats.replayed > 0 and a.stats.malformed + b.stats.malformed > 0
    converse(net, a, b, ["still talking"])  # and nobody was cut apart


def test_a_replayed_shutdown_from_an_earlier_server_run_ends_nothing() -> None:
    net = FakeNetwork(seed=33)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    old = net.nodes[S]
    assert isinstance(old, ServerCore)
    start = len(net.trace)
    old.shutdown(net.now)
    net.flush()
    notices = [(s, d, data) for s, d, data in net.trace[start:] if s == S]
    assert net.run_until(lambda: not a.online and not b.online, 2)
    # The server restarts with the same key (its home), the users come back.
    del net.nodes[S]
    net.add_server(S, T)
    a2, b2 = net.sign_in(S, T, ("alice", ("10.0.0.2", 40100)), ("bob", ("10.0.0.3", 40101)))
    for _, _, data in notices:
        for c, addr in ((a2, ("10.0.0.2", 40100)), (b2, ("10.0.0.3", 40101))):
            c.receive_datagram(data, S, net.now)
            assert c.online, "an old SHUTDOWN ended a new session"
            assert not net.events_of(addr, ServerGone)


@pytest.mark.guard("send-pin", "receive-pin")
def test_a_user_back_with_a_new_key_is_refused_by_those_who_pinned_the_old_one() -> None:
    net = FakeNetwork(seed=34)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["hi"])
    b.close(net.now)
    net.flush()
    assert net.run_until(lambda: not b.online, 5)
    # Bob lost his home: the server's operator releases the name, and a new key takes it.
    names = net.nodes[S].names  # type: ignore[attr-defined]
    assert isinstance(names, MemoryNames) and names.release("bob")
    new_bob = net.add_client("bob", ("10.0.0.4", 40002), S, T, identity=net.key("new bob"))
    nb: Addr = ("10.0.0.4", 40002)
    assert net.run_until(lambda: new_bob.online, 10)
    # Past the lookup cache's bound (issue 24; within it the send goes to the pinned key).
    net.run(T.client_timeout_s)
    a.send("bob", "for the bob I know", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SendFailed), 5)
    [failed] = net.events_of(A, SendFailed)
    assert failed.reason is FailReason.KEY_CHANGED
    assert "key has changed" in failed.reason.describe("bob", 10)
    assert net.events_of(nb, MessageReceived) == []
    # The new bob writes to alice: refused, never shown, and alice is told once.
    new_bob.send("alice", "it's me, bob", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, PeerRefused), 5)
    [refused] = net.events_of(A, PeerRefused)
    assert (refused.name, refused.reason) == ("bob", PeerRefusal.KEY_CHANGED)
    assert "it's me, bob" not in [m.text for m in net.events_of(A, MessageReceived)]
    # whois shows both keys; trust accepts the new one, and then they talk.
    a.whois("bob", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, WhoisInfo), 5)
    [info] = net.events_of(A, WhoisInfo)
    assert info.key == net.key("new bob").public and info.pinned == net.key("bob").public
    a.whois("bob", net.now, trust=True)
    net.flush()
    assert net.run_until(lambda: len(net.events_of(A, WhoisInfo)) == 2, 5)
    a.send("bob", "welcome back", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(nb, MessageReceived), 10)
    assert [m.text for m in net.events_of(nb, MessageReceived)] == ["welcome back"]


def _lying_network(seed: int) -> tuple[FakeNetwork, ServerCore]:
    net = FakeNetwork(seed=seed)
    return net, net.add_server(S, T)


def lie_about_bob(srv: ServerCore, key: bytes) -> None:
    """The directory turns hostile: whoever asks for bob from now on gets mallory's address and
    ``key``. (Bob's own entry, by his key, still serves his requests. A table entry is replaced
    rather than a method overridden, so that the compiled core can be tested the same way.)"""
    real = srv.users["bob"]
    srv.users["bob"] = dataclasses.replace(real, addr=M, static=key)


@pytest.mark.guard("send-pin")
def test_a_directory_that_swaps_keys_is_refused_by_a_pinned_sender() -> None:
    net, srv = _lying_network(35)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["we have met"])  # alice pins bob's real key
    net.run(T.client_timeout_s + 0.1)  # past the lookup cache's bound (issue 24): ask again
    lie_about_bob(srv, net.key("mallory").public)
    a.send("bob", "the secret plan", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SendFailed), 5)
    assert net.events_of(A, SendFailed)[0].reason is FailReason.KEY_CHANGED
    assert not any(d == M for _, d, _ in net.trace), "a datagram went to mallory"


def test_within_the_lookup_cache_a_lying_directory_is_not_even_asked() -> None:
    """Issue 24: a send soon after a conversation uses the cached answer (the pinned key, a
    live session): the lie is never heard, and the message reaches the real bob."""
    net, srv = _lying_network(37)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["we have met"])
    lie_about_bob(srv, net.key("mallory").public)
    a.send("bob", "the secret plan", net.now)
    net.flush()
    assert net.run_until(lambda: len(net.events_of(A, MessageDelivered)) == 2, 5)
    assert "the secret plan" in [m.text for m in net.events_of(B, MessageReceived)]
    assert not any(d == M for _, d, _ in net.trace), "a datagram went to mallory"
    assert a.lookups_saved == 1


def test_on_first_contact_a_swapped_key_shows_in_the_safety_numbers() -> None:
    net, srv = _lying_network(36)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    lie_about_bob(srv, net.key("mallory").public)
    a.whois("bob", net.now)
    b.whois("alice", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, WhoisInfo) and net.events_of(B, WhoisInfo), 5)
    [seen_by_alice] = net.events_of(A, WhoisInfo)
    [seen_by_bob] = net.events_of(B, WhoisInfo)
    assert seen_by_alice.key is not None and seen_by_bob.key is not None
    alice_number = safety_number("alice", a.identity.public, "bob", seen_by_alice.key)
    bob_number = safety_number("bob", b.identity.public, "alice", seen_by_bob.key)
    assert alice_number != bob_number  # read aloud, they differ: the swap is found
    # Without the lie the two sides agree.
    assert safety_number("alice", a.identity.public, "bob", b.identity.public) == safety_number(
        "bob", b.identity.public, "alice", a.identity.public
    )


@pytest.mark.parametrize("claim", ["alice", "ALICE", "carol"])
def test_a_datagram_with_a_forged_source_address_is_never_shown(claim: str) -> None:
    net = FakeNetwork(seed=37)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["genuine"])
    shown = len(net.events_of(B, MessageReceived))
    # The attacker knows alice's address (one lookup away) and speaks as alice from it, with
    # its own key (it has no other): a handshake, then DATA claiming any name.
    mallory = ClientCore(
        name="mallory", server=S, identity=net.key("mallory"), random_bytes=net.random_bytes
    )
    mallory.name = mallory.sending.name = claim
    mallory.links.intro = encode(Hello(req_id=0, name=claim))
    mallory.directory.set_state(State.ONLINE)  # it needs no directory to attack
    handle = mallory.sending.queue("bob", b"please wire 500 EUR to carol")
    mallory.sending.looked_up(
        handle, LookupReply(req_id=0, name="bob", addr=B, key=b.identity.public), net.now
    )
    for _ in range(20):
        for data, dst in mallory.datagrams_to_send(net.now):
            net.nodes[dst].receive_datagram(data, A, net.now)  # forged source: alice's
        net.flush()
        for s, d, data in list(net.trace[-10:]):
            if d == A and s == B:
                mallory.receive_datagram(data, B, net.now)
        net.run(0.2)
    assert len(net.events_of(B, MessageReceived)) == shown
    assert not any("EUR" in m.text for m in net.events_of(B, MessageReceived))
    # The attack got as far as it can: bob decrypted it and refused the claim.
    [refused] = net.events_of(B, PeerRefused)
    assert refused.name == claim and refused.key == net.key("mallory").public
    assert b.stats.refused_messages == 1
    # A forged datagram does not even need the handshake to fail: plain bytes from alice's
    # address are dropped and counted.
    before = b.stats.malformed
    b.receive_datagram(b"PC\x01\x10" + bytes(60), A, net.now)
    b.receive_datagram(bytes([0x84]) + bytes(60), A, net.now)
    assert b.stats.malformed == before + 2
    assert a.online and b.online


def test_a_peer_whose_address_changes_keeps_its_sessions() -> None:
    net = FakeNetwork(seed=38)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    converse(net, a, b, ["before the move"])
    moved: Addr = ("10.0.0.2", 51000)  # alice's NAT rebinds her to another port
    net.nodes[moved] = net.nodes.pop(A)
    net.client_events[moved] = net.client_events.pop(A)
    net.events[moved] = net.events.pop(A)
    b.send("alice", "where are you now?", net.now)  # bob still has alice's old address
    a.send("bob", "over here", net.now)
    net.flush()
    assert net.run_until(lambda: len(net.events_of(B, MessageReceived)) == 2, 10)
    assert net.events_of(B, MessageReceived)[-1].addr == moved  # the session followed her
    srv = net.nodes[S]
    assert isinstance(srv, ServerCore)
    net.run(T.heartbeat_interval_s * 2)
    assert srv.users["alice"].addr == moved and a.online
    assert net.run_until(
        lambda: "where are you now?" in [m.text for m in net.events_of(moved, MessageReceived)], 15
    )
