"""Faults, one way for every suite: loss, duplication, counting, partition, pause, kill.

Datagram faults are iptables rules in a network namespace, a :class:`Place`: a local one
(:attr:`labkit.netns.Netns.place`, ``ip netns exec NAME``) or a container's
(:meth:`labkit.compose.Compose.place`, ``nsenter -t PID -n`` from the host). There is no
``tc netem`` on the machines this runs on, so:

- :func:`loss`: ``-m statistic --mode random --probability P -j DROP`` on the UDP datagrams
  coming in (the server's replies included);
- :func:`duplicate`: ``-t mangle OUTPUT ... -j TEE --gateway GW``: a copy of each chosen UDP
  datagram going out is sent to ``GW`` as well, which routes it on to the same destination
  (a container's network gateway, the host; or 127.0.0.1 in a namespace of its own). In OUTPUT
  the copy is not copied again (TEE marks its own pass); in PREROUTING on a loopback it would
  be, endlessly;
- :func:`counter`: a rule with no target, whose packet count shows what passed.

Each rule carries a comment (its tag), by which :meth:`Rule.packets` reads its counter.

Process faults take a container (docker SDK) or a local pid: :func:`kill` (SIGKILL, as
``docker kill``), :func:`paused` (``docker pause`` / SIGSTOP, undone on exit from the block),
and :func:`partitioned` (``docker network disconnect``, then ``connect`` with the same
address).
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit.util import LabError, run

if TYPE_CHECKING:
    from docker.models.containers import Container
    from docker.models.networks import Network


@dataclass(frozen=True)
class Place:
    """A network namespace: ``prefix`` runs a command in it; ``gateway`` is the neighbour
    that routes a duplicated datagram back to its destination."""

    prefix: tuple[str, ...]
    gateway: str
    label: str


@dataclass(frozen=True)
class Rule:
    place: Place
    table: str
    chain: str
    spec: tuple[str, ...]
    tag: str

    def packets(self) -> int:
        """How many packets matched the rule so far."""
        listing = iptables(self.place, "-t", self.table, "-L", self.chain, "-v", "-x", "-n")
        for line in listing.splitlines():
            if f"/* {self.tag} */" in line:
                return int(line.split()[0])
        raise LookupError(f"no rule /* {self.tag} */ in {self.chain} of {self.place.label}")

    def remove(self) -> None:
        iptables(self.place, "-t", self.table, "-D", self.chain, *self.spec)


def iptables(place: Place, *args: str) -> str:
    """``iptables -w ARGS`` in ``place``; its output. A refusal is a LabError."""
    return run([*place.prefix, "iptables", "-w", *args]).stdout


def add_rule(
    place: Place,
    chain: str,
    *spec: str,
    table: str = "filter",
    tag: str | None = None,
    first: bool = False,
) -> Rule:
    """Append (``first``: insert at the top) a rule tagged with a comment."""
    tag = tag or f"labkit-{uuid.uuid4().hex[:8]}"
    full = (*spec, "-m", "comment", "--comment", tag)
    where = ["-I", chain, "1"] if first else ["-A", chain]
    iptables(place, "-t", table, *where, *full)
    return Rule(place, table, chain, full, tag)


def _random(probability: float) -> tuple[str, ...]:
    if not 0 < probability <= 1:
        raise ValueError(f"probability {probability} not in (0, 1]")
    return ("-m", "statistic", "--mode", "random", "--probability", f"{probability}")


def loss(place: Place, probability: float, *, tag: str | None = None) -> Rule:
    """Drop ``probability`` of the UDP datagrams arriving in ``place``."""
    return add_rule(place, "INPUT", "-p", "udp", *_random(probability), "-j", "DROP", tag=tag)


def duplicate(place: Place, probability: float, *, tag: str | None = None) -> Rule:
    """Send ``probability`` of the UDP datagrams leaving ``place`` twice. The rule's counter
    counts the copies too (each passes it once, uncopied)."""
    try:
        return add_rule(
            place,
            "OUTPUT",
            "-p", "udp", *_random(probability), "-j", "TEE", "--gateway", place.gateway,
            table="mangle",
            tag=tag,
        )  # fmt: skip
    except LabError as exc:
        raise LabError(f"no duplication in {place.label} (iptables TEE target): {exc}") from None


def cut_off(place: Place) -> list[Rule]:
    """A partition by firewall: every UDP datagram into or out of ``place`` dropped until each
    returned rule is removed. For a namespace whose network cannot be disconnected and put back
    as it was (the NAT lab's hosts: their routes go with the interface)."""
    tag = f"labkit-cut-{uuid.uuid4().hex[:8]}"
    rules = [add_rule(place, "INPUT", "-p", "udp", "-j", "DROP", tag=tag, first=True)]
    try:
        rules.append(add_rule(place, "OUTPUT", "-p", "udp", "-j", "DROP", tag=tag, first=True))
    except LabError:
        rules[0].remove()
        raise
    return rules


def counter(place: Place, chain: str, *match: str, tag: str | None = None) -> Rule:
    """A rule at the top of ``chain`` that only counts the packets ``match`` selects."""
    return add_rule(place, chain, *match, tag=tag, first=True)


# --- processes and containers ----------------------------------------------------------------


def kill(target: Container | int) -> None:
    """SIGKILL: ``docker kill`` for a container, ``kill -9`` for a local pid."""
    if isinstance(target, int):
        os.kill(target, signal.SIGKILL)
    else:
        target.kill()


@contextlib.contextmanager
def paused(target: Container | int) -> Iterator[None]:
    """Frozen inside the block (``docker pause`` / SIGSTOP), resumed on the way out."""
    if isinstance(target, int):
        os.kill(target, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(target, signal.SIGCONT)
    else:
        target.pause()
        try:
            yield
        finally:
            target.unpause()


@contextlib.contextmanager
def partitioned(network: Network, container: Container) -> Iterator[None]:
    """``container`` is off ``network`` inside the block, and comes back with the address and
    the DNS aliases it had (the address checked: a LabError if Docker gave it another)."""
    container.reload()
    settings = container.attrs["NetworkSettings"]["Networks"][network.name]
    before = settings["IPAddress"]
    aliases = list(settings.get("Aliases") or [])
    network.disconnect(container)
    try:
        yield
    finally:
        reconnect(network, container, before, aliases)
    container.reload()
    after = container.attrs["NetworkSettings"]["Networks"].get(network.name, {}).get("IPAddress")
    if after != before:
        raise LabError(f"{container.name} came back on {network.name} as {after}, not {before}")


def reconnect(
    network: Network,
    container: Container,
    ipv4_address: str | None = None,
    aliases: list[str] | None = None,
) -> None:
    """Heal a partition. With ``ipv4_address`` the container asks for that address back. Docker
    accepts that only on networks with a user-configured subnet (compose.yaml's has none);
    elsewhere it refuses, and the plain connect used instead gets the lowest free address,
    which is the old one if nobody took it meanwhile. ``aliases``: the DNS names it had on the
    network (a compose service's name, which clients resolve); a plain connect gives none."""
    import docker.errors

    if ipv4_address:
        try:
            network.connect(container, ipv4_address=ipv4_address, aliases=aliases)
            return
        except docker.errors.APIError as exc:
            if "user configured subnets" not in str(exc):
                raise
    network.connect(container, aliases=aliases)
