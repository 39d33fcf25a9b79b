"""Hostile load on the cores: each limit pushed past, and what the victim keeps measured.

The attacker uses ordinary datagrams (its own keys; no spoofing unless a test says so). The
figures each test prints (``-s``) are what the closing note reports; what is asserted is the
promise: delivery, liveness, and bounds that do not depend on the machine's speed.
"""

from __future__ import annotations

import time

import pytest

from chat_protocol.client.core import ClientCore, State
from chat_protocol.const import (
    CHUNK_PAYLOAD_BYTES,
    MAX_HEARTBEAT_INTERVAL_S,
    MAX_PEERS_TRACKED,
    MAX_SESSIONS_PER_PEER,
    PARTIAL_TIMEOUT_S,
    RECEIVE_BUDGET_BYTES,
    Timings,
)
from chat_protocol.events import MessageDelivered, MessageReceived, SendFailed, SignInFailed
from chat_protocol.secure.handshake_gate import HandshakeGate
from chat_protocol.server.core import ServerCore
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Data, Hello, LookupReply, RefuseReason
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
EVIL: Addr = ("10.6.6.6", 6666)


def signed_in(net: FakeNetwork) -> tuple[ServerCore, ClientCore, ClientCore]:
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    return net.server_at(S), a, b


def delivered(net: FakeNetwork, addr: Addr) -> int:
    return sum(isinstance(e, MessageDelivered) for e in net.client_events[addr])


def shown(net: FakeNetwork, addr: Addr) -> list[str]:
    return [e.text for e in net.client_events[addr] if isinstance(e, MessageReceived)]


def say(net: FakeNetwork, a: ClientCore, text: str) -> None:
    before = delivered(net, A)
    a.send("bob", text, net.now)
    net.flush()
    assert net.run_until(lambda: delivered(net, A) == before + 1, 15), f"{text!r} not delivered"


class Attacker:
    """A peer with its own key that talks to bob directly (bob's address and key are one lookup
    away), claiming whatever name it likes."""

    def __init__(self, net: FakeNetwork, victim: ClientCore, owner: str, addr: Addr) -> None:
        self.net, self.addr = net, addr
        self.core = ClientCore(
            name="mallory", server=S, identity=net.key(owner), random_bytes=net.random_bytes
        )
        self.core.directory.set_state(State.ONLINE)  # it needs no directory
        self.core.links.intro = encode(Hello(req_id=0, name="carol"))
        self.victim_key = victim.identity.public

    def handshake(self) -> None:
        """Until the session with bob is up (bob answers any authenticated initiation)."""
        for _ in range(10):
            if self.core.secure.session(self.victim_key, self.net.now):
                return
            h = self.core.sending.queue("bob", b"x")
            self.core.sending.looked_up(
                h, LookupReply(req_id=0, name="bob", addr=B, key=self.victim_key), self.net.now
            )
            self.pump()
        raise AssertionError("no session with bob")

    def pump(self) -> None:
        for data, dst in self.core.datagrams_to_send(self.net.now):
            self.net.nodes[dst].receive_datagram(data, self.addr, self.net.now)
        self.net.flush()
        for src, dst, data in self.net.trace[-50:]:
            if dst == self.addr:
                self.core.receive_datagram(data, src, self.net.now)
        self.net.trace.clear()

    def raw(self, d: Data) -> None:
        """One DATA on the session, straight to bob."""
        session = self.core.secure.session(self.victim_key, self.net.now)
        assert session is not None
        datagram = session.encrypt(encode(d), self.net.now)
        self.net.nodes[B].receive_datagram(datagram, self.addr, self.net.now)


def open_gate(victim: ClientCore) -> None:
    """Let every initiation through the victim's handshake gate: the attacker's keys handshake
    at one instant from one IP, which the gate would answer with cookies (test_peer_handshakes
    checks that); the tests that call this are about what the keys that get through can do."""
    victim._gate = HandshakeGate(rate_under_load=1e9, per_ip=1e9, proven_per_ip=1e9)


