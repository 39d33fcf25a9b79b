"""Helpers for the container lab tests: one Compose project of the chat lab and its controls.

The fixtures in conftest.py create a :class:`ComposeProject` per test; tests import the class
(for annotations) and the constants from here: ``from chatlab import ComposeProject``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker
    import pexpect
    from docker.models.containers import Container
    from docker.models.networks import Network

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
IMAGE_PREFIX = os.environ.get("CHAT_IMAGE_PREFIX", "p2p-chat")
SERVER_PORT = 5000  # as in compose.yaml
UP_TIMEOUT_S = 60
DOWN_TIMEOUT_S = 60


@dataclass
class ComposeProject:
    """A running Compose project of the lab, and helpers to drive and inspect it.

    ``ref`` arguments name a service (``server``), a client by its user name (``alice``, as
    started by :meth:`run_client`), or a container name or id.
    """

    name: str
    docker: docker.DockerClient
    env: dict[str, str]
    children: list[pexpect.spawn] = field(default_factory=list)

    # -- compose ----------------------------------------------------------------------------

    def compose_argv(self, *args: str) -> list[str]:
        return [
            "docker",
            "compose",
            "--progress",
            "quiet",
            "-f",
            str(COMPOSE_FILE),
            "--project-directory",
            str(ROOT),
            "-p",
            self.name,
            *args,
        ]

    def compose(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose -p NAME ARGS...`` and return its output."""
        return subprocess.run(
            self.compose_argv(*args),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    @property
    def network_name(self) -> str:
        return f"{self.name}_chatnet"

    def client_container_name(self, user: str) -> str:
        return f"{self.name}-client-{user}"

    def run_client(
        self, name: str, tty: bool = True, args: Sequence[str] = (), timeout: float = 20.0
    ) -> pexpect.spawn:
        """Start ``chat-client -u NAME`` in a one-off container, driven through pexpect.

        ``tty=True`` gives the client a terminal (prompt, line editing); ``tty=False`` is
        ``run -T``: stdin is a pipe, as in scripts, and ``sendeof()`` ends the input.
        """
        import pexpect

        run = [
            "run",
            "--rm",
            "--name",
            self.client_container_name(name),
            "-e",
            "PROMPT_TOOLKIT_NO_CPR=1",
            "-e",
            "TERM=dumb",
        ]
        if not tty:
            run.append("-T")
        argv = self.compose_argv(*run, "client", "-u", name, *args)
        child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(ROOT),
            env=self.env,
            encoding="utf-8",
            codec_errors="replace",
            timeout=timeout,
            dimensions=(40, 200),
        )
        self.children.append(child)
        return child

    # -- containers -------------------------------------------------------------------------

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

    def server_container(self) -> Container:
        return self.container("server")

    def container_ip(self, ref: str) -> str:
        """The container's address on the project's network (empty while disconnected)."""
        c = self.container(ref)
        c.reload()
        networks = c.attrs["NetworkSettings"]["Networks"]
        if self.network_name not in networks:
            raise LookupError(f"{ref} is not on {self.network_name}: {sorted(networks)}")
        return str(networks[self.network_name]["IPAddress"])

    def container_pid(self, ref: str) -> int:
        """The host pid of the container's init process: ``nsenter -t PID -n ...``."""
        c = self.container(ref)
        c.reload()
        pid = int(c.attrs["State"]["Pid"])
        if pid <= 0:
            raise LookupError(f"{ref} is not running")
        return pid

    def health(self, ref: str = "server") -> str:
        """The healthcheck status: starting, healthy, unhealthy, or none."""
        c = self.container(ref)
        c.reload()
        return str(c.attrs["State"].get("Health", {}).get("Status", "none"))

    def exec(self, ref: str, cmd: str | Sequence[str], user: str | None = None) -> tuple[int, str]:
        """Run a command inside the container; return (exit code, stdout+stderr)."""
        result = self.container(ref).exec_run(
            cmd if isinstance(cmd, str) else list(cmd), user=user or ""
        )
        output = result.output.decode("utf-8", "replace") if result.output else ""
        return int(result.exit_code), output

    def nsenter(self, ref: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a host command in the container's network namespace (e.g. iptables for loss)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.container_pid(ref)), "-n", *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
        )

    def network(self) -> Network:
        return self.docker.networks.get(self.network_name)

    def disconnect(self, ref: str) -> None:
        """Partition: take the container off the project's network."""
        self.network().disconnect(self.container(ref))

    def connect(self, ref: str) -> None:
        """Heal a partition made by :meth:`disconnect`."""
        self.network().connect(self.container(ref))

    def logs(self, ref: str = "server") -> str:
        return str(self.container(ref).logs().decode("utf-8", "replace"))

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Kill pexpect children, ``down`` the project, and remove anything still left."""
        import docker.errors

        for child in self.children:
            try:
                if child.isalive():
                    child.terminate(force=True)
                child.close(force=True)
            except Exception as exc:  # teardown goes on whatever happens
                print(f"teardown: pexpect child {child.pid}: {exc!r}")
        self.children.clear()
        try:
            down = self.compose(
                "--profile",
                "*",
                "down",
                "-v",
                "--remove-orphans",
                "--timeout",
                "2",
                check=False,
                timeout=DOWN_TIMEOUT_S,
            )
            if down.returncode != 0:
                print(f"teardown: compose down failed: {down.stderr.strip()}")
        except subprocess.TimeoutExpired:
            print(f"teardown: compose down took more than {DOWN_TIMEOUT_S} s")
        label = {"label": f"com.docker.compose.project={self.name}"}
        for c in self.docker.containers.list(all=True, filters=label):
            print(f"teardown: removing leftover container {c.name}")
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True, v=True)
        for n in self.docker.networks.list(filters=label):
            print(f"teardown: removing leftover network {n.name}")
            with contextlib.suppress(docker.errors.NotFound):
                n.remove()
