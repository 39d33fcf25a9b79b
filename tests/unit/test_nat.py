"""Issue 21 on the in-memory network with NAT boxes (tests/natsim.py): endpoints, rendezvous
hints, simultaneous open, keepalives. Which pairs open a direct path is RFC 5128's table."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from natsim import NatNetwork

from budget import examples
from chat_protocol.client.core import ClientCore
from chat_protocol.client.rendezvous import Rendezvous
from chat_protocol.const import (
    HINTS_PER_ASKER_PER_S,
    HINTS_PER_TARGET_PER_S,
    PEER_IDLE_S,
    PEER_KEEPALIVE_S,
    PUNCH_REHINT_S,
    PUNCH_REHINTS,
    PUNCH_WINDOW_S,
    RELAY_HOST,
    RELAY_UPGRADE_S,
    Timings,
)
from chat_protocol.events import (
    MessageDelivered,
    MessageReceived,
    PathKind,
    SendFailed,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.packets import PacketType
from chat_protocol.server.hints import HintLimiter
from chat_protocol.server.relay import RelayPolicy
from chat_protocol.wire.messages import Addr
from chat_protocol.wire.names import name_key
from netsim import Link

T = Timings()
S: Addr = ("203.0.113.1", 5000)
KINDS = ("none", "full-cone", "port-restricted", "symmetric")


def direct_possible(a: str, b: str) -> bool:
    """RFC 5128 / Ford et al.: punching fails when both sides filter by port and at least one
    maps per destination (its port towards the peer is not the one the directory saw)."""
    restricted = {"port-restricted", "symmetric"}
    return not (a in restricted and b in restricted and "symmetric" in (a, b))


def place(net: NatNetwork, kind: str, realm: int, host: int = 2) -> Addr:
    """An address for a client behind a router of ``kind`` (``none``: on the wan itself)."""
    if kind == "none":
        return (f"192.0.2.{realm * 10 + host}", 4000 + host)
    if net.nat_of(f"10.{realm}.0.1") is None:
        net.add_nat(kind, realm=realm)
    return (f"10.{realm}.0.{host}", 4000 + host)


def sign_in(
    net: NatNetwork, *people: tuple[str, Addr], declare: bool = True, relay: bool = True
) -> list[ClientCore]:
    return net.sign_in(S, T, *people, clean_link=True, declare=declare, relay=relay)


def received(net: NatNetwork, addr: Addr) -> list[MessageReceived]:
    return net.events_of(addr, MessageReceived)


def outcome(net: NatNetwork, addr: Addr) -> list[object]:
    return [e for e in net.client_events[addr] if isinstance(e, MessageDelivered | SendFailed)]


def initiations(net: NatNetwork, src_ip: str, since: int = 0) -> int:
    """HANDSHAKE_INIT datagrams a host sent (as the trace saw them leave), from trace[since:]."""
    return sum(
        1
        for s, _, d in net.trace[since:]
        if s[0] == src_ip and d[:1] == bytes((PacketType.HANDSHAKE_INIT,))
    )


@pytest.mark.parametrize(("kind_a", "kind_b"), list(itertools.product(KINDS, KINDS)))
def test_every_pair_of_router_kinds(kind_a: str, kind_b: str) -> None:
    """Alice (behind ``kind_a``) sends to Bob (behind ``kind_b``, another router): delivered
    directly exactly when hole punching can work (nothing through the relay); symmetric x
    symmetric and port-restricted x symmetric go through the relay."""
    net = NatNetwork(seed=7)
    a, b = place(net, kind_a, 1), place(net, kind_b, 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    alice.send("bob", "hi bob", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert isinstance(outcome(net, a)[0], MessageDelivered)
    (shown,) = received(net, b)
    assert shown.text == "hi bob"
    if direct_possible(kind_a, kind_b):
        # Bob saw Alice at her public endpoint (her router's), never at the directory's.
        assert shown.addr[0] == (a[0] if kind_a == "none" else "198.51.100.1")
        assert net.server_at(S).stats.relayed == 0
    else:
        assert shown.addr[0] == RELAY_HOST


@pytest.mark.parametrize(("kind_a", "kind_b"), [("port-restricted", "port-restricted")])
def test_port_restricted_pair_needs_the_hint(kind_a: str, kind_b: str) -> None:
    """Without the directory's hint Bob never sends first, and his router drops Alice's
    initiations: the simultaneous open is what makes port-restricted x port-restricted work."""
    net = NatNetwork(seed=3)
    a, b = place(net, kind_a, 1), place(net, kind_b, 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b), relay=False)
    net.server_at(S).hints = HintLimiter(per_asker_per_s=0.0, per_target_per_s=0.0)
    alice.send("bob", "hi", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert _failed(outcome(net, a)[0]) is FailReason.NO_DIRECT_PATH
    assert net.server_at(S).stats.hints_limited >= 1


def test_peers_behind_one_router_meet_on_private_addresses() -> None:
    """Two clients behind one port-restricted router (it does not hairpin): the lookup gives
    Bob's private endpoint too, and the handshake settles there."""
    net = NatNetwork(seed=5)
    a, b = place(net, "port-restricted", 1, 2), place(net, "port-restricted", 1, 3)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    alice.send("bob", "next door", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert isinstance(outcome(net, a)[0], MessageDelivered)
    (shown,) = received(net, b)
    assert shown.addr == a  # Alice's private address, not her router's public one
    assert net.hairpins > 0  # the copies to the public endpoint went nowhere


def test_without_declared_private_endpoints_same_router_peers_fail() -> None:
    """The control: declare nothing, and only the public endpoint is tried, which the router
    does not hairpin."""
    net = NatNetwork(seed=5)
    a, b = place(net, "port-restricted", 1, 2), place(net, "port-restricted", 1, 3)
    alice, _ = sign_in(net, ("alice", a), ("bob", b), declare=False, relay=False)
    alice.send("bob", "next door", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert _failed(outcome(net, a)[0]) is FailReason.NO_DIRECT_PATH


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.floats(0.0, 0.2),
    kinds=st.sampled_from(
        [("full-cone", "port-restricted"), ("port-restricted", "port-restricted")]
    ),
    count=st.integers(1, 4),
)
def test_cone_pairs_under_loss_deliver_exactly_once_in_order(
    seed: int, loss: float, kinds: tuple[str, str], count: int
) -> None:
    net = NatNetwork(seed=seed, link=Link(loss=loss, duplicate=0.05, reorder=0.1))
    a, b = place(net, kinds[0], 1), place(net, kinds[1], 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    texts = [f"m{i}" for i in range(count)]
    for text in texts:
        alice.send("bob", text, net.now)
    assert net.run_until(lambda: len(outcome(net, a)) == count, 120)
    assert all(isinstance(o, MessageDelivered) for o in outcome(net, a))
    assert [m.text for m in received(net, b)] == texts


@pytest.mark.guard("private-endpoints")
def test_declared_endpoints_outside_private_ranges_are_not_handed_out() -> None:
    """A client cannot make peers send to a public or loopback address of its choosing: the
    directory keeps only private-range endpoints of a HELLO."""
    net = NatNetwork(seed=1)
    a, b = place(net, "full-cone", 1), place(net, "full-cone", 2)
    link, net.link = net.link, Link()
    net.add_server(S, T)
    alice = net.add_client(
        "alice", a, S, T, local_endpoints=(("8.8.8.8", 53), ("127.0.0.1", 22), a)
    )
    bob = net.add_client("bob", b, S, T, local_endpoints=(b,))
    assert net.run_until(lambda: alice.online and bob.online, 30)
    net.link = link
    # ClientCore filters too; the server must hold even against a client that does not.
    user = net.server_at(S).users["alice"]
    assert user.local == (a,)
    alice.send("bob", "hi", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert bob.links.rendezvous.endpoints(alice.identity.public)[1:] == (a,)
    assert not any(d[0] in ("8.8.8.8", "127.0.0.1") for _, d, _ in net.trace)


@pytest.mark.guard("hint-only-to-send")
def test_hints_go_only_on_a_lookup_to_send() -> None:
    """whois looks Bob up without telling him anything; send does."""
    net = NatNetwork(seed=2)
    a, b = place(net, "full-cone", 1), place(net, "full-cone", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b))
    alice.whois("bob", net.now)
    net.run(2)
    assert net.server_at(S).stats.hints == 0
    assert bob.links.rendezvous.punching() == []
    assert bob.links.rendezvous.endpoints(alice.identity.public) == ()
    alice.send("bob", "hi", net.now)
    net.run(0.05)
    assert net.server_at(S).stats.hints == 1
    # The hint carries Alice's endpoints as the directory knows them, nothing she asked for.
    user = net.server_at(S).users["alice"]
    assert bob.links.rendezvous.endpoints(alice.identity.public) == (user.addr, *user.local)


@pytest.mark.guard("hints-per-asker", "hints-per-target")
def test_hint_rates_per_asker_and_per_target() -> None:
    limiter = HintLimiter()
    asker, targets = b"a" * 32, [bytes([i]) * 32 for i in range(1, 20)]
    per_asker = sum(limiter.allow(asker, t, 1.0) for t in targets)
    assert per_asker == int(HINTS_PER_ASKER_PER_S)
    limiter = HintLimiter()
    askers, target = [bytes([i]) * 32 for i in range(1, 20)], b"t" * 32
    per_target = sum(limiter.allow(x, target, 1.0) for x in askers)
    assert per_target == int(HINTS_PER_TARGET_PER_S)
    assert not limiter.allow(target, target, 5.0)  # nobody is hinted towards itself


def _lose_the_hint(net: NatNetwork, bob: ClientCore) -> tuple[Addr, Addr]:
    """Drop what the directory sends Bob's public endpoint (his PUNCH hint, when Alice sends);
    the (source, destination) pair blocked, to unblock."""
    blocked = (S, net.server_at(S).users[name_key(bob.name)].addr)
    net.blocked.add(blocked)
    return blocked


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_lost_hint_is_asked_for_again(seed: int) -> None:
    """Full cone x port-restricted without the relay, Bob's PUNCH hint lost: Bob never punches
    and his router drops Alice's initiations, so Alice, unanswered for PUNCH_REHINT_S, asks the
    directory to hint him again; he punches, and the message arrives directly."""
    net = NatNetwork(seed=seed)
    a, b = place(net, "full-cone", 1), place(net, "port-restricted", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b), relay=False)
    srv = net.server_at(S)
    blocked = _lose_the_hint(net, bob)
    alice.send("bob", "hi", net.now)
    net.flush()  # the LOOKUP leaves now (not with its retry)
    assert net.run_until(lambda: srv.stats.hints >= 1, 5)  # sent, and dropped on the way
    net.blocked.discard(blocked)
    assert bob.links.rendezvous.punching() == []
    assert net.run_until(lambda: outcome(net, a), 30)
    assert isinstance(outcome(net, a)[0], MessageDelivered)
    (shown,) = received(net, b)
    assert shown.text == "hi" and shown.addr[0] == "198.51.100.1"  # Alice's router: direct
    assert srv.stats.hints == 2  # the lost one, and the one asked again
    assert srv.stats.relayed == 0


@pytest.mark.guard("rehints-bounded")
def test_hints_asked_again_are_bounded() -> None:
    """Every hint to Bob lost: Alice asks PUNCH_REHINTS more, at growing intervals, then stops
    asking; the send fails for want of a direct path."""
    net = NatNetwork(seed=14)
    a, b = place(net, "full-cone", 1), place(net, "port-restricted", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b), relay=False)
    _lose_the_hint(net, bob)
    alice.send("bob", "hi", net.now)
    net.flush()
    assert net.run_until(lambda: outcome(net, a), 30)
    assert _failed(outcome(net, a)[0]) is FailReason.NO_DIRECT_PATH
    assert net.server_at(S).stats.hints == 1 + PUNCH_REHINTS


