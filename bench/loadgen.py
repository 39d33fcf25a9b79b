"""Load generator for directory lookups: N signed-in clients, LOOKUPs pipelined by each.

Runs as its own process (``python -m bench.loadgen``), apart from the server it loads. Each
simulated client has its own UDP socket (on a loopback address of its own: the server limits
sign-ins and handshakes per source address), key pair and secure session. The server's key comes
from a KEY_REQUEST; every client signs in through the core's own sign-in (bench.signin: a Noise
IK handshake whose initiation carries the HELLO, then the HEARTBEAT that registers it), then keeps
``--window`` encrypted LOOKUPs outstanding, sending one more for every reply
(:class:`LookupLoad`, a stepper driven by a loop on the sockets). Replies are counted over
``--duration`` seconds after ``--warmup``; a client that heard nothing for 100 ms (a datagram lost
in a full socket buffer) has its window refilled. At the end every client signs out (BYE).

The requests are encrypted before the measured phase: each client gets a pool of LOOKUP
datagrams with consecutive counters, enough for ``--max-rate`` replies per second (past it they
are encrypted on the fly and counted in ``encrypted_live``), and replies are counted without
being decrypted, as the plaintext version counted them without decoding. So the load process
does the same per datagram in both modes, and what differs is the server: the chat-server
decrypts every LOOKUP and encrypts its answer. Each client's first answer is decrypted and
checked (found, with the right key).

``--mode echo`` sends datagrams of the same size (LOOKUPs encrypted on a session made in memory,
cycled) to the echo server without signing in: the same work on this side, the least possible
work on the other, no crypto at all. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import select
import socket
import sys
import time
from collections.abc import Callable

from bench.signin import SignedIn, SignIns, local_pair, server_key
from chat_protocol.errors import MalformedDatagram
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import Bye, ByeAck, Lookup, LookupReply

STALL_S = 0.1
DEFAULT_MAX_RATE = 150_000.0
"""Replies per second the requests encrypted beforehand suffice for (bench.run lowers it to twice
the best rate seen so far in a run)."""
ECHO_RING = 256
"""Datagrams per client cycled against the echo server (it checks no counters)."""


def _cpu(pid: int) -> float | None:
    if not pid:
        return None
    try:
        from bench.procs import proc_stat

        return proc_stat(pid).cpu_s
    except OSError:
        return None


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sign_in(
    socks: list[socket.socket],
    names: list[str],
    target: tuple[str, int],
    key: bytes,
    timeout_s: float = 20.0,
) -> list[SignedIn]:
    """Sign every socket's user in: the :class:`~bench.signin.SignIns` phase (the core's sign-in,
    256 in flight), driven over the sockets (client ``i``'s datagrams from socket ``i``)."""
    phase = SignIns(
        server=target,
        key=key,
        window=256,
        per_step=256,
        clock_offset_s=time.time() - time.monotonic(),
    )
    for i, n in enumerate(names):
        phase.add(i, n)
    users: list[SignedIn | None] = [None] * len(socks)
    fd2i = {s.fileno(): i for i, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    deadline = time.monotonic() + timeout_s
    missing = len(socks)

    def send(out: list[tuple[bytes, int]]) -> None:
        for datagram, i in out:
            with contextlib.suppress(BlockingIOError):  # (its retry sends it again)
                socks[i].send(datagram)

    try:
        while missing:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{missing} of {len(socks)} clients not signed in")
            send(phase.step(now))
            t = phase.next_timer()
            wait = 0.05 if t is None else min(0.05, max(0.0, t - now))
            for fd, _ in ep.poll(wait):
                i = fd2i[fd]
                while True:
                    try:
                        data = socks[i].recv(2048)
                    except BlockingIOError:
                        break
                    send(phase.receive(data, target, time.monotonic()))
            for i, user in phase.signed_in():
                users[i] = user
                missing -= 1
    finally:
        ep.close()
    return [u for u in users if u is not None]


class LookupLoad:
    """The measured phase as a stepper: every client keeps ``window`` LOOKUPs outstanding, one
    more sent for every reply, from a pool encrypted beforehand (``pools[i]``, in counter order;
    ``cyclic``: cycled, against the echo server, which checks no counters; else, once used up,
    ``more(i, now)`` encrypts another, counted in :attr:`encrypted_live`). A client that heard
    nothing for ``stall_s`` has its window refilled (a datagram lost in a full socket buffer).

    :meth:`step` gives ``(datagram, i)`` pairs to send from client ``i``; the driver reports those
    it could not send (:meth:`unsent`) and the replies each client got (:meth:`received`,
    counted, not decrypted). No sockets and no clock inside."""

    __slots__ = (
        "_dirty",
        "_heard",
        "_inflight",
        "_more",
        "_next_stall",
        "_pos",
        "cyclic",
        "encrypted_live",
        "pools",
        "replies",
        "stall_s",
        "stalls",
        "window",
    )

    def __init__(
        self,
        pools: list[list[bytes]],
        *,
        window: int,
        cyclic: bool,
        more: Callable[[int, float], bytes],
        stall_s: float = STALL_S,
    ) -> None:
        self.pools = pools
        self.window = window
        self.cyclic = cyclic
        self._more = more
        self.stall_s = stall_s
        n = len(pools)
        self._inflight = [0] * n
        self._pos = [1] * n  # (each pool's first datagram checked the answers beforehand)
        self._heard = [False] * n
        self._dirty: list[int] = list(range(n))  # clients whose window to refill at the next step
        self._next_stall: float | None = None
        self.replies = 0
        self.stalls = 0
        self.encrypted_live = 0

    def next_timer(self) -> float | None:
        return 0.0 if self._dirty else self._next_stall

    def received(self, i: int, n: int) -> None:
        """Client ``i`` got ``n`` replies."""
        self.replies += n
        self._heard[i] = True
        left = self._inflight[i] - n
        self._inflight[i] = left if left > 0 else 0
        self._dirty.append(i)

    def unsent(self, i: int, n: int) -> None:
        """The last ``n`` datagrams :meth:`step` gave for client ``i`` were not sent."""
        self._inflight[i] -= n
        self._pos[i] -= n

    def step(self, now: float) -> list[tuple[bytes, int]]:
        if self._next_stall is None:
            self._next_stall = now + self.stall_s
        elif now >= self._next_stall:
            self._next_stall = now + self.stall_s
            for i, heard in enumerate(self._heard):
                if not heard:
                    self.stalls += 1
                    self._inflight[i] = 0
                    self._dirty.append(i)
                self._heard[i] = False
        out: list[tuple[bytes, int]] = []
        dirty, self._dirty = self._dirty, []
        for i in dirty:
            pool, n, k = self.pools[i], self._inflight[i], self._pos[i]
            while n < self.window:
                if k >= len(pool):
                    if self.cyclic:
                        k = 0
                    else:
                        pool.append(self._more(i, now))
                        self.encrypted_live += 1
                out.append((pool[k], i))
                k += 1
                n += 1
            self._inflight[i] = n
            self._pos[i] = k
        return out


def client_host(server_host: str, i: int) -> str:
    """Where client ``i`` sends from: against a loopback server, an address of its own in
    127.2.0.0/16 (each simulated client is a machine of its own, as the server's quotas per
    source address expect); else the server's host, as before."""
    if not server_host.startswith("127."):
        return server_host
    return f"127.2.{1 + i // 254}.{1 + i % 254}"


def sign_out(socks: list[socket.socket], users: list[SignedIn], target: tuple[str, int]) -> int:
    """A BYE from every signed-in client (so the next run finds their names and quotas free);
    the number of BYE_ACKs seen within 0.5 s."""
    for i, (s, u) in enumerate(zip(socks, users, strict=True)):
        s.setblocking(False)
        drain([s])
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            s.send(u.session.encrypt(encode(Bye(token=u.token, req_id=i + 1)), time.monotonic()))
    acks = 0
    deadline = time.monotonic() + 0.5
    left = set(range(len(socks)))
    while left and time.monotonic() < deadline:
        for i in list(left):
            try:
                data = socks[i].recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            with contextlib.suppress(MalformedDatagram):
                if isinstance(
                    decode(users[i].session.decrypt(data, target, time.monotonic())), ByeAck
                ):
                    acks += 1
                    left.discard(i)
        time.sleep(0.005)
    return acks


def drain(socks: list[socket.socket]) -> None:
    for s in socks:
        while True:
            try:
                s.recv(2048)
            except BlockingIOError:
                break


def run(
    *,
    target: tuple[str, int],
    mode: str,
    clients: int,
    window: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int,
    max_rate: float = DEFAULT_MAX_RATE,
) -> dict[str, object]:
    gc.disable()  # no collection pauses in the measured phase (nothing here makes cycles)
    tag = os.urandom(3).hex()
    names = [f"lg{tag}-{i}" for i in range(clients)]
    socks: list[socket.socket] = []
    try:
        for i in range(clients):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((client_host(target[0], i), 0))
            s.connect(target)
            s.setblocking(False)
            socks.append(s)
        t0 = time.monotonic()
        if mode == "lookup":
            key = server_key(target, bind_host=target[0])
            users = sign_in(socks, names, target, key)
            tokens = [u.token for u in users]
            sessions = [u.session for u in users]
            cyclic = False
        else:
            # No sign-in: LOOKUPs of the same size, encrypted on a session made here.
            tokens = [os.urandom(8) for _ in socks]
            sessions = [local_pair(time.monotonic())[0]] * clients
            users = []
            cyclic = True
        sign_in_s = time.monotonic() - t0
        # Each client looks up the next one: every answer carries an address (the found case).
        plain = [
            encode(Lookup(token=tokens[i], req_id=i + 1, name=names[(i + 1) % clients]))
            for i in range(clients)
        ]
        # Encrypted before the measured phase, in counter order (the echo server checks
        # nothing, so a ring of them is cycled there).
        t0 = time.monotonic()
        per_client = math.ceil(max_rate * (warmup_s + duration_s) / clients) + 4 * window
        if cyclic:
            per_client = min(per_client, ECHO_RING)
        now = time.monotonic()
        pools = [
            [sessions[i].encrypt(plain[i], now) for _ in range(per_client)] for i in range(clients)
        ]
        prepare_s = time.monotonic() - t0
        # Check once that the answers are what we think they are.
        for i, s in enumerate(socks):
            s.send(pools[i][0])
        for i, s in enumerate(socks):
            s.setblocking(True)
            s.settimeout(2.0)
            data = s.recv(2048)
            s.setblocking(False)
            if mode == "lookup":
                reply = decode(sessions[i].decrypt(data, target, time.monotonic()))
                want = users[(i + 1) % clients].public
                if not (
                    isinstance(reply, LookupReply) and reply.addr is not None and reply.key == want
                ):
                    raise RuntimeError(f"unexpected answer to a LOOKUP: {reply!r}")
            elif data != pools[i][0]:
                raise RuntimeError("the echo server did not echo")

        fd2i = {s.fileno(): i for i, s in enumerate(socks)}
        ep = select.epoll()
        for s in socks:
            ep.register(s.fileno(), select.EPOLLIN)
        load = LookupLoad(
            pools,
            window=window,
            cyclic=cyclic,
            more=lambda i, now: sessions[i].encrypt(plain[i], now),
        )
        send_errors = 0

        def send(out: list[tuple[bytes, int]]) -> None:
            nonlocal send_errors
            failed: dict[int, int] = {}
            for datagram, i in out:
                if i in failed:  # (the rest of that client's window waits for its next turn)
                    failed[i] += 1
                    continue
                try:
                    socks[i].send(datagram)
                except (BlockingIOError, ConnectionRefusedError):
                    send_errors += 1
                    failed[i] = 1
            for i, n in failed.items():
                load.unsent(i, n)

        now = time.monotonic()
        send(load.step(now))
        measure_at = now + warmup_s
        end_at = measure_at + duration_s
        start_count = start_cpu = start_self = start_t = None
        while now < end_at:
            for fd, _ in ep.poll(0.02):
                i = fd2i[fd]
                s = socks[i]
                got = 0
                while True:
                    try:
                        s.recv(2048)
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        raise RuntimeError("the server went away") from None
                    got += 1
                load.received(i, got)
            now = time.monotonic()
            send(load.step(now))
            if start_t is None and now >= measure_at:
                start_t, start_count, start_cpu, start_self = (
                    now,
                    load.replies,
                    _cpu(server_pid),
                    _self_cpu(),
                )
        assert start_t is not None and start_count is not None and start_self is not None
        elapsed = now - start_t
        end_cpu = _cpu(server_pid)
        end_self = _self_cpu()
        replies = load.replies - start_count
        ep.close()
        signed_out = sign_out(socks, users, target) if mode == "lookup" else 0
        return {
            "mode": mode,
            "clients": clients,
            "window": window,
            "replies": replies,
            "seconds": elapsed,
            "per_s": replies / elapsed,
            "server_cpu_frac": (
                (end_cpu - start_cpu) / elapsed
                if end_cpu is not None and start_cpu is not None
                else None
            ),
            "loadgen_cpu_frac": (end_self - start_self) / elapsed,
            "stalls": load.stalls,
            "send_errors": send_errors,
            "sign_in_s": sign_in_s,
            "prepare_s": prepare_s,
            "pool_per_client": per_client,
            "encrypted_live": load.encrypted_live,
            "signed_out": signed_out,
        }
    finally:
        for s in socks:
            s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--target", required=True, help="HOST:PORT of the server")
    p.add_argument("--mode", choices=("lookup", "echo"), default="lookup")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--window", type=int, default=4, help="LOOKUPs outstanding per client")
    p.add_argument("--warmup", type=float, default=0.3)
    p.add_argument("--duration", type=float, default=1.0)
    p.add_argument("--server-pid", type=int, default=0, help="read this process's CPU time")
    p.add_argument(
        "--max-rate",
        type=float,
        default=DEFAULT_MAX_RATE,
        help="replies per second the encrypted-beforehand requests are enough for (past it, "
        "requests are encrypted on the fly)",
    )
    args = p.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.clients + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.clients + 1024), hard))
    result = run(
        target=(host, int(port)),
        mode=args.mode,
        clients=args.clients,
        window=args.window,
        warmup_s=args.warmup,
        duration_s=args.duration,
        server_pid=args.server_pid,
        max_rate=args.max_rate,
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
