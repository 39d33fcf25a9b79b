"""``make graph`` (``python -m labkit.graph``): a topology picture of the running lab, read
from the Docker engine (docker SDK), as containerlab's ``graph`` draws one: every network with
its subnet, every container with its role (server, client, router, STUN, host) and its address
on each network it is on, and the containers that live in another one's network namespace
(the NAT lab's chat clients join a ``host-*`` holder).

It draws every Compose project of the lab that is running: the main lab (compose.yaml,
``p2p-chat`` or another project name given with ``-p``) and the NAT lab (compose.nat.yaml,
``p2p-chat-nat``); and every Swarm stack with a task running on this engine (``--stack``
names them), each task with the node it runs on. Output: ``traces/graph-PROJECT.png``,
``.svg`` and ``.txt``; the text form, which the tests read::

    # make graph: compose project p2p-chat
    network p2p-chat_chatnet 172.18.0.0/16
    container p2p-chat-server-1 server service=server
      on p2p-chat_chatnet 172.18.0.2
    container p2p-chat-client-alice client service=client
      on p2p-chat_chatnet 172.18.0.3
    container p2p-chat-nat-client-a-run-1 client service=client-a netns-of=p2p-chat-nat-host-a1-1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import engine
from labkit.util import ROOT

if TYPE_CHECKING:
    import docker
    from matplotlib.figure import Figure

TRACES = ROOT / "traces"
LAB_PROJECTS = ("p2p-chat", "p2p-chat-nat")
_ROLE_COLOURS = {
    "server": "#c8e6c9",
    "client": "#bbdefb",
    "router": "#ffe0b2",
    "stun": "#e1bee7",
    "host": "#eeeeee",
}


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    service: str
    addresses: dict[str, str] = field(default_factory=dict)
    """Network name -> IPv4 address."""
    netns_of: str | None = None
    """The container whose network namespace this one shares (``network_mode: container:``)."""
    node: str | None = None
    """The Swarm node it runs on (a stack's task), else None."""


@dataclass(frozen=True)
class Topology:
    project: str
    networks: dict[str, str]
    """Network name -> subnet."""
    nodes: list[Node]
    kind: str = "compose project"
    """``compose project`` or ``swarm stack``."""


def role_of(service: str, image: str) -> str:
    """What a container is in the lab, from its Compose (or Swarm) service and its image."""
    service = service.rsplit("_", 1)[-1]  # a stack's service is STACK_SERVICE
    if service.startswith("router"):
        return "router"
    if service.startswith("stun"):
        return "stun"
    if service.startswith("host") or service.startswith("wan"):
        return "host"
    if service.startswith("server") or "-server:" in image:
        return "server"
    if service.startswith("client") or "-client:" in image:
        return "client"
    return "host"


def node_of(
    attrs: Mapping[str, Any],
    names_by_id: Mapping[str, str],
    hosts_by_node: Mapping[str, str] | None = None,
) -> Node:
    """A container's :class:`Node`, from its ``docker inspect`` attributes (``hosts_by_node``:
    Swarm node id -> host name, for a stack's tasks)."""
    labels = attrs["Config"].get("Labels") or {}
    swarm_service = labels.get("com.docker.swarm.service.name")
    service = swarm_service or labels.get("com.docker.compose.service", "")
    node_id = labels.get("com.docker.swarm.node.id") if swarm_service else None
    image = str(attrs["Config"].get("Image", ""))
    networks = attrs["NetworkSettings"].get("Networks") or {}
    mode = str(attrs["HostConfig"].get("NetworkMode", ""))
    netns_of = None
    if mode.startswith("container:"):
        ref = mode.removeprefix("container:")
        netns_of = names_by_id.get(ref, ref)
    return Node(
        name=str(attrs["Name"]).lstrip("/"),
        role=role_of(service, image),
        service=service,
        addresses={n: str(v.get("IPAddress") or "") for n, v in networks.items()},
        netns_of=netns_of,
        node=(hosts_by_node or {}).get(node_id, node_id) if node_id else None,
    )


def read(client: docker.DockerClient, project: str) -> Topology:
    """The running containers of ``project`` and the networks they are on."""
    label = {"label": f"com.docker.compose.project={project}"}
    # The images carry Compose's labels (Compose builds them), so a Swarm task or a plain
    # `docker run` of one shows the project's label too: only Compose's own containers count.
    containers = [
        c
        for c in client.containers.list(filters=label)
        if "com.docker.compose.oneoff" in (c.labels or {})
        and "com.docker.swarm.task.id" not in (c.labels or {})
    ]
    names_by_id = {c.id: c.name for c in client.containers.list(all=True)}
    nodes = sorted((node_of(c.attrs, names_by_id) for c in containers), key=lambda n: n.name)
    networks: dict[str, str] = {}
    for net in client.networks.list(filters=label):
        configs = (net.attrs.get("IPAM") or {}).get("Config") or [{}]
        networks[str(net.name)] = str(configs[0].get("Subnet", "?"))
    for node in nodes:
        for name in node.addresses:
            networks.setdefault(name, "?")
    return Topology(project=project, networks=dict(sorted(networks.items())), nodes=nodes)


def read_stack(client: docker.DockerClient, stack: str) -> Topology:
    """The running tasks of Swarm stack ``stack`` (``docker stack deploy``), with the node each
    runs on, and the networks they are on (the ingress network left out)."""
    label = {"label": f"com.docker.stack.namespace={stack}"}
    hosts = {str(n.id): str(n.attrs["Description"]["Hostname"]) for n in client.nodes.list()}
    nodes = sorted(
        (node_of(c.attrs, {}, hosts) for c in client.containers.list(filters=label)),
        key=lambda n: n.name,
    )
    networks: dict[str, str] = {}
    for node in nodes:
        node.addresses.pop("ingress", None)
        for name in node.addresses:
            configs = (client.networks.get(name).attrs.get("IPAM") or {}).get("Config") or [{}]
            networks[name] = str(configs[0].get("Subnet", "?"))
    return Topology(
        project=stack, networks=dict(sorted(networks.items())), nodes=nodes, kind="swarm stack"
    )


def stacks(client: docker.DockerClient) -> list[str]:
    """The Swarm stacks with a task running here (none when this engine is in no swarm)."""
    found = {
        c.labels["com.docker.stack.namespace"]
        for c in client.containers.list(filters={"label": "com.docker.stack.namespace"})
    }
    return sorted(found)


def text_lines(topo: Topology) -> list[str]:
    lines = [f"# make graph: {topo.kind} {topo.project}"]
    lines += [f"network {name} {subnet}" for name, subnet in topo.networks.items()]
    for node in topo.nodes:
        head = f"container {node.name} {node.role} service={node.service}"
        head += f" node={node.node}" if node.node else ""
        lines.append(head + (f" netns-of={node.netns_of}" if node.netns_of else ""))
        lines += [f"  on {net} {ip}" for net, ip in sorted(node.addresses.items())]
    return lines


def draw(topo: Topology) -> Figure:
    """Networks as horizontal buses, containers as boxes above them, a dot and the address
    where a container is on a network; a container in another's namespace hangs beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = list(topo.networks)
    own = [n for n in topo.nodes if n.netns_of is None]
    guests = [n for n in topo.nodes if n.netns_of is not None]
    col = {n.name: i * 2.6 for i, n in enumerate(own)}
    y_net = {name: -2.0 - 1.3 * i for i, name in enumerate(nets)}
    width = max(2.6 * len(own) + 3, 8)
    fig, ax = plt.subplots(figsize=(width, 3.5 + 1.0 * len(nets) + (1.2 if guests else 0)))
    right = max(col.values(), default=0.0) + 1.2
    for name, y in y_net.items():
        ax.plot([-1.2, right], [y, y], color="#37474f", lw=4, zorder=1)
        ax.text(-1.3, y, f"{name}\n{topo.networks[name]}", ha="right", va="center", fontsize=8)

    def box(x: float, y: float, node: Node, extra: str = "") -> None:
        where = f"\non node {node.node}" if node.node else ""
        ax.text(
            x, y, f"{node.name}\n[{node.role}]{where}{extra}",
            ha="center", va="center", fontsize=7, zorder=4,
            bbox={"boxstyle": "round", "fc": _ROLE_COLOURS.get(node.role, "#eeeeee")},
        )  # fmt: skip

    for node in own:
        x = col[node.name]
        attached = [y_net[n] for n in node.addresses if n in y_net]
        if attached:
            ax.plot([x, x], [0, min(attached)], color="#78909c", lw=1.2, zorder=2)
        for net, ip in node.addresses.items():
            if net in y_net:
                ax.plot([x], [y_net[net]], "o", color="#263238", zorder=3)
                ax.text(x + 0.08, y_net[net] + 0.15, ip, fontsize=7, zorder=3)
        box(x, 0.0, node)
    for i, node in enumerate(guests):
        host_x = col.get(node.netns_of or "", 0.0)
        y = 1.5 + 0.9 * (i % 2)
        ax.plot([host_x, host_x], [0.35, y - 0.3], color="#1565c0", ls="--", lw=1, zorder=2)
        box(host_x, y, node, "\nin its namespace")
    ax.set_xlim(-4.5, right + 0.5)
    ax.set_ylim(min(y_net.values(), default=-2.0) - 0.8, 3.0 if guests else 1.2)
    ax.axis("off")
    ax.set_title(f"make graph: {topo.kind} {topo.project} (read from the Docker engine)")
    return fig


def write(topo: Topology, out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"graph-{topo.project}"
    txt, png, svg = (stem.with_suffix(s) for s in (".txt", ".png", ".svg"))
    txt.write_text("\n".join(text_lines(topo)) + "\n", encoding="utf-8")
    fig = draw(topo)
    fig.savefig(png, dpi=110, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return [txt, png, svg]


def graph(projects: Sequence[str], out_dir: Path, swarm: Sequence[str] | None = None) -> int:
    """Draw each compose project of ``projects`` and each stack of ``swarm`` (None: every
    stack running here) that has something running."""
    why = engine.unavailable()
    if why:
        print(f"make graph: {why}", file=sys.stderr)
        return 1
    client = engine.client()
    topologies = [read(client, project) for project in projects]
    topologies += [read_stack(client, s) for s in (stacks(client) if swarm is None else swarm)]
    drawn = 0
    for topo in topologies:
        if not topo.nodes:
            print(f"make graph: nothing of {topo.project} is running")
            continue
        for path in write(topo, out_dir):
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        drawn += 1
    if not drawn:
        print(
            "make graph: no lab is running (make up, or make nat-up), so nothing was drawn",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.graph", description=__doc__)
    parser.add_argument(
        "-p", "--project", action="append",
        help=f"compose project (repeatable; default: {', '.join(LAB_PROJECTS)}, those running)",
    )  # fmt: skip
    parser.add_argument(
        "--stack", action="append",
        help="Swarm stack (repeatable; default: every stack with a task running here)",
    )  # fmt: skip
    parser.add_argument("-o", "--out", type=Path, default=TRACES, help="directory (%(default)s)")
    args = parser.parse_args(argv)
    return graph(args.project or LAB_PROJECTS, args.out, args.stack)


if __name__ == "__main__":
    sys.exit(main())
