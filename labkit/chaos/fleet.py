"""The scripted clients of a chaos run: one ``docker compose run -T client`` per incarnation,
fed ``send`` lines on stdin, and started again under the same name whenever one ends.

Each incarnation is a container of its own, named ``<project>-<name>-<k>``, running
``chat-client -u NAME --history /hist/NAME.jsonl`` with the run's history directory bind-mounted
at ``/hist`` (every incarnation of a name appends to the same file, docs/HISTORY.md) and the
project's ``client-home`` volume at ``/data`` (compose.yaml), so a client started again keeps its
key: the same name, the same identity. ``--no-deps``: a restart does not wait for the server's
health, which is the point while the server is paused.

A :class:`Fleet` thread (:meth:`Fleet.supervise`) notices an incarnation that ended (killed,
gave up on the server, refused because the server still lists its dead predecessor) and starts
the next one, after the kill's down time if it was killed. New containers and partitions take
:attr:`Fleet.network_lock` in turn: Docker gives a container the lowest free address on the
network, which must not be the one a partitioned container is coming back to.

stdin is written by one thread per incarnation from a queue, so a paused container (whose pipe
fills) never blocks the traffic or the supervisor.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.compose import Compose
from labkit.procs import terminate
from labkit.util import LabError, poll_until, tail, wait_until

if TYPE_CHECKING:
    from docker.models.containers import Container

BROKEN_CLIENT = Path(__file__).with_name("broken_client.py")
"""The broken client (labkit.chaos.broken_client): the real chat-client, except that the first
message each incarnation receives is acknowledged but never shown. A plain script of the
standard library and the chat packages, mounted into the container and run as its entry point,
since labkit is not in the image."""
BROKEN_CLIENT_IN_CONTAINER = "/lab/broken_client.py"
RESTART_DELAY_S = 0.5
"""Pause before starting a client again after it ended by itself (e.g. refused: name taken)."""
NETWORK_HOLD_S = 8.0
"""At most this long a starting container keeps the network lock (it has its address long
before it has signed in)."""
SUPERVISE_S = 0.1
SIGNED_IN = "signed in as "
FATAL_EXITS = frozenset({2})
"""chat-client's exit statuses that no restart can cure: usage (docs/CLI.md)."""


