"""The chat lab as a Swarm stack (stack.yaml, docs/SWARM.md): up, scale, check, down, a client.

``python -m labkit.swarm up|scale N|check|down|client NAME|placement`` (the ``make swarm-*``
targets). Everything goes through the ``docker`` CLI (``docker stack`` has no SDK call), on the
engine of this machine, which is a swarm manager once :meth:`Swarm.up` ran.

* :meth:`Swarm.up` initialises a single-node swarm when the engine is in none (and notes that it
  did, in ``.lab/swarm.json``), deploys the stack ``chat`` and waits until the directory's task
  is healthy and every bot task runs.
* :meth:`Swarm.scale` gives the ``bots`` service N clients: ``ceil(N / BOTS_PER_TASK)`` tasks of
  an equal share each (N rounded up to a multiple of the tasks).
* :meth:`Swarm.check` stops the bots (each signs out after its sends settle, so the histories
  are a consistent cut), copies ``/data/hist`` out of the ``bots-data`` volume of every node,
  runs chat-check on them, and starts the bots again.
* :meth:`Swarm.down` removes the stack, waits until its network is gone, removes its volumes,
  and leaves the swarm if :meth:`up` had created it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.util import ROOT, LabError, run, tail, wait_until

STACK = "chat"
STACK_FILE = ROOT / "stack.yaml"
NETWORK = f"{STACK}_chatnet"
SERVER_SERVICE = f"{STACK}_server"
BOTS_SERVICE = f"{STACK}_bots"
BOTS_VOLUME = f"{STACK}_bots-data"
CLIENT_VOLUME = f"{STACK}_client-home"
"""Interactive clients' keys (``make swarm-client``): the same name keeps its key."""
VOLUMES = (f"{STACK}_server-home", BOTS_VOLUME, CLIENT_VOLUME)
SERVER_PORT = 5000
STATE_FILE = ROOT / ".lab" / "swarm.json"
"""What swarm-up found and made (swarm initialised? docker_gwbridge there before?), for down."""
GWBRIDGE = "docker_gwbridge"
BOTS_PER_TASK = 20
"""Clients one bot task runs (docs/SWARM.md, "How many bots per task"): one process is one core
at most, and 20 bots at 1 message/s each use about a tenth of one."""
NODE_NETWORK = "chat-nodes"
"""The bridge network of the node containers (``make swarm-up NODES=3``)."""
NODE_PREFIX = "chat-node-"
NODE_CAPS = ("SYS_ADMIN", "NET_ADMIN", "MKNOD", "NET_RAW", "SYS_PTRACE")
"""What an engine in a container needs here instead of --privileged (which asks for
CAP_SYS_RESOURCE, missing from the lab machine's bounding set): ../shared/LAB-NOTES.md; and
SYS_PTRACE, without which `docker exec` in a node (every healthcheck) fails to setns into a
container whose process runs as another user."""
NODE_READY_TIMEOUT_S = 120.0
LOAD_TIMEOUT_S = 900.0
UP_TIMEOUT_S = 120.0
DNS_WAIT_S = 10.0
STOP_TIMEOUT_S = 90.0
DOWN_TIMEOUT_S = 90.0
HIST_DIR = "/data/hist"


def image(kind: str) -> str:
    prefix = os.environ.get("CHAT_IMAGE_PREFIX", "p2p-chat")
    return f"{prefix}-{kind}:{os.environ.get('CHAT_IMAGE_TAG', 'latest')}"


def tasks_for(bots: int, per_task: int = BOTS_PER_TASK) -> tuple[int, int]:
    """(tasks, clients per task) for ``bots`` clients: the fewest tasks of at most
    ``per_task``, each given an equal share (rounded up)."""
    if bots <= 0:
        return 0, per_task
    tasks = math.ceil(bots / per_task)
    return tasks, math.ceil(bots / tasks)


def udp_socket_stats(proc_net_udp: str, port: int) -> dict[str, int] | None:
    """``rx_queue`` (bytes waiting) and ``drops`` of the UDP socket bound to ``port`` in the
    text of ``/proc/net/udp`` (and ``udp6``); None if no socket is bound to it."""
    for line in proc_net_udp.splitlines():
        f = line.split()
        if len(f) < 13 or ":" not in f[1] or not f[0].rstrip(":").isdigit():
            continue
        if int(f[1].rsplit(":", 1)[1], 16) == port:
            return {"rx_queue": int(f[4].split(":")[1], 16), "drops": int(f[12])}
    return None


