"""Many signed-in users on one server: its resident memory, and the CPU their heartbeats cost.

The server accepts a session's requests only from the address that signed in, so every simulated
user needs an address of its own. All of 127.0.0.0/8 is loopback: the load process
(``python -m bench.users``, a process apart from the server) holds ONE UDP socket bound to
0.0.0.0:PORT and gives user ``i`` the source address 127.x.y.z:PORT with ``IP_PKTINFO`` on
``sendmsg``; the server's answers to 127.x.y.z:PORT arrive on that same socket. One descriptor
instead of 100 000. Only datagrams from the server are looked at.

It signs every user in through the core's own sign-in (bench.signin.SignIns, over
chat_protocol.client.signin.ServerSignIn): a key pair of its own, an initiation carrying the
HELLO (``--window`` in flight, started over after 1 s; a COOKIE_REPLY, when the server is under
load, answered at once with the cookie), the WELCOME in the response, and the HEARTBEAT on the new
session that makes the server register the user, answered. A handshake costs this side about
0.45 ms of CPU and the server about 0.33 ms: the sign-ins come first, and nothing is measured
until they are done. Then it heartbeats every user (:class:`Heartbeats`) as ClientCore does,
each HEARTBEAT encrypted on the user's session and each answer decrypted: the next one is due one
interval after the last answered one, the interval being the latest the server told that user in
WELCOME / HEARTBEAT_ACK (the server stretches it as users grow). Both phases are sans-I/O
steppers (``step(now)``, ``receive``, ``next_timer``); :func:`load` is the loop that moves their
datagrams through one socket. It prints ``signed-in ...`` once all are in, keeps going until its
stdin closes, then prints its counters as JSON. ``--first`` / ``--users`` give a load process its
share of the users (a user's number sets its address and its name; its handshake index, the
receiver index of every answer, tells the answers apart).

:func:`measure` is the benchmark side (``--measure``): it starts the real chat-server, runs the
load processes (one per 25 000 users, as many as there are CPUs besides the server's), and reads
the server's VmRSS and CPU time from /proc over a window; then the same load rate against the
echo server, as the baseline (no sign-in; the same encrypted datagrams, which it echoes without
any crypto). The benchmark runs it in a network namespace of its own when it can: 100 000
loopback flows would otherwise fill the host's connection tracking table (nf_conntrack) whenever
a firewall such as Docker's has loaded it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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
from collections.abc import Callable
from typing import Any

from bench import procs
from bench.signin import (
    SIGN_IN_TIMINGS,
    TRANSPORT,
    SignIns,
    ask,
    local_pair,
    receiver_index,
    server_key,
)
from chat_protocol.const import DEFAULT_TIMINGS
from chat_protocol.errors import MalformedDatagram
from chat_protocol.secure.session import SecureSession
from chat_protocol.wire.codec import decode, encode
from chat_protocol.wire.messages import Addr, Heartbeat, HeartbeatAck, Ping, Pong

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SIGN_IN_RETRY_S = SIGN_IN_TIMINGS.request_retry_s
"""A sign-in handshake unanswered this long starts over (bench.signin.SIGN_IN_TIMINGS)."""
HEARTBEAT_RETRY_S = DEFAULT_TIMINGS.request_retry_s
"""ClientCore resends an unanswered heartbeat this often."""
MAX_BURST = 128
"""Heartbeats sent back to back at most (then the loop polls for answers, ~1 ms)."""
NEW_HANDSHAKES_PER_TURN = 8
"""Sign-in handshakes started (or started over) per turn of the loop, at most."""
SIGN_IN_HEARTBEATS = 2.0
"""While users are still signing in, the ones signed in heartbeat every this many intervals
(the server drops a user after 3.3 silent intervals): the handshakes get the CPU that half the
heartbeats would take, here and on the server. From the last sign-in on, every interval."""
HEARTBEAT_SLACK_S = 0.02
"""New sign-ins wait while a heartbeat is later than this (the heartbeats of the users signed
in come first)."""


def user_ip(i: int) -> bytes:
    """127.1.0.0 upward: a distinct loopback address for each user (16.7 M of them)."""
    n = (1 << 24) + i
    return bytes((127, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def pktinfo(ip: bytes) -> list[tuple[int, int, bytes]]:
    return [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=I4s4s", 0, ip, b"\0\0\0\0"))]


class Heartbeats:
    """The heartbeat load as a stepper: every signed-in user heartbeats as ClientCore does (the
    next HEARTBEAT one interval after the last answered one, the interval the server's latest
    answer said; an unanswered one sent again every ``HEARTBEAT_RETRY_S``), each encrypted on
    the user's session and each answer decrypted.

    :meth:`add` a signed-in user; :meth:`step` gives ``(datagram, k)`` pairs to send now from
    user ``k``'s address (at most ``MAX_BURST``); :meth:`receive` takes a TRANSPORT datagram for
    user ``k``; :meth:`lost` gives the users whose heartbeats went unanswered for the server's
    whole timeout (the server dropped them). While :attr:`signing_in` (others still sign in), an
    unanswered heartbeat waits a whole interval and an answered one the next
    ``SIGN_IN_HEARTBEATS`` intervals. ``echo``: against the echo server, every answer is the echo
    of a HEARTBEAT on that one session, told apart by its token. No sockets and no clock inside.
    """

    def __init__(self, count: int, *, echo: SecureSession | None = None) -> None:
        self.sessions: list[SecureSession | None] = [None] * count
        self.heartbeats: list[bytes] = [b""] * count  # each user's HEARTBEAT, encoded
        self.interval = [1.5] * count
        self.next_hb = [0.0] * count  # when user k's next heartbeat (or resend) is due
        self.sent_at = [0.0] * count  # when user k's current heartbeat was first sent
        self.awaiting = [False] * count  # user k's heartbeat is unanswered (resend it)
        self.due: list[tuple[float, int]] = []  # (when, user): the next heartbeat of each user
        self.signing_in = True
        self.echo = echo
        self.by_token: dict[bytes, int] = {}
        self.interval_s = 1.5  # the latest interval any answer said
        self.sent = self.acks = self.resent = self.other = 0
        self._lost: list[int] = []
        self._factor = DEFAULT_TIMINGS.client_timeout_s / DEFAULT_TIMINGS.heartbeat_interval_s

    def add(
        self, k: int, session: SecureSession, token: bytes, interval_s: float, first_at: float
    ) -> None:
        """User ``k`` signed in: its first heartbeat at ``first_at``."""
        self.sessions[k] = session
        self.heartbeats[k] = encode(Heartbeat(token=token))
        self.interval[k] = self.interval_s = interval_s
        self.awaiting[k] = False
        self.next_hb[k] = first_at
        heapq.heappush(self.due, (first_at, k))
        if self.echo is not None:
            self.by_token[token] = k

    def holds(self, k: int) -> bool:
        return self.sessions[k] is not None

    def next_timer(self) -> float | None:
        return self.due[0][0] if self.due else None

    def late(self, now: float, slack_s: float) -> bool:
        """A heartbeat is more than ``slack_s`` late."""
        return bool(self.due) and self.due[0][0] <= now - slack_s

    def lost(self) -> list[int]:
        out, self._lost = self._lost, []
        return out

    def step(self, now: float) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        due = self.due
        while due and due[0][0] <= now and len(out) < MAX_BURST:
            t, k = heapq.heappop(due)
            session = self.sessions[k]
            if t != self.next_hb[k] or session is None:
                continue  # superseded by an answer, or signing in again
            if self.awaiting[k]:
                if now - self.sent_at[k] > self.interval[k] * self._factor + 1.0:
                    # Dropped by the server: the driver signs it in again, as a new user.
                    self.sessions[k] = None
                    self.awaiting[k] = False
                    self._lost.append(k)
                    continue
                self.resent += 1
            else:
                self.sent_at[k] = now
                self.awaiting[k] = True
            out.append((session.encrypt(self.heartbeats[k], now), k))
            self.sent += 1
            # While others still sign in, an unanswered heartbeat waits a whole interval (the
            # handshakes keep the server busy, and resending every 0.4 s would pile up behind
            # them); from then on it is resent as ClientCore does.
            retry_s = self.interval[k] if self.signing_in else HEARTBEAT_RETRY_S
            self.next_hb[k] = now + retry_s
            heapq.heappush(due, (self.next_hb[k], k))
        return out

    def receive(self, k: int, datagram: bytes, addr: Addr, now: float) -> None:
        """A TRANSPORT datagram for user ``k`` (one :meth:`holds`)."""
        session = self.sessions[k]
        assert session is not None
        try:
            msg = decode(session.decrypt(datagram, addr, now))
        except MalformedDatagram:
            self.other += 1
            return
        if not isinstance(msg, HeartbeatAck):
            self.other += 1
            return
        self.acks += 1
        self.interval_s = self.interval[k] = msg.heartbeat_ms / 1000
        if self.awaiting[k]:
            self.awaiting[k] = False
            # (while others sign in, every other interval: see SIGN_IN_HEARTBEATS)
            stretch = SIGN_IN_HEARTBEATS if self.signing_in else 1.0
            self.next_hb[k] = self.sent_at[k] + self.interval_s * stretch
            heapq.heappush(self.due, (self.next_hb[k], k))

    def receive_echo(self, datagram: bytes, addr: Addr, now: float, interval_s: float) -> None:
        """The echo of one of our heartbeats (the baseline): its token says whose."""
        assert self.echo is not None
        try:
            msg = decode(self.echo.decrypt(datagram, addr, now))
        except MalformedDatagram:
            self.other += 1
            return
        j = self.by_token.get(msg.token) if isinstance(msg, Heartbeat) else None
        if j is None:
            self.other += 1
            return
        self.acks += 1
        self.awaiting[j] = False
        self.next_hb[j] = self.sent_at[j] + interval_s
        heapq.heappush(self.due, (self.next_hb[j], j))


def load(
    server: tuple[str, int],
    first: int,
    count: int,
    window: int,
    timeout_s: float,
    key: bytes | None,
    echo_interval_s: float | None = None,
) -> dict[str, Any]:
    """Sign users ``first`` .. ``first + count - 1`` in, heartbeat them until stdin closes.

    User ``g`` sends from ``user_ip(g)`` and is named ``u<tag>-<g>``; the answers to each user
    are told apart by their receiver index (its handshake index) before anything is decrypted.
    Two steppers do the work: :class:`~bench.signin.SignIns` (the core's sign-in) and
    :class:`Heartbeats`; this loop only moves their datagrams through the socket, and gives the
    sign-ins the time the heartbeats leave. With ``echo_interval_s`` (the baseline, against the
    echo server) nobody signs in: every user sends a HEARTBEAT, encrypted on one session made in
    memory (the same size and the same crypto here as against the chat-server), once per
    ``echo_interval_s``, spread evenly, and the echo (decrypted here) counts as the answer.

    A user whose heartbeats go unanswered for the server's whole timeout has been dropped by the
    server (which then cannot even say so: it forgot the session): like a restarted client, it
    signs in again with a new key, under a new name (its old one stays bound to its old key),
    and is counted in ``users_lost``.
    """
    # Nothing here makes reference cycles worth collecting, and a full collection of the
    # sessions of 100 000 users would stall the heartbeats for a quarter of a second.
    gc.disable()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", 0))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    stdin_poll = select.poll()
    stdin_poll.register(sys.stdin.fileno(), select.POLLIN | select.POLLHUP)
    tag = os.urandom(2).hex()
    anc = [pktinfo(user_ip(first + k)) for k in range(count)]
    ever = [False] * count  # user k signed in at least once
    again = [0] * count  # times user k was dropped and signed in anew
    index = [-1] * count  # user k's handshake index (the receiver index of its answers)
    signed_once = 0
    lost = 0
    rng = random.Random(first)
    t_start = time.monotonic()
    signed_in_at: float | None = None
    sign_in_cpu_s = 0.0
    last_stdin_check = 0.0
    if echo_interval_s is None:
        if key is None:
            raise ValueError("the server's key is needed to sign in")
        procs.pin_self_any(procs.LOAD_CPUS)
        hb = Heartbeats(count)
    else:
        echo_tx, echo_rx = local_pair(t_start)
        hb = Heartbeats(count, echo=echo_rx)
        for k in range(count):
            t = t_start + echo_interval_s * k / count
            hb.add(k, echo_tx, os.urandom(8), echo_interval_s, t)
            ever[k] = True
        hb.signing_in = False
        signed_once = count
    signins = SignIns(
        server=server,
        key=key or b"",
        window=window,
        per_step=NEW_HANDSHAKES_PER_TURN,
        clock_offset_s=time.time() - t_start,
    )
    if echo_interval_s is None:
        for k in range(count):
            signins.add(k, f"u{tag}-{first + k}")

    send_full = 0

    def send(out: list[tuple[bytes, int]]) -> None:
        nonlocal send_full
        for payload, k in out:
            try:
                sock.sendmsg([payload], anc[k], 0, server)
            except BlockingIOError:
                send_full += 1  # a full socket buffer dropped it: the retry sends it again

    while True:
        now = time.monotonic()
        send(hb.step(now))
        for k in hb.lost():
            lost += 1
            again[k] += 1
            signins.taken.pop(index[k], None)
            signins.add(k, f"u{tag}-{first + k}.{again[k]}", again=True)
        # Sign-ins with the time the heartbeats leave (a handshake costs this process about as
        # much as 30 heartbeats; signed-in users must not time out while others sign in).
        if signins.waiting and not hb.late(now, HEARTBEAT_SLACK_S):
            send(signins.step(now))
        if signed_in_at is None and now - t_start > timeout_s:
            raise TimeoutError(f"only {signed_once} of {count} users signed in")
        # -- answers
        poller.poll(1)
        while True:
            try:
                data, src = sock.recvfrom(2048)
            except BlockingIOError:
                break
            if (src[0], src[1]) != server:
                continue
            if echo_interval_s is not None:
                hb.receive_echo(data, server, now, echo_interval_s)
                continue
            k = signins.taken.get(receiver_index(data), -1)
            if k >= 0 and data[0] == TRANSPORT and hb.holds(k):
                hb.receive(k, data, server, now)
            else:
                send(signins.receive(data, server, now))
        for k, user in signins.signed_in():
            index[k] = user.index
            if not ever[k]:
                ever[k] = True
                signed_once += 1
            # The first heartbeat at a random point of the interval: as if the users had
            # signed in over a while, not all within a few seconds, so that the heartbeats reach
            # the server at an even rate from the start. (Its registering HEARTBEAT, answered,
            # was the core's.)
            first_at = now + user.heartbeat_s * rng.uniform(0.05, 1.0)
            hb.add(k, user.session, user.token, user.heartbeat_s, first_at)
        if signed_in_at is None and signed_once == count:
            signed_in_at = time.monotonic()
            hb.signing_in = False
            sign_in_cpu_s = _self_cpu()
            # From here on the load shares one CPU with the other load processes (during the
            # sign-ins, which cost far more here than on the server, it may use every CPU but
            # the server's).
            procs.pin_self(procs.NEAR)
            print(
                f"signed-in {count} in {signed_in_at - t_start:.2f} s; "
                f"heartbeat interval {hb.interval_s:.3f} s",
                flush=True,
            )
        if signed_in_at is not None and now - last_stdin_check > 0.1:
            last_stdin_check = now
            if stdin_poll.poll(0) and not sys.stdin.readline():
                break
    sock.close()
    c = signins.counters
    return {
        "users": count,
        "first": first,
        "sign_in_s": (signed_in_at or now) - t_start,
        "sign_in_cpu_s": sign_in_cpu_s,
        "initiations": c.initiations,
        "initiations_resent": c.resent,
        "cookie_replies": c.cookies,
        "sign_in_restarts": c.restarted,
        "stale_answers": c.stale,
        "users_lost": lost,
        "held_at_end": sum(1 for k in range(count) if hb.holds(k)),
        "heartbeat_interval_s": hb.interval_s,
        "heartbeats_sent": hb.sent,
        "heartbeat_acks": hb.acks,
        "heartbeats_resent": hb.resent,
        "other_replies": hb.other + c.other,
        "sends_dropped": send_full,
        "load_cpu_s": _self_cpu(),
        "elapsed_s": time.monotonic() - t_start,
    }


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ping(server: tuple[str, int], timeout_s: float = 2.0) -> bool | None:
    """True if the server answers a PING (None if not). (A PONG carries no user count.)"""
    nonces = iter(range(1, 1 << 32))

    def request() -> tuple[bytes, Callable[[bytes], bool | None]]:
        nonce = next(nonces)

        def match(data: bytes) -> bool | None:
            msg = decode(data)
            return True if isinstance(msg, Pong) and msg.nonce == nonce else None

        return encode(Ping(nonce=nonce)), match

    return ask(server, request, timeout_s=timeout_s, retry_s=timeout_s / 4)


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
    *,
    users: int,
    workers: int,
    window_s: float,
    reps: int,
    loop: str,
    settle_s: float | None = None,
    key: bytes | None = None,
    echo_interval_s: float | None = None,
) -> dict[str, Any]:
    """Run the load processes against ``srv`` and read the server's CPU over ``reps`` windows:
    the chat-server (``key``, its static key) or the echo server (``echo_interval_s``)."""
    pid = srv.proc.pid
    if echo_interval_s is not None:
        extra = ["--echo-interval", f"{echo_interval_s}"]
    else:
        assert key is not None
        extra = ["--server-key", key.hex()]
    bounds = [users * w // workers for w in range(workers + 1)]
    timeout_s = sign_in_timeout_s(users)
    with contextlib.ExitStack() as stack:
        # During the sign-ins the load processes may use every CPU but the server's (the
        # handshakes cost them about twice what they cost the server); each pins itself to
        # procs.NEAR once done.
        lgs = [
            stack.enter_context(
                procs.child(
                    [
                        procs.PY,
                        "-m",
                        "bench.users",
                        "--server",
                        srv.target,
                        "--first",
                        str(bounds[w]),
                        "--users",
                        str(bounds[w + 1] - bounds[w]),
                        "--timeout",
                        str(timeout_s),
                        *extra,
                    ],
                    loop=loop,
                    # (unpinned: each pins itself, and must see every CPU to leave FAR alone)
                    cpu=None if echo_interval_s is None else procs.NEAR,
                )
            )
            for w in range(workers)
        ]
        readers = [procs.LineReader(lg.stdout) for lg in lgs]
        t_start = time.monotonic()
        intervals = []
        for r in readers:
            left = max(1.0, timeout_s + 10 - (time.monotonic() - t_start))
            intervals.append(float(r.wait_for("signed-in", left).rsplit(" ", 2)[-2]))
        signed_in_s = time.monotonic() - t_start
        interval_s = max(intervals)
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
        rss_kb: list[int] = []
        d0 = udp_drops(srv.port)
        t0 = time.monotonic()
        for _ in range(reps):
            a, ta = procs.proc_stat(pid), time.monotonic()
            time.sleep(per_window)
            b, tb = procs.proc_stat(pid), time.monotonic()
            cpu.append((b.cpu_s - a.cpu_s) / (tb - ta))
            rss_kb.append(b.rss_kb)
        s1, t1 = procs.proc_stat(pid), time.monotonic()
        d1 = udp_drops(srv.port)
        answers = ping(srv.addr) if echo_interval_s is None else None
        stats = []
        for lg in lgs:
            assert lg.stdin is not None
            lg.stdin.close()
        for lg, r in zip(lgs, readers, strict=True):
            stats.append(json.loads(r.wait_for("{", 30)))
            if lg.wait(10) != 0:
                raise RuntimeError(f"load process exited with {lg.returncode}")
        load = _combine(stats)
    return {
        "cpu_frac": statistics.median(cpu),
        "cpu_frac_windows": cpu,
        "rss_kb": s1.rss_kb,
        "rss_kb_windows": rss_kb,
        "hwm_kb": s1.hwm_kb,
        "window_s": t1 - t0,
        "drops": None if d0 is None or d1 is None else d1 - d0,
        # Online at the end: users signed in whom no heartbeat went unanswered for the
        # server's timeout (a PONG no longer tells anyone the user count), if it answers.
        "online": load["held_at_end"] if answers else None,
        "signed_in_s": signed_in_s,
        "load": load,
    }


def _combine(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The load processes' counters as one: sums, but the longest sign-in and the latest
    interval; ``processes`` keeps each."""
    out: dict[str, Any] = {}
    for k in stats[0]:
        vals = [st[k] for st in stats]
        if k in ("sign_in_s", "elapsed_s", "heartbeat_interval_s"):
            out[k] = max(vals)
        elif k != "first":
            out[k] = sum(vals)
    out["processes"] = stats
    return out


def sign_in_timeout_s(users: int) -> float:
    """Time allowed for ``users`` sign-ins (a handshake each: a few thousand per second here)."""
    return 60 + users / 300


def default_workers(users: int) -> int:
    """Load processes for ``users``: one per 25 000 users, at most 4, and no more than the CPUs
    they may use while signing in (procs.LOAD_CPUS: one on a 2-CPU machine)."""
    return max(1, min(4, math.ceil(users / 25_000), len(procs.LOAD_CPUS)))


def measure(
    *,
    users: int,
    window_s: float,
    reps: int = 3,
    loop: str = "uvloop",
    settle_s: float | None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Sign ``users`` in to a fresh chat-server: its RSS, and its CPU over ``window_s``.

    Then the baseline: the echo server on the same loop, hit by the same number of addresses at
    the same rate (the interval the chat-server advertised), to separate what the event loop's
    wake-ups cost from what the server does per heartbeat.
    """
    workers = workers or default_workers(users)
    with procs.chat_server(loop, cpu=procs.FAR) as srv:
        time.sleep(0.2)
        idle = procs.proc_stat(srv.proc.pid)
        key = server_key(srv.addr)
        ours = _hold(
            srv,
            users=users,
            workers=workers,
            window_s=window_s,
            reps=reps,
            loop=loop,
            settle_s=settle_s,
            key=key,
        )
        server_loop = srv.loop
    interval_s = ours["load"]["heartbeat_interval_s"]
    with procs.echo_server(loop, cpu=procs.FAR) as echo:
        base = _hold(
            echo,
            users=users,
            workers=workers,
            window_s=window_s,
            reps=reps,
            loop=loop,
            settle_s=interval_s if settle_s is None else settle_s,
            echo_interval_s=interval_s,
        )
    return {
        "users": users,
        "online_at_end": ours["online"],
        "rss_mb": ours["rss_kb"] / 1024,
        "rss_mb_windows": [kb / 1024 for kb in ours["rss_kb_windows"]],
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
        "sign_in_s": ours["signed_in_s"],
        "load_processes": workers,
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
    p.add_argument("--users", type=int, default=100_000, help="users (of this load process)")
    p.add_argument(
        "--first", type=int, default=0, help="load process: the number of its first user"
    )
    p.add_argument("--server-key", help="load process: the chat-server's static key, in hex")
    p.add_argument("--window", type=int, default=128, help="sign-in handshakes in flight")
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
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="--measure: load processes (default: one per 25 000 users, at most 4)",
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
            workers=args.workers or None,
        )
        print(json.dumps(result), flush=True)
        return 0
    if not args.server:
        p.error("--server is required for the load process")
    if args.echo_interval is None and not args.server_key:
        p.error("--server-key is required against the chat-server")
    host, _, port = args.server.rpartition(":")
    stats = load(
        (host, int(port)),
        args.first,
        args.users,
        args.window,
        args.timeout or sign_in_timeout_s(args.users),
        bytes.fromhex(args.server_key) if args.server_key else None,
        args.echo_interval,
    )
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
