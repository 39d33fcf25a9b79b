"""The chat programs as processes on this machine (loopback, or inside a network namespace).

:class:`ChatServer` runs ``chat-server -sp 0`` with its log in a file, reads the port it bound
from ``chat-server listening on HOST:PORT (LOOP, KIND core)``, and is ready once
``chat-server --probe`` gets a PONG back for a PING (the same check as the container
healthcheck). :func:`tty_client`
and :func:`piped_client` start ``chat-client`` toward it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.procs import Reaper, exit_code_of, program, stop
from labkit.terminal import PipedClient, TtyClient
from labkit.util import LabError, run, tail, wait_until

START_TIMEOUT_S = 15.0
"""Start-up of a Python process, on a loaded 2-core machine."""
PROBE_TIMEOUT_S = 10.0
"""How long the server may take to answer its first PING once it listens."""
LISTENING_RE = re.compile(
    r"chat-server listening on \[?(?P<host>[^\s\]]+?)\]?:(?P<port>\d+) "
    r"\((?P<loop>\w+), (?P<core>[\w-]+) core\)"
)


def overlay(env: Mapping[str, str] | None) -> dict[str, str] | None:
    """A child's environment: this process's with ``env`` on top (as
    :meth:`~labkit.terminal.PipedClient.spawn` does), so that ``PYTHONPATH`` (the core under
    test, tests/conftest.py) and ``PATH`` reach every program the harness starts."""
    return None if env is None else {**os.environ, **env}


@dataclass
class ChatServer:
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str
    port: int
    loop: str
    core: str
    """"compiled" or "pure-Python": the core the server runs (chat_protocol.core_kind)."""

    @classmethod
    def start(
        cls,
        log_path: Path,
        *,
        reaper: Reaper | None = None,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
        command: Sequence[str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> ChatServer:
        """Start the server (``command``: default the ``chat-server`` script; ``prefix``: e.g.
        ``ip netns exec NS``; ``env``: variables set on top of this process's environment) on
        a free port, and return once it answers a PING. Raises
        :class:`~labkit.util.LabError` if it exits or never gets ready; the process is then
        stopped. With a ``reaper``, it stops the server; without one, the caller does
        (:meth:`stop`, or :func:`running`)."""
        argv = [*prefix, *(command or [program("chat-server")])]
        # Its own home beside its log unless one is given: its key and the names it has bound
        # (names.sqlite3) must not leak from one run into the next.
        run_env = {**os.environ, **(env or {})}
        run_env.setdefault("CHAT_HOME", str(log_path.with_name(log_path.stem + "-home")))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [*argv, "-sp", "0", "--host", host, *extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=run_env,
                preexec_fn=preexec_fn,
            )
        if reaper is not None:
            reaper.track(proc, "chat-server log", lambda: log_path.read_text(errors="replace"))
        try:
            return cls._ready(proc, log_path, host, argv, env)
        except BaseException:
            stop(proc)
            raise

    @classmethod
    def _ready(
        cls,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        host: str,
        argv: list[str],
        env: Mapping[str, str] | None,
    ) -> ChatServer:
        def listening() -> re.Match[str] | None:
            text = log_path.read_text(errors="replace")
            m = LISTENING_RE.search(text)
            if m is None and proc.poll() is not None:
                raise LabError(f"chat-server exited with {proc.returncode}:\n{tail(text)}")
            return m

        m = wait_until(listening, START_TIMEOUT_S, "chat-server to listen", interval=0.01)
        if m["host"] != host:
            raise LabError(f"chat-server listens on {m['host']}, not {host}: {m.group(0)}")
        server = cls(proc, log_path, host, int(m["port"]), m["loop"], m["core"])

        # Retried until the deadline: under injected loss one probe (4 PINGs) can go unanswered.
        def answers() -> bool:
            r = run(
                [*argv, "--probe", "--host", host, "-sp", str(server.port)],
                timeout=PROBE_TIMEOUT_S,
                check=False,
                env=overlay(env),
            )
            if r.returncode != 0 and proc.poll() is not None:
                raise LabError(f"chat-server exited with {proc.returncode}:\n{tail(server.log())}")
            return r.returncode == 0

        wait_until(
            answers,
            PROBE_TIMEOUT_S,
            f"chat-server on port {server.port} to answer a PING",
            lambda: tail(server.log()),
        )
        return server

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        rx = re.compile(pattern)
        return wait_until(
            lambda: rx.search(self.log()),
            timeout,
            f"server log /{pattern}/",
            lambda: tail(self.log(), 1500),
        )

    def client_addr(self, name: str, timeout: float = 5.0) -> tuple[str, int]:
        """Where ``name`` signed in from, per the server log (``NAME signed in from IP:PORT``)."""
        m = self.wait_log(rf"\b{re.escape(name)} signed in from (\S+):(\d+)", timeout)
        return m.group(1), int(m.group(2))

    def wait_exit(self, timeout: float) -> int:
        return exit_code_of(self.proc, timeout, "chat-server")

    def stop(self) -> None:
        stop(self.proc)


@contextlib.contextmanager
def running(
    *,
    host: str = "127.0.0.1",
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[ChatServer]:
    """A :class:`ChatServer` with its log in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="chat-server-") as tmp:
        server = ChatServer.start(
            Path(tmp) / "server.log", host=host, command=command, env=env, preexec_fn=preexec_fn
        )
        try:
            yield server
        finally:
            server.stop()


def client_argv(
    name: str, port: int, host: str = "127.0.0.1", prefix: Sequence[str] = ()
) -> list[str]:
    return [*prefix, program("chat-client"), "-u", name, "-sip", host, "-sp", str(port)]


def tty_client(
    reaper: Reaper, name: str, port: int, host: str = "127.0.0.1", prefix: Sequence[str] = ()
) -> TtyClient:
    """``chat-client -u NAME -sip HOST -sp PORT`` on a pseudo-terminal (not yet signed in)."""
    return TtyClient.spawn(reaper, name, client_argv(name, port, host, prefix))


def piped_client(
    reaper: Reaper,
    name: str,
    port: int,
    workdir: Path,
    host: str = "127.0.0.1",
    prefix: Sequence[str] = (),
) -> PipedClient:
    """``chat-client`` with stdin a pipe and output in ``workdir`` (not yet signed in)."""
    return PipedClient.spawn(reaper, name, client_argv(name, port, host, prefix), workdir)