@dataclass(frozen=True)
class Node:
    """An engine of the swarm: ``docker`` is the argv that runs its CLI (this machine's, or
    ``docker exec -i chat-node-N docker`` for an engine in a node container)."""

    name: str
    docker: tuple[str, ...] = ("docker",)
    container: str | None = None
    """The node container, for an engine in one."""


def node(i: int) -> Node:
    name = f"{NODE_PREFIX}{i}"
    return Node(name, ("docker", "exec", "-i", name, "docker"), container=name)


@dataclass(frozen=True)
class Task:
    """One task of a service, as ``docker service ps`` shows it."""

    id: str
    name: str
    """``SERVICE.SLOT``"""
    slot: int
    node: str
    state: str
    """Running, Starting, Preparing, ..."""


MESSAGES_RE = re.compile(r"^([\d,]+) messages:", re.M)
"""The line of chat-check's report that counts the messages it checked."""


@dataclass(frozen=True)
class CheckResult:
    code: int
    """chat-check's exit status: 0 no violations, 1 violations, 2 usage or I/O error."""
    report: str
    files: int
    seconds: float

    @property
    def messages(self) -> int | None:
        """How many messages chat-check checked (None: the report does not say)."""
        m = MESSAGES_RE.search(self.report)
        return int(m.group(1).replace(",", "")) if m else None


