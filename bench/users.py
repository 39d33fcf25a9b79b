"""Many signed-in users on one server: its resident memory, and the CPU their heartbeats cost.

The server accepts a session's requests only from the address that signed in, so every simulated
user needs an address of its own. All of 127.0.0.0/8 is loopback: the load process
(``python -m bench.users``, a process apart from the server) holds ONE UDP socket bound to
0.0.0.0:PORT and gives user ``i`` the source address 127.x.y.z:PORT with ``IP_PKTINFO`` on
``sendmsg``; the server's answers to 127.x.y.z:PORT arrive on that same socket. One descriptor
instead of 100 000. Only datagrams from the server are looked at.

It signs every user in (HELLOs from the codec, ``--window`` outstanding, retried after 0.5 s; a
repeated HELLO gets the same WELCOME back), then heartbeats every user as ClientCore does: each
user's next HEARTBEAT one interval after its last, the interval being the latest the server told
that user in WELCOME / HEARTBEAT_ACK (the server stretches it as users grow). It prints
``signed-in ...`` once all are in, keeps going until its stdin closes, then prints its counters as
JSON.

:func:`measure` is the benchmark side (``--measure``): it starts the real chat-server, runs the
load process, and reads the server's VmRSS and CPU time from /proc over a window; then the same
load rate against the echo server, as the baseline. The benchmark runs it in a network namespace
of its own when it can: 100 000 loopback flows would otherwise fill the host's connection
tracking table (nf_conntrack) whenever a firewall such as Docker's has loaded it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import resource
import select
import socket
import statistics
import struct
import sys
import time
from collections import deque
from typing import Any

from chat_protocol.codec import decode, encode
from chat_protocol.const import DEFAULT_TIMINGS
from chat_protocol.errors import MalformedDatagram
from chat_protocol.messages import Heartbeat, HeartbeatAck, Hello, Ping, Pong, Welcome

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
HELLO_RETRY_S = 0.5
HEARTBEAT_RETRY_S = DEFAULT_TIMINGS.request_retry_s
"""ClientCore resends an unanswered heartbeat this often."""
MAX_BURST = 64
"""Heartbeats sent back to back at most (then the loop polls for answers, ~1 ms)."""


def user_ip(i: int) -> bytes:
    """127.1.0.0 upward: a distinct loopback address for each user (16.7 M of them)."""
    n = (1 << 24) + i
    return bytes((127, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def pktinfo(ip: bytes) -> list[tuple[int, int, bytes]]:
    return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, ip, b"\0\0\0\0"))]


def load(
    server: tuple[str, int],
    users: int,
    window: int,
    timeout_s: float,
    echo_interval_s: float | None = None,
) -> dict[str, Any]:
    """Sign ``users`` in and heartbeat them until stdin closes.

    With ``echo_interval_s`` (the baseline, against the echo server) nobody signs in: every user
    sends a HEARTBEAT-sized datagram once per ``echo_interval_s``, spread evenly, and the echo
    counts as the acknowledgement.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    stdin_poll = select.poll()
    stdin_poll.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
    tag = os.urandom(2).hex()
    anc = [pktinfo(user_ip(i)) for i in range(users)]
    tokens: list[bytes | None] = [None] * users
    heartbeats: list[bytes] = [b""] * users
    order: list[int] = []  # signed-in users, in sign-in order
    pending: deque[tuple[float, int]] = deque()  # (sent at, user) of HELLOs, in send order
    hello_sent = hellos_resent = 0
    next_new = 0
    outstanding = 0
    interval_s = 1.5
    hb_sent = hb_acks = other = 0
    due: list[tuple[float, int]] = []  # (when, user): the next heartbeat of each user
    user_interval = [1.5] * users
    next_hb = [0.0] * users  # when user i's next heartbeat (or resend) is due
    hb_sent_at = [0.0] * users  # when user i's current heartbeat was first sent
    awaiting = [False] * users  # user i's heartbeat is unanswered (resend it)
    hb_resent = 0
    rng = random.Random(users)
    by_token: dict[bytes, int] = {}
    t_start = time.monotonic()
    signed_in_at: float | None = None
    last_stdin_check = 0.0
    if echo_interval_s is not None:
        for i in range(users):
            token = os.urandom(8)
            tokens[i] = token
            by_token[token] = i
            heartbeats[i] = encode(Heartbeat(token=token))
            order.append(i)
            user_interval[i] = interval_s = echo_interval_s
            next_hb[i] = t_start + echo_interval_s * i / users
            due.append((next_hb[i], i))  # sorted: already a heap

    def send(payload: bytes, i: int) -> bool:
        try:
            sock.sendmsg([payload], anc[i], 0, server)
            return True
        except BlockingIOError:
            return False

    def hello(i: int) -> bytes:
        return encode(Hello(req_id=i + 1, name=f"u{tag}-{i}"))

    while True:
        now = time.monotonic()
        # -- sign-in: keep `window` HELLOs outstanding, retry the slow ones
        if signed_in_at is None:
            while pending and now - pending[0][0] > HELLO_RETRY_S:
                _, i = pending.popleft()
                if tokens[i] is None:
                    if send(hello(i), i):
                        hellos_resent += 1
                    pending.append((now, i))
            while next_new < users and outstanding < window:
                if not send(hello(next_new), next_new):
                    break
                pending.append((now, next_new))
                next_new += 1
                outstanding += 1
                hello_sent += 1
            if now - t_start > timeout_s:
                raise TimeoutError(f"only {len(order)} of {users} users signed in")
        # -- heartbeats, as ClientCore sends them: the next one is due one interval after the
        #    last answered one (the interval the server's latest answer said); an unanswered one
        #    is sent again every HEARTBEAT_RETRY_S.
        burst = MAX_BURST  # small bursts, so the server's socket buffer never overflows
        while due and due[0][0] <= now and burst:
            t, i = heapq.heappop(due)
            if t != next_hb[i]:
                continue  # superseded by an answer
            if awaiting[i]:
                hb_resent += 1
            else:
                hb_sent_at[i] = now
                awaiting[i] = True
            send(heartbeats[i], i)
            hb_sent += 1
            burst -= 1
            next_hb[i] = now + HEARTBEAT_RETRY_S
            heapq.heappush(due, (next_hb[i], i))
        # -- answers
        poller.poll(1)
        while True:
            try:
                data, src = sock.recvfrom(2048)
            except BlockingIOError:
                break
            if (src[0], src[1]) != server:
                continue
            try:
                msg = decode(data)
            except MalformedDatagram:
                other += 1
                continue
            if echo_interval_s and isinstance(msg, Heartbeat):
                # The echo carries the token we sent: take it as that user's answer.
                hb_acks += 1
                j = by_token.get(msg.token)
                if j is not None:
                    awaiting[j] = False
                    next_hb[j] = hb_sent_at[j] + echo_interval_s
                    heapq.heappush(due, (next_hb[j], j))
            elif isinstance(msg, HeartbeatAck):
                hb_acks += 1
                interval_s = msg.heartbeat_ms / 1000
                j = by_token.get(msg.token)
                if j is not None:
                    user_interval[j] = interval_s
                    awaiting[j] = False
                    next_hb[j] = hb_sent_at[j] + interval_s
                    heapq.heappush(due, (next_hb[j], j))
            elif isinstance(msg, Welcome) and 0 < msg.req_id <= users:
                i = msg.req_id - 1
                if tokens[i] is None:
                    tokens[i] = msg.token
                    heartbeats[i] = encode(Heartbeat(token=msg.token))
                    order.append(i)
                    outstanding -= 1
                    interval_s = user_interval[i] = msg.heartbeat_ms / 1000
                    by_token[msg.token] = i
                    # The first heartbeat at a random point of the interval: as if the users
                    # had signed in over a while, not all within a few seconds, so that the
                    # heartbeats reach the server at an even rate from the start.
                    next_hb[i] = now + interval_s * rng.uniform(0.05, 1.0)
                    heapq.heappush(due, (next_hb[i], i))
            else:
                other += 1
        if signed_in_at is None and len(order) == users:
            signed_in_at = time.monotonic()
            print(
                f"signed-in {users} in {signed_in_at - t_start:.2f} s; "
                f"heartbeat interval {interval_s:.3f} s",
                flush=True,
            )
        if signed_in_at is not None and now - last_stdin_check > 0.1:
            last_stdin_check = now
            if stdin_poll.poll(0) and not sys.stdin.readline():
                break
    sock.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "users": users,
        "sign_in_s": (signed_in_at or now) - t_start,
        "hellos": hello_sent,
        "hellos_resent": hellos_resent,
        "heartbeat_interval_s": interval_s,
        "heartbeats_sent": hb_sent,
        "heartbeat_acks": hb_acks,
        "heartbeats_resent": hb_resent,
        "other_replies": other,
        "load_cpu_s": usage.ru_utime + usage.ru_stime,
        "elapsed_s": time.monotonic() - t_start,
    }


