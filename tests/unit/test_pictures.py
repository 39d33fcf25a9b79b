"""The pictures' parts without containers: the wire log's kinds (CHAT_WIRE_LOG, from the core's
tap as it seals), the trace's matching of captures to the senders' logs and its verdict on
DATA through the server (each check proven on a trace that breaks it), the text versions, and
the topology's roles from ``docker inspect`` attributes (main lab and NAT lab)."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from chat_protocol.secure.endpoint import (
    HandshakeRequested,
    SecureEndpoint,
    SessionEstablished,
)
from chat_protocol.secure.noise import KeyPair
from chat_protocol.wire.codec import encode
from chat_protocol.wire.messages import Data, Lookup
from chat_shell import aio
from chat_shell.wirelog import WIRE_LOG_ENV, WireLog, message_kind, packet_kind
from labkit import graph, pictures, trace
from labkit.pictures import Datagram, Fault, Host, Note

A = ("192.0.2.1", 4000)
B = ("198.51.100.2", 5000)


def test_the_wire_log_names_what_each_sealed_datagram_carries(tmp_path: Path) -> None:
    rnd = random.Random(7).randbytes
    a = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    b = SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd)
    log = WireLog(tmp_path / "wire.jsonl", a)
    init = a.connect(b.static.public, b"", 0.0, timestamp=1)
    log.sent(init, B)
    requested = b.receive(init, A, 0.0)
    assert isinstance(requested, HandshakeRequested)
    response = b.accept(requested.incoming, b"", 0.0)
    log.received(response, B)
    established = a.receive(response, B, 0.0)
    assert isinstance(established, SessionEstablished)
    lookup = established.session.encrypt(encode(Lookup(token=bytes(8), req_id=1, name="bob")), 1)
    keepalive = established.session.encrypt(b"", 1.0)
    chunk = Data(
        session=1, stream=1, base=0, seq=0, msg_id=1, offset=0, total=9, sender="a", payload=b"hi"
    )
    data = established.session.encrypt(encode(chunk), 1.0)
    log.sent(lookup, B)
    log.sent(keepalive, B)
    log.sent(data, B)
    log.settle()
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "wire.jsonl").read_text().splitlines()]
    assert [(x["dir"], x["kind"]) for x in lines] == [
        ("out", "HANDSHAKE_INIT"),
        ("in", "HANDSHAKE_RESPONSE"),
        ("out", "LOOKUP"),
        ("out", "KEEPALIVE"),
        ("out", "DATA"),
    ]
    assert lines[4]["detail"] == "bytes 0-2 of 9" and "detail" not in lines[2]
    assert lines[2]["peer"] == "198.51.100.2:5000" and lines[2]["size"] == len(lookup)
    # Without the log the endpoint's hook stays unset, and sessions seal as before.
    assert SecureEndpoint(static=KeyPair.generate(rnd), random_bytes=rnd).tap is None


def test_kinds_of_unknown_bytes_are_named_not_guessed() -> None:
    assert packet_kind(b"") == "EMPTY"
    assert packet_kind(bytes([0x81])) == "HANDSHAKE_INIT"
    assert message_kind(b"PC\x01\xee") == "UNKNOWN_0xee"
    assert message_kind(b"P") == "UNKNOWN"


HOSTS = [
    Host(name="server", role="server", addr="10.0.0.2"),
    Host(name="alice", role="client", addr="10.0.0.3"),
    Host(name="bob", role="client", addr="10.0.0.4"),
]


def _capture(t: float, src: str, dst: str, size: int, out: bool) -> dict[str, object]:
    return {"t": t, "dir": "out" if out else "in", "src": src, "dst": dst, "size": size,
            "type": 0x84}  # fmt: skip


def _exchange(
    data_to: str,
) -> tuple[dict[str, list[dict[str, object]]], dict[str, list[dict[str, object]]]]:
    """alice LOOKUPs bob at the server, then sends a DATA datagram to ``data_to``'s address."""
    ip = {h.name: h.addr for h in HOSTS}
    alice, server, target = f"{ip['alice']}:4000", f"{ip['server']}:5000", f"{ip[data_to]}:6000"
    if data_to == "server":
        target = server
    captures: dict[str, list[dict[str, object]]] = {
        "alice": [_capture(1.0, alice, server, 78, True), _capture(1.2, alice, target, 91, True)],
        "server": [_capture(1.001, alice, server, 78, False)],
        "bob": [],
    }
    captures[data_to].append(_capture(1.201, alice, target, 91, False))
    logs: dict[str, list[dict[str, object]]] = {
        "alice": [
            {"t": 0.999, "dir": "out", "peer": server, "size": 78, "kind": "LOOKUP"},
            {"t": 1.199, "dir": "out", "peer": target, "size": 91, "kind": "DATA"},
        ]
    }
    return captures, logs


