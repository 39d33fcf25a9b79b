"""Helpers for the container lab tests: one Compose project of the chat lab and its controls.

The fixtures in conftest.py create a :class:`ComposeProject` per test; tests import the class
(for annotations) and the constants from here: ``from chatlab import ComposeProject``.

Clients: :meth:`ComposeProject.tty_client` is a real ``docker compose run`` on a terminal under
pexpect (:class:`TtyClient`, with a transcript); :meth:`ComposeProject.piped_client` is
``run -T`` with stdin a pipe and stdout/stderr in files (:class:`PipedClient`). Both are
stopped by :meth:`ComposeProject.close`. Nothing here sleeps to synchronise: waits are
pexpect ``expect`` with a timeout or :func:`wait_until` polling a condition with a deadline.
Faults: :meth:`ComposeProject.iptables` runs iptables in a container's network namespace
(loss, string-match counters: :meth:`ComposeProject.rule_packets`); ``disconnect``/``connect``
partition a container. What the loopback suite (tests/e2e/chatproc.py) shares with this one is
in tests/testkit.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import testkit
from testkit import PipedProcess, expect_eof, expect_match, plain, tail

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
SIGN_IN_TIMEOUT_S = 30.0
"""`docker compose run` (container creation) plus sign-in, on a loaded 2-core machine."""
POLL_S = 0.05
"""Period of the bounded polling loops (:func:`wait_until`)."""
STOP_GRACE_S = 5.0
"""How long teardown lets a piped client's `docker compose run` end on SIGTERM."""

T = TypeVar("T")

# Received message: ``alice (172.18.0.3:40211): hello`` (docs/CLI.md).
MESSAGE_RE = re.compile(
    r"(?P<sender>[A-Za-z0-9][A-Za-z0-9_.-]*)(?P<unverified>\?)? "
    r"\((?P<ip>[0-9a-fA-F.:]+):(?P<port>\d+)\)(?P<mark> \[unverified\])?: (?P<text>[^\r\n]*)"
)
LIST_RE = r"online \((?P<total>\d+)\): (?P<names>[^\r\n\x1b]*)"


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    detail: Callable[[], str] = str,
) -> T:
    """:func:`testkit.wait_until` polling every :data:`POLL_S`."""
    return testkit.wait_until(probe, timeout, what, detail, interval=POLL_S)