def ping(server: tuple[str, int], timeout_s: float = 2.0) -> int | None:
    """Users online according to the server's PONG (None if it does not answer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout_s / 4)
    try:
        for nonce in range(1, 5):
            s.sendto(encode(Ping(nonce=nonce)), server)
            try:
                while True:
                    msg = decode(s.recv(2048))
                    if isinstance(msg, Pong) and msg.nonce == nonce:
                        return msg.users
            except TimeoutError:
                continue
    finally:
        s.close()
    return None


def udp_drops(port: int) -> int | None:
    """Datagrams the kernel dropped at the UDP socket bound to ``port`` (full receive buffer)."""
    try:
        with open("/proc/net/udp") as fh:
            for line in fh:
                cols = line.split()
                if len(cols) > 12 and cols[1].endswith(f":{port:04X}"):
                    return int(cols[-1])
    except OSError:
        pass
    return None


def _hold(
    srv: Any,
    extra: list[str],
    users: int,
    window_s: float,
    reps: int,
    loop: str,
    settle_s: float | None = None,
) -> dict[str, Any]:
    """Run the load process against ``srv`` and read the server's CPU over ``reps`` windows."""
    from bench import procs

    pid = srv.proc.pid
    with procs.child(
        [procs.PY, "-m", "bench.users", "--server", srv.target, "--users", str(users), *extra],
        loop=loop,
        cpu=procs.NEAR,
    ) as lg:
        assert lg.stdin is not None
        lines = procs.LineReader(lg.stdout)
        line = lines.wait_for("signed-in", 60 + users / 500)
        interval_s = float(line.rsplit(" ", 2)[-2])
        # Settle, then measure over windows that are whole multiples of the interval (each
        # covers every user's heartbeat once). By default the settling lasts one client timeout
        # at this interval: until then the server is still pushing back the expiry entries made
        # at sign-in, each once, a transient that costs more than the steady state.
        if settle_s is None:
            settle_s = interval_s * DEFAULT_TIMINGS.client_timeout_s
            settle_s = settle_s / DEFAULT_TIMINGS.heartbeat_interval_s + 1.0
        time.sleep(settle_s)
        per_window = window_s / reps
        if per_window >= interval_s / 2:  # (not in the smoke test's miniature)
            per_window = interval_s * math.ceil(per_window / interval_s)
        cpu: list[float] = []
        d0 = udp_drops(srv.port)
        t0 = time.monotonic()
        for _ in range(reps):
            a, ta = procs.proc_stat(pid), time.monotonic()
            time.sleep(per_window)
            b, tb = procs.proc_stat(pid), time.monotonic()
            cpu.append((b.cpu_s - a.cpu_s) / (tb - ta))
        s1, t1 = procs.proc_stat(pid), time.monotonic()
        d1 = udp_drops(srv.port)
        online = ping(srv.addr) if not extra else None
        lg.stdin.close()
        stats = json.loads(lines.wait_for("{", 30))
        if lg.wait(10) != 0:
            raise RuntimeError(f"load process exited with {lg.returncode}")
    return {
        "cpu_frac": statistics.median(cpu),
        "cpu_frac_windows": cpu,
        "rss_kb": s1.rss_kb,
        "hwm_kb": s1.hwm_kb,
        "window_s": t1 - t0,
        "drops": None if d0 is None or d1 is None else d1 - d0,
        "online": online,
        "load": stats,
    }


