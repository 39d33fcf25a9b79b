"""``make chaos LAB=nat``: the same chaos run on the NAT lab (compose.nat.yaml, issue 21).

What changes from the main lab (docs/CHAOS.md, "On the NAT lab"):

- **The lab**: :class:`labkit.natlab.NatLab` with the kinds of :data:`KINDS` (``NAT_A`` ...
  in the environment override them), so that the clients' pairs take every path: direct
  through NATs that can be punched, through the directory's relay (port-restricted x
  symmetric), and on private addresses (two clients behind one router).
- **A host per client**: each name gets a holder container of its own (the router image's
  ``host.sh``, as compose.nat.yaml's ``host-*``) with a fixed address on the private network
  of its router, taken in turn from :data:`LANS`; every incarnation of that name runs in the
  holder's network namespace (``docker run --network container:HOLDER``), so a fault on one
  client's namespace touches no other client, and a client started again comes back from the
  same private address. Keys and pins persist in a volume of the run (as compose's
  ``client-home`` does in the main lab).
- **Faults**: loss and duplication are the same iptables rules in the target's namespace; a
  duplicated datagram is handed to the client's router (``TEE --gateway``), which translates
  it as it did the original (same conntrack flow); the server's go through wan's gateway, as in
  the main lab. A partition is a firewall cut (:func:`labkit.faults.cut_off`: every UDP
  datagram in or out dropped), since a holder taken off its network would come back without
  its routes. Pause and kill are unchanged.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit import faults
from labkit.chaos.fleet import Fleet, broken_client_args
from labkit.chaos.nemesis import Nemesis
from labkit.chaos.schedule import SERVER, Fault
from labkit.natlab import CLIENT_IMAGE, LAB_SCRIPTS, ROUTER_IMAGE, NatKind, NatLab, kinds_from
from labkit.util import LabError, run, wait_until

if TYPE_CHECKING:
    from docker.models.containers import Container

KINDS: dict[str, NatKind] = {
    "NAT_A": NatKind.PORT_RESTRICTED,
    "NAT_B": NatKind.SYMMETRIC,
    "NAT_C": NatKind.NONE,
    "NAT_CGN": NatKind.FULL_CONE,
}
"""The run's routers: a (port-restricted) x b (symmetric) can only meet through the relay;
either with c (behind a full cone) punches through; two clients on lan-a meet privately."""
SERVER_IP = "198.51.100.10"  # compose.nat.yaml
SERVER_PORT = 5000
WAN_GATEWAY = "198.51.100.1"  # compose.nat.yaml's wan gateway: the host, which routes
HOLDER_READY_S = 60.0


@dataclass(frozen=True)
class Lan:
    network: str
    """compose.nat.yaml's network."""
    prefix: str
    router: str
    """The router's address on it: the holders' default route and the duplicates' gateway."""


LANS = (
    Lan("lan-a", "10.211.1", "10.211.1.254"),
    Lan("lan-b", "10.211.2", "10.211.2.254"),
    Lan("lan-c", "10.211.3", "10.211.3.254"),
)
FIRST_HOST = 20
"""Holders get .20, .21, ... of their network: below its dynamic range (.128/26), above the
compose file's own hosts (.10, .11)."""


def lan_of(names: list[str]) -> dict[str, tuple[Lan, str]]:
    """Each name's network (in turn over :data:`LANS`) and fixed address on it."""
    out: dict[str, tuple[Lan, str]] = {}
    for i, name in enumerate(names):
        lan = LANS[i % len(LANS)]
        out[name] = (lan, f"{lan.prefix}.{FIRST_HOST + i // len(LANS)}")
    return out


class NatChaosLab(NatLab):
    """The NAT lab of one chaos run, with a holder container per client name."""

    def __init__(self, name: str, kinds: Mapping[str, NatKind] | None = None) -> None:
        super().__init__(name, kinds={**KINDS, **(kinds or kinds_from(os.environ))})
        self.holders: dict[str, str] = {}
        """Client name -> its holder container's name."""
        self.lans: dict[str, Lan] = {}
        self.home = f"{self.name}-client-home"

    def start(self, names: list[str], timeout: float = HOLDER_READY_S) -> None:
        """The lab up and healthy, then a holder per name, each with its routes set."""
        self.up_all()
        self.docker.volumes.create(
            self.home, labels={"com.docker.compose.project": self.name}
        )
        for name, (lan, ip) in lan_of(names).items():
            holder = f"{self.name}-host-{name}"
            run([
                "docker", "run", "-d", "--init", "--name", holder,
                "--label", f"com.docker.compose.project={self.name}",
                "--network", f"{self.name}_{lan.network}", "--ip", ip,
                "--cap-add", "NET_ADMIN", "-e", f"ROUTES=default via {lan.router}",
                "-v", f"{LAB_SCRIPTS}:/lab:ro", ROUTER_IMAGE, "sh", "/lab/host.sh",
            ], timeout=timeout)  # fmt: skip
            self.holders[name] = holder
            self.lans[name] = lan
        for name, holder in self.holders.items():
            wait_until(
                lambda h=holder: self.exec(h, ["test", "-e", "/run/natlab-ready"])[0] == 0,  # type: ignore[misc]
                timeout, f"{name}'s host ({holder}) to set its routes",
            )  # fmt: skip

    def close(self) -> None:
        """The holders first (compose's ``down`` cannot remove a network they are on), then
        the lab, then the run's volume."""
        import docker.errors

        self.reaper.stop_all()
        for holder in self.holders.values():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.docker.containers.get(holder).remove(force=True)
        super().close()
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.docker.volumes.get(self.home).remove(force=True)


class NatFleet(Fleet):
    """Clients in their holders' namespaces (``docker run``, not ``compose run``)."""

    lab: NatChaosLab

    def client_argv(self, name: str, container: str, broken: bool) -> list[str]:
        options, program = broken_client_args() if broken else ((), ())
        return [
            "docker", "run", "--rm", "-i", "--init", "--name", container,
            "--label", f"com.docker.compose.project={self.lab.name}",
            "--network", f"container:{self.lab.holders[name]}",
            "-v", f"{self.hist_dir.resolve()}:/hist", "-v", f"{self.lab.home}:/data",
            *options, CLIENT_IMAGE, *program, "-u", name, "-sip", SERVER_IP,
            "-sp", str(SERVER_PORT), "--history", f"/hist/{name}.jsonl",
        ]  # fmt: skip


class NatNemesis(Nemesis):
    lab: NatChaosLab

    def place(self, target: str, container: Container) -> faults.Place:
        """The target's namespace, entered through its holder (which outlives the client's
        incarnations, so a rule is removed even after a kill); duplicates go to the client's
        router (the server's: to wan's gateway, the host, as in the main lab)."""
        if target == SERVER:
            holder, gateway = container.name, WAN_GATEWAY
        else:
            holder, gateway = self.lab.holders[target], self.lab.lans[target].router
        prefix = ("nsenter", "-t", str(self.lab.container_pid(holder)), "-n")
        return faults.Place(prefix, gateway=gateway, label=target)

    def _partition(self, f: Fault) -> Callable[[], str] | None:
        container = self._target(f)
        if container is None:
            self._skip(f, "target not up")
            return None
        rules = faults.cut_off(self.place(f.target, container))

        def heal() -> str:
            try:
                for rule in rules:
                    rule.remove()
            except (LabError, LookupError, subprocess.TimeoutExpired):
                return "its namespace is gone (its rules with it)"
            return ""

        return heal
