"""The NAT lab (compose.nat.yaml): routers of chosen kinds, what a classifier says of them, and
who can reach whom.

- ``python -m labkit.natlab up`` (``make nat-up``): the lab up and healthy, its routers of the
  kinds that ``NAT_A``, ``NAT_B``, ``NAT_C`` and ``NAT_CGN`` name (or ``--nat VAR=KIND``).
- ``python -m labkit.natlab down`` (``make nat-down``): everything of it removed.
- ``python -m labkit.natlab classify``: for each round of :data:`ROUNDS` (or the kinds given),
  the lab up, then coturn's ``turnutils_natdiscovery`` (RFC 5780 behaviour discovery, a
  classifier nobody here wrote) run from behind each router against the STUN server on wan,
  its verdict parsed into (mapping, filtering) and set beside the router's intended kind; a
  table, exit 1 if any row disagrees. ``--running`` classifies the lab that is up, as it is.

The kinds follow RFC 4787: :data:`INTENDED` says what each must look like, scripts/nat/router.sh
makes them, and the README's table (checked against :data:`INTENDED` by a unit test) says
which real devices behave so.

Docker's own firewall drops a datagram that an ``internal`` network's bridge carries to or
from an address outside that network's subnet (when the host passes bridged traffic through
iptables, br_netfilter), which is every datagram a router forwards. :func:`allow_routing` puts
one rule into DOCKER-USER, the chain Docker keeps for its users, that accepts bridged traffic
on the lab's own bridges (named ``natlab-*`` by compose.nat.yaml) and nothing else;
:meth:`NatLab.close` removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.compose import Compose
from labkit.procs import stop
from labkit.util import ROOT, LabError, run, tail

if TYPE_CHECKING:
    import docker

NAT_FILE = ROOT / "compose.nat.yaml"
NAT_PROJECT = "p2p-chat-nat"  # compose.nat.yaml's `name:`
STATE_FILE = ROOT / ".lab" / "nat" / "kinds.env"  # mounted at /state in the routers
LAB_SCRIPTS = ROOT / "scripts" / "nat"
ROUTER_IMAGE = os.environ.get("ROUTER_IMAGE", "p2p-chat-router:bookworm")
_IMAGE_PREFIX = os.environ.get("CHAT_IMAGE_PREFIX", "p2p-chat")
_IMAGE_TAG = os.environ.get("CHAT_IMAGE_TAG", "latest")
CLIENT_IMAGE = f"{_IMAGE_PREFIX}-client:{_IMAGE_TAG}"
SERVER_IMAGE = f"{_IMAGE_PREFIX}-server:{_IMAGE_TAG}"
STUN_IP = "198.51.100.20"  # compose.nat.yaml's stun service
STUN_PORT = 3478
BRIDGE_PREFIX = "natlab-"  # compose.nat.yaml's com.docker.network.bridge.name options
UP_TIMEOUT_S = 90
CLASSIFY_TIMEOUT_S = 60.0
"""One natdiscovery run: at most five STUN transactions of 3 s each, plus `docker exec`."""
PROBE_TIMEOUT_S = 30.0
"""A probe container's start (`docker run` on a loaded machine) and each bounded wait."""


class NatKind(Enum):
    """A router's behaviour, as ``NAT_A`` ... name it (scripts/nat/router.sh)."""

    NONE = "none"
    FULL_CONE = "full-cone"
    PORT_RESTRICTED = "port-restricted"
    SYMMETRIC = "symmetric"


class Behaviour(Enum):
    """How a NAT maps or filters (RFC 4787 section 4.1 and 5), least strict first."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

    @property
    def rank(self) -> int:
        return list(Behaviour).index(self)

    @property
    def abbreviation(self) -> str:
        return {"endpoint-independent": "EI", "address-dependent": "AD"}.get(self.value, "APD")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What a router does to UDP: whether it translates, how it maps and how it filters."""

    translated: bool
    mapping: Behaviour
    filtering: Behaviour

    def __str__(self) -> str:
        head = "NAT" if self.translated else "no NAT"
        return f"{head} {self.mapping.abbreviation}M {self.filtering.abbreviation}F"

    def behind(self, outer: Verdict) -> Verdict:
        """This router's behaviour seen through ``outer`` (a NAT in front of it): the
        stricter of the two in each respect, as a datagram must pass both."""
        return Verdict(
            translated=self.translated or outer.translated,
            mapping=max(self.mapping, outer.mapping, key=lambda b: b.rank),
            filtering=max(self.filtering, outer.filtering, key=lambda b: b.rank),
        )