def measure(
    *, users: int, window_s: float, reps: int = 3, loop: str = "uvloop", settle_s: float | None
) -> dict[str, Any]:
    """Sign ``users`` in to a fresh chat-server: its RSS, and its CPU over ``window_s``.

    Then the baseline: the echo server on the same loop, hit by the same number of addresses at
    the same rate (the interval the chat-server advertised), to separate what the event loop's
    wake-ups cost from what the server does per heartbeat.
    """
    from bench import procs

    with procs.chat_server(loop, cpu=procs.FAR) as srv:
        time.sleep(0.2)
        idle = procs.proc_stat(srv.proc.pid)
        ours = _hold(srv, [], users, window_s, reps, loop, settle_s)
        server_loop = srv.loop
    interval_s = ours["load"]["heartbeat_interval_s"]
    with procs.echo_server(loop, cpu=procs.FAR) as echo:
        base = _hold(
            echo,
            ["--echo-interval", f"{interval_s}"],
            users,
            window_s,
            reps,
            loop,
            settle_s=interval_s if settle_s is None else settle_s,
        )
    return {
        "users": users,
        "online_at_end": ours["online"],
        "rss_mb": ours["rss_kb"] / 1024,
        "hwm_mb": ours["hwm_kb"] / 1024,
        "idle_rss_mb": idle.rss_kb / 1024,
        "bytes_per_user": (ours["rss_kb"] - idle.rss_kb) * 1024 / users,
        "heartbeat_interval_s": interval_s,
        "heartbeats_per_s": users / interval_s,
        "heartbeat_cpu_frac": ours["cpu_frac"],
        "heartbeat_cpu_frac_windows": ours["cpu_frac_windows"],
        "echo_cpu_frac": base["cpu_frac"],
        "echo_cpu_frac_windows": base["cpu_frac_windows"],
        "window_s": ours["window_s"],
        "server_drops_in_window": ours["drops"],
        "echo_drops_in_window": base["drops"],
        "loop": server_loop,
        "load": ours["load"],
        "echo_load": base["load"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--measure",
        action="store_true",
        help="benchmark side: start the server and load processes, print the result",
    )
    p.add_argument("--server", help="load process: HOST:PORT of the server")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--window", type=int, default=128, help="HELLOs outstanding")
    p.add_argument("--timeout", type=float, default=0.0, help="sign-in deadline (s)")
    p.add_argument(
        "--echo-interval",
        type=float,
        default=None,
        help="baseline against the echo server: no sign-in, one datagram per user this often",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="--measure: CPU window")
    p.add_argument("--reps", type=int, default=3, help="--measure: the window is cut in this many")
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="--measure: seconds between the last sign-in and the window (default: one client "
        "timeout at the advertised interval)",
    )
    p.add_argument("--loop", default="uvloop")
    args = p.parse_args(argv)
    if args.measure:
        result = measure(
            users=args.users,
            window_s=args.seconds,
            reps=args.reps,
            loop=args.loop,
            settle_s=args.settle,
        )
        print(json.dumps(result), flush=True)
        return 0
    if not args.server:
        p.error("--server is required for the load process")
    host, _, port = args.server.rpartition(":")
    timeout = args.timeout or 60 + args.users / 500
    stats = load((host, int(port)), args.users, args.window, timeout, args.echo_interval)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
