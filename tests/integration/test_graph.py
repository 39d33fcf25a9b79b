"""``make graph`` on a running lab (about 15 s): the server and a client container, read from the
Docker engine, must appear in the text form (:mod:`labkit.graph`) with their roles and the
addresses Docker gave them on the project's network, and the pictures must be written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit import graph
from labkit.compose import Compose

pytestmark = pytest.mark.integration


def test_make_graph_draws_the_running_lab(compose_project: Compose, tmp_path: Path) -> None:
    lab = compose_project
    alice = lab.piped_client("alice", tmp_path)
    alice.wait_signed_in()
    assert graph.graph([lab.name], tmp_path) == 0
    text = (tmp_path / f"graph-{lab.name}.txt").read_text()
    subnet = lab.network().attrs["IPAM"]["Config"][0]["Subnet"]
    assert f"network {lab.network_name} {subnet}\n" in text
    containers = dict(re.findall(r"^container (\S+) (\S+) ", text, re.M))
    server = lab.container("server").name
    client = lab.container("alice").name
    assert containers == {server: "server", client: "client"}, text
    for ref, name in (("server", server), ("alice", client)):
        block = text.split(f"container {name} ", 1)[1].split("\ncontainer ", 1)[0]
        assert f"  on {lab.network_name} {lab.container_ip(ref)}" in block, text
    for suffix in (".png", ".svg"):
        assert (tmp_path / f"graph-{lab.name}{suffix}").stat().st_size > 1000