def chunk(session: int, seq: int, offset: int, total: int, sender: str = "carol") -> Data:
    size = min(CHUNK_PAYLOAD_BYTES, total - offset)
    return Data(
        session=session, stream=1, base=0, seq=seq, msg_id=seq + 1, offset=offset, total=total,
        sender=sender, payload=b"\x00" * size,
    )  # fmt: skip


def test_a_flood_of_made_up_sessions_does_not_cut_alice_from_bob() -> None:
    net = FakeNetwork(seed=41)
    _, a, b = signed_in(net)
    say(net, a, "before")  # alice is proven: the directory vouched, bob showed her message
    evil = Attacker(net, b, "mallory", EVIL)
    evil.handshake()
    sessions = 100_000
    for s in range(sessions):  # each an incomplete 2-chunk message in a fresh sender session
        evil.raw(chunk(s, 0, 0, 2 * CHUNK_PAYLOAD_BYTES))
    net.flush()
    assert len(b.receiving._inbound) <= MAX_PEERS_TRACKED + 1
    say(net, a, "after the flood")
    assert shown(net, B) == ["before", "after the flood"]
    print(
        f"\n{sessions} made-up sessions: bob holds {b.receiving.held_bytes} bytes, "
        f"{len(b.receiving._inbound)} receive states; alice -> bob still delivered"
    )


def proven_attacker(net: FakeNetwork, b: ClientCore, name: str, addr: Addr) -> ClientCore:
    """A real signed-in user who has had a message shown by bob: its key is proven to bob (the
    directory and the pins vouched for it), so bob's limits for strangers do not hold it."""
    m = net.add_client(name, addr, S, T)
    assert net.run_until(lambda: m.online, 10)
    before = sum(isinstance(e, MessageDelivered) for e in net.client_events[addr])
    m.send("bob", f"hi, I am {name}", net.now)
    net.flush()
    assert net.run_until(
        lambda: sum(isinstance(e, MessageDelivered) for e in net.client_events[addr]) > before, 15
    )
    assert b.receiving.proven(m.identity.public)
    return m


def raw_from(net: FakeNetwork, m: ClientCore, addr: Addr, b: ClientCore, d: Data) -> None:
    """One DATA on ``m``'s session with bob, straight to bob."""
    session = m.secure.session(b.identity.public, net.now)
    assert session is not None
    net.nodes[B].receive_datagram(session.encrypt(encode(d), net.now), addr, net.now)


@pytest.mark.parametrize("sessions", [MAX_PEERS_TRACKED + 1, 100_000])
def test_a_proven_sender_with_made_up_sessions_cannot_cut_alice_from_bob(sessions: int) -> None:
    # Found by the e2e attack (tests/e2e/test_peer_attack_netns.py): a signed-in user whose
    # message bob had shown filled bob's table with made-up sessions, and alice's receive
    # state was retired: her next message was refused.
    net = FakeNetwork(seed=45)
    _, a, b = signed_in(net)
    say(net, a, "before")
    m = proven_attacker(net, b, "mallory", EVIL)
    for s in range(sessions):
        raw_from(net, m, EVIL, b, chunk(s, 0, 0, 2 * CHUNK_PAYLOAD_BYTES, sender="mallory"))
    mallorys = sum(k == m.identity.public for k, _ in b.receiving._inbound)
    assert mallorys <= MAX_SESSIONS_PER_PEER
    say(net, a, "after the flood")
    assert shown(net, B)[-1] == "after the flood" and shown(net, B).count("after the flood") == 1
    print(
        f"\n{sessions} made-up sessions of a proven sender: it keeps {mallorys} receive "
        f"states at bob; alice -> bob still delivered"
    )