def test_a_trace_of_data_between_the_clients_passes() -> None:
    captures, logs = _exchange("bob")
    matched = trace.match(HOSTS, captures, logs)
    assert [(d.src, d.dst, d.kind, d.arrived) for d in matched.datagrams] == [
        ("alice", "server", "LOOKUP", 1.001),
        ("alice", "bob", "DATA", 1.201),
    ]
    assert matched.unlabelled == []
    assert trace.verdict(HOSTS, matched) == []


def test_data_that_touches_the_server_fails_the_trace() -> None:
    captures, logs = _exchange("server")
    problems = trace.verdict(HOSTS, trace.match(HOSTS, captures, logs))
    assert "a DATA datagram touched the server: alice -> server" in problems
    assert "no DATA datagram went between the clients" in problems


def test_an_unlabelled_datagram_at_the_server_fails_the_trace() -> None:
    captures, logs = _exchange("bob")
    logs["alice"] = [line for line in logs["alice"] if line["kind"] != "LOOKUP"]
    matched = trace.match(HOSTS, captures, logs)
    assert matched.unlabelled == ["alice -> 10.0.0.2:5000 78 B at 1.000"]
    assert trace.verdict(HOSTS, matched) == [
        "the server's datagram alice -> server has no sender's label"
    ]


def test_a_log_line_too_far_in_time_labels_nothing() -> None:
    captures, logs = _exchange("bob")
    logs["alice"][1]["t"] = 1.2 + trace.MATCH_WINDOW_S + 0.1
    matched = trace.match(HOSTS, captures, logs)
    assert matched.datagrams[1].kind == "unlabelled-0x84"
    assert "no DATA datagram went between the clients" in trace.verdict(HOSTS, matched)


def test_the_text_version_lists_every_event_in_time_order() -> None:
    events: list[pictures.Event] = [
        Datagram(sent=10.5, arrived=None, src="alice", dst="bob", kind="DATA", size=91),
        Note(t=10.7, host="alice", text="error: bob did not answer"),
        Datagram(sent=10.0, arrived=10.01, src="alice", dst="server", kind="LOOKUP", size=78),
        Fault(t=10.2, host="bob", text="killed (docker kill)"),
    ]
    lines = pictures.text_lines("t", HOSTS, events)
    assert lines[:4] == [
        "# t",
        "# host server server 10.0.0.2",
        "# host alice client 10.0.0.3",
        "# host bob client 10.0.0.4",
    ]
    assert [line.split()[:4] for line in lines[4:]] == [
        ["+0.000s", "alice", "->", "server"],
        ["+0.200s", "FAULT", "bob", "killed"],
        ["+0.500s", "alice", "->", "bob"],
        ["+0.700s", "alice", "printed", "error:"],
    ]
    assert lines[4].endswith("78 B  arrived +0.010s") and lines[6].endswith("91 B  lost")


def _attrs(name: str, service: str, image: str, nets: dict[str, str], mode: str = "") -> dict:  # type: ignore[type-arg]
    return {
        "Name": f"/{name}",
        "Config": {"Labels": {"com.docker.compose.service": service}, "Image": image},
        "NetworkSettings": {"Networks": {n: {"IPAddress": ip} for n, ip in nets.items()}},
        "HostConfig": {"NetworkMode": mode or "bridge"},
    }


