"""One Compose project of the lab (compose.yaml), and everything done to it.

``docker compose`` runs through :meth:`Compose.run`; containers, networks and health are read
through the docker SDK. :meth:`Compose.up` is the only place that starts the server and waits
until it is healthy: ``make up``, ``make demo`` (``python -m labkit up|demo``) and the container
suite's fixture all call it.

Clients are real ``docker compose run`` sessions: :meth:`Compose.tty_client` on a terminal
(pexpect), :meth:`Compose.piped_client` with ``-T`` and stdin a pipe. :meth:`Compose.close`
stops them, ``down``s the project and removes anything left with its label, as
testcontainers' reaper does.

``ref`` arguments name a service (``server``), a client by its user name (``alice``, as started
here), or a container name or id.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import engine
from labkit.faults import Place
from labkit.procs import Reaper
from labkit.terminal import PipedClient, TtyClient
from labkit.util import ROOT, LabError, tail, wait_until

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from docker.models.networks import Network

COMPOSE_FILE = ROOT / "compose.yaml"
DEFAULT_PROJECT = "p2p-chat"  # compose.yaml's `name:`
SERVER_PORT = 5000  # as in compose.yaml
UP_TIMEOUT_S = 60
DOWN_TIMEOUT_S = 60
SIGN_IN_TIMEOUT_S = 30.0
"""`docker compose run` (container creation) plus sign-in, on a loaded 2-core machine."""
EXPECT_TIMEOUT_S = 10.0
STOP_GRACE_S = 5.0
"""How long teardown lets a client's `docker compose run` end on SIGTERM."""
CLIENT_TTY_ENV = ("PROMPT_TOOLKIT_NO_CPR=1", "TERM=dumb")
"""The client container's terminal: no cursor-position requests, no redrawing."""