def test_proven_senders_hoarding_partials_cannot_starve_alice() -> None:
    # Found by the e2e attack: proven senders' partial messages (fresh sessions, never their
    # first chunk) took the whole receive budget, and every chunk of alice's was dropped.
    net = FakeNetwork(seed=46)
    _, a, b = signed_in(net)
    say(net, a, "first")
    total = 4 * 1024 * 1024
    hoarders = [proven_attacker(net, b, f"hoarder{i}", ("10.6.6.9", 9000 + i)) for i in range(8)]
    for i, m in enumerate(hoarders):  # 8 keys x 4 sessions x 4 MiB offered: 128 MiB
        for s in range(MAX_SESSIONS_PER_PEER):
            for off in range(CHUNK_PAYLOAD_BYTES, total, CHUNK_PAYLOAD_BYTES):
                raw_from(
                    net,
                    m,
                    ("10.6.6.9", 9000 + i),
                    b,
                    chunk(100 + s, 0, off, total, sender=f"hoarder{i}"),
                )
    assert b.receiving.held_bytes <= RECEIVE_BUDGET_BYTES
    assert b.receiving.stats.over_budget > 0
    big = "x" * (20 * CHUNK_PAYLOAD_BYTES)  # many chunks: room must be made, not found
    say(net, a, big)
    assert shown(net, B)[-1] == big
    assert b.receiving.stats.reclaimed_bytes > 0
    print(
        f"\n128 MiB of partials offered by 8 proven senders: bob holds "
        f"{b.receiving.held_bytes / 2**20:.1f} MiB (budget {RECEIVE_BUDGET_BYTES / 2**20:.0f}); "
        f"{b.receiving.stats.reclaimed_bytes / 2**20:.1f} MiB of partials given back (to smaller "
        "holders: the hoarders among themselves, then alice)"
    )


def test_many_attacker_keys_cannot_evict_a_proven_peer() -> None:
    net = FakeNetwork(seed=42)
    _, a, b = signed_in(net)
    open_gate(b)
    say(net, a, "hello")
    keys = MAX_PEERS_TRACKED + 1
    for i in range(keys):
        evil = Attacker(net, b, f"mallory-{i}", ("10.6.6.7", 7000 + i))
        evil.handshake()
        evil.raw(chunk(i, 0, 0, 2 * CHUNK_PAYLOAD_BYTES))
    say(net, a, "still here")
    assert shown(net, B) == ["hello", "still here"]


