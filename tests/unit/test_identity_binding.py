"""Identity that sticks (issue 19, points 1, 3 and 8): a directory that renames its answers, a
``trust`` that pins only a key the user saw, and the check that a message is shown under the
name its sender's current handshake claimed.

Every test runs the real cores on the in-memory network. Each guard named in a test's docstring
(``# guard: NAME`` in the code) makes that test fail when it is removed.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budget import examples
from chat_protocol.client.core import ClientCore
from chat_protocol.client.directory import DirectorySession, WhoisLookup
from chat_protocol.const import CHUNK_PAYLOAD_BYTES, Timings
from chat_protocol.events import (
    KeyPinned,
    KeyStatus,
    MessageDelivered,
    MessageReceived,
    PeerRefusal,
    PeerRefused,
    SendFailed,
    WhoisFailed,
    WhoisFailure,
    WhoisInfo,
)
from chat_protocol.outcomes import FailReason
from chat_protocol.secure.identity import fingerprint
from chat_protocol.secure.packets import PacketType
from chat_protocol.server.bindings import MemoryNames
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Addr, Data, Hello, LookupReply
from netsim import FakeNetwork

T = Timings()
S: Addr = ("10.0.0.1", 5000)
A: Addr = ("10.0.0.2", 40000)
B: Addr = ("10.0.0.3", 40001)
M: Addr = ("10.0.0.66", 6666)


def talk(net: FakeNetwork, a: ClientCore, b: ClientCore) -> None:
    """alice -> bob and back, delivered: each has pinned the other's real key."""
    a.send("bob", "hello bob", net.now)
    b.send("alice", "hello alice", net.now)
    net.flush()
    assert net.run_until(
        lambda: net.events_of(A, MessageDelivered) and net.events_of(B, MessageDelivered), 10
    )


def rename_bob_to_mallory(net: FakeNetwork) -> None:
    """The directory turns hostile: "lookup bob" is answered with mallory's entry, under the
    name "mallory", with mallory's address and key (a copy of her table entry: her own requests
    are still served by hers)."""
    srv = net.server_at(S)
    srv.users["bob"] = dataclasses.replace(srv.users["mallory"])


def speak_as(net: FakeNetwork, m: ClientCore, claim: str) -> None:
    """mallory's client, signed in as herself, claims ``claim`` in its peer handshakes and
    DATA."""
    m.links.intro = encode(Hello(req_id=m.session, name=claim))
    m.sending.name = claim


# --- point 1: a directory that renames its answers ------------------------------------------


@pytest.mark.guard("asked-name")
@pytest.mark.parametrize("met_before", [False, True], ids=["first-contact", "pinned"])
def test_send_bob_is_not_delivered_to_mallory_when_the_directory_renames(met_before: bool) -> None:
    """guard: asked-name (first contact: nothing else stands in the way)."""
    net = FakeNetwork(seed=190 + met_before)
    a, b, _m = net.sign_in(S, T, ("alice", A), ("bob", B), ("mallory", M))
    if met_before:
        talk(net, a, b)
        # Past the lookup cache's bound (issue 24): the next send asks the directory again.
        net.run(T.client_timeout_s + 0.1)
    delivered = len(net.events_of(A, MessageDelivered))
    rename_bob_to_mallory(net)
    a.send("bob", "the secret plan", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SendFailed), 5)
    [failed] = net.events_of(A, SendFailed)
    assert (failed.to, failed.reason) == ("bob", FailReason.WRONG_NAME)
    assert failed.reason.describe("bob", 10) == (
        "not delivered to bob (the directory answered for another name; nothing was sent)"
    )
    net.run(T.delivery_timeout_s)
    assert len(net.events_of(A, MessageDelivered)) == delivered
    assert net.events_of(M, MessageReceived) == []
    # Nothing of alice's own goes to mallory: no message, no initiation. (The renamed lookup
    # also hints "bob", that is mallory, to punch towards alice, issue 21; answering an
    # initiation is any responder's part, and mallory can always make one.)
    assert not any(
        d == M and s == A and data[0] != PacketType.HANDSHAKE_RESPONSE for s, d, data in net.trace
    ), "alice sent mallory a datagram"
    assert a.stats.misanswered == 1
    # Nothing was pinned for bob, or under the answer's name.
    assert a.pins.get("bob") == (net.key("bob").public if met_before else None)
    assert a.pins.get("mallory") is None