def engine_networks() -> list[str]:
    """The names of this machine's engine's networks."""
    r = subprocess.run(
        ["docker", "network", "ls", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.split()


class Swarm:
    def __init__(self, *, env: dict[str, str] | None = None, say: bool = True) -> None:
        self.env = {**os.environ, **(env or {})}
        self.say_enabled = say
        self.node_count = int(str(self._load_state().get("nodes", 1)))
        self.manager = node(1) if self.node_count > 1 else Node("local")

    # --- plumbing ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.say_enabled:
            print(f"swarm: {text}", flush=True)

    def docker(
        self, *args: str, node: Node | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [*(node or self.manager).docker, *args], timeout=timeout, check=check, env=self.env
        )

    def swarm_state(self) -> str:
        """The engine's ``LocalNodeState``: inactive, active, pending, ..."""
        return self.docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()

    def _load_state(self) -> dict[str, object]:
        try:
            loaded = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save_state(self, state: dict[str, object]) -> None:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(state))

    def nodes(self) -> list[Node]:
        """Every engine of the swarm (one node: this machine's)."""
        if self.node_count > 1:
            return [node(i) for i in range(1, self.node_count + 1)]
        return [self.manager]

    # --- several nodes on one machine ---------------------------------------------------------

    def _host(
        self, *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], timeout=timeout, check=check, env=self.env)

    def make_nodes(self, count: int) -> None:
        """``count`` engines in containers on the bridge ``chat-nodes``, the chat images loaded
        into each, the first a swarm manager and the others workers."""
        image_name = run([str(ROOT / "scripts" / "node-image.sh")], timeout=600).stdout.strip()
        if not self._host(
            "network", "ls", "-q", "--filter", f"name=^{NODE_NETWORK}$"
        ).stdout.strip():
            self._host("network", "create", NODE_NETWORK)
        entry = ROOT / "scripts" / "node-entrypoint.sh"
        caps = [a for c in NODE_CAPS for a in ("--cap-add", c)]
        for n in (node(i) for i in range(1, count + 1)):
            assert n.container
            self._host(
                "run",
                "-d",
                "--name",
                n.container,
                "--hostname",
                n.container,
                "--network",
                NODE_NETWORK,
                *caps,
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "apparmor=unconfined",
                "--cgroupns=private",
                "-v",
                "/var/lib/docker",
                "-v",
                f"{entry}:/entrypoint.sh:ro",
                "--entrypoint",
                "/entrypoint.sh",
                "--label",
                "org.opencontainers.image.title=p2p-chat-node",
                image_name,
            )
        for n in (node(i) for i in range(1, count + 1)):

            def answers(n: Node = n) -> bool:
                return self.docker("info", node=n, check=False).returncode == 0

            wait_until(
                answers,
                NODE_READY_TIMEOUT_S,
                f"the engine in {n.name}",
                interval=1.0,
            )
        self.say(f"{count} node engines up; loading the chat images into each")
        images = [image("server"), image("client")]
        procs = []
        for n in (node(i) for i in range(1, count + 1)):
            save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
            load = subprocess.Popen(
                [*n.docker, "load", "-q"],
                stdin=save.stdout,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert save.stdout is not None
            save.stdout.close()
            procs.append((n, save, load))
        for n, save, load in procs:
            _, err = load.communicate(timeout=LOAD_TIMEOUT_S)
            if save.wait(60) != 0 or load.returncode != 0:
                raise LabError(f"docker save | docker load into {n.name}: {err.decode().strip()}")
        first = node(1)
        addr = self.node_ip(first)
        self.docker("swarm", "init", "--advertise-addr", addr, node=first)
        token = self.docker("swarm", "join-token", "-q", "worker", node=first).stdout.strip()
        for n in (node(i) for i in range(2, count + 1)):
            self.docker("swarm", "join", "--token", token, f"{addr}:2377", node=n)
        self.say(f"swarm of {count} nodes: {first.name} manager, the others workers")

    def node_ip(self, n: Node) -> str:
        assert n.container
        fmt = '{{(index .NetworkSettings.Networks "' + NODE_NETWORK + '").IPAddress}}'
        return self._host("inspect", "--format", fmt, n.container).stdout.strip()

    def remove_nodes(self) -> None:
        names = self._host("ps", "-aq", "--filter", f"name=^{NODE_PREFIX}").stdout.split()
        if names:
            self._host("rm", "-f", "-v", *names, timeout=120)
        if self._host("network", "ls", "-q", "--filter", f"name=^{NODE_NETWORK}$").stdout.strip():
            self._host("network", "rm", NODE_NETWORK)

    def partition(self, n: Node, *, heal: bool = False) -> None:
        """Cut node ``n`` off from the other nodes (every datagram in or out of its eth0
        dropped, iptables in the node container), or ``heal`` it."""
        assert n.container
        op = "-D" if heal else "-I"
        for rule in (["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]):
            self._host("exec", n.container, "iptables", op, rule[0], *rule[1:], "-j", "DROP")

    # --- up ---------------------------------------------------------------------------------

    def ensure_swarm(self) -> bool:
        """Make this engine a swarm manager if it is in no swarm; True if this call did."""
        state = self.swarm_state()
        if state == "active":
            return False
        if state != "inactive":
            raise LabError(f"the engine's swarm state is {state!r}: neither in a swarm nor out")
        r = self.docker("swarm", "init", check=False)
        if r.returncode != 0 and "advertise" in r.stderr:
            # Several addresses and none chosen: a single node can advertise loopback.
            self.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        elif r.returncode != 0:
            raise LabError(f"docker swarm init: {r.stderr.strip()}")
        self.say("initialised a single-node swarm (swarm-down leaves it again)")
        return True

    def deploy(self, *, bots: int, rate: float, messages: int) -> None:
        tasks, per_task = tasks_for(bots)
        env = {
            "BOTS_TASKS": str(tasks),
            "BOTS_PER_TASK": str(per_task),
            "BOTS_RATE": str(rate),
            "BOTS_MESSAGES": str(messages),
            # Bots' keys derived from it (chat-bots --key-seed): a task started on another
            # node (a drained one, or placed elsewhere after a kill) signs in as the same users.
            "BOTS_KEY_SEED": self.env.get("BOTS_KEY_SEED") or secrets.token_hex(16),
            # stack.yaml's image names (interpolated by the CLI that deploys: in a node, its own)
            "CHAT_IMAGE_PREFIX": self.env.get("CHAT_IMAGE_PREFIX", "p2p-chat"),
            "CHAT_IMAGE_TAG": self.env.get("CHAT_IMAGE_TAG", "latest"),
        }
        self.env.update(env)
        if self.manager.container is None:
            self.docker(
                "stack", "deploy", "--detach=true", "-c", str(STACK_FILE), STACK, timeout=120
            )
            return
        # (the nodes' CLI, Debian's 20.10, deploys detached and knows no --detach)
        self._host("cp", str(STACK_FILE), f"{self.manager.container}:/stack.yaml")
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        self._host(
            "exec",
            *env_args,
            self.manager.container,
            "docker",
            "stack",
            "deploy",
            "-c",
            "/stack.yaml",
            STACK,
            timeout=120,
        )

    def up(
        self, *, bots: int = BOTS_PER_TASK, rate: float = 1.0, messages: int = 0, nodes: int = 1
    ) -> float:
        """Swarm (if none), stack deployed, healthy; returns the seconds it took. ``nodes`` > 1:
        that many engines in containers on this machine form the swarm instead."""
        start = time.monotonic()
        state = self._load_state()
        if nodes > 1 and int(str(state.get("nodes", 1))) <= 1:
            state = {"nodes": nodes, "initialised": False}
            self._save_state(state)
            self.node_count = nodes
            self.manager = node(1)
            self.make_nodes(nodes)
        if "initialised" not in state:  # the first up since the last down: note what was here
            state["gwbridge"] = self._has_network(GWBRIDGE)
        created = self.ensure_swarm()
        state["initialised"] = created or bool(state.get("initialised"))
        self._save_state(state)
        self.deploy(bots=bots, rate=rate, messages=messages)
        self.wait_ready(UP_TIMEOUT_S)
        took = time.monotonic() - start
        self.say(f"stack {STACK} up in {took:.1f} s ({self.bot_clients()} bots)")
        return took

    def service_containers(self, service: str, node: Node | None = None) -> list[str]:
        """``ID STATUS`` of the service's containers running on ``node``."""
        r = self.docker(
            "ps",
            "--filter",
            f"label=com.docker.swarm.service.name={service}",
            "--format",
            "{{.ID}} {{.Status}}",
            node=node,
        )
        return [line for line in r.stdout.splitlines() if line.strip()]

    def directory_socket(self) -> dict[str, int] | None:
        """The directory's UDP socket as its kernel sees it (``/proc/net/udp`` in the server's
        container on the manager): bytes waiting to be read and datagrams dropped because the
        receive buffer was full. A directory that answers late (a backlog) shows a full queue
        and growing drops; one that stopped reading shows the same with no answers at all; an
        empty queue while clients time out points at the network. None: no running task."""
        for line in self.service_containers(SERVER_SERVICE):
            r = self.docker(
                "exec", line.split()[0], "cat", "/proc/net/udp", "/proc/net/udp6",
                check=False, timeout=30,
            )  # fmt: skip
            return udp_socket_stats(r.stdout, SERVER_PORT)
        return None

    def directory_log(self) -> str:
        """The output of the directory's running container (sign-ins, time-outs, errors)."""
        out = []
        for line in self.service_containers(SERVER_SERVICE):
            r = self.docker("logs", line.split()[0], check=False, timeout=60)
            out.append(r.stdout + r.stderr)
        return "".join(out)

    def replicas(self, service: str) -> int:
        r = self.docker(
            "service", "inspect", service, "--format", "{{.Spec.Mode.Replicated.Replicas}}"
        )
        return int(r.stdout.strip() or 0)

    def running_tasks(self, service: str) -> list[tuple[str, str]]:
        """(task name, node) of the service's tasks that are running now."""
        return [(t.name, t.node) for t in self.tasks(service) if t.state == "Running"]

    def bot_clients(self) -> int:
        r = self.docker(
            "service",
            "inspect",
            BOTS_SERVICE,
            "--format",
            "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}",
        )
        per = next((int(e.split("=", 1)[1]) for e in r.stdout.split() if e.startswith("BOTS=")), 0)
        return per * self.replicas(BOTS_SERVICE)

    def bot_logs(self) -> list[str]:
        """The output of every running bot container, on every node (``docker logs`` of each:
        ``docker service logs`` can hang on a busy swarm)."""
        out = []
        for n in self.nodes():
            for line in self.service_containers(BOTS_SERVICE, n):
                r = self.docker("logs", line.split()[0], node=n, check=False, timeout=60)
                out.append(r.stdout)
        return out

    def server_healthy(self) -> bool:
        return any("(healthy)" in c for c in self.service_containers(SERVER_SERVICE))

    def wait_ready(self, timeout: float) -> None:
        """The directory's task healthy (a real datagram round trip) and every bot task running."""

        def ready() -> bool:
            want = self.replicas(BOTS_SERVICE)
            return self.server_healthy() and len(self.running_tasks(BOTS_SERVICE)) == want

        wait_until(ready, timeout, f"stack {STACK} healthy", self.describe, interval=0.5)

    def describe(self) -> str:
        r = self.docker(
            "stack",
            "ps",
            STACK,
            "--no-trunc",
            "--format",
            "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}",
            check=False,
        )
        return tail(r.stdout + r.stderr, 3000)

    # --- scale ------------------------------------------------------------------------------

    def scale(self, bots: int, *, wait: bool = True, env: dict[str, str] | None = None) -> None:
        """Run ``bots`` clients in all (see :func:`tasks_for`); 0 stops every bot (each signs
        out first). ``env``: more of the bots' settings (``BOTS_RATE``, ``BOTS_MESSAGES``)."""
        tasks, per_task = tasks_for(bots)
        args = ["service", "update", "--detach=true", "--replicas", str(tasks)]
        if tasks:
            args += ["--env-add", f"BOTS={per_task}"]
        for k, v in (env or {}).items():
            args += ["--env-add", f"{k}={v}"]
        self.docker(*args, BOTS_SERVICE, timeout=120)
        if not wait:
            return
        if tasks:
            wait_until(
                lambda: len(self.running_tasks(BOTS_SERVICE)) == tasks,
                UP_TIMEOUT_S,
                f"{tasks} bot tasks running",
                self.describe,
                interval=0.5,
            )
        else:
            self.wait_bots_stopped()
        self.say(f"bots: {tasks} tasks x {per_task} clients")

    def wait_bots_done(self, timeout: float, *, interval: float) -> None:
        """Until every bot task's log says it sent all it was to send ("bots: done")."""
        tasks = self.replicas(BOTS_SERVICE)

        def done() -> bool:
            logs = self.bot_logs()
            return len(logs) == tasks and all("bots: done" in log for log in logs)

        wait_until(done, timeout, f"{tasks} bot tasks done", self.describe, interval=interval)

    def wait_bots_stopped(self) -> None:
        def stopped() -> bool:
            return all(not self.service_containers(BOTS_SERVICE, n) for n in self.nodes())

        wait_until(
            stopped, STOP_TIMEOUT_S, "every bot container to end", self.describe, interval=0.5
        )

    # --- faults (labkit.chaos.swarmlab) -------------------------------------------------------

    def node_named(self, name: str) -> Node:
        """The engine a ``docker service ps`` NODE column names."""
        if self.node_count > 1 and name.startswith(NODE_PREFIX):
            return node(int(name[len(NODE_PREFIX) :]))
        return self.manager

    def tasks(self, service: str) -> list[Task]:
        """The service's tasks that are to run (desired state running), whatever their state."""
        r = self.docker(
            "service", "ps", service, "--no-trunc", "--filter", "desired-state=running",
            "--format", "{{.ID}} {{.Name}} {{.Node}} {{.CurrentState}}",
        )  # fmt: skip
        out = []
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and "." in parts[1]:
                slot = parts[1].rsplit(".", 1)[1]
                out.append(Task(parts[0], parts[1], int(slot) if slot.isdigit() else 0,
                                parts[2], parts[3]))  # fmt: skip
        return out

    def running_task(self, service: str, slot: int = 1) -> Task | None:
        """The task of ``slot`` that runs now (None: none does)."""
        return next(
            (t for t in self.tasks(service) if t.slot == slot and t.state == "Running"), None
        )

    def kill_task(self, task: Task) -> None:
        """SIGKILL the task's container, on its node (exit 137: the swarm starts another)."""
        self.docker("kill", f"{task.name}.{task.id}", node=self.node_named(task.node))

    def availability(self, name: str) -> str:
        """A node's availability: active, pause or drain."""
        r = self.docker("node", "inspect", name, "--format", "{{.Spec.Availability}}")
        return r.stdout.strip()

    def set_availability(self, name: str, value: str) -> None:
        self.docker("node", "update", "--availability", value, name)

    def restart_directory(self) -> Task:
        """Replace the directory's task (``docker service update --force``): a new task, with
        the same volume (key, bound names), on the manager. The task replaced."""
        old = self.running_task(SERVER_SERVICE)
        if old is None:
            raise LabError("the directory has no running task")
        self.docker("service", "update", "--detach=true", "--force", SERVER_SERVICE, timeout=120)
        return old

    def dropped(self, n: Node) -> int:
        """Datagrams the partition rules on node ``n`` dropped so far (both directions)."""
        assert n.container
        total = 0
        for chain in ("INPUT", "OUTPUT"):
            r = self._host("exec", n.container, "iptables", "-nvxL", chain, check=False)
            for line in r.stdout.splitlines():
                cols = line.split()
                if len(cols) > 2 and cols[2] == "DROP" and "eth0" in cols and cols[0].isdigit():
                    total += int(cols[0])
        return total

    # --- check ------------------------------------------------------------------------------

    def collect(self, dest: Path) -> int:
        """Copy every node's bot histories into ``dest/NODE/``; the number of files."""
        count = 0
        for node in self.nodes():
            target = dest / node.name
            target.mkdir(parents=True, exist_ok=True)
            r = self.docker("volume", "ls", "-q", "--filter", f"name=^{BOTS_VOLUME}$", node=node)
            if not r.stdout.strip():
                continue
            argv = [
                *node.docker,
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                f"{BOTS_VOLUME}:/data:ro",
                "--entrypoint",
                "tar",
                image("client"),
                "-C",
                HIST_DIR,
                "-cf",
                "-",
                ".",
            ]
            proc = subprocess.run(argv, capture_output=True, timeout=120, env=self.env, check=False)
            if proc.returncode != 0:
                raise LabError(
                    f"collecting histories on {node.name}: "
                    f"{proc.stderr.decode(errors='replace').strip()}"
                )
            tar_path = target / "hist.tar"
            tar_path.write_bytes(proc.stdout)
            with tarfile.open(tar_path) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jsonl")]
                tar.extractall(target, members=members, filter="data")
            tar_path.unlink()
            count += len(members)
        return count

    def check(self, dest: Path, *, restart: bool = True) -> CheckResult:
        """Stop the bots, collect every node's histories into ``dest``, run chat-check; then
        start the bots again (``restart``)."""
        start = time.monotonic()
        tasks = self.replicas(BOTS_SERVICE)
        per = self.bot_clients() // tasks if tasks else BOTS_PER_TASK
        if tasks:
            self.say(f"stopping {tasks} bot tasks (each bot signs out)")
            self.scale(0)
        files = self.collect(dest)
        if files == 0:
            raise LabError(f"no bot histories in the {BOTS_VOLUME} volume of any node")
        r = run(
            [sys.executable, "-m", "chat_check", str(dest)], check=False, timeout=600, env=self.env
        )
        if r.returncode == 2:
            raise LabError(f"chat-check: {r.stderr.strip()}")
        took = time.monotonic() - start
        if restart and tasks:
            self.scale(tasks * per, wait=False)
        return CheckResult(r.returncode, r.stdout, files, took)

    # --- down -------------------------------------------------------------------------------

    def down(self) -> None:
        """Remove the stack, its network and volumes, and leave the swarm if up() made it."""
        state = self._load_state()
        if self.node_count > 1:
            self.remove_nodes()  # the swarm, its stack and volumes live in them
            STATE_FILE.unlink(missing_ok=True)
            self.say(f"removed the {self.node_count} node containers and {NODE_NETWORK}")
            return
        if self.swarm_state() == "active":
            self.docker("stack", "rm", STACK, check=False)

            def gone() -> bool:
                left = self.docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$")
                return not left.stdout.strip() and not any(
                    self.service_containers(s) for s in (SERVER_SERVICE, BOTS_SERVICE)
                )

            wait_until(gone, DOWN_TIMEOUT_S, f"stack {STACK} removed", self.describe, interval=0.5)
        for node in self.nodes():
            # The stack's containers are gone, but their removal may trail by a moment.
            def removed(n: Node = node) -> bool:
                return self._remove_volumes(n)

            wait_until(
                removed, DOWN_TIMEOUT_S, f"volumes of {STACK} removed on {node.name}", interval=0.5
            )
        if state.get("initialised") and self.swarm_state() == "active":
            self.docker("swarm", "leave", "--force")
            self.say("left the swarm swarm-up had initialised")
            if state.get("gwbridge") is False and self._has_network(GWBRIDGE):
                # Made by the engine for the swarm's containers; leaving does not remove it.
                # The ingress sandbox's endpoint on it is released a moment after the leave
                # returns, so "has active endpoints" is retried until the bound.
                def gwbridge_removed() -> bool:
                    if not self._has_network(GWBRIDGE):
                        return True
                    self.docker("network", "rm", GWBRIDGE, check=False)
                    return not self._has_network(GWBRIDGE)

                def endpoints() -> str:
                    r = self.docker(
                        "network",
                        "inspect",
                        "--format",
                        "{{json .Containers}}",
                        GWBRIDGE,
                        check=False,
                    )
                    return f"endpoints on {GWBRIDGE}: {(r.stdout or r.stderr).strip()}"

                wait_until(
                    gwbridge_removed, DOWN_TIMEOUT_S, f"{GWBRIDGE} removed", endpoints, interval=0.5
                )
        STATE_FILE.unlink(missing_ok=True)

    def _has_network(self, name: str, node: Node | None = None) -> bool:
        r = self.docker("network", "ls", "-q", "--filter", f"name=^{name}$", node=node)
        return bool(r.stdout.strip())

    def _remove_volumes(self, node: Node) -> bool:
        present = self.docker("volume", "ls", "-q", node=node).stdout.split()
        mine = [v for v in VOLUMES if v in present]
        if mine:
            self.docker("volume", "rm", *mine, node=node, check=False)
        return not mine or not any(
            v in self.docker("volume", "ls", "-q", node=node).stdout.split() for v in mine
        )

    # --- clients ----------------------------------------------------------------------------

    def client_argv(self, name: str, *, tty: bool = True, extra: Sequence[str] = ()) -> list[str]:
        """``docker run`` of an interactive client on the stack's overlay network. It waits (at
        most ``DNS_WAIT_S``) until the directory's name resolves: a container just attached to
        an overlay may not resolve service names for a moment."""
        prefix = list(self.manager.docker)
        if self.manager.container is not None and tty:
            prefix = ["docker", "exec", "-it", self.manager.container, "docker"]
        wait = (
            f"for i in $(seq {int(DNS_WAIT_S / 0.2)}); do "
            'getent hosts "$CHAT_SERVER" >/dev/null && break; sleep 0.2; done; '
            'exec chat-client "$@"'
        )
        return [
            *prefix, "run", "--rm", "-i", *(["-t"] if tty else []), "--init",
            "--network", NETWORK, "-v", f"{CLIENT_VOLUME}:/data",
            "-e", "CHAT_SERVER=server", "-e", f"CHAT_PORT={SERVER_PORT}",
            *extra, "--entrypoint", "sh", image("client"), "-c", wait, "chat-client",
            "-u", name,
        ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.swarm", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="swarm (if none), deploy the stack, wait until healthy")
    up.add_argument("--bots", type=int, default=BOTS_PER_TASK)
    up.add_argument("--rate", type=float, default=1.0)
    up.add_argument("--messages", type=int, default=0)
    up.add_argument("--nodes", type=int, default=1, help="engines in containers (1: this one)")
    sc = sub.add_parser("scale", help="run N bot clients")
    sc.add_argument("bots", type=int)
    ck = sub.add_parser("check", help="stop the bots, collect histories, run chat-check")
    ck.add_argument("--out", default=str(ROOT / ".lab" / "swarm-check"))
    ck.add_argument("--no-restart", action="store_true", help="leave the bots stopped")
    sub.add_parser(
        "down",
        help="remove the stack, its network and volumes; leave the swarm if up initialised it",
    )
    cl = sub.add_parser("client", help="an interactive client on the overlay network")
    cl.add_argument("name")
    sub.add_parser("placement", help="which node runs each task")
    pa = sub.add_parser("partition", help="cut a node container off (NODES>1), then heal it")
    pa.add_argument("node", type=int)
    pa.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    swarm = Swarm()
    try:
        if args.cmd == "up":
            swarm.up(bots=args.bots, rate=args.rate, messages=args.messages, nodes=args.nodes)
        elif args.cmd == "scale":
            swarm.scale(args.bots)
        elif args.cmd == "check":
            out = Path(args.out)
            if out.exists():
                import shutil

                shutil.rmtree(out)
            result = swarm.check(out, restart=not args.no_restart)
            print(result.report, end="")
            swarm.say(f"{result.files} histories checked in {result.seconds:.1f} s ({out})")
            return result.code
        elif args.cmd == "down":
            swarm.down()
        elif args.cmd == "client":
            os.execvp("docker", swarm.client_argv(args.name))
        elif args.cmd == "partition":
            victim = node(args.node)
            swarm.partition(victim)
            swarm.say(f"{victim.name} partitioned for {args.seconds:g} s")
            time.sleep(args.seconds)  # the fault's length, asked for on the command line
            swarm.partition(victim, heal=True)
            swarm.say(f"{victim.name} healed")
        elif args.cmd == "placement":
            for service in (SERVER_SERVICE, BOTS_SERVICE):
                for task, where in swarm.running_tasks(service):
                    print(f"{task} {where}")
    except (LabError, AssertionError, subprocess.TimeoutExpired) as exc:
        print(f"swarm: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
