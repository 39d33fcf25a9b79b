"""``make demo``'s fault timeline in containers (about 30 s, 10 of them alice's delivery
timeout): bob is killed while alice writes to him, then the server is stopped. Its text form
(:mod:`labkit.pictures`) must show each fault where it struck, in order with what the clients
printed and with the datagrams around it, drawn from the programs' own logs."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import docker
import pytest

from labkit import demo

pytestmark = pytest.mark.integration

ROW = re.compile(r"^\s*(?P<t>[+-]\d+\.\d+)s\s+(?P<rest>.*)$")


def test_the_fault_timeline_shows_where_each_fault_struck(
    docker_client: docker.DockerClient, chat_images: dict[str, str], tmp_path: Path
) -> None:
    project = f"chatit-faults-{uuid.uuid4().hex[:8]}"
    try:
        assert demo.fault_demo(project, 20.0, tmp_path) == 0
    finally:
        label = {"label": f"com.docker.compose.project={project}"}
        assert docker_client.containers.list(all=True, filters=label) == []
    text = (tmp_path / "faults.txt").read_text()
    rows = [m["rest"] for m in map(ROW.match, text.splitlines()) if m]

    def first(pattern: str) -> int:
        found = [i for i, row in enumerate(rows) if re.search(pattern, row)]
        assert found, f"/{pattern}/ not in\n{text}"
        return found[0]

    shown = first(r"^bob\s+printed\s+alice .*: are you there\?")
    killed = first(r"^FAULT\s+bob\s+bob's container killed")
    typed = first(r"^alice\s+typed\s+send bob still there\?")
    failed = first(r"^alice\s+printed\s+error: not delivered to bob")
    stopped = first(r"^FAULT\s+server\s+server stopped")
    told = first(r"^server\s+->\s+alice\s+SHUTDOWN\s")
    ended = first(r"^alice\s+printed\s+the server shut down; exiting")
    assert shown < killed < typed < failed < stopped < told < ended, text
    # Between the kill and alice's failure line: her DATA to bob, never arriving.
    after_kill = rows[killed:failed]
    resent = [r for r in after_kill if re.match(r"alice\s+->\s+bob\s+DATA\s.*\blost\b", r)]
    assert resent, text
    assert not [r for r in rows if re.search(r"\bserver\b.*\bDATA\b", r)], text
    for suffix in (".png", ".svg"):
        assert (tmp_path / f"faults{suffix}").stat().st_size > 1000
