"""``make trace`` in containers (about 25 s): alice sends bob one message, first contact included,
every datagram captured in the three namespaces; its text version (traces/trace.txt's format,
:mod:`labkit.pictures`) must show DATA only between the two clients, after the first contact
through the server, and the pictures must be written."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import docker
import pytest

from labkit import trace

pytestmark = pytest.mark.integration

LINE = re.compile(
    r"^\s*(?P<t>[+-]\d+\.\d+)s\s+(?P<src>\S+)\s+->\s+(?P<dst>\S+)\s+(?P<kind>\S+)\s+"
    r"(?P<size>\d+) B\s+(?P<fate>.*)$"
)


def test_make_trace_shows_data_only_between_the_clients(
    docker_client: docker.DockerClient, chat_images: dict[str, str], tmp_path: Path
) -> None:
    project = f"chatit-trace-{uuid.uuid4().hex[:8]}"
    try:
        assert trace.trace(project, tmp_path, wait_s=30.0) == 0
    finally:
        label = {"label": f"com.docker.compose.project={project}"}
        assert docker_client.containers.list(all=True, filters=label) == []
    text = (tmp_path / "trace.txt").read_text()
    hosts = dict(re.findall(r"^# host (\S+) (\S+) ", text, re.M))
    assert hosts == {"server": "server", "alice": "client", "bob": "client"}
    rows = [m for m in map(LINE.match, text.splitlines()) if m]
    kinds = [(m["src"], m["dst"], m["kind"]) for m in rows]

    data = [k for k in kinds if k[2] == "DATA"]
    assert data, text
    assert all({src, dst} == {"alice", "bob"} for src, dst, _ in data), text
    assert not any("server" in (src, dst) and kind == "DATA" for src, dst, kind in kinds)
    assert not any(kind.startswith("unlabelled") for _, _, kind in kinds), text
    # First contact: alice asks the server where bob is, then shakes hands with bob directly,
    # before the first DATA; bob's ACK comes back to alice, and arrives.
    first_data = kinds.index(data[0])
    assert ("alice", "server", "LOOKUP") in kinds[:first_data], text
    assert ("server", "alice", "LOOKUP_REPLY") in kinds[:first_data], text
    assert ("alice", "bob", "HANDSHAKE_INIT") in kinds[:first_data], text
    acks = [m for m in rows if (m["src"], m["dst"], m["kind"]) == ("bob", "alice", "ACK")]
    assert acks and acks[0]["fate"].startswith("arrived"), text
    for suffix in (".png", ".svg"):
        assert (tmp_path / f"trace{suffix}").stat().st_size > 1000