@pytest.mark.guard("asked-name")
@pytest.mark.parametrize("met_before", [False, True], ids=["first-contact", "pinned"])
def test_mallory_is_never_shown_as_bob_when_the_directory_renames(met_before: bool) -> None:
    """guard: asked-name (first contact); receive-pin would otherwise pin mallory as bob."""
    net = FakeNetwork(seed=192 + met_before)
    a, b, m = net.sign_in(S, T, ("alice", A), ("bob", B), ("mallory", M))
    if met_before:
        talk(net, a, b)
    rename_bob_to_mallory(net)
    speak_as(net, m, "bob")
    m.send("alice", "it's bob: wire 500 EUR to mallory", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, PeerRefused), 10)
    [refused] = net.events_of(A, PeerRefused)
    assert (refused.name, refused.key) == ("bob", net.key("mallory").public)
    assert refused.reason is PeerRefusal.WRONG_NAME
    net.run(T.delivery_timeout_s)
    assert not any("EUR" in e.text for e in net.events_of(A, MessageReceived))
    assert not net.events_of(M, MessageDelivered)
    assert a.pins.get("bob") == (net.key("bob").public if met_before else None)
    assert a.stats.misanswered >= 1


@pytest.mark.guard("asked-name")
def test_whois_and_trust_of_a_renamed_answer_fail_and_pin_nothing() -> None:
    """guard: asked-name (whois would show, and trust pin, mallory's key for bob)."""
    net = FakeNetwork(seed=194)
    a, _b, _m = net.sign_in(S, T, ("alice", A), ("bob", B), ("mallory", M))
    rename_bob_to_mallory(net)
    a.whois("bob", net.now)
    a.whois("bob", net.now, trust=True, fingerprint=fingerprint(net.key("mallory").public))
    net.flush()
    assert net.run_until(lambda: len(net.events_of(A, WhoisFailed)) == 2, 5)
    assert [e.reason for e in net.events_of(A, WhoisFailed)] == [WhoisFailure.WRONG_NAME] * 2
    assert net.events_of(A, WhoisInfo) == [] and net.events_of(A, KeyPinned) == []
    assert a.stats.misanswered == 2


# --- point 3: verification is an act --------------------------------------------------------


def whois(net: FakeNetwork, a: ClientCore, name: str, **trust: object) -> WhoisInfo | WhoisFailed:
    before = len(net.events_of(A, WhoisInfo)) + len(net.events_of(A, WhoisFailed))
    a.whois(name, net.now, **trust)  # type: ignore[arg-type]
    net.flush()
    assert net.run_until(
        lambda: len(net.events_of(A, WhoisInfo)) + len(net.events_of(A, WhoisFailed)) > before, 5
    )
    last = [e for e in net.client_events[A] if isinstance(e, WhoisInfo | WhoisFailed)][-1]
    return last


def test_whois_says_new_then_pinned_on_first_use_then_verified() -> None:
    net = FakeNetwork(seed=195)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    bob_key = net.key("bob").public
    first = whois(net, a, "bob")
    assert isinstance(first, WhoisInfo) and first.status is KeyStatus.NEW and first.key == bob_key
    assert a.pins.get("bob") is None, "whois pins nothing"
    talk(net, a, b)  # pinned on first use
    second = whois(net, a, "bob")
    assert isinstance(second, WhoisInfo) and second.status is KeyStatus.PINNED
    trusted = whois(net, a, "bob", trust=True)
    assert isinstance(trusted, WhoisInfo) and trusted.trusted and trusted.key == bob_key
    assert net.events_of(A, KeyPinned)[-1].verified
    third = whois(net, a, "bob")
    assert isinstance(third, WhoisInfo) and third.status is KeyStatus.VERIFIED