@pytest.mark.guard("rehints-bounded")
def test_rehints_are_due_at_growing_intervals_until_the_peer_is_heard() -> None:
    """PUNCH_REHINTS asks, at 1, 3, 7 x PUNCH_REHINT_S, then none (whatever the delivery
    timeout); hearing the peer stops them, and a later handshake asks from the start."""
    r = Rendezvous()
    key = b"k" * 32
    assert not r.rehint_due(key, 0.0)  # nothing sent to it: nothing to ask
    r.trying(key, 100.0)
    due = [t / 10 for t in range(1000, 1200) if r.rehint_due(key, t / 10)]
    gaps = [PUNCH_REHINT_S * (2**n - 1) for n in range(1, PUNCH_REHINTS + 1)]
    assert due == [100.0 + g for g in gaps]
    r.heard(key, 120.0)
    assert not r.rehint_due(key, 130.0)
    r.trying(key, 200.0)  # a new handshake: asks again from the start
    assert r.rehint_due(key, 200.0 + PUNCH_REHINT_S)


def test_punching_on_a_hint_stops_after_its_window() -> None:
    """Symmetric x symmetric: Bob punches on the hint, and stops PUNCH_WINDOW_S later."""
    net = NatNetwork(seed=4)
    a, b = place(net, "symmetric", 1), place(net, "symmetric", 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    alice.send("bob", "hi", net.now)
    start = len(net.trace)
    net.run(PUNCH_WINDOW_S / 2)
    assert initiations(net, b[0], start) >= 3  # punching: every HANDSHAKE_RETRY_S
    net.run(PUNCH_WINDOW_S / 2 + 1.0)
    after = len(net.trace)
    net.run(3 * PUNCH_WINDOW_S)
    assert initiations(net, b[0], after) == 0


@pytest.mark.guard("keepalive", "keepalive-idle-stop")
def test_keepalives_hold_the_mappings_while_in_use_and_stop_when_idle() -> None:
    """After a message, nothing is sent for 150 s: keepalives (every PEER_KEEPALIVE_S, under
    conntrack's 30 s) keep both routers' flows open, so the next message goes on the same
    mappings with no new handshake. Past PEER_IDLE_S with no message, keepalives stop."""
    net = NatNetwork(seed=9)
    a, b = place(net, "port-restricted", 1), place(net, "port-restricted", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b))
    alice.send("bob", "first", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    nat_a, nat_b = net.nats
    (shown,) = received(net, b)
    port_a = nat_a.mapping_for(a, bob_seen := _seen(alice, bob), net.now)
    assert port_a == shown.addr[1]
    net.run(150.0)
    filtered_b = nat_b.filtered
    assert nat_a.mapping_for(a, bob_seen, net.now) == port_a
    assert nat_b.mapping_for(b, shown.addr, net.now) == bob_seen[1]
    alice.send("bob", "after 150 s", net.now)
    assert net.run_until(lambda: len(outcome(net, a)) == 2, 30)
    assert [m.text for m in received(net, b)] == ["first", "after 150 s"]
    assert received(net, b)[1].addr == shown.addr  # the same mapping of Alice's router
    # On the open path: Bob's router let Alice's first datagram in (nothing it filtered since).
    assert nat_b.filtered == filtered_b
    # Idle: keepalives stop once nothing was sent or received for PEER_IDLE_S.
    net.run(PEER_IDLE_S + 2 * PEER_KEEPALIVE_S)
    quiet = len(net.trace)
    net.run(4 * PEER_KEEPALIVE_S)
    assert not [1 for s, d, _ in net.trace[quiet:] if s[0] != S[0] and d[0] != S[0]]
    assert alice.links.rendezvous.in_use() == [] == bob.links.rendezvous.in_use()


def _failed(event: object) -> FailReason | None:
    return event.reason if isinstance(event, SendFailed) else None


def _seen(alice: ClientCore, bob: ClientCore) -> Addr:
    """Where Alice's session sends to Bob (his router's mapping towards her)."""
    session = alice.secure.session(bob.identity.public, 0.0)
    assert session is not None
    return session.remote_addr


def test_protocol_md_gives_the_nat_constants() -> None:
    """docs/PROTOCOL.md's table of the NAT constants is const.py's."""
    import chat_protocol.const as const

    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOL.md").read_text()
    rows = {
        cells[1].strip("`"): cells[2]
        for line in doc.split("## Across NATs")[1].split("\n## ")[0].splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    assert rows, "no constants table in the 'Across NATs' section"
    for name, value in rows.items():
        assert value == f"{getattr(const, name):g}", name
    assert {"PUNCH_WINDOW_S", "PEER_KEEPALIVE_S", "PEER_IDLE_S", "RELAY_AFTER_S"} <= set(rows)


# --- whois shows the path --------------------------------------------------------------------


def whois_of(net: NatNetwork, client: ClientCore, addr: Addr, name: str) -> WhoisInfo:
    def answers() -> list[WhoisInfo]:
        return [e for e in net.client_events[addr] if isinstance(e, WhoisInfo)]

    before = len(answers())
    client.whois(name, net.now)
    assert net.run_until(lambda: len(answers()) > before, 5)
    return answers()[-1]


@pytest.mark.parametrize(
    ("kind_a", "kind_b", "path"),
    [("full-cone", "port-restricted", PathKind.DIRECT), ("symmetric", "symmetric", PathKind.RELAY)],
)
def test_whois_shows_the_endpoints_and_the_path_of_a_working_session(
    kind_a: str, kind_b: str, path: PathKind
) -> None:
    """Before any message: bob's endpoints (public as the directory saw it, private as he
    declared it) and no path; after one: the path the session took, and for a direct one the
    address it sends to (bob's public endpoint: the punched mapping)."""
    net = NatNetwork(seed=5)
    a, b = place(net, kind_a, 1), place(net, kind_b, 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    first = whois_of(net, alice, a, "bob")
    assert first.path is None
    assert first.endpoints[1:] == (b,) and first.endpoints[0][0] != b[0]
    alice.send("bob", "hi", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert isinstance(outcome(net, a)[0], MessageDelivered)
    then = whois_of(net, alice, a, "bob")
    assert then.path is not None and then.path.kind is path
    if path is PathKind.DIRECT:
        assert then.path.addr == then.endpoints[0]
    else:
        assert then.path.addr is None


# --- the relay (issue 21's last resort) -----------------------------------------------------


def test_symmetric_pair_goes_through_the_relay() -> None:
    """No direct path opens: after RELAY_AFTER_S the handshake also goes through the
    directory, the peers' own Noise session forms over it, and the receiver's line says so."""
    net = NatNetwork(seed=11)
    a, b = place(net, "symmetric", 1), place(net, "symmetric", 2)
    alice, _ = sign_in(net, ("alice", a), ("bob", b))
    alice.send("bob", "through the relay", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert isinstance(outcome(net, a)[0], MessageDelivered)
    (shown,) = received(net, b)
    assert shown.addr[0] == RELAY_HOST
    assert net.server_at(S).stats.relayed > 0
    # The directory forwarded ciphertext only: the text is in no datagram it received.
    assert not any(b"through the relay" in d for _, dst, d in net.trace if dst == S)


def test_without_the_relay_the_sender_is_told_it_cannot_reach_directly() -> None:
    net = NatNetwork(seed=11)
    a, b = place(net, "symmetric", 1), place(net, "symmetric", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b), relay=False)
    alice.send("bob", "hi", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    (failed,) = outcome(net, a)
    assert isinstance(failed, SendFailed)
    assert failed.reason is FailReason.NO_DIRECT_PATH
    assert "cannot reach bob directly" in failed.reason.describe("bob", T.delivery_timeout_s)
    assert net.server_at(S).stats.relayed == 0 and received(net, b) == []
    del bob


def test_a_direct_path_that_opens_later_takes_over_from_the_relay() -> None:
    """UDP between the peers is blocked: the first message goes through the relay. Unblocked,
    the next direct initiation (every RELAY_UPGRADE_S) is answered and its session takes over."""
    net = NatNetwork(seed=12)
    a, b = place(net, "none", 1), place(net, "none", 2)
    alice, bob = sign_in(net, ("alice", a), ("bob", b))
    net.blocked |= {(a, b), (b, a)}
    alice.send("bob", "one", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    assert received(net, b)[0].addr[0] == RELAY_HOST
    net.blocked.clear()
    for i in range(8):
        alice.send("bob", f"more {i}", net.now)
        net.run(RELAY_UPGRADE_S / 2)
    assert net.run_until(lambda: len(outcome(net, a)) == 9, 30)
    assert all(isinstance(o, MessageDelivered) for o in outcome(net, a))
    assert [m.text for m in received(net, b)] == ["one", *(f"more {i}" for i in range(8))]
    assert received(net, b)[-1].addr == a  # direct again
    relayed = net.server_at(S).stats.relayed
    alice.send("bob", "last", net.now)
    assert net.run_until(lambda: len(outcome(net, a)) == 10, 30)
    assert net.server_at(S).stats.relayed == relayed  # nothing more through the relay
    del bob


@pytest.mark.guard("relay-secure-only", "relay-budget")
def test_relay_policy_forwards_secure_packets_within_budget_only() -> None:
    policy = RelayPolicy(per_user_bytes_per_s=1000.0, total_bytes_per_s=1e9)
    transport = bytes((PacketType.TRANSPORT,)) + bytes(99)
    assert not policy.allow(b"u" * 32, b"PC\x01\x10" + bytes(96), 1.0)  # plaintext: never
    assert sum(policy.allow(b"u" * 32, transport, 1.0) for _ in range(20)) == 10  # 1000 B
    assert policy.allow(b"v" * 32, transport, 1.0)  # another user's budget is its own
    assert policy.allow(b"u" * 32, transport, 1.2)  # refilled at 1000 B/s


@pytest.mark.guard("relay-sender-bound")
def test_a_relayed_datagram_cannot_move_another_peers_session() -> None:
    """Mallory (signed in, on path) captures a datagram Alice sends Bob and relays it to Bob
    before the original arrives: it is authentic and the newest on their session, but it came
    through the relay from Mallory's key, so Bob drops it. Else Bob's session with Alice would
    move to Mallory's pseudo-address, and Bob's datagrams for Alice would go to Mallory."""
    net = NatNetwork(seed=13)
    a, b, m = place(net, "none", 1), place(net, "none", 2), place(net, "none", 3)
    alice, bob, mallory = sign_in(net, ("alice", a), ("bob", b), ("mallory", m))
    alice.send("bob", "one", net.now)
    assert net.run_until(lambda: outcome(net, a), 30)
    net.blocked.add((a, b))
    start = len(net.trace)
    alice.send("bob", "two", net.now)

    def sent_to_bob() -> list[bytes]:
        return [
            d
            for s, dst, d in net.trace[start:]
            if s == a and dst == b and d[:1] == bytes((PacketType.TRANSPORT,))
        ]

    assert net.run_until(sent_to_bob, 5)
    captured = sent_to_bob()
    pseudo = mallory.links.relay_paths.addr_for(bob.identity.public)
    for data, dst in mallory.relaying.wrap([(captured[0], pseudo)], net.now):
        net._transmit(data, m, dst)
    net.run(0.01)
    assert net.server_at(S).stats.relayed == 1  # the directory did forward it ...
    session = bob.secure.session(alice.identity.public, net.now)
    assert session is not None and session.remote_addr == a  # ... and Bob dropped it
    net.blocked.clear()
    assert net.run_until(lambda: len(outcome(net, a)) == 2, 30)
    assert [m.text for m in received(net, b)] == ["one", "two"]
    assert all(m.addr == a for m in received(net, b))
