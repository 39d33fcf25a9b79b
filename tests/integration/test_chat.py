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
        m = receiver.expect(rf"{sender.name} \((?P<ip>[0-9.]+):(?P<port>\d+)\): {re.escape(text)}")
        assert m["ip"] == ips[sender.name], (m.group(0), ips)
        assert m["ip"] != server_ip
        assert (m["ip"], int(m["port"])) == lab.signed_in_address(sender.name)
        assert "[unverified]" not in m.group(0)


def test_delivery_is_direct_the_marker_never_crosses_the_server(
    compose_project: Compose,
) -> None:
    """iptables string-match counters in the server's and the receiver's network namespaces:
    the marker is counted where it goes (positive control), never at the server."""
    lab = compose_project
    alice, bob, _carol = lab.tty_clients(*NAMES)
    marker = f"mk{uuid.uuid4().hex}"
    tag = f"chatit-{marker[:12]}"

    def count(ref: str, chain: str, string: str, suffix: str) -> faults.Rule:
        match = ("-p", "udp", "-m", "string", "--string", string, "--algo", "bm")
        return faults.counter(lab.place(ref), chain, *match, tag=f"{tag}-{suffix}")

    # No target: the rules only count, they change nothing.
    server_in = count("server", "INPUT", marker, "srv-in")
    server_out = count("server", "OUTPUT", marker, "srv-out")
    bob_in = count("bob", "INPUT", marker, "bob-in")
    alice_out = count("alice", "OUTPUT", marker, "alice-out")
    # Control at the server: the LOOKUP of the receiver's name does reach the server, and its
    # rules count it.
    server_lookup = count("server", "INPUT", "bob", "srv-lookup")

    alice.enter(f"send bob {marker} crossing the network")
    m = bob.expect(rf"alice \(([0-9.]+):\d+\): {marker} crossing the network")
    assert m.group(1) == lab.container_ip("alice")

    counts = {
        "server INPUT": server_in.packets(),
        "server OUTPUT": server_out.packets(),
        "bob INPUT": bob_in.packets(),
        "alice OUTPUT": alice_out.packets(),
        "server INPUT lookup of bob": server_lookup.packets(),
    }
    print(f"marker packets counted: {counts}")
    assert counts["bob INPUT"] >= 1, counts
    assert counts["alice OUTPUT"] >= 1, counts
    assert counts["server INPUT lookup of bob"] >= 1, counts
    assert counts["server INPUT"] == 0, counts
    assert counts["server OUTPUT"] == 0, counts


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
    bob.expect(r"alice \([0-9.]+:\d+\): still here")
    bob.enter("send alice glad to hear")
    alice.expect(r"bob \([0-9.]+:\d+\): glad to hear")

    # Mistakes get one line each, and the client carries on.
    alice.enter("send zed hello?")
    alice.expect(r"error: no such user: zed")
    alice.enter("shout hello")
    alice.expect(r"error: unknown command 'shout'; type 'help' for the commands")
    alice.enter("send bob    ")
    alice.expect(r"error: empty message, not sent")
    alice.enter("send bob")
    alice.expect(r"error: usage: send USER MESSAGE")
    # None of them sent anything; the next real message is the first bob sees since.
    alice.enter("send bob after the mistakes")
    bob.expect(r"alice \([0-9.]+:\d+\): after the mistakes")
    received = [m["text"] for m in bob.messages("alice")]
    assert received == ["still here", "after the mistakes"], received
    assert alice.list_names() == NAMES
