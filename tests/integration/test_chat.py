"""Interactive use in containers: sign-in, list, direct delivery, and the one-line errors.

Each test runs real terminal clients (`docker compose run`, pexpect on a TTY) in its own Compose
project. docs/CLI.md is the contract for every string matched here.
"""

from __future__ import annotations

import re
import uuid

import pytest

from labkit import faults
from labkit.compose import Compose

pytestmark = pytest.mark.integration

NAMES = ["alice", "bob", "carol"]


def test_sign_in_list_and_send_show_the_senders_own_address(
    compose_project: Compose,
) -> None:
    lab = compose_project
    alice, bob, carol = lab.tty_clients(*NAMES)

    for client in (alice, bob, carol):
        assert client.list_names() == NAMES, client.name

    server_ip = lab.container_ip("server")
    ips = {name: lab.container_ip(name) for name in NAMES}
    assert len({server_ip, *ips.values()}) == 4, (server_ip, ips)

    # Every direction of the triangle; the receiver shows the sender's own container address
    # (as Docker reports it on the project network) and the port the server saw it sign in
    # from, never the server's.
    for sender, receiver, text in (
        (alice, bob, "hello bob"),
        (bob, carol, "hi carol, bob here"),
        (carol, alice, "and back to alice"),
    ):
        sender.enter(f"send {receiver.name} {text}")
        m = receiver.expect(
            rf"{sender.name} \((?P<ip>[0-9.]+):(?P<port>\d+)\)(?: \(new\))?: {re.escape(text)}"
        )
        assert m["ip"] == ips[sender.name], (m.group(0), ips)
        assert m["ip"] != server_ip
        assert (m["ip"], int(m["port"])) == lab.signed_in_address(sender.name)
        assert "[unverified]" not in m.group(0)


def test_delivery_is_direct_no_message_datagram_crosses_the_server(
    compose_project: Compose,
) -> None:
    """iptables counters in the server's and the clients' network namespaces. Datagrams are
    encrypted, so a message is told apart by size: a 1100-byte text travels in DATA datagrams
    of over 1000 bytes, and nothing else here is that large (directory requests and replies,
    heartbeats and handshakes are a few hundred at most). They are counted leaving alice for
    bob's address and arriving at bob from alice's (positive control), and never at the server,
    whose rules do count alice's lookup (so the check can fail). The text itself is on the wire
    nowhere."""
    lab = compose_project
    alice, bob, _carol = lab.tty_clients(*NAMES)
    marker = f"mk{uuid.uuid4().hex}"
    text = f"{marker} {'crossing the network ' * 52}".strip()
    assert len(text.encode()) > 1000
    tag = f"chatit-{marker[:12]}"
    alice_ip, bob_ip = lab.container_ip("alice"), lab.container_ip("bob")
    large = ("-p", "udp", "-m", "length", "--length", "1000:65535")
    plain = ("-p", "udp", "-m", "string", "--string", marker, "--algo", "bm")

    # No target: the rules only count, they change nothing.
    rules = {
        "server INPUT large": ("server", "INPUT", large),
        "server OUTPUT large": ("server", "OUTPUT", large),
        "alice OUTPUT large, to bob": ("alice", "OUTPUT", ("-d", bob_ip, *large)),
        "bob INPUT large, from alice": ("bob", "INPUT", ("-s", alice_ip, *large)),
        "server INPUT from alice": ("server", "INPUT", ("-p", "udp", "-s", alice_ip)),
        "server INPUT text": ("server", "INPUT", plain),
        "alice OUTPUT text": ("alice", "OUTPUT", plain),
        "bob INPUT text": ("bob", "INPUT", plain),
    }
    counters = {
        what: faults.counter(lab.place(ref), chain, *match, tag=f"{tag}-{i}")
        for i, (what, (ref, chain, match)) in enumerate(rules.items())
    }

    alice.enter(f"send bob {text}")
    m = bob.expect(rf"alice \(([0-9.]+):\d+\)(?: \(new\))?: {marker} crossing the network")
    assert m.group(1) == alice_ip

    counts = {what: rule.packets() for what, rule in counters.items()}
    print(f"packets counted: {counts}")
    assert counts["alice OUTPUT large, to bob"] >= 1, counts
    assert counts["bob INPUT large, from alice"] >= 1, counts
    assert counts["server INPUT from alice"] >= 1, counts  # the lookup of bob
    assert counts["server INPUT large"] == 0, counts
    assert counts["server OUTPUT large"] == 0, counts
    assert counts["server INPUT text"] == counts["alice OUTPUT text"] == 0, counts
    assert counts["bob INPUT text"] == 0, counts


def test_taken_name_and_user_errors(compose_project: Compose) -> None:
    lab = compose_project
    alice, bob, carol = lab.tty_clients(*NAMES)

    # A second container asking for a signed-in name is refused and exits 3.
    second = lab.tty_client("alice", container=f"{lab.name}-client-alice-2")
    second.expect(r"error: the name 'alice' is already signed in; pick another", timeout=30)
    assert second.wait_exit(timeout=10) == 3
    # ... and the first alice is untouched: listed once, sends and receives.
    assert carol.list_names() == NAMES
    alice.enter("send bob still here")
    bob.expect(r"alice \([0-9.]+:\d+\)(?: \(new\))?: still here")
    bob.enter("send alice glad to hear")
    alice.expect(r"bob \([0-9.]+:\d+\)(?: \(new\))?: glad to hear")

    # Mistakes get one line each, and the client carries on.
    alice.enter("send zed hello?")
    alice.expect(r"✗ no such user: zed")  # (a terminal: the send's mark)
    alice.enter("shout hello")
    alice.expect(r"error: unknown command 'shout'; type 'help' for the commands")
    alice.enter("send bob    ")
    alice.expect(r"error: empty message, not sent")
    alice.enter("send bob")
    alice.expect(r"error: usage: send USER MESSAGE")
    # None of them sent anything; the next real message is the first bob sees since.
    alice.enter("send bob after the mistakes")
    bob.expect(r"alice \([0-9.]+:\d+\)(?: \(new\))?: after the mistakes")
    received = [m["text"] for m in bob.messages("alice")]
    assert received == ["still here", "after the mistakes"], received
    assert alice.list_names() == NAMES
