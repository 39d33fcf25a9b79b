"""Liveness: how long a crash goes unnoticed, with real chat-server and chat-client processes.

* Client crash: ``kill -9`` a signed-in chat-client; an observer (a signed-in client of our own,
  from bench.signin and the codec, on a secure session) LOOKs it up every ``POLL_S`` until the
  server says it is gone. The server removes a user it has not heard from for
  ``client_timeout_s`` after its last heartbeat, so this lands between ``client_timeout_s -
  heartbeat interval`` and ``client_timeout_s``.
* Server crash: ``kill -9`` the chat-server; every chat-client must notice and exit (code 5) on
  its own. Measured from the kill to each client's exit.

Victims are killed at staggered moments, so their heartbeat phases differ; each victim is one
sample.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench import procs, signin
from chat_protocol.errors import MalformedDatagram
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import Lookup, LookupReply
from labkit.util import poll_until

POLL_S = 0.02
CLIENT_EXIT_SERVER_LOST = 5


class Observer:
    """A signed-in user that only looks others up (each LOOKUP also keeps it signed in). It
    signs in over a secure session like any client (bench.signin) and its LOOKUPs ride it."""

    def __init__(self, server: tuple[str, int], name: str) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((server[0], 0))
        self.sock.connect(server)
        self.sock.settimeout(0.3)
        self.req = 1
        self.user = signin.sign_in(self.sock, name, signin.server_key(server), timeout_s=5.0)

    def online(self, name: str) -> bool | None:
        """Whether the directory has ``name`` (None: no answer within the timeout)."""
        self.req += 1
        rid = self.req
        now = time.monotonic()
        lookup = encode(Lookup(token=self.user.token, req_id=rid, name=name))
        self.sock.send(self.user.session.encrypt(lookup, now))
        deadline = now + 0.3
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                return None
            try:
                msg = decode(self.user.session.decrypt(data, self.server, time.monotonic()))
            except MalformedDatagram:
                continue
            if isinstance(msg, LookupReply) and msg.req_id == rid:
                return msg.addr is not None
        return None

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def chat_clients(
    srv: procs.Server, names: list[str], stagger_s: float = 0.0
) -> Iterator[list[tuple[subprocess.Popen[str], procs.LineReader]]]:
    """Real chat-client processes, signed in, stdin a pipe held open (so they stay).

    ``stagger_s``: a random pause up to this long before each start, so that the clients'
    heartbeat phases differ.
    """
    clients: list[subprocess.Popen[str]] = []
    readers: list[procs.LineReader] = []
    try:
        for name in names:
            if stagger_s:
                time.sleep(random.uniform(0, stagger_s))
            clients.append(
                subprocess.Popen(
                    [
                        procs.PY,
                        "-m",
                        "chat_client",
                        "-u",
                        name,
                        "-sip",
                        srv.host,
                        "-sp",
                        str(srv.port),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=procs.loop_env(srv.loop),
                )
            )
            readers.append(procs.LineReader(clients[-1].stdout))
            readers[-1].wait_for(f"signed in as {name}", 15)
        yield list(zip(clients, readers, strict=True))
    finally:
        for c in clients:
            procs.stop(c, grace_s=2)
            for s in (c.stdin, c.stdout):
                with contextlib.suppress(OSError):
                    if s is not None:
                        s.close()


def client_crash(victims: int, loop: str = "uvloop", timeout_s: float = 30.0) -> dict[str, Any]:
    """Seconds from ``kill -9`` of a chat-client to the server's directory dropping it."""
    rng = random.Random()
    names = [f"victim{i}" for i in range(victims)]
    with procs.chat_server(loop) as srv:
        obs = Observer(srv.addr, "observer")
        try:
            with chat_clients(srv, names) as clients:
                for n in names:
                    # chat-client prints "signed in" on the WELCOME, just before the datagram
                    # that makes the server register it: allow that one its way there.
                    if not poll_until(functools.partial(obs.online, n), 2.0, POLL_S):
                        raise RuntimeError(f"{n} is not in the directory after signing in")
                # Stagger the kills over one heartbeat interval: different phases.
                start = time.monotonic()
                kill_at = sorted(start + rng.uniform(0, 1.5) for _ in names)
                killed: dict[str, float] = {}
                gone: dict[str, float] = {}
                while len(gone) < len(names):
                    now = time.monotonic()
                    if now - start > timeout_s:
                        raise TimeoutError(f"still in the directory: {set(names) - set(gone)}")
                    for i, n in enumerate(names):
                        if n not in killed and now >= kill_at[i]:
                            os.kill(clients[i][0].pid, signal.SIGKILL)
                            killed[n] = time.monotonic()
                    for n, t_kill in killed.items():
                        if n not in gone and obs.online(n) is False:
                            gone[n] = time.monotonic() - t_kill
                    time.sleep(POLL_S)
        finally:
            obs.close()
    return {"samples_s": [gone[n] for n in names], "poll_s": POLL_S}


def server_crash(clients_n: int, loop: str = "uvloop", timeout_s: float = 30.0) -> dict[str, Any]:
    """Seconds from ``kill -9`` of the chat-server to each chat-client exiting by itself."""
    names = [f"orphan{i}" for i in range(clients_n)]
    stagger = 1.5 / clients_n
    with procs.chat_server(loop) as srv, chat_clients(srv, names, stagger) as clients:
        time.sleep(random.uniform(0.2, 1.5))
        exited: dict[int, float] = {}

        def wait(i: int) -> None:
            clients[i][0].wait(timeout_s)
            exited[i] = time.monotonic()

        waiters = [threading.Thread(target=wait, args=(i,), daemon=True) for i in range(len(names))]
        for w in waiters:
            w.start()
        t_kill = time.monotonic()
        srv.proc.kill()
        for w in waiters:
            w.join(timeout_s + 1)
        codes = [c.returncode for c, _ in clients]
        if len(exited) < len(names):
            raise TimeoutError(
                f"{len(names) - len(exited)} clients still running after {timeout_s} s"
            )
        time.sleep(0.05)  # let the reader threads take the last lines
        noticed = []
        for _, reader in clients:
            said = [t for t, line in reader.stamped if line.startswith("lost contact")]
            noticed.append(said[0] - t_kill if said else None)
    return {
        "samples_s": [exited[i] - t_kill for i in range(len(names))],
        "noticed_s": noticed,
        "exit_codes": codes,
    }
