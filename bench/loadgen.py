"""Load generator for directory lookups: N signed-in clients, LOOKUPs pipelined by each.

Runs as its own process (``python -m bench.loadgen``), apart from the server it loads. Each
simulated client has its own UDP socket (the server answers a token only from the address that
signed in), signs in with a HELLO built by the codec, then keeps ``--window`` LOOKUPs outstanding,
sending one more for every reply. Replies are counted over ``--duration`` seconds after
``--warmup``; a client that heard nothing for 100 ms (a datagram lost in a full socket buffer) has
its window refilled.

``--mode echo`` sends the same LOOKUP datagrams without signing in, to the echo server: the same
work on this side, the least possible work on the other. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import socket
import sys
import time

from chat_protocol.codec import decode, encode
from chat_protocol.messages import Hello, Lookup, LookupReply, Welcome

STALL_S = 0.1


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


def sign_in(socks: list[socket.socket], names: list[str], timeout_s: float = 20.0) -> list[bytes]:
    """HELLO from every socket (retried every 300 ms) until each has its WELCOME token."""
    tokens: list[bytes | None] = [None] * len(socks)
    hellos = [encode(Hello(req_id=i + 1, name=n)) for i, n in enumerate(names)]
    fd2i = {s.fileno(): i for i, s in enumerate(socks)}
    ep = select.epoll()
    for s in socks:
        ep.register(s.fileno(), select.EPOLLIN)
    deadline = time.monotonic() + timeout_s
    missing = set(range(len(socks)))
    try:
        while missing:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} of {len(socks)} clients not signed in")
            for i in list(missing)[:256]:
                with contextlib.suppress(BlockingIOError):
                    socks[i].send(hellos[i])
            resend_at = time.monotonic() + 0.3
            while missing and time.monotonic() < resend_at:
                for fd, _ in ep.poll(0.05):
                    i = fd2i[fd]
                    while True:
                        try:
                            data = socks[i].recv(2048)
                        except BlockingIOError:
                            break
                        msg = decode(data)
                        if isinstance(msg, Welcome) and msg.req_id == i + 1:
                            tokens[i] = msg.token
                            missing.discard(i)
                        elif i in missing:
                            raise RuntimeError(f"sign-in of {names[i]} answered with {msg!r}")
    finally:
        ep.close()
    return [t for t in tokens if t is not None]


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
) -> dict[str, object]:
    tag = os.urandom(3).hex()
    names = [f"lg{tag}-{i}" for i in range(clients)]
    socks: list[socket.socket] = []
    try:
        for _ in range(clients):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((target[0], 0))
            s.connect(target)
            s.setblocking(False)
            socks.append(s)
        if mode == "lookup":
            t0 = time.monotonic()
            tokens = sign_in(socks, names)
            sign_in_s = time.monotonic() - t0
        else:
            tokens = [os.urandom(8) for _ in socks]
            sign_in_s = 0.0
        # Each client looks up the next one: every answer carries an address (the found case).
        payloads = [
            encode(Lookup(token=tokens[i], req_id=i + 1, name=names[(i + 1) % clients]))
            for i in range(clients)
        ]
        # Check once that the answers are what we think they are.
        for i, s in enumerate(socks):
            s.send(payloads[i])
        for i, s in enumerate(socks):
            s.setblocking(True)
            s.settimeout(2.0)
            data = s.recv(2048)
            s.setblocking(False)
            if mode == "lookup":
                reply = decode(data)
                if not (isinstance(reply, LookupReply) and reply.addr is not None):
                    raise RuntimeError(f"unexpected answer to a LOOKUP: {reply!r}")
            elif data != payloads[i]:
                raise RuntimeError("the echo server did not echo")

        fd2i = {s.fileno(): i for i, s in enumerate(socks)}
        ep = select.epoll()
        for s in socks:
            ep.register(s.fileno(), select.EPOLLIN)
        inflight = [0] * clients
        heard = [False] * clients
        send_errors = 0

        def refill(i: int) -> None:
            nonlocal send_errors
            s, p, n = socks[i], payloads[i], inflight[i]
            while n < window:
                try:
                    s.send(p)
                except (BlockingIOError, ConnectionRefusedError):
                    send_errors += 1
                    break
                n += 1
            inflight[i] = n

        for i in range(clients):
            refill(i)
        count = 0
        now = time.monotonic()
        measure_at = now + warmup_s
        end_at = measure_at + duration_s
        next_stall_check = now + STALL_S
        start_count = start_cpu = start_self = start_t = None
        stalls = 0
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
                count += got
                heard[i] = True
                n = inflight[i] - got
                inflight[i] = n if n > 0 else 0
                refill(i)
            now = time.monotonic()
            if start_t is None and now >= measure_at:
                start_t, start_count, start_cpu, start_self = (
                    now,
                    count,
                    _cpu(server_pid),
                    _self_cpu(),
                )
            if now >= next_stall_check:
                next_stall_check = now + STALL_S
                for i in range(clients):
                    if not heard[i]:
                        stalls += 1
                        inflight[i] = 0
                        refill(i)
                    heard[i] = False
        assert start_t is not None and start_count is not None and start_self is not None
        elapsed = now - start_t
        end_cpu = _cpu(server_pid)
        replies = count - start_count
        ep.close()
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
            "loadgen_cpu_frac": (_self_cpu() - start_self) / elapsed,
            "stalls": stalls,
            "send_errors": send_errors,
            "sign_in_s": sign_in_s,
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
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