def test_the_topology_names_every_role_of_both_labs() -> None:
    ids = {"abc123": "p2p-chat-nat-host-a1-1"}
    nodes = [
        graph.node_of(a, ids)
        for a in (
            _attrs("s", "server", "p2p-chat-server:latest", {"wan": "198.51.100.10"}),
            _attrs("r", "router-a", "p2p-chat-router:bookworm", {"wan": "198.51.100.2",
                                                                  "lan-a": "10.211.1.2"}),
            _attrs("t", "stun", "p2p-chat-router:bookworm", {"wan": "198.51.100.20"}),
            _attrs("h", "host-a1", "p2p-chat-router:bookworm", {"lan-a": "10.211.1.10"}),
            _attrs("c", "client-a", "p2p-chat-client:latest", {}, "container:abc123"),
            _attrs("alice", "client", "h22-client:latest", {"chatnet": "172.18.0.3"}),
        )
    ]  # fmt: skip
    assert [(n.name, n.role) for n in nodes] == [
        ("s", "server"), ("r", "router"), ("t", "stun"), ("h", "host"), ("c", "client"),
        ("alice", "client"),
    ]  # fmt: skip
    assert nodes[4].netns_of == "p2p-chat-nat-host-a1-1" and nodes[4].addresses == {}
    topo = graph.Topology(project="p", networks={"lan-a": "10.211.1.0/24"}, nodes=nodes[1:5])
    assert graph.text_lines(topo) == [
        "# make graph: compose project p",
        "network lan-a 10.211.1.0/24",
        "container r router service=router-a",
        "  on lan-a 10.211.1.2",
        "  on wan 198.51.100.2",
        "container t stun service=stun",
        "  on wan 198.51.100.20",
        "container h host service=host-a1",
        "  on lan-a 10.211.1.10",
        "container c client service=client-a netns-of=p2p-chat-nat-host-a1-1",
    ]


class _Quiet:
    """A core that never has anything to say (what a shell needs to be made)."""

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, tuple[str, int]]]:
        return []

    def events(self) -> list[object]:
        return []

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None: ...


def test_a_wire_log_that_cannot_be_opened_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "wire.jsonl"
    monkeypatch.setenv(WIRE_LOG_ENV, str(path))

    async def make() -> aio.DatagramShell[object]:
        return aio.DatagramShell(_Quiet())

    assert asyncio.run(make()).wire_log is None
    assert capsys.readouterr().err == (
        f"CHAT_WIRE_LOG: cannot open {path}: No such file or directory; not logging\n"
    )
    monkeypatch.delenv(WIRE_LOG_ENV)
    assert asyncio.run(make()).wire_log is None  # unset: no log, nothing said
    assert capsys.readouterr().err == ""


def test_a_swarm_task_is_drawn_with_its_service_and_node() -> None:
    attrs = _attrs("chat_server.1.x", "", "p2p-chat-server:latest", {"chat_net": "10.0.9.3"})
    attrs["Config"]["Labels"] = {
        "com.docker.compose.service": "server",  # the image's, from Compose's build
        "com.docker.swarm.service.name": "chat_server",
        "com.docker.swarm.node.id": "n1",
    }
    node = graph.node_of(attrs, {}, {"n1": "vm"})
    assert (node.role, node.service, node.node) == ("server", "chat_server", "vm")
    topo = graph.Topology(
        project="chat", networks={"chat_net": "10.0.9.0/24"}, nodes=[node], kind="swarm stack"
    )
    assert graph.text_lines(topo)[0] == "# make graph: swarm stack chat"
    assert (
        graph.text_lines(topo)[2] == "container chat_server.1.x server service=chat_server node=vm"
    )


def test_a_line_being_written_is_left_for_the_next_read() -> None:
    assert trace.json_lines('{"a": 1}\n{"b": 2}\n{"c": ') == [{"a": 1}, {"b": 2}]
    assert trace.json_lines("") == []