def test_repeated_chunks_of_a_large_partial_cost_no_more_than_fresh_ones() -> None:
    net = FakeNetwork(seed=43)
    _, _, b = signed_in(net)
    evil = Attacker(net, b, "mallory", EVIL)
    evil.handshake()
    total = 8 * 1024 * 1024
    n = total // CHUNK_PAYLOAD_BYTES
    t0 = time.process_time()
    for i in range(1, n, 2):  # every other chunk: the worst case, n/2 separate ranges
        evil.raw(chunk(7, 0, i * CHUNK_PAYLOAD_BYTES, total))
    fresh = (time.process_time() - t0) / (n // 2)
    t0 = time.process_time()
    for _ in range(2000):
        evil.raw(chunk(7, 0, CHUNK_PAYLOAD_BYTES, total))  # the same chunk again and again
    repeated = (time.process_time() - t0) / 2000
    ib = next(iter(ib for ib in b.receiving._inbound.values() if ib.partial))
    [partial] = ib.partial.values()
    assert partial.have.count == n // 2  # thousands of ranges held...
    acks = ib.acks()
    assert all(len(x.ranges) <= 32 for x in acks)  # ...an ACK still reads a bounded prefix
    print(
        f"\nrepeated chunk {repeated * 1e6:.0f} us vs fresh {fresh * 1e6:.0f} us "
        f"({repeated / fresh:.2f}x) with {partial.have.count} ranges held"
    )
    assert b.online


def test_the_receive_budget_bounds_what_all_senders_together_make_bob_hold() -> None:
    net = FakeNetwork(seed=44)
    _, a, b = signed_in(net)
    open_gate(b)
    say(net, a, "first")
    senders = 40
    for i in range(senders):  # 40 x 4 MiB of partial messages = 160 MiB offered
        evil = Attacker(net, b, f"hoarder-{i}", ("10.6.6.8", 8000 + i))
        evil.handshake()
        total = 4 * 1024 * 1024
        for off in range(CHUNK_PAYLOAD_BYTES, total, CHUNK_PAYLOAD_BYTES):  # never the first
            evil.raw(chunk(i, 0, off, total))
    held = b.receiving.held_bytes
    assert held <= RECEIVE_BUDGET_BYTES // 4 + CHUNK_PAYLOAD_BYTES  # unproven: a quarter
    assert b.receiving.stats.over_budget > 0
    say(net, a, "the proven peer still gets through")
    print(
        f"\n160 MiB of partials offered by {senders} senders: bob holds {held / 2**20:.1f} MiB "
        f"(budget {RECEIVE_BUDGET_BYTES / 2**20:.0f} MiB, unproven share a quarter)"
    )
    # A sender that goes quiet has its partials freed after the timeout.
    net.run(PARTIAL_TIMEOUT_S + 2)
    assert b.receiving.held_bytes == 0
    assert b.online


def test_one_ip_gets_at_most_its_quota_of_names_and_real_users_still_sign_in() -> None:
    net = FakeNetwork(seed=45)
    srv = ServerCore(
        identity=net.key("server"), timings=T, random_bytes=net.random_bytes, max_users_per_ip=20
    )
    net.add_node(S, srv)
    made = 0
    refused = 0
    for i in range(40):  # one host, many ports, many keys, real handshakes
        c = net.add_client(f"fake{i}", ("10.6.6.9", 9000 + i), S, T)
        net.run_until(lambda c=c: c.online or not c.directory.requests, 5)  # type: ignore[misc]
        net.run(0.05)
        if c.online:
            made += 1
        events = net.client_events[("10.6.6.9", 9000 + i)]
        fails = [e for e in events if isinstance(e, SignInFailed)]
        refused += any(f.refused is RefuseReason.TOO_MANY_FROM_ADDRESS for f in fails)
    assert len(srv.users) == 20 and made == 20 and refused == 20
    real = net.add_client("alice", A, S, T)
    assert net.run_until(lambda: real.online and "alice" in srv.users, 5)
    fakes = sum(name.startswith("fake") for name in srv.users)
    assert fakes == 20
    print(
        f"\n40 sign-ins from one IP: {fakes} names kept (quota 20), {refused} refused "
        "'too many users from your address'; a user elsewhere signs in"
    )


def test_a_crowded_directory_does_not_stretch_liveness_past_its_bound() -> None:
    net = FakeNetwork(seed=46)
    srv, _, _ = signed_in(net)
    for i in range(200_000):  # as if 200 000 users were signed in
        srv.users[f"ghost{i}"] = srv.users["alice"]
    assert srv.heartbeat_interval_s() <= MAX_HEARTBEAT_INTERVAL_S
    timeout = srv.heartbeat_interval_s() * T.client_timeout_s / T.heartbeat_interval_s
    assert timeout <= 10.0
    assert srv.table.full()


def test_a_stalled_partial_is_freed_and_its_live_sender_was_told() -> None:
    # alice's chunks stop reaching bob midway through a message larger than her send window:
    # she reports it not delivered (her delivery timeout), and bob frees what he held of it
    # after PARTIAL_TIMEOUT_S; then they talk again.
    net = FakeNetwork(seed=47)
    _, a, b = signed_in(net)
    a.relay = a.links.relay = False  # the path is cut: no relay to go round it (issue 21)
    say(net, a, "first")
    text = "y" * (200 * CHUNK_PAYLOAD_BYTES)
    h = a.send("bob", text, net.now)
    net.flush()
    assert net.run_until(lambda: b.receiving.held_bytes > 0, 10)
    net.blocked.add((A, B))  # what is on the wire still arrives; nothing more does
    assert net.run_until(
        lambda: any(isinstance(e, SendFailed) and e.handle == h for e in net.client_events[A]),
        T.delivery_timeout_s + 5,
    )
    assert b.receiving.held_bytes > 0  # bob still holds the partial message...
    net.run(PARTIAL_TIMEOUT_S + 2)
    assert b.receiving.held_bytes == 0  # ...until it times out
    assert b.receiving.stats.stalled_partials > 0
    assert text not in shown(net, B)
    net.blocked.clear()
    say(net, a, "after")
    assert shown(net, B)[-1] == "after"