class TtyClient:
    """A client container on a terminal (``docker compose run``) driven through pexpect.

    Everything the client printed is kept in :meth:`transcript`; :meth:`expect` consumes the
    output in order, as pexpect does, and fails with the recent output in the message.
    """

    def __init__(self, name: str, child: pexpect.spawn) -> None:
        self.name = name
        self.child = child
        self._log = io.StringIO()
        child.logfile_read = self._log

    def transcript(self) -> str:
        """All output so far, without terminal escape sequences."""
        return plain(self._log.getvalue())

    def _recent(self) -> str:
        return tail(self.transcript())

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        return expect_match(self.child, pattern, timeout, self.name, self._recent)

    def poll(self, pattern: str) -> re.Match[str] | None:
        """The next match of ``pattern`` if it is already in the output, else None (no wait)."""
        import pexpect

        index = self.child.expect([pattern, pexpect.TIMEOUT, pexpect.EOF], timeout=0.01)
        if index != 0:
            return None
        match = self.child.match
        assert isinstance(match, re.Match)
        return match

    def read_available(self) -> str:
        """Read what the client has printed so far into the transcript (consumes no match);
        return the transcript."""
        import pexpect

        self.child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.01)
        return self.transcript()

    def wait_signed_in(self, timeout: float = SIGN_IN_TIMEOUT_S) -> None:
        self.expect(rf"signed in as {re.escape(self.name)}; type 'help' for commands", timeout)
        self.expect(r"\+> ", timeout)

    def enter(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        self.child.sendline(line)

    def list_names(self, timeout: float = 5.0) -> list[str]:
        """Run ``list``; the names it showed (checked against the total it printed)."""
        self.enter("list")
        m = self.expect(LIST_RE, timeout)
        names = [n.strip() for n in m["names"].split(",") if n.strip()]
        assert int(m["total"]) == len(names), f"{self.name}: {m.group(0)!r}"
        return names

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the output to end; the exit status of `docker compose run` (the client's)."""
        expect_eof(self.child, timeout, self.name, self._recent)
        self.child.close()
        if self.child.signalstatus is not None:
            return -int(self.child.signalstatus)
        return int(self.child.exitstatus)

    def messages(self, sender: str | None = None) -> list[re.Match[str]]:
        """Every received-message line in the transcript (optionally from one sender)."""
        found = [m for m in MESSAGE_RE.finditer(self.transcript())]
        return [m for m in found if sender is None or m["sender"] == sender]


class PipedClient(PipedProcess):
    """A client container with stdin a pipe (``docker compose run -T``): no terminal, no prompt.

    Messages and info lines go to the stdout file, errors to the stderr file.
    """

    def wait_stdout(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        rx = re.compile(pattern)

        def probe() -> re.Match[str] | None:
            m = rx.search(self.stdout())
            if m is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.proc.returncode}) before printing "
                    f"/{pattern[:80]}/\n{self.outputs()}"
                )
            return m

        return wait_until(probe, timeout, f"{self.name} stdout /{pattern[:80]}/", self.outputs)

    def wait_signed_in(self, timeout: float = SIGN_IN_TIMEOUT_S) -> None:
        pattern = rf"signed in as {re.escape(self.name)}; type 'help' for commands\n"
        self.wait_stdout(pattern, timeout)

    def messages(self, sender: str | None = None) -> list[re.Match[str]]:
        found = [m for m in MESSAGE_RE.finditer(self.stdout())]
        return [m for m in found if sender is None or m["sender"] == sender]

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name}: still running after {timeout} s\n{self.outputs()}"
            ) from None

    def stop(self) -> None:
        """Teardown: end `docker compose run` (SIGTERM, then SIGKILL) and close the pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=STOP_GRACE_S)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()


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
    piped: list[PipedClient] = field(default_factory=list)

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
        self,
        name: str,
        tty: bool = True,
        args: Sequence[str] = (),
        timeout: float = 20.0,
        container: str | None = None,
    ) -> pexpect.spawn:
        """Start ``chat-client -u NAME`` in a one-off container, driven through pexpect.

        ``tty=True`` gives the client a terminal (prompt, line editing); ``tty=False`` is
        ``run -T``: stdin is a pipe, as in scripts, and ``sendeof()`` ends the input.
        ``container`` names the container (default :meth:`client_container_name`), e.g. for a
        second client trying a name that is taken.
        """
        import pexpect

        run = [
            "run",
            "--rm",
            "--name",
            container or self.client_container_name(name),
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

    def tty_client(self, name: str, container: str | None = None) -> TtyClient:
        """:meth:`run_client` on a terminal, wrapped with a transcript and helpers."""
        return TtyClient(name, self.run_client(name, container=container))

    def tty_clients(self, *names: str) -> list[TtyClient]:
        """Start one terminal client per name at once, and wait until each has signed in."""
        clients = [self.tty_client(name) for name in names]
        for client in clients:
            client.wait_signed_in()
        return clients

    def piped_client(self, name: str, workdir: Path, args: Sequence[str] = ()) -> PipedClient:
        """``docker compose run --rm -T client -u NAME``: stdin a pipe, stdout/stderr in files
        under ``workdir``. Stopped by :meth:`close`."""
        out, err = workdir / f"{name}.out", workdir / f"{name}.err"
        argv = self.compose_argv(
            "run",
            "--rm",
            "-T",
            "--name",
            self.client_container_name(name),
            "client",
            "-u",
            name,
            *args,
        )
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=fo, stderr=fe
            )
        client = PipedClient(name, proc, out, err)
        self.piped.append(client)
        return client

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

    def connect(self, ref: str, ipv4_address: str | None = None) -> None:
        """Heal a partition made by :meth:`disconnect`.

        With ``ipv4_address`` the container asks for that address back. Docker accepts that
        only on networks with a user-configured subnet (compose.yaml's has none); elsewhere the
        engine refuses, and the plain connect used instead gets the lowest free address, which
        is the old one if nobody took it meanwhile: callers check :meth:`container_ip`.
        """
        import docker.errors

        network, container = self.network(), self.container(ref)
        if ipv4_address:
            try:
                network.connect(container, ipv4_address=ipv4_address)
                return
            except docker.errors.APIError as exc:
                if "user configured subnets" not in str(exc):
                    raise
        network.connect(container)

    # -- iptables in a container's network namespace -------------------------------------

    def iptables(self, ref: str, *args: str) -> str:
        """``iptables -w ARGS`` in the container's network namespace (from the host)."""
        return self.nsenter(ref, "iptables", "-w", *args).stdout

    def rule_packets(self, ref: str, chain: str, tag: str) -> int:
        """Packet counter of the rule in ``chain`` whose comment is ``tag``."""
        listing = self.iptables(ref, "-L", chain, "-v", "-x", "-n")
        for line in listing.splitlines():
            if f"/* {tag} */" in line:
                return int(line.split()[0])
        raise LookupError(f"no rule /* {tag} */ in {chain} of {ref}:\n{listing}")

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
        )
        return m.group(1), int(m.group(2))

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Kill pexpect children, ``down`` the project, and remove anything still left."""
        import docker.errors

        for piped in self.piped:
            try:
                piped.stop()
            except Exception as exc:  # teardown goes on whatever happens
                print(f"teardown: piped client {piped.name}: {exc!r}")
        self.piped.clear()
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