EI = Behaviour.ENDPOINT_INDEPENDENT
APD = Behaviour.ADDRESS_AND_PORT_DEPENDENT
INTENDED: dict[NatKind, Verdict] = {
    NatKind.NONE: Verdict(translated=False, mapping=EI, filtering=EI),
    NatKind.FULL_CONE: Verdict(translated=True, mapping=EI, filtering=EI),
    NatKind.PORT_RESTRICTED: Verdict(translated=True, mapping=EI, filtering=APD),
    NatKind.SYMMETRIC: Verdict(translated=True, mapping=APD, filtering=APD),
}
"""What each kind must look like to an RFC 5780 classifier."""


@dataclass(frozen=True)
class Router:
    """A router of compose.nat.yaml: its service, the variable that picks its kind, the host
    behind it that the classifier runs on, and the router in front of it, if any."""

    service: str
    variable: str
    host: str | None
    outer: str | None = None


ROUTERS = (
    Router("router-a", "NAT_A", "host-a1"),
    Router("router-b", "NAT_B", "host-b1"),
    Router("router-c", "NAT_C", "host-c1", outer="router-cgn"),
    Router("router-cgn", "NAT_CGN", None),
)
VARIABLES = tuple(r.variable for r in ROUTERS)
DEFAULT_KIND = NatKind.PORT_RESTRICTED  # compose.nat.yaml's default for each variable

ROUNDS: tuple[dict[str, NatKind], ...] = (
    {
        "NAT_A": NatKind.FULL_CONE,
        "NAT_B": NatKind.SYMMETRIC,
        "NAT_C": NatKind.NONE,
        "NAT_CGN": NatKind.PORT_RESTRICTED,
    },
    {
        "NAT_A": NatKind.PORT_RESTRICTED,
        "NAT_B": NatKind.NONE,
        "NAT_C": NatKind.SYMMETRIC,
        "NAT_CGN": NatKind.FULL_CONE,
    },
)
"""Two lab configurations that, between router-a and router-b, put every kind alone in front
of a host once, and chain two different pairs behind the carrier-grade NAT."""


# -- the classifier's output ------------------------------------------------------------------


class ClassifierError(LabError):
    """turnutils_natdiscovery gave no verdict (no STUN answer, or output not understood)."""


MAPPING_SECTION = "-= Mapping Behavior Discovery =-"
FILTERING_SECTION = "-= Filtering Behavior Discovery =-"
NO_NAT = "No NAT!"
_VERDICT = re.compile(
    r"^NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) "
    r"(Mapping|Filtering)!$",
    re.MULTILINE,
)
_BEHAVIOUR = {
    "Endpoint Independent": Behaviour.ENDPOINT_INDEPENDENT,
    "Address Dependent": Behaviour.ADDRESS_DEPENDENT,
    "Address and Port Dependent": Behaviour.ADDRESS_AND_PORT_DEPENDENT,
}


_TITLE = re.compile(r"^-= [A-Za-z ]+ Behavior Discovery =-$", re.MULTILINE)


def _section(output: str, title: str) -> str:
    """The part of the output from ``title`` to the next test's title."""
    start = output.find(title)
    if start < 0:
        raise ClassifierError(f"no {title!r} in natdiscovery's output:\n{tail(output)}")
    rest = output[start + len(title) :]
    following = _TITLE.search(rest)
    return rest if following is None else rest[: following.start()]


def _behaviour(section: str, what: str, output: str) -> Behaviour:
    found = [m for m in _VERDICT.finditer(section) if m.group(2) == what]
    if len(found) != 1:
        raise ClassifierError(
            f"natdiscovery gave {len(found)} {what.lower()} verdicts, not one (no answer from "
            f"the STUN server's other address?); its output:\n{tail(output)}"
        )
    return _BEHAVIOUR[found[0].group(1)]


def parse_natdiscovery(output: str) -> Verdict:
    """The verdict in the output of ``turnutils_natdiscovery -m -f`` (coturn 4.6). It says
    "No NAT!" when the mapped address is the local one, and then still runs the tests."""
    mapping = _section(output, MAPPING_SECTION)
    filtering = _section(output, FILTERING_SECTION)
    return Verdict(
        translated=NO_NAT not in mapping,
        mapping=_behaviour(mapping, "Mapping", output),
        filtering=_behaviour(filtering, "Filtering", output),
    )