@pytest.mark.guard("trust-unseen")
def test_trust_without_a_key_seen_pins_nothing() -> None:
    """guard: trust-unseen."""
    net = FakeNetwork(seed=196)
    a, _b = net.sign_in(S, T, ("alice", A), ("bob", B))
    refused = whois(net, a, "bob", trust=True)
    assert isinstance(refused, WhoisFailed) and refused.reason is WhoisFailure.NOT_SEEN
    assert a.pins.get("bob") is None and net.events_of(A, KeyPinned) == []


@pytest.mark.guard("trust-seen")
def test_trust_refuses_a_key_swapped_after_whois() -> None:
    """guard: trust-seen. The safety numbers were compared over bob's real key; the directory
    then swaps it: ``trust bob`` must not pin the new one."""
    net = FakeNetwork(seed=197)
    a, _b = net.sign_in(S, T, ("alice", A), ("bob", B))
    seen = whois(net, a, "bob")
    assert isinstance(seen, WhoisInfo) and seen.key == net.key("bob").public
    srv = net.server_at(S)
    srv.users["bob"] = dataclasses.replace(srv.users["bob"], static=net.key("mallory").public)
    refused = whois(net, a, "bob", trust=True)
    assert isinstance(refused, WhoisFailed) and refused.reason is WhoisFailure.KEY_DIFFERS
    assert refused.key == net.key("mallory").public
    assert a.pins.get("bob") is None and net.events_of(A, KeyPinned) == []


@pytest.mark.guard("trust-fingerprint")
def test_trust_with_a_fingerprint_pins_only_that_key() -> None:
    """guard: trust-fingerprint."""
    net = FakeNetwork(seed=198)
    a, _b = net.sign_in(S, T, ("alice", A), ("bob", B))
    wrong = whois(net, a, "bob", trust=True, fingerprint=fingerprint(net.key("mallory").public))
    assert isinstance(wrong, WhoisFailed) and wrong.reason is WhoisFailure.KEY_DIFFERS
    assert a.pins.get("bob") is None
    # Given over the phone, bob's own fingerprint needs no whois first.
    right = whois(net, a, "bob", trust=True, fingerprint=fingerprint(net.key("bob").public))
    assert isinstance(right, WhoisInfo) and right.trusted
    assert a.pins.get("bob") == net.key("bob").public and a.pins.is_verified("bob")


@pytest.mark.guard("send-pin", "receive-pin")
def test_a_verified_contact_whose_key_changes_is_refused_until_trusted_again() -> None:
    """guard: send-pin and receive-pin."""
    net = FakeNetwork(seed=199)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    whois(net, a, "bob")
    whois(net, a, "bob", trust=True)
    b.close(net.now)
    net.flush()
    assert net.run_until(lambda: not b.online, 5)
    # Bob lost his home: the server's operator releases the name, and a new key takes it.
    names = net.nodes[S].names  # type: ignore[attr-defined]
    assert isinstance(names, MemoryNames) and names.release("bob")
    nb: Addr = ("10.0.0.4", 40002)
    new_bob = net.add_client("bob", nb, S, T, identity=net.key("new bob"))
    assert net.run_until(lambda: new_bob.online, 10)
    a.send("bob", "for the bob I verified", net.now)
    new_bob.send("alice", "it's me, bob, new key", net.now)
    net.flush()
    assert net.run_until(lambda: net.events_of(A, SendFailed) and net.events_of(A, PeerRefused), 10)
    assert net.events_of(A, SendFailed)[0].reason is FailReason.KEY_CHANGED
    assert net.events_of(A, PeerRefused)[0].reason is PeerRefusal.KEY_CHANGED
    assert net.events_of(nb, MessageReceived) == [] and net.events_of(A, MessageReceived) == []
    status = whois(net, a, "bob")
    assert isinstance(status, WhoisInfo) and status.status is KeyStatus.CHANGED
    whois(net, a, "bob", trust=True)
    assert a.pins.get("bob") == net.key("new bob").public and a.pins.is_verified("bob")


# --- (new): a sender never pinned ------------------------------------------------------------