def broken_client_args() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What makes a client container run the broken client: the ``docker compose run``
    options (the script mounted read-only, the image's python3 as the entry point) and the
    start of the command (the script's path; chat-client's arguments follow)."""
    mount = f"{BROKEN_CLIENT.resolve()}:{BROKEN_CLIENT_IN_CONTAINER}:ro"
    return ("-v", mount, "--entrypoint", "python3"), (BROKEN_CLIENT_IN_CONTAINER,)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


@dataclass
class Incarnation:
    """One ``docker compose run`` of a client: its process, container, stdin queue, output."""

    name: str
    number: int
    container_name: str
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path
    started: float = field(default_factory=time.time)
    signed_in_at: float | None = None
    ended_at: float | None = None
    queued: int = 0
    """``send`` lines given to it (each becomes a ``send`` record once the client reads it)."""
    lines: queue.SimpleQueue[bytes | None] = field(default_factory=queue.SimpleQueue)
    writer: threading.Thread | None = None

    def start_writer(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None

        def write() -> None:
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                while True:
                    line = self.lines.get()
                    if line is None:
                        stdin.close()
                        return
                    stdin.write(line)
                    stdin.flush()

        self.writer = threading.Thread(
            target=write, name=f"stdin-{self.container_name}", daemon=True
        )
        self.writer.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_signed_in(self) -> bool:
        """Has it printed ``signed in as NAME`` (its first line once the directory accepted
        it)? Reads only the head of its output, and only until it has."""
        if self.signed_in_at is None:
            with contextlib.suppress(OSError), self.out_path.open("rb") as f:
                head = f.read(4096)
                if f"{SIGNED_IN}{self.name};".encode() in head:
                    self.signed_in_at = time.time()
        return self.signed_in_at is not None


@dataclass
class ClientState:
    name: str
    broken: bool
    current: Incarnation | None = None
    next_start: float = 0.0
    """time.monotonic() at which the next incarnation may start (a kill's down time)."""
    killed: bool = False
    """The current (or last) incarnation was killed by the nemesis: its end is no surprise."""
    incarnations: list[Incarnation] = field(default_factory=list)


class Fleet:
    def __init__(
        self,
        lab: Compose,
        names: list[str],
        run_dir: Path,
        *,
        broken: frozenset[str] = frozenset(),
        log: Callable[[str], None] = print,
    ) -> None:
        self.lab = lab
        self.names = names
        self.hist_dir = run_dir / "hist"
        self.log_dir = run_dir / "logs"
        self.clients = {n: ClientState(n, n in broken) for n in names}
        self.network_lock = threading.Lock()
        self._lock = threading.Lock()  # guards the ClientState objects
        self._starting: Incarnation | None = None  # holds network_lock while it starts
        self._starting_since = 0.0
        self.restarting = True
        self.fatal = ""
        """Why the run cannot go on (a client that will never start: bad arguments)."""
        self.log = log
        self.events: list[dict[str, object]] = []
        """Each incarnation's start, sign-in and end (for run.json and faults.json)."""
        self.hist_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The client runs as uid 10001 (the image's user): it must be able to write here.
        self.hist_dir.chmod(0o777)

    # --- starting -------------------------------------------------------------------------

    def _spawn(self, c: ClientState) -> Incarnation:
        k = len(c.incarnations) + 1
        cname = f"{self.lab.name}-{c.name}-{k}"
        options, program = broken_client_args() if c.broken else ((), ())
        argv = self.lab.argv(
            "run", "--rm", "--no-deps", "-T", "--name", cname,
            "-v", f"{self.hist_dir.resolve()}:/hist", *options,
            "client", *program, "-u", c.name, "--history", f"/hist/{c.name}.jsonl",
        )  # fmt: skip
        out = self.log_dir / f"{c.name}.{k}.out"
        err = self.log_dir / f"{c.name}.{k}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=fo, stderr=fe, env=self.lab.env
            )
        inc = Incarnation(c.name, k, cname, proc, out, err)
        inc.start_writer()
        c.incarnations.append(inc)
        c.current = inc
        c.killed = False
        return inc

    def start_all(self, timeout_s: float) -> None:
        """Start every client (no fault runs yet) and wait until all have signed in; an
        AssertionError naming the late ones after ``timeout_s``."""
        for c in self.clients.values():
            with self._lock:
                self._spawn(c)

        def late() -> list[str]:
            cs = self.clients.items()
            return [n for n, c in cs if not (c.current and c.current.signed_in_at)]

        def all_signed_in() -> bool:
            self.poll()
            if self.fatal:
                raise LabError(self.fatal)
            return not late()

        wait_until(
            all_signed_in,
            timeout_s,
            "every client to sign in",
            lambda: f"not signed in: {late()}",
            interval=SUPERVISE_S,
        )

    # --- the supervisor -------------------------------------------------------------------

    def poll(self) -> None:
        """One round: note ended and signed-in incarnations, start the next where due."""
        now = time.monotonic()
        with self._lock:
            for c in self.clients.values():
                inc = c.current
                if inc is None:
                    continue
                if inc.signed_in_at is None and inc.check_signed_in():
                    self._event(inc, "signed_in", inc.signed_in_at)
                if not inc.alive():
                    inc.ended_at = time.time()
                    inc.lines.put(None)
                    code = inc.proc.returncode
                    final = not self.restarting
                    self._event(
                        inc, "ended", inc.ended_at, code=code, killed=c.killed, final=final
                    )
                    if not c.killed and not final:
                        self.log(f"{inc.container_name} ended by itself (exit {code})")
                    if code in FATAL_EXITS and not c.killed:
                        self.fatal = self.fatal or (
                            f"{inc.container_name} exited {code}: "
                            + tail(_read(inc.err_path), 600).strip()
                        )
                    c.current = None
                    c.next_start = max(c.next_start, now + RESTART_DELAY_S)
            self._release_network_if_started(now)
            if not self.restarting or self.fatal:
                return
            for c in self.clients.values():
                if c.current is None and now >= c.next_start and self._starting is None:
                    if not self.network_lock.acquire(blocking=False):
                        return  # a partition is on: wait
                    inc = self._spawn(c)
                    self._starting = inc
                    self._starting_since = now
                    self._event(inc, "started", inc.started)

    def _release_network_if_started(self, now: float) -> None:
        inc = self._starting
        if inc is None:
            return
        if inc.signed_in_at or not inc.alive() or now - self._starting_since > NETWORK_HOLD_S:
            self._starting = None
            self.network_lock.release()

    def supervise(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(SUPERVISE_S)
        self.poll()

    def _event(self, inc: Incarnation, what: str, wall: float | None, **extra: object) -> None:
        self.events.append(
            {"client": inc.name, "incarnation": inc.number, "container": inc.container_name,
             "event": what, "wall": wall, **extra}
        )  # fmt: skip

    # --- for the traffic and the nemesis ---------------------------------------------------

    def up(self) -> list[str]:
        """The clients signed in and running now."""
        with self._lock:
            return [
                n
                for n, c in self.clients.items()
                if c.current is not None and c.current.signed_in_at and c.current.alive()
            ]

    def send(self, name: str, line: str) -> bool:
        """Queue one input line for ``name``'s current incarnation (False if it is not up)."""
        c = self.clients[name]
        inc = c.current
        if inc is None or not inc.signed_in_at or inc.ended_at:
            return False
        inc.lines.put(line.encode() + b"\n")
        inc.queued += 1
        return True

    def queued(self) -> dict[str, int]:
        """Lines given to each running client's current incarnation."""
        with self._lock:
            return {
                n: c.current.queued
                for n, c in self.clients.items()
                if c.current is not None and c.current.signed_in_at and c.current.alive()
            }

    def container(self, name: str) -> Container | None:
        """The container of ``name``'s current incarnation, if it is up."""
        import docker.errors

        with self._lock:
            c = self.clients[name]
            inc = c.current
            if inc is None or not inc.signed_in_at or not inc.alive():
                return None
            cname = inc.container_name
        try:
            return self.lab.docker.containers.get(cname)
        except docker.errors.NotFound:
            return None

    def kill(self, name: str, container: Container, down_s: float) -> None:
        """SIGKILL the container; the client is started again ``down_s`` later at the
        earliest."""
        with self._lock:
            c = self.clients[name]
            c.killed = True
            c.next_start = time.monotonic() + down_s
        container.kill()

    # --- the end ---------------------------------------------------------------------------

    def finish(self, timeout_s: float) -> dict[str, int | None]:
        """No more restarts; close every client's input (it signs out once its messages are
        resolved, and exits); wait up to ``timeout_s``; stop (SIGTERM, then SIGKILL) any left.
        The exit status of each name's last incarnation."""
        self.restarting = False
        deadline = time.monotonic() + timeout_s

        def started() -> bool:
            self.poll()
            return self._starting is None

        # One being started now is let finish its start first (then its input is closed too).
        poll_until(started, timeout_s, interval=SUPERVISE_S)
        with self._lock:
            running = [c.current for c in self.clients.values() if c.current is not None]
        for inc in running:
            inc.lines.put(None)
        left_s = max(0.0, deadline - time.monotonic())
        poll_until(lambda: not any(inc.alive() for inc in running), left_s, SUPERVISE_S)
        left = [inc for inc in running if inc.alive()]
        for inc in left:
            self.log(f"{inc.container_name} still running {timeout_s:.0f} s after its input ended")
            with contextlib.suppress(Exception):
                self.lab.docker.containers.get(inc.container_name).stop(timeout=5)
        terminate([inc.proc for inc in left], grace_s=10)
        self.poll()
        return {
            n: (c.incarnations[-1].proc.returncode if c.incarnations else None)
            for n, c in self.clients.items()
        }

    def stop_all(self) -> None:
        """Whatever happens: every incarnation's process ended (for teardown)."""
        self.restarting = False
        procs = [inc.proc for c in self.clients.values() for inc in c.incarnations]
        terminate(procs, grace_s=5)
