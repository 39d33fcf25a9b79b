"""``make graph`` on running labs, read from the Docker engine: in the text form
(:mod:`labkit.graph`), the main lab's server and a client container with their roles and the
addresses Docker gave them (about 15 s), and the NAT lab's routers drawn as routers."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import docker
import pytest

from labkit import graph
from labkit.compose import Compose
from labkit.natlab import NatLab
from labkit.util import ROOT

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


def test_make_graph_draws_the_nat_lab_with_its_routers(
    docker_client: docker.DockerClient, chat_images: dict[str, str], tmp_path: Path
) -> None:
    """The NAT lab (about 30 s): routers on wan and their private network, the STUN server,
    the holders, and the server living in its holder's namespace."""
    r = subprocess.run(
        ["scripts/router-image.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lab = NatLab(f"natlab-graph-{uuid.uuid4().hex[:8]}", docker_client=docker_client)
    try:
        lab.up_all()
        assert graph.graph([lab.name], tmp_path, swarm=[]) == 0
    finally:
        lab.close()
    text = (tmp_path / f"graph-{lab.name}.txt").read_text()
    roles = dict(re.findall(rf"^container {re.escape(lab.name)}-(\S+)-1 (\S+) ", text, re.M))
    assert {roles[s] for s in ("router-a", "router-b", "router-c", "router-cgn")} == {"router"}
    assert (roles["stun"], roles["host-a1"], roles["server"]) == ("stun", "host", "server")
    router_a = text.split(f"container {lab.name}-router-a-1 ", 1)[1].split("\ncontainer ", 1)[0]
    assert f"on {lab.name}_wan 198.51.100.2" in router_a, text
    assert f"on {lab.name}_lan-a 10.211.1." in router_a, text
    server = (
        f"container {lab.name}-server-1 server service=server netns-of={lab.name}-host-server-1"
    )
    assert server in text, text