def test_the_first_message_of_a_sender_never_pinned_is_marked_new() -> None:
    net = FakeNetwork(seed=200)
    a, b = net.sign_in(S, T, ("alice", A), ("bob", B))
    a.send("bob", "one", net.now)
    a.send("bob", "two", net.now)
    net.flush()
    assert net.run_until(lambda: len(net.events_of(B, MessageReceived)) == 2, 10)
    b.send("alice", "three", net.now)  # bob's send pinned alice... for bob; alice pinned bob
    a.send("bob", "four", net.now)
    net.flush()
    assert net.run_until(
        lambda: len(net.events_of(B, MessageReceived)) == 3 and net.events_of(A, MessageReceived),
        10,
    )
    assert [(e.text, e.new) for e in net.events_of(B, MessageReceived)] == [
        ("one", True),
        ("two", False),
        ("four", False),
    ]
    # alice pinned bob when she sent to him: his first message to her is not from a stranger.
    assert [(e.text, e.new) for e in net.events_of(A, MessageReceived)] == [("three", False)]


# --- point 8: the claim check ---------------------------------------------------------------


@pytest.mark.guard("claim")
def test_a_message_begun_under_another_claim_is_not_shown_under_it() -> None:
    """guard: claim. Signed-in mallory starts a two-chunk message to bob under the claim
    "alice", handshakes again as "mallory" (her real name, which the directory confirms), and
    sends the last chunk: it must not be shown as alice's."""
    net = FakeNetwork(seed=201)
    _a, b, m = net.sign_in(S, T, ("alice", A), ("bob", B), ("mallory", M))
    bob_key = net.key("bob").public
    text = b"x" * CHUNK_PAYLOAD_BYTES + b" - alice (not really)"

    def chunk(offset: int) -> bytes:
        return encode(
            Data(
                session=m.session,
                stream=1,
                base=0,
                seq=0,
                msg_id=1,
                offset=offset,
                total=len(text),
                sender="alice",
                payload=text[offset : offset + CHUNK_PAYLOAD_BYTES],
            )
        )

    def to_bob(plaintext: bytes) -> None:
        m.links.to_peer(plaintext, bob_key, B, net.now, m.links.outbox)
        net.flush()
        net.run(0.5)

    speak_as(net, m, "alice")
    to_bob(chunk(0))
    assert b.links._claims[net.key("mallory").public] == "alice"
    speak_as(net, m, "mallory")
    m.links.handshake(bob_key, B, net.now, m.links.outbox, payload=m.links.intro)
    net.flush()
    net.run(0.5)
    assert b.links._claims[net.key("mallory").public] == "mallory"
    rejected = b.stats.rejected_chunks
    to_bob(chunk(CHUNK_PAYLOAD_BYTES))
    net.run(T.verify_cache_s)
    assert b.stats.rejected_chunks == rejected + 1
    assert net.events_of(B, MessageReceived) == []


# --- the asked-name check, for any pair of names ----------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", fullmatch=True)


@given(asked=NAMES, answered=NAMES, swap_case=st.booleans())
@settings(max_examples=examples(200), deadline=None)
def test_an_answer_is_taken_only_for_the_name_asked(
    asked: str, answered: str, swap_case: bool
) -> None:
    """guard: asked-name. Names compare case-folded ('Bob' is 'bob'); any other is dropped."""
    if swap_case:
        answered = asked.swapcase()
    d = DirectorySession(
        name="alice", server=S, timings=T, random_bytes=lambda n: bytes(n), emit=lambda e: None
    )
    d.token = bytes(8)  # (signed in: a lookup carries the token)
    d.lookup(asked, WhoisLookup(asked), 0.0)  # req_id 0: the injected randomness is zeros
    reply = LookupReply(req_id=0, name=answered, addr=B, key=bytes(32))
    answer = d.on_message(reply, 0.0)
    assert answer is not None and len(d.requests) == 0  # answered either way: not retried
    same = answered.casefold() == asked.casefold()
    assert answer.wrong_name is not same and (answer.reply is reply) is same
    assert d.misanswered == (0 if same else 1)