@dataclass(frozen=True, kw_only=True)
class Classification:
    """One row of the table: a router (and the one in front of it), its kinds, the verdict
    those kinds intend and the one the classifier gave."""

    router: str
    kinds: tuple[NatKind, ...]
    intended: Verdict
    observed: Verdict

    @property
    def agrees(self) -> bool:
        return self.intended == self.observed

    def as_json(self) -> dict[str, object]:
        return {
            "router": self.router,
            "kinds": [k.value for k in self.kinds],
            "intended": {**asdict(self.intended), "text": str(self.intended)},
            "observed": {**asdict(self.observed), "text": str(self.observed)},
            "agrees": self.agrees,
        }


def table(rows: Sequence[Classification]) -> str:
    """The classification table, one line per router, as `classify` prints it."""
    head = ("router", "kind", "intended", "RFC 5780 (turnutils_natdiscovery)", "agrees")
    lines = [
        (r.router, " behind ".join(k.value for k in r.kinds), str(r.intended), str(r.observed),
         "yes" if r.agrees else "NO")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x[i]) for x in (head, *lines)) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *lines)
    )


def _json_default(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON: {value!r}")


# -- the host's firewall --------------------------------------------------------------------

BRIDGED_RULE = (
    "-i", f"{BRIDGE_PREFIX}+", "-o", f"{BRIDGE_PREFIX}+",
    "-m", "physdev", "--physdev-is-bridged", "-j", "ACCEPT",
)  # fmt: skip
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def _docker_user_chain() -> bool:
    try:
        return run(["iptables", "-S", "DOCKER-USER"], check=False).returncode == 0
    except FileNotFoundError:
        return False


def allow_routing() -> None:
    """Let the lab's bridges carry routed datagrams (see the module's docstring): one
    DOCKER-USER rule, added once. Nothing to do where bridged traffic skips iptables or
    Docker has no such chain. A LabError saying what to do where it cannot be added."""
    if not BRIDGE_NF.exists() or BRIDGE_NF.read_text().strip() != "1":
        return
    if not _docker_user_chain():
        if os.geteuid() != 0:
            raise LabError(
                "the NAT lab needs one iptables rule on this machine (Docker's DOCKER-USER "
                "chain lets its routers forward); run as root (sudo make nat-up)"
            )
        return
    if run(["iptables", "-C", "DOCKER-USER", *BRIDGED_RULE], check=False).returncode != 0:
        run(["iptables", "-I", "DOCKER-USER", "1", *BRIDGED_RULE])


def revoke_routing() -> None:
    """Remove what :func:`allow_routing` added (every copy of it)."""
    if not _docker_user_chain():
        return
    for _ in range(16):
        if run(["iptables", "-C", "DOCKER-USER", *BRIDGED_RULE], check=False).returncode != 0:
            return
        run(["iptables", "-D", "DOCKER-USER", *BRIDGED_RULE])


# -- the lab --------------------------------------------------------------------------------


def kinds_from(values: Mapping[str, str]) -> dict[str, NatKind]:
    """The kinds named by ``NAT_A`` ... in ``values`` (an environment); empty or missing
    ones are left out (compose.nat.yaml's default applies). A LabError for an unknown one."""
    kinds: dict[str, NatKind] = {}
    for var in VARIABLES:
        text = values.get(var, "").strip()
        if not text:
            continue
        try:
            kinds[var] = NatKind(text)
        except ValueError:
            allowed = ", ".join(k.value for k in NatKind)
            raise LabError(f"{var}={text}: not a NAT kind (one of: {allowed})") from None
    return kinds


class NatLab(Compose):
    """One Compose project of compose.nat.yaml, with the NAT kinds it is to run with
    (``kinds``; a variable left out means :data:`DEFAULT_KIND`).

    The interactive lab (project :data:`NAT_PROJECT`, ``make nat-up``) keeps its kinds in
    :data:`STATE_FILE`, which its routers read, and gives Compose no ``NAT_*`` variable:
    a later ``docker compose -f compose.nat.yaml run --rm client-a`` (which has none either)
    then sees the same configuration, and leaves the routers as they are instead of
    recreating them with the default kind. Other projects (the tests) pass the variables.
    """

    def __init__(
        self,
        name: str = NAT_PROJECT,
        *,
        kinds: Mapping[str, NatKind] | None = None,
        docker_client: docker.DockerClient | None = None,
    ) -> None:
        self.kinds = {var: (kinds or {}).get(var, DEFAULT_KIND) for var in VARIABLES}
        self.pinned = name == NAT_PROJECT
        env = {var: "" if self.pinned else kind.value for var, kind in self.kinds.items()}
        super().__init__(name, env=env, docker_client=docker_client, file=NAT_FILE)
        self.probes: list[Probe] = []

    def _check_bridges_free(self) -> None:
        """The lab's bridges and subnets are fixed: one NAT lab per engine."""
        for network in self.docker.networks.list():
            options = network.attrs.get("Options") or {}
            bridge = str(options.get("com.docker.network.bridge.name", ""))
            owner = (network.attrs.get("Labels") or {}).get("com.docker.compose.project")
            if bridge.startswith(BRIDGE_PREFIX) and owner != self.name:
                raise LabError(
                    f"another NAT lab holds bridge {bridge} (network {network.name}, compose "
                    f"project {owner}); one runs at a time: take it down first "
                    f"(docker compose -p {owner} -f compose.nat.yaml down, or make nat-down)"
                )

    def up_all(self, timeout: float = UP_TIMEOUT_S) -> None:
        """Every service but the clients up and healthy (routers recreated if their kind
        changed). A LabError with Compose's output and the logs otherwise."""
        import docker.errors

        for image in (ROUTER_IMAGE, SERVER_IMAGE, CLIENT_IMAGE):
            try:
                self.docker.images.get(image)
            except docker.errors.ImageNotFound:
                raise LabError(f"image {image} missing: make nat-up builds it") from None
        self._check_bridges_free()
        allow_routing()
        if self.pinned:
            STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
            STATE_FILE.write_text("".join(f"{v}={k.value}\n" for v, k in self.kinds.items()))
        self._up(timeout)
        # A router whose kind changed in the state file alone has the same configuration, so
        # Compose left it running: recreate it (its mappings go with it).
        stale = [r.service for r in ROUTERS if self.kind_of(r) != self.kinds[r.variable]]
        if stale:
            self._up(timeout, "--no-deps", "--force-recreate", *stale)

    def _up(self, timeout: float, *args: str) -> None:
        up = self.run(
            "up", "-d", "--no-build", "--wait", "--wait-timeout", str(int(timeout)), *args,
            check=False, timeout=timeout + 30,
        )  # fmt: skip
        unhealthy = [f"{s}: {h}" for s, h in self.healths().items() if h != "healthy"]
        if up.returncode != 0 or unhealthy:
            raise LabError(
                f"the NAT lab ({self.name}) did not come up (exit {up.returncode}; "
                f"{', '.join(unhealthy) or 'all healthy'}):\n{up.stdout}{up.stderr}\n"
                f"--- logs:\n{tail(self.all_logs(), 4000)}"
            )

    def healths(self) -> dict[str, str]:
        """Each service's health (or state), clients left out."""
        found = self.docker.containers.list(
            all=True,
            filters={"label": [f"com.docker.compose.project={self.name}",
                               "com.docker.compose.oneoff=False"]},
        )  # fmt: skip
        result: dict[str, str] = {}
        for c in found:
            state = c.attrs["State"]
            service = c.labels.get("com.docker.compose.service", c.name)
            health = state["Health"]["Status"] if state.get("Health") else state["Status"]
            result[service] = str(health)
        return result

    def stop_probes(self) -> None:
        """End every probe (stdin closed: each exits, its container goes with it)."""
        for probe in self.probes:
            probe.close()
        self.probes.clear()

    def close(self) -> None:
        self.stop_probes()
        super().close()
        with contextlib.suppress(LabError, subprocess.TimeoutExpired):
            if not any(
                str(
                    (n.attrs.get("Options") or {}).get("com.docker.network.bridge.name", "")
                ).startswith(BRIDGE_PREFIX)
                for n in self.docker.networks.list()
            ):
                revoke_routing()

    # -- what runs -------------------------------------------------------------------------

    def address(self, service: str) -> str:
        """The container's address (lab containers sit on one network each, routers on
        two: their first is returned, so ask routers' hosts instead)."""
        c = self.container(service)
        c.reload()
        networks = c.attrs["NetworkSettings"]["Networks"]
        if not networks:
            raise LookupError(f"{service} is on no network")
        return str(next(iter(networks.values()))["IPAddress"])

    def kind_of(self, router: Router) -> NatKind:
        """The kind the router runs with (scripts/nat/router.sh writes it down)."""
        code, out = self.exec(router.service, ["cat", "/run/natlab-kind"])
        if code != 0:
            raise LabError(f"{router.service} has not set up its NAT: {out.strip()}")
        return NatKind(out.strip())

    def public_address(self, router: Router) -> str:
        """The router's address on the network in front of it."""
        for item in self.container(router.service).attrs["Config"]["Env"] or []:
            if item.startswith("UP_IP="):
                return str(item[len("UP_IP=") :])
        raise LookupError(f"{router.service} has no UP_IP in its environment")

    def natdiscovery(self, host: str) -> str:
        """turnutils_natdiscovery's output, mapping and filtering tests, run on ``host``
        against the STUN server. ``-L``: its own address, so that the mapping tests reuse
        one local port (without it each test binds a new one and every NAT looks
        endpoint-dependent)."""
        argv = [
            "docker", "exec", self.container(host).id, "turnutils_natdiscovery", "-m", "-f",
            "-L", self.address(host), "-p", str(STUN_PORT), STUN_IP,
        ]  # fmt: skip
        r = run(argv, timeout=CLASSIFY_TIMEOUT_S, check=False)
        return r.stdout + r.stderr

    def classify(self) -> list[Classification]:
        """Every router with a host behind it, classified (in parallel: each run waits out
        STUN timeouts of 3 s where a NAT filters)."""
        by_name = {r.service: r for r in ROUTERS}
        todo = [r for r in ROUTERS if r.host is not None]
        rows: list[tuple[str, tuple[NatKind, ...], Verdict]] = []
        for router in todo:
            kinds = [self.kind_of(router)]
            intended = INTENDED[kinds[0]]
            name = router.service
            if router.outer is not None:
                outer = by_name[router.outer]
                kinds.append(self.kind_of(outer))
                intended = intended.behind(INTENDED[kinds[-1]])
                name = f"{router.service} behind {outer.service}"
            rows.append((name, tuple(kinds), intended))
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            outputs = list(pool.map(lambda r: self.natdiscovery(str(r.host)), todo))
        return [
            Classification(router=name, kinds=kinds, intended=intended,
                           observed=parse_natdiscovery(output))
            for (name, kinds, intended), output in zip(rows, outputs, strict=True)
        ]  # fmt: skip

    def probe(self, host: str, port: int) -> Probe:
        """A UDP endpoint (scripts/nat/udpprobe.py in the chat client image) bound to
        ``port`` in ``host``'s network namespace; stopped by :meth:`close` at the latest."""
        name = f"{self.name}-probe-{host}-{port}-{uuid.uuid4().hex[:6]}"
        argv = [
            "docker", "run", "-i", "--rm", "--init", "--name", name,
            "--label", f"com.docker.compose.project={self.name}",
            "--network", f"container:{self.container(host).id}",
            "-v", f"{LAB_SCRIPTS}:/lab:ro", "--entrypoint", "python3", CLIENT_IMAGE,
            "/lab/udpprobe.py", str(port),
        ]  # fmt: skip
        probe = Probe(argv, f"{host}:{port}")
        self.reaper.track(probe.proc, f"probe {host}:{port}", probe.transcript)
        self.probes.append(probe)
        probe.wait_for(lambda line: line == f"bound {port}", "bound")
        return probe


@dataclass(frozen=True)
class Datagram:
    source: tuple[str, int]
    text: str


class Probe:
    """The driver's side of one udpprobe.py: send, and wait for what it received."""

    def __init__(self, argv: list[str], label: str) -> None:
        self.label = label
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self, grace_s: float = 5.0) -> None:
        """Close its stdin, so that it exits; stopped by signal after ``grace_s``."""
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        stop(self.proc)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._seen.append(self._lines.get_nowait())

    def transcript(self) -> str:
        self._drain()
        return "\n".join(self._seen)

    def wait_for(
        self, match: Callable[[str], bool], what: str, timeout: float = PROBE_TIMEOUT_S
    ) -> str:
        """The first line (seen before or arriving within ``timeout``) that ``match``
        accepts; an AssertionError naming ``what`` and the transcript otherwise."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            self._drain()
            for line in self._seen[checked:]:
                if match(line):
                    return line
            checked = len(self._seen)
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self._lines.empty()):
                raise AssertionError(
                    f"probe {self.label}: no {what} within {timeout:.0f} s; it printed:\n"
                    f"{tail(self.transcript())}"
                )
            with contextlib.suppress(queue.Empty):
                self._seen.append(self._lines.get(timeout=min(left, 0.5)))

    def send(self, ip: str, port: int, text: str) -> None:
        """Send ``text`` to ip:port, and return once the probe has sent it."""
        assert self.proc.stdin is not None and " " not in text
        self.proc.stdin.write(f"send {ip} {port} {text}\n")
        self.proc.stdin.flush()
        self.wait_for(lambda line: line == f"sent {ip} {port} {text}", f"'sent {text}'")

    def received(self) -> list[Datagram]:
        """Every datagram received so far."""
        self._drain()
        found = []
        for line in self._seen:
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[0] == "recv":
                found.append(Datagram((parts[1], int(parts[2])), parts[3]))
        return found

    def wait_recv(self, text: str, timeout: float = PROBE_TIMEOUT_S) -> Datagram:
        """The datagram ``text`` once it has arrived (bounded wait)."""
        self.wait_for(
            lambda line: line.startswith("recv ") and line.split(maxsplit=3)[3:] == [text],
            f"datagram {text!r}", timeout,
        )  # fmt: skip
        return next(d for d in self.received() if d.text == text)


# -- the command line -----------------------------------------------------------------------


def _kind_args(items: Sequence[str]) -> dict[str, NatKind]:
    values: dict[str, str] = {}
    for item in items:
        var, sep, kind = item.partition("=")
        var = var.strip().upper()
        if not sep or var not in VARIABLES:
            raise LabError(f"--nat {item}: want VAR=KIND, VAR one of {', '.join(VARIABLES)}")
        values[var] = kind
    return kinds_from(values)


def _show_kinds(lab: NatLab) -> str:
    return ", ".join(f"{r.service} {lab.kind_of(r).value}" for r in ROUTERS)


@contextlib.contextmanager
def _reported(command: str) -> Iterator[None]:
    try:
        yield
    except (LabError, AssertionError, subprocess.TimeoutExpired) as exc:
        print(f"natlab {command}: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.natlab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-p", "--project", default=NAT_PROJECT, help="compose project (%(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    nat_help = "a router's kind, e.g. NAT_A=full-cone (default: the environment's NAT_A ...)"
    up = sub.add_parser("up", help="the NAT lab up and healthy")
    up.add_argument("--nat", action="append", default=[], metavar="VAR=KIND", help=nat_help)
    sub.add_parser("down", help="remove every container, network and volume of the NAT lab")
    cl = sub.add_parser("classify", help="RFC 5780 verdict of every router beside its kind")
    cl.add_argument(
        "--nat",
        action="append",
        default=[],
        metavar="VAR=KIND",
        help=nat_help + "; without it, every round of ROUNDS",
    )
    cl.add_argument("--running", action="store_true", help="classify the lab as it runs now")
    cl.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    cl.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    with _reported(args.command):
        if args.command == "down":
            NatLab(args.project).close()
            print("NAT lab removed.")
            return 0
        if args.command == "up":
            lab = NatLab(args.project, kinds={**kinds_from(os.environ), **_kind_args(args.nat)})
            lab.up_all()
            print(f"NAT lab up (compose project {lab.name}): {_show_kinds(lab)}.")
            print("Clients:  docker compose -f compose.nat.yaml run --rm client-a -u alice")
            print("          (client-a2: behind router-a too; client-b; client-c: behind the CGN)")
            print("Verdicts: python -m labkit.natlab classify --running.  Stop: make nat-down")
            return 0
        rounds: list[dict[str, NatKind] | None]
        if args.running:
            rounds = [None]
        elif args.nat:
            rounds = [_kind_args(args.nat)]
        else:
            rounds = list(ROUNDS)
        rows: list[Classification] = []
        lab = NatLab(args.project)
        try:
            for kinds in rounds:
                if kinds is not None:
                    lab = NatLab(args.project, kinds=kinds)
                    named = ", ".join(f"{v}={k.value}" for v, k in kinds.items())
                    print(f"-- NAT lab with {named}")
                    lab.up_all()
                rows += lab.classify()
        finally:
            if not (args.running or args.keep):
                lab.close()
        print(table(rows))
        if args.json:
            args.json.write_text(
                json.dumps([r.as_json() for r in rows], indent=2, default=_json_default) + "\n"
            )
        return 0 if all(r.agrees for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