class Compose:
    def __init__(
        self,
        name: str | None = None,
        *,
        env: dict[str, str] | None = None,
        docker_client: docker.DockerClient | None = None,
        file: Path = COMPOSE_FILE,
    ) -> None:
        self.name = name or os.environ.get("COMPOSE_PROJECT_NAME") or DEFAULT_PROJECT
        self.file = file
        self.env = {**os.environ, **(env or {})}
        self._docker = docker_client
        self.reaper = Reaper(grace_s=STOP_GRACE_S)

    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = engine.client()
        return self._docker

    # -- compose ----------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [
            "docker", "compose", "--progress", "quiet", "-f", str(self.file),
            "--project-directory", str(ROOT), "-p", self.name, *args,
        ]  # fmt: skip

    def run(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose -p NAME ARGS...``, output captured."""
        r = subprocess.run(
            self.argv(*args),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and r.returncode != 0:
            raise LabError(f"docker compose {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
        return r

    def up(self, service: str = "server", timeout: float = UP_TIMEOUT_S) -> None:
        """``up -d --wait SERVICE`` (images already built), and check that it is healthy:
        Compose v2.40 ``up --wait`` exits 0 even when the container exited instead. A
        LabError with Compose's output and the service's log otherwise."""
        up = self.run(
            "up", "-d", "--no-build", "--wait", "--wait-timeout", str(int(timeout)), service,
            check=False, timeout=timeout + 30,
        )  # fmt: skip
        health = "not started"
        if up.returncode == 0:
            try:
                health = self.health(service)
            except LookupError:
                health = "missing"
        if health != "healthy":
            logs = self.run("logs", "--no-color", service, check=False, timeout=30)
            raise LabError(
                f"{service} of compose project {self.name} is {health}, not healthy "
                f"(up: exit {up.returncode}):\n{up.stdout}{up.stderr}\n"
                f"--- {service} log:\n{tail(logs.stdout, 4000)}"
            )

    def down(self, timeout_s: int = 2) -> None:
        """Remove every container, network and volume of the project (profiles included)."""
        self.run(
            "--profile", "*", "down", "-v", "--remove-orphans", "--timeout", str(timeout_s),
            timeout=DOWN_TIMEOUT_S,
        )  # fmt: skip

    def all_logs(self) -> str:
        return self.run("--profile", "*", "logs", "--no-color", check=False, timeout=30).stdout

    # -- clients ----------------------------------------------------------------------------

    def client_container_name(self, user: str) -> str:
        return f"{self.name}-client-{user}"

    def client_argv(
        self,
        name: str,
        *,
        tty: bool,
        container: str | None = None,
        args: Sequence[str] = (),
        options: Sequence[str] = (),
    ) -> list[str]:
        """``docker compose run --rm --name CONTAINER [-T] OPTIONS client -u NAME ARGS``
        (``options``: more of ``run``'s, e.g. ``-e VAR=VALUE``, ``-v DIR:DIR``)."""
        run = ["run", "--rm", "--name", container or self.client_container_name(name), *options]
        if tty:
            for setting in CLIENT_TTY_ENV:
                run += ["-e", setting]
        else:
            run.append("-T")
        return self.argv(*run, "client", "-u", name, *args)

    def tty_client(self, name: str, container: str | None = None) -> TtyClient:
        """A client container on a terminal (not yet signed in). ``container`` names it
        (default :meth:`client_container_name`), e.g. for a second client taking a name."""
        return TtyClient.spawn(
            self.reaper,
            name,
            self.client_argv(name, tty=True, container=container),
            env=self.env,
            cwd=ROOT,
            timeout=EXPECT_TIMEOUT_S,
            start_timeout=SIGN_IN_TIMEOUT_S,
        )

    def tty_clients(self, *names: str) -> list[TtyClient]:
        """One terminal client per name, started at once; returns once each has signed in."""
        clients = [self.tty_client(name) for name in names]
        for client in clients:
            client.wait_signed_in()
        return clients

    def piped_client(
        self, name: str, workdir: Path, args: Sequence[str] = (), options: Sequence[str] = ()
    ) -> PipedClient:
        """``run --rm -T client -u NAME``: stdin a pipe, stdout/stderr in files under
        ``workdir`` (not yet signed in); ``options`` as in :meth:`client_argv`."""
        return PipedClient.spawn(
            self.reaper,
            name,
            self.client_argv(name, tty=False, args=args, options=options),
            workdir,
            env=self.env,
            cwd=ROOT,
            timeout=EXPECT_TIMEOUT_S,
            start_timeout=SIGN_IN_TIMEOUT_S,
        )

    # -- containers (docker SDK) -----------------------------------------------------------

    @property
    def network_name(self) -> str:
        return f"{self.name}_chatnet"

    def network(self) -> Network:
        return self.docker.networks.get(self.network_name)

    def container(self, ref: str) -> Container:
        """The container for a service, a client's user name, or a container name or id."""
        import docker.errors

        found = self.docker.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.name}",
                    f"com.docker.compose.service={ref}",
                    "com.docker.compose.oneoff=False",
                ]
            },
        )
        if found:
            return found[0]
        for candidate in (self.client_container_name(ref), ref):
            try:
                return self.docker.containers.get(candidate)
            except docker.errors.NotFound:
                continue
        raise LookupError(f"no container {ref!r} in compose project {self.name}")

    def health(self, ref: str = "server") -> str:
        """The healthcheck status: starting, healthy, unhealthy; or the state if it has none."""
        c = self.container(ref)
        c.reload()
        state = c.attrs["State"]
        return str(state["Health"]["Status"] if state.get("Health") else state["Status"])

    def container_ip(self, ref: str) -> str:
        """The container's address on the project's network."""
        c = self.container(ref)
        c.reload()
        networks = c.attrs["NetworkSettings"]["Networks"]
        if self.network_name not in networks:
            raise LookupError(f"{ref} is not on {self.network_name}: {sorted(networks)}")
        return str(networks[self.network_name]["IPAddress"])

    def container_pid(self, ref: str) -> int:
        """The host pid of the container's init process."""
        c = self.container(ref)
        c.reload()
        pid = int(c.attrs["State"]["Pid"])
        if pid <= 0:
            raise LookupError(f"{ref} is not running")
        return pid

    def place(self, ref: str) -> Place:
        """The container's network namespace, for :mod:`labkit.faults`."""
        gateway = self.network().attrs["IPAM"]["Config"][0]["Gateway"]
        return Place(
            ("nsenter", "-t", str(self.container_pid(ref)), "-n"), gateway=gateway, label=ref
        )

    def exec(self, ref: str, cmd: str | Sequence[str], user: str | None = None) -> tuple[int, str]:
        """Run a command inside the container; (exit code, stdout+stderr)."""
        result = self.container(ref).exec_run(
            cmd if isinstance(cmd, str) else list(cmd), user=user or ""
        )
        output = result.output.decode("utf-8", "replace") if result.output else ""
        return int(result.exit_code), output

    def logs(self, ref: str = "server") -> str:
        return str(self.container(ref).logs().decode("utf-8", "replace"))

    def signed_in_address(self, user: str, timeout: float = 10.0) -> tuple[str, int]:
        """Where the server saw ``user`` sign in (its log: ``NAME signed in from IP:PORT``)."""
        rx = re.compile(rf"\b{re.escape(user)} signed in from ([0-9a-fA-F.:]+):(\d+)")
        m = wait_until(
            lambda: rx.search(self.logs("server")),
            timeout,
            f"the server to log {user}'s sign-in",
            lambda: tail(self.logs("server")),
            interval=0.05,
        )
        return m.group(1), int(m.group(2))

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the clients, ``down`` the project, and remove anything still left."""
        import docker.errors

        self.reaper.stop_all()
        try:
            self.down()
        except (LabError, subprocess.TimeoutExpired) as exc:
            print(f"teardown: compose down of {self.name}: {exc}")
        label = {"label": f"com.docker.compose.project={self.name}"}
        for c in self.docker.containers.list(all=True, filters=label):
            print(f"teardown: removing leftover container {c.name}")
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        for n in self.docker.networks.list(filters=label):
            print(f"teardown: removing leftover network {n.name}")
            with contextlib.suppress(docker.errors.NotFound):
                n.remove()
